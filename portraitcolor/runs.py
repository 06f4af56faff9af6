"""The run folder: the one place that names what `train` writes and what `evaluate` reads.

    RUN/config.json          the recipe and runtime options (and the set's fingerprint)
    RUN/metrics.jsonl        one JSON record per epoch
    RUN/loss_curve.png       train and val loss per epoch, one panel per phase
    RUN/samples/epoch-NNN.png  gray | prediction | truth for a few val images
    RUN/checkpoint.pt        everything --resume needs
    RUN/best.safetensors     the best epoch's weights

Every stored model's training summary names its run folder under SUMMARY_RUN_DIR, and the
train split's mean (a, b) under SUMMARY_MEAN_AB (evaluate's mean-ab baseline for photos).

Beside the names, the folder's life: the checks a run passes before any work, making a new
folder and finding one to resume, the files written into it (config, metrics, loss curves,
sample grids, the checkpoint file), the rules for resuming (which options may change, the very
same set), and handing its best weights to the store. No torch here: evaluate imports this
module on its fast path (checkpoint.py does the torch.save and torch.load of the checkpoint).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from . import device as devices
from .atomic import atomic_output, atomic_write_text
from .config import TrainConfig
from .errors import PortraitcolorError, UsageError
from .images import signed_exif, written_by_portraitcolor
from .lab import ab_from_net, ab_to_net, l_from_net, lab_to_rgb
from .schedule import check_lr_decay
from .store import WeightsStore, check_name, store_root
from .weights import PACKAGED, WeightsError, load_weights_file, sha256_of

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

# Options that do not change the numbers a run computes, so --resume may change them.
RUNTIME_OPTIONS = ("device", "workers", "compile", "resume", "set_default", "replace", "overwrite")
# Where the result goes: given with --resume it is used, not given the run's own is kept.
OUTPUT_OPTIONS = ("name",)
# Which set and folder the run has: checked on their own terms when resuming.
RUN_IDENTITY = ("data", "data_fingerprint", "run_dir")
# Adam divides the rate by its bias correction (as small as 0.1) in float32: a larger rate
# overflows inside the optimizer instead of reaching the divergence check.
MAX_LR = 1e30


class TrainingError(PortraitcolorError, ValueError):
    """A run that cannot start or resume, with a one-line reason."""


class TrainingUsageError(TrainingError, UsageError):
    """The options ask for something that cannot be (a bad --lr, a taken --name, a recipe
    that differs from the resumed run's): the command line is wrong, not the job (exit 2)."""


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


# ---- checks before any work ----------------------------------------------------------------


def check_options(config: TrainConfig) -> None:
    """Numbers no run can use: refused as usage errors rather than met as NaN weights later."""
    if not (math.isfinite(config.lr) and 0 <= config.lr <= MAX_LR):
        raise TrainingUsageError(f"--lr must be a number from 0 to {MAX_LR:g}, got {config.lr}")
    check_lr_decay(config.lr_decay)


def checked_device(spec: str):
    """The torch device; a spec this machine cannot give (tpu, cuda without a GPU) is a usage error."""
    try:
        return devices.pick_device(spec)
    except devices.DeviceError as error:
        raise TrainingUsageError(str(error)) from None


def check_model_name(config: TrainConfig) -> None:
    """--name is checked now: a bad name, or one taken in the store, would otherwise fail (or
    silently replace a model) only after training. Without --name a free one is chosen."""
    if config.name is None:
        return
    try:
        check_name(config.name)
    except WeightsError as error:
        raise TrainingUsageError(f"--name: {error}") from None
    if not config.replace and config.name in WeightsStore().names():
        raise TrainingUsageError(
            f"a model named {config.name!r} is already in the store: choose another --name, or pass --replace to replace it"
        )


# ---- a new run's folder, or the one to resume ---------------------------------------------


def check_run_dir(run_dir: str | None, *, overwrite: bool) -> None:
    """An explicit --run-dir must be new or empty, or --overwrite given: a run never writes
    over another run's checkpoint, metrics and samples unasked."""
    if not run_dir:
        return
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingUsageError(f"--run-dir {run_dir} is a file, not a folder")
    if not run_dir.is_dir():
        return
    if overwrite:
        foreign = _files_of_another_kind(run_dir)
        if foreign:
            raise TrainingUsageError(f"{run_dir / foreign[0]} is not from a portraitcolor run and is kept: give --run-dir a folder of its own")
        return
    if (run_dir / CHECKPOINT).exists():
        raise TrainingUsageError(
            f"{run_dir} already holds a run: continue it with --resume {run_dir}, or pass --overwrite to start afresh there"
        )
    if any(run_dir.iterdir()):
        raise TrainingUsageError(f"--run-dir {run_dir} is not empty: choose a new or empty folder, or pass --overwrite")


def _files_of_another_kind(run_dir: Path) -> list[str]:
    """The files --overwrite would remove or replace that are not a run's: FILES when the
    folder holds no run of ours (its config.json is missing or not a run's: a project
    folder's own checkpoint.pt or config.json is never taken for a run's), and any
    samples/epoch-*.png a run did not write (another tool's samples, named alike)."""
    present = [name for name in FILES if (run_dir / name).exists()]
    foreign = [] if not present or _is_run_config(run_dir / CONFIG) else present
    return foreign + [f"{SAMPLES}/{path.name}" for path in _sample_grids(run_dir) if not written_by_portraitcolor(path)]


def _sample_grids(run_dir: Path) -> list[Path]:
    return sorted((run_dir / SAMPLES).glob("epoch-*.png"))


def _is_run_config(path: Path) -> bool:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and {"data", "epochs", "loss", "width"} <= config.keys()


def new_run_dir(*, run_dir: str | None, name: str | None, overwrite: bool) -> Path:
    """Create the run's folder (checked by check_run_dir). The default one is made with
    mkdir(exist_ok=False): two runs started in the same second get a folder each."""
    if run_dir:
        run_dir = Path(run_dir)
        if overwrite:
            remove_run_files(run_dir)
        if run_dir.is_dir():
            return run_dir
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            raise TrainingUsageError(f"--run-dir {run_dir} was just created by another run: choose another folder") from None
        return run_dir

    base = store_root() / "runs" / (name or time.strftime("%Y%m%d-%H%M%S"))
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in itertools.count(1):
        run_dir = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def remove_run_files(run_dir: Path) -> None:
    """--overwrite: an earlier run's files go, so that none of them (a checkpoint to resume, the
    samples of epochs this run will not reach) is taken for this run's. Other files stay."""
    for name in FILES:
        (run_dir / name).unlink(missing_ok=True)
    for sample in _sample_grids(run_dir):
        if written_by_portraitcolor(sample):  # signed: a run's own grid (check_run_dir refused others)
            sample.unlink(missing_ok=True)


def find_run(spec: str) -> Path:
    """--resume takes a run directory, or the name of a run under the store's runs/."""
    for candidate in (Path(spec), store_root() / "runs" / spec):
        if (candidate / CHECKPOINT).is_file():
            return candidate
    raise TrainingError(f"no run to resume at {spec} (no {CHECKPOINT} there or in {store_root() / 'runs'})")


# ---- the files written into it ------------------------------------------------------------


def write_json(path: Path, document: dict) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, default=str) + "\n")


