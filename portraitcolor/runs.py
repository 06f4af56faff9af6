"""The run folder: the one place that names what `train` writes and what `evaluate` reads.

    RUN/config.json          the recipe and runtime options (and the set's fingerprint)
    RUN/metrics.jsonl        one JSON record per epoch
    RUN/loss_curve.png       train and val loss per epoch, one panel per phase
    RUN/samples/epoch-NNN.png  gray | prediction | truth for a few val images
    RUN/checkpoint.pt        everything --resume needs
    RUN/best.safetensors     the best epoch's weights

Every stored model's training summary names its run folder under SUMMARY_RUN_DIR, and the
train split's mean (a, b) under SUMMARY_MEAN_AB (evaluate's mean-ab baseline for photos).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"
SAMPLES = "samples"
CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "best.safetensors"
# What an earlier run leaves in a folder (--overwrite removes these, and nothing else).
FILES = (CHECKPOINT, BEST_WEIGHTS, CONFIG, METRICS, LOSS_CURVE)

SUMMARY_RUN_DIR = "run_dir"
SUMMARY_MEAN_AB = "mean_ab"


@dataclass(frozen=True)
class TrainingSummary:
    """What every trained model's weights file says of its training (metadata "training")."""

    data: str  # the set's absolute path
    data_sha256: str | None
    loss: str
    schedule: list  # the phases, as schedule.Phase.to_dict() gives them
    epochs: int  # epochs run
    best_epoch: int  # 1-based: the epoch whose weights these are
    validation: dict  # that epoch's metrics record
    batch_size: int
    lr: float
    lr_decay: str
    seed: int
    world_size: int
    init: str | None  # the model fine-tuned from, if any
    run_dir: str  # SUMMARY_RUN_DIR
    mean_ab: tuple[float, float] | None  # SUMMARY_MEAN_AB: the train split's mean (a, b)

    def to_dict(self) -> dict:
        values = asdict(self)
        values[SUMMARY_MEAN_AB] = list(self.mean_ab) if self.mean_ab is not None else None
        return values


def sample_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / SAMPLES / f"epoch-{epoch:03d}.png"


def loss_curve_of(training: dict) -> Path | None:
    """The loss-curve PNG of the run a training summary names, if it is still there."""
    run_dir = training.get(SUMMARY_RUN_DIR) if isinstance(training, dict) else None
    if isinstance(run_dir, str) and run_dir and (Path(run_dir) / LOSS_CURVE).is_file():
        return Path(run_dir) / LOSS_CURVE
    return None


def mean_ab_of(training: dict) -> tuple[float, float] | None:
    """The train split's mean (a, b) a training summary records, if it is well formed."""
    value = training.get(SUMMARY_MEAN_AB) if isinstance(training, dict) else None
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return float(value[0]), float(value[1])
    return None
