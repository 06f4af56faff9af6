"""The other parts' own benchmarks (bench/prepare_bench.py, bench/train_bench.py,
bench/evaluate_bench.py), called through their measure() when this checkout has them.

Each measure() returns a dict; its rate, ceiling and ratio are found by key name
('...per_s...' or '...per_second...', '...ceiling...', '...ratio...'), and a module may
instead return {'rows': [{figure, value, unit, ceiling, ratio, target, met}, ...]}. The
whole dict always goes into the JSON.
"""

from __future__ import annotations

import importlib
import inspect
import tempfile
from pathlib import Path

from .report import Row

HOOKS = ("prepare", "train", "evaluate")


def hook_rows(name: str, *, quick: bool) -> list[Row]:
    try:
        module = importlib.import_module(f"bench.{name}_bench")
    except ImportError as error:  # the part has not landed in this checkout yet
        return [Row(group=name, figure="measure()", value=None, note=f"not available in this checkout ({error})")]
    with tempfile.TemporaryDirectory(prefix=f"portraitcolor-bench-{name}-") as scratch:
        arguments, missing = _arguments(module, Path(scratch), quick=quick)
        if missing:
            return [Row(group=name, figure="measure()", value=None, note=f"cannot call measure(): needs {', '.join(missing)}")]
        result = module.measure(**arguments)
    return _rows_from(name, result)


def _arguments(module, scratch: Path, *, quick: bool) -> tuple[dict, list[str]]:
    """Keyword arguments for the parameters of measure() that this harness knows how to fill."""
    known = {
        "quick": lambda: quick,
        "device": lambda: "cpu",
        "workdir": lambda: scratch,
        "scratch": lambda: scratch,
        "images": lambda: 32 if quick else 512,
        "folder": lambda: _photo_folder(module, scratch / "photos", count=8 if quick else 64),
    }
    arguments, missing = {}, []
    for parameter in inspect.signature(module.measure).parameters.values():
        if parameter.name in known:
            arguments[parameter.name] = known[parameter.name]()
        elif parameter.default is inspect.Parameter.empty and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            missing.append(parameter.name)
    return arguments, missing


def _photo_folder(module, folder: Path, *, count: int) -> Path:
    writer = getattr(module, "write_synthetic_jpegs", None)
    if writer is not None:
        return Path(writer(folder, count=count) or folder)
    from .colorize_bench import write_photos

    return write_photos(folder, count, 1600, 1200)


def _rows_from(name: str, result: dict) -> list[Row]:
    if isinstance(result.get("rows"), list):
        return [Row(
            group=name, figure=str(row.get("figure", "measure()")), value=row.get("value"), unit=str(row.get("unit", "")),
            ceiling=row.get("ceiling"), ceiling_label=str(row.get("ceiling_label", "")), ratio=row.get("ratio"),
            target=str(row.get("target", "")), met=row.get("met"), details=row,
        ) for row in result["rows"]]
    numbers = {key: value for key, value in result.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}
    rates = [key for key in numbers if ("per_s" in key or "per_second" in key) and "ceiling" not in key]
    ceilings = [key for key in numbers if "ceiling" in key]
    ratios = [key for key in numbers if "ratio" in key]
    value = numbers[rates[0]] if rates else None
    ceiling = numbers[ceilings[0]] if ceilings else None
    ratio = numbers[ratios[0]] if ratios else (value / ceiling if value and ceiling else None)
    return [Row(
        group=name, figure=rates[0] if rates else "measure()", value=value, unit="images/s" if rates else "",
        ceiling=ceiling, ceiling_label=ceilings[0] if ceilings else "", ratio=ratio,
        target=str(result.get("target", "")), met=result.get("met"),
        note=", ".join(f"{key}={value}" for key, value in result.items() if key not in (rates[:1] + ceilings[:1] + ratios[:1])),
        details=result,
    )]
