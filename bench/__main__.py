"""python -m bench [--only NAMES] [--quick] [--json PATH]: run the benchmarks, print a
markdown table of figures beside their same-run ceilings, and write the JSON."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .report import REPO, Row, machine_info, markdown, write_json

BENCHMARKS = ("model", "settings", "colorize", "photo", "rss", "help", "eccv16", "prepare", "train", "evaluate")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat: a smoke run, not figures")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "results.json", help="where the JSON goes")
    options = parser.parse_args(argv)
    options.selected = [name.strip() for name in options.only.split(",") if name.strip()]
    unknown = sorted(set(options.selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    return options


def _run(name: str, *, quick: bool, ceiling: dict) -> list[Row]:
    # Imports per benchmark: `--only help` must not pay for torch's start-up in its own figure.
    if name in ("model", "settings"):
        from . import model_bench

        scale = model_bench.Scale.pick(quick)
        if name == "settings":
            return model_bench.settings_rows(scale)
        matmul = model_bench.matmul_gflops(side=scale.matmul_side, repeats=scale.repeats + 2)
        ceiling["matmul_gflops"] = matmul
        matmul_row = Row(group="ceiling", figure=f"float32 torch.mm {scale.matmul_side}x{scale.matmul_side}", value=matmul, unit="GFLOP/s")
        return [matmul_row, *model_bench.unet_rows(scale, matmul)]
    if name == "colorize":
        from .colorize_bench import pipeline_rows

        return pipeline_rows(quick=quick)
    if name == "photo":
        from .colorize_bench import one_photo_rows

        return one_photo_rows(quick=quick)
    if name == "rss":
        from .colorize_bench import rss_rows

        return rss_rows(quick=quick)
    if name == "help":
        from .colorize_bench import help_rows

        return help_rows(quick=quick)
    if name == "eccv16":
        from .eccv16 import eccv16_rows

        return eccv16_rows(quick=quick)
    from .hooks import hook_rows

    return hook_rows(name, quick=quick)


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    machine = machine_info()
    rows: list[Row] = []
    ceiling: dict = {}
    for name in (n for n in BENCHMARKS if n in options.selected):
        started = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        rows += _run(name, quick=options.quick, ceiling=ceiling)
        print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    write_json(options.json, rows, machine, quick=options.quick, selected=options.selected)
    print(markdown(rows, machine))
    print(f"bench: JSON written to {options.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
