"""What a training run reports as it goes: the progress events train.py emits through its
on_event callback (the CLI's terminal.py renders them; the loop never prints) and the result
it returns. Plain data, no torch: the terminal imports these on the CLI's fast path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunStarted:
    run_dir: Path
    epochs: int
    steps: int
    device: str
    precision: str
    world_size: int
    resumed_epoch: int | None


@dataclass
class EpochStarted:
    epoch: int
    epochs: int
    phase: str
    steps: int
    first_step: int


@dataclass
class StepDone:
    epoch: int
    step: int
    steps: int
    loss: float
    images_per_s: float


@dataclass
class EpochDone:
    record: dict


@dataclass
class TrainResult:
    run_dir: Path
    model_name: str | None
    best_epoch: int | None
    records: list = field(default_factory=list)
