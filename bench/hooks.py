"""The data pipeline's own benchmarks (bench/prepare_bench.py, bench/train_bench.py,
bench/evaluate_bench.py) in the common table. Each of these modules keeps its measure() for
its own script and exposes one contract for this harness: rows(*, quick, scratch) builds
its inputs in `scratch` (smaller with `quick`), calls measure() and returns its Rows, each
with the whole measure() dict in its details.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

from .report import Row

HOOKS = ("prepare", "train", "evaluate")


def hook_rows(name: str, *, quick: bool) -> list[Row]:
    if name not in HOOKS:
        raise ValueError(f"no benchmark module for {name!r} (choose from {', '.join(HOOKS)})")
    # Imported only when chosen: train_bench imports torch, which `--only help` must not pay for.
    module = importlib.import_module(f"bench.{name}_bench")
    with tempfile.TemporaryDirectory(prefix=f"portraitcolor-bench-{name}-") as scratch:
        return module.rows(quick=quick, scratch=Path(scratch))
