"""Rows of figures, the machine they were measured on, the markdown table and the JSON."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One figure beside its ceiling. `ratio` is value / ceiling unless the row says otherwise."""

    group: str
    figure: str
    value: float | None
    unit: str = ""
    ceiling: float | None = None
    ceiling_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    details: dict = field(default_factory=dict)


def machine_info() -> dict:
    import torch

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown(rows: list[Row], machine: dict) -> str:
    header = (
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), load average {machine['load_average'][0]:.1f} at start; "
        f"{machine['date']}, commit {machine['commit']}\n\n"
    )
    lines = [
        "| figure | value | ceiling (same run) | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        value = f"{_number(row.value)} {row.unit}".strip() if row.value is not None else (row.note or "–")
        ceiling = f"{_number(row.ceiling)} {row.ceiling_label}".strip() if row.ceiling is not None else row.ceiling_label or "–"
        met = {True: "yes", False: "**no**", None: "–"}[row.met]
        lines.append(f"| {row.group}: {row.figure} | {value} | {ceiling} | {_number(row.ratio)} | {row.target or '–'} | {met} |")
    return header + "\n".join(lines) + "\n"


def write_json(path: Path, rows: list[Row], machine: dict, *, quick: bool, selected: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine, "quick": quick, "benchmarks": selected, "rows": [asdict(row) for row in rows]}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