def write_jsonl(path: Path, records: list) -> None:
    # Rewritten whole from the checkpoint's records: a resumed run never repeats a line.

    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def plot_loss_curves(path: Path, records: list, phases) -> None:
    """Train and val loss per epoch, one panel per phase (like the paper's figures 3 and 4)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = sorted({r["phase"] for r in records})
    figure, axes = plt.subplots(1, len(ran), figsize=(5 * len(ran), 3.6), squeeze=False)
    for axis, phase in zip(axes[0], ran):
        mine = [r for r in records if r["phase"] == phase]
        epochs = [r["epoch"] for r in mine]
        axis.plot(epochs, [r["train_loss"] for r in mine], "o-", label="train")
        axis.plot(epochs, [r["val_loss"] for r in mine], "s-", label="validation")
        axis.set_title(f"loss: {phases[phase].name}")
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    with atomic_output(path) as temporary:
        # Signed like the sample grids (matplotlib hands pil_kwargs to Pillow's PNG writer).
        figure.savefig(temporary, format="png", dpi=100, pil_kwargs={"exif": signed_exif(None)})
    plt.close(figure)


def write_sample_grid(path: Path, l: np.ndarray, prediction: np.ndarray, truth: np.ndarray) -> None:
    """One row per face: gray | prediction | truth. l (B, 1, S, S), prediction and truth
    (B, 2, S, S) ab, all in network units (0..1)."""

    def rgb(ab_net):  # (B, 2, S, S) 0..1 -> (B, S, S, 3) uint8
        lab = np.concatenate([l_from_net(l), ab_from_net(ab_net)], axis=1)
        return (lab_to_rgb(lab.transpose(0, 2, 3, 1)) * 255 + 0.5).astype(np.uint8)

    gray = np.full_like(truth, float(ab_to_net(0.0)))
    rows = [np.concatenate(columns, axis=1) for columns in zip(rgb(gray), rgb(prediction), rgb(truth))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        # Signed like colorize's results: no folder search takes a grid for a photo.
        Image.fromarray(np.concatenate(rows, axis=0)).save(temporary, format="PNG", exif=signed_exif(None))


# ---- resuming: the same recipe on the same set --------------------------------------------


def given_fields(config: TrainConfig, given) -> set:
    """The fields set on purpose: `given`, or with None those that differ from the defaults."""
    if given is not None:
        return set(given)
    return {f.name for f in fields(TrainConfig) if getattr(config, f.name) != f.default}


def resumed_config(saved: dict, asked: dict, given: set, run_dir: Path) -> dict:
    """The run's own config (saved) with the runtime options asked for now, as the values of a
    TrainConfig. A recipe option given beside --resume that differs from the run's is refused:
    the run would silently go on with its own."""
    recipe = set(saved) - {*RUNTIME_OPTIONS, *OUTPUT_OPTIONS, *RUN_IDENTITY}
    differing = [
        f"{_option_name(key)} {asked[key]} (the run's: {saved[key]})"
        for key in sorted(given & recipe) if asked[key] != saved[key]
    ]
    if "run_dir" in given and asked["run_dir"] and Path(asked["run_dir"]).resolve() != run_dir.resolve():
        differing.append(f"--run-dir {asked['run_dir']} (the run's: {run_dir})")
    values = dict(saved)
    if "data" in given and asked["data"] and Path(asked["data"]).resolve() != Path(saved["data"]).resolve():
        moved = _moved_set(asked["data"], saved["data_fingerprint"])
        if moved is None:
            differing.append(f"the set {asked['data']} (the run's: {saved['data']})")
        else:
            values.update(moved)
    if differing:
        raise TrainingUsageError(
            f"--resume {asked['resume']} continues that run with its own recipe, but "
            + ", ".join(differing) + (" differs" if len(differing) == 1 else " differ") + ": leave them out, or start a new run"
        )
    values.update({key: asked[key] for key in RUNTIME_OPTIONS})
    values.update({key: asked[key] for key in OUTPUT_OPTIONS if key in given})
    return values


def _option_name(key: str) -> str:
    return {"in_memory": "--in-memory/--stream"}.get(key, "--" + key.replace("_", "-"))


def _moved_set(path: str, fingerprint: dict | None) -> dict | None:
    """The set given beside --resume at another path is taken when its content is the run's set
    (moved or copied): {data, data_fingerprint} for it; None when it is another set."""
    path = Path(path).resolve()
    if not fingerprint or not path.is_file() or not _same_content(path, fingerprint):
        return None
    return {"data": str(path), "data_fingerprint": {**fingerprint, "mtime_ns": path.stat().st_mtime_ns}}


def check_same_set(data: str, fingerprint: dict | None) -> None:
    """A resumed run trains on the very file it started on. Its path alone is not enough: a set
    rebuilt under the same name holds other images, and the run would mix the two."""
    if fingerprint is None:
        return  # a run from before fingerprints: its path is all there is to go by
    path = Path(data)
    if not path.is_file():
        raise TrainingError(f"{path}: the set this run trains on is missing (if it moved, give its new path beside --resume)")
    if not _same_content(path, fingerprint):
        raise TrainingError(
            f"{path}: the set changed since the run started (its sha256 differs): resuming would train on other images; start a new run"
        )


def set_fingerprint(path: Path) -> dict:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256": sha256_of(path)}


def _same_content(path: Path, fingerprint: dict) -> bool:
    """Size and mtime unchanged: the same file, without reading gigabytes again. Otherwise
    (copied, touched) the sha256 decides."""
    status = path.stat()
    if status.st_size != fingerprint["size"]:
        return False
    return status.st_mtime_ns == fingerprint["mtime_ns"] or sha256_of(path) == fingerprint["sha256"]


# ---- its best weights into the store ------------------------------------------------------


def store_weights(run_dir: Path, name: str | None, summary: dict, *, set_default: bool, replace: bool) -> str:
    """Put the best epoch's weights into the store under `name` (None: a free name made from
    the run folder's); return the name. If that fails for any reason, the error says where the
    weights are and how to finish the job, so training is never lost."""
    best_path, store = run_dir / BEST_WEIGHTS, WeightsStore()
    for _attempt in range(5):
        chosen = name or _free_model_name(run_dir.name, store.names())
        try:
            store.save_model(load_weights_file(best_path), chosen, training=summary, set_default=set_default,
                             replace=replace and name is not None)
            return chosen
        except (WeightsError, OSError) as error:
            if name is None and _taken(store, chosen):
                continue  # a parallel run stored that name a moment ago: take the next free one
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise TrainingError(
                f"the trained model could not be stored ({reason}); its weights are kept in {best_path}: "
                f"finish with: portraitcolor models import {best_path} --name {chosen}{' --default' if set_default else ''}"
            ) from None
    raise TrainingError(f"no free model name for {run_dir.name!r}; its weights are kept in {best_path}: store them with portraitcolor models import")


def _taken(store, name: str) -> bool:
    try:
        return name in store.names()
    except Exception:  # noqa: BLE001 - an unreadable store: report the first error, not this one
        return False


def _free_model_name(run_name: str, taken) -> str:
    """A valid store name from the run folder's name, unused in the store: two runs without
    --name never replace each other's model, and a folder called `my run` still stores."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-._")[:56] or "run"
    taken = {*taken, *PACKAGED}
    return next(name for name in (base if n == 1 else f"{base}-{n}" for n in itertools.count(1)) if name not in taken)
