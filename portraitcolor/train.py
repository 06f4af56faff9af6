"""The training loop: one process, or one per GPU/CPU under torchrun (DistributedDataParallel).

    portraitcolor train faces.h5 --epochs 20 --loss mae,ssim
    torchrun --nproc-per-node 8 -m portraitcolor train faces.h5 --batch-size 256

--batch-size is the GLOBAL batch: under torchrun each of N processes takes batch/N images
of every batch, and batch norm statistics are taken over all processes (SyncBatchNorm on
GPUs, a gloo equivalent on CPUs), so N processes compute what one process computes with
the same batch, up to floating-point rounding. Only rank 0 writes files.

Validation metrics are measured on the ab channels in network units (0..1): MAE, SSIM
(11x11 Gaussian window) and PSNR (peak 1.0), beside the gray baseline (a = b = 0).
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import os
import re
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.nn.parallel import DistributedDataParallel

from . import dataset, device as devices, hints as hint_rules, losses, runs, schedule, setfile
from .atomic import atomic_output, atomic_write_text
from .errors import PortraitcolorError, UsageError
from .lab import ab_from_net, ab_to_net, first_line, lab_to_rgb
from .losses import rebalanced_mae, ssim
from .model import PatchDiscriminator, UNet, UNetConfig, widened, with_inputs_of
from .schedule import EpochRecord, best_epoch, check_lr_decay
from .weights import (
    PACKAGED, WeightsError, WeightsStore, check_name, load_weights_file, resolve_model, save_weights, sha256_of, store_root,
)

CHECKPOINT_FORMAT = "portraitcolor-checkpoint/1"
SAMPLE_COUNT = 8
# Adam divides the rate by its bias correction (as small as 0.1) in float32: a larger rate
# overflows inside the optimizer instead of reaching the divergence check.
MAX_LR = 1e30
# Options that do not change the numbers a run computes, so --resume may change them.
RUNTIME_OPTIONS = ("device", "workers", "compile", "resume", "set_default", "replace", "overwrite")
# Where the result goes: given with --resume it is used, not given the run's own is kept.
OUTPUT_OPTIONS = ("name",)
# Which set and folder the run has: checked on their own terms when resuming.
RUN_IDENTITY = ("data", "data_fingerprint", "run_dir")


@dataclass
class TrainConfig:
    data: str = ""
    epochs: int | None = None
    loss: str = "mae,ssim"
    switch_on_plateau: int | None = None
    lr: float = 1e-3
    lr_decay: str = "none"
    batch_size: int = 32
    width: int = 64
    hints: bool = False  # a hint-aware network, trained with hints sampled from the truth
    init: str | None = None  # start from this model's weights (store name or path): fine-tuning
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    patience: int | None = None
    run_dir: str | None = None
    resume: str | None = None
    name: str | None = None
    set_default: bool = False
    in_memory: bool | None = None
    workers: int | None = None
    replace: bool = False  # --name may replace a model of that name in the store
    overwrite: bool = False  # --run-dir may hold an earlier run's files
    # The set's size, mtime and sha256, taken at the start: --resume checks it is the same file.
    data_fingerprint: dict | None = None

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the checkpoint is saved; the message says how to resume."""


class TrainingError(PortraitcolorError, ValueError):
    """A run that cannot start or resume, with a one-line reason."""


class TrainingUsageError(TrainingError, UsageError):
    """The options ask for something that cannot be (a bad --lr, a taken --name, a recipe
    that differs from the resumed run's): the command line is wrong, not the job (exit 2)."""


# ---- progress events (the CLI renders them; this module never prints) ----------------


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


# ---- the loop -------------------------------------------------------------------------


def train(config: TrainConfig, *, on_event=None, stop: threading.Event | None = None, given=None) -> TrainResult:
    """Run (or resume) training; the best epoch's weights go into the store.

    given: the config fields the caller set on purpose (the CLI: the options written on the
    command line); None: those that differ from TrainConfig's defaults. With --resume they
    must agree with the run's recipe.
    """
    stop = stop or threading.Event()
    rank, world_size, local_rank = _start_distributed(config.device)
    master = rank == 0
    emit = (on_event or _ignore) if master else _ignore  # one voice on the terminal
    run = _plan(config, given, master=master, world_size=world_size, local_rank=local_rank)
    nets = _Networks.build(run)
    state = _RunState.resumed(run) if run.checkpoint else _RunState()
    data = _Data.open(run, rank=rank, world_size=world_size)
    run.run_dir = run.run_dir or (_new_run_dir(run.config) if master else Path(run.config.run_dir or "."))
    if master:  # made only now: a run that fails to set up leaves no empty folder behind
        _write_json(run.run_dir / runs.CONFIG, {**asdict(run.config), "resume": None, "phases": [p.to_dict() for p in run.phases], "world_size": world_size})

    def save_checkpoint(finished: bool = False) -> None:
        if master:
            _save_checkpoint(run.run_dir, state.checkpoint(run, nets, finished=finished))

    emit(RunStarted(run.run_dir, run.total, data.steps, str(run.device), run.precision, world_size, state.epoch if run.checkpoint else None))
    previous_handlers = _catch_stop_signals(stop)
    try:
        while state.epoch < run.total:
            phase_index = schedule.phase_at(state.epoch, run.phases, state.history(), run.config.switch_on_plateau)
            phase = run.phases[phase_index]
            data.train_batches.set_epoch(state.epoch, start_batch=state.step)
            emit(EpochStarted(state.epoch, run.total, phase.name, data.steps, state.step))
            nets.model.train()
            started, timed_images = time.perf_counter(), 0
            for l, ab, _rows in data.train_loader:
                progress = (state.epoch * data.steps + state.step) / (run.total * data.steps)
                value = _train_step(run, nets, phase, data.to_device(l), data.to_device(ab), progress=progress)
                state.step += 1
                where = f"epoch {state.epoch + 1}/{run.total}, step {state.step}/{data.steps}"
                if not math.isfinite(value):  # the weights are ruined: nothing of them may be saved
                    raise _diverged(value, where, run.run_dir, state.records)
                state.train_loss_sum += value * data.per_rank_batch
                state.train_images += data.per_rank_batch
                timed_images += data.per_rank_batch * world_size
                emit(StepDone(state.epoch, state.step, data.steps, value, timed_images / max(time.perf_counter() - started, 1e-9)))
                if _stop_everywhere(stop, world_size):
                    save_checkpoint()
                    raise TrainingInterrupted(f"interrupted at {where}; checkpoint saved. Resume with: portraitcolor train --resume {run.run_dir}")
            record = _end_epoch(run, nets, data, state, phase_index, seconds=time.perf_counter() - started, images=timed_images, master=master)
            stopping = schedule.should_stop(state.history(), run.phases, run.config.patience, run.config.switch_on_plateau)
            save_checkpoint(finished=stopping or state.epoch == run.total)
            emit(EpochDone(record))
            if stopping:
                break
        _wait_for_every_rank(world_size)  # none leaves while another still uses the group
    finally:
        _restore_signals(previous_handlers)
        # The DDP wrappers hold the process group: dropped first, the group and its gloo threads
        # end in destroy_process_group, not in the interpreter's shutdown (a SIGABRT there).
        nets.unwrap()
        gc.collect()
        _stop_distributed(world_size)
    best = _best_record(state.records)
    name = _store_best(run, state.records, best) if master and best is not None else None
    return TrainResult(run_dir=run.run_dir, model_name=name, best_epoch=None if best is None else best + 1, records=state.records)


def _ignore(event) -> None:
    pass


@dataclass
class _Run:
    """What a run is, settled before any work: its recipe and options, where it writes, the
    device, and the checkpoint it resumes from (None for a new run)."""

    config: TrainConfig
    phases: list
    total: int
    device: object
    precision: str
    set_size: int
    world_size: int
    checkpoint: dict | None = None
    run_dir: Path | None = None


def _plan(config: TrainConfig, given, *, master: bool, world_size: int, local_rank: int) -> _Run:
    """Every check before any work: the options, the outputs (store name, run folder), the set.
    A mistake found after hours of training costs those hours; found now, one line."""
    config = TrainConfig(**asdict(config))  # filled in below (epochs, set path); the caller's stays as given
    checkpoint = run_dir = None
    if config.resume:
        run_dir = _find_run(config.resume)
        checkpoint = _load_checkpoint(run_dir)
        config = _resumed_config(checkpoint["config"], config, _given_fields(config, given), run_dir)
    phases = schedule.parse_schedule(config.loss, config.epochs)
    config.epochs = schedule.total_epochs(phases)  # saved as a number, so that a resume can compare --epochs with it
    _check_options(config)
    device = _checked_device(config.device)
    if master:
        _check_model_name(config)
        if not checkpoint:
            _check_run_dir(config)
    if checkpoint:
        _check_same_set(config)
    info = setfile.inspect_set(config.data)
    if info.split_counts["val"] == 0:
        raise setfile.DatasetError(f"{config.data}: the set has no val images to validate on")
    if not checkpoint:
        config.data = str(Path(config.data).resolve())  # a resume from another folder finds the same file
        config.data_fingerprint = _set_fingerprint(Path(config.data)) if master else None  # only rank 0 saves it
    if config.in_memory is None:  # fixed at the start: it decides the shuffling order
        config.in_memory = setfile.split_bytes(info, "train") <= dataset.IN_MEMORY_BYTES
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return _Run(config, phases, config.epochs, device, devices.training_precision(device), info.size, world_size, checkpoint, run_dir)


@dataclass
class _Networks:
    """The generator (and for adversarial phases the discriminator), their optimizers and the
    loss scaler; `model` and `discriminator` are what steps call (DDP-wrapped, compiled), the
    raw ones what is saved."""

    model: object
    raw_model: object
    optimizer: object
    scaler: object
    discriminator: object = None
    raw_discriminator: object = None
    d_optimizer: object = None

    @classmethod
    def build(cls, run: _Run) -> "_Networks":
        """Same seed on every rank: the same initial weights everywhere."""
        config, device = run.config, run.device
        torch.manual_seed(config.seed)
        model = UNet(UNetConfig(width=config.width, size=run.set_size, hints=config.hints))
        if config.init and not run.checkpoint:  # a resumed run has its own weights in the checkpoint
            _load_initial_weights(model, config.init)
        adversarial = any(phase.adversarial for phase in run.phases)
        discriminator = PatchDiscriminator(width=config.width) if adversarial else None
        if run.world_size > 1:
            model = _sync_batch_norm(model, device)
            discriminator = _sync_batch_norm(discriminator, device) if discriminator else None
        model = devices.prepare_model(model, device)
        discriminator = devices.prepare_model(discriminator, device) if discriminator else None
        nets = cls(
            model=model, raw_model=model, optimizer=torch.optim.Adam(model.parameters(), lr=config.lr),
            scaler=torch.amp.GradScaler(device.type, enabled=run.precision == "fp16"),
            discriminator=discriminator, raw_discriminator=discriminator,
            # pix2pix's betas for the adversarial game
            d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=(0.5, 0.999)) if discriminator else None,
        )
        if run.checkpoint:
            nets.load(run.checkpoint)
        nets._wrap(run)
        return nets

    def _wrap(self, run: _Run) -> None:
        if run.world_size > 1:
            ids = [run.device.index] if run.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.raw_model, device_ids=ids)
            self.discriminator = DistributedDataParallel(self.raw_discriminator, device_ids=ids) if self.raw_discriminator else None
        if run.config.compile:
            self.model = torch.compile(self.model)

    def unwrap(self) -> None:
        self.model, self.discriminator = self.raw_model, self.raw_discriminator

    def state(self) -> dict:
        return {
            "model": self.raw_model.state_dict(), "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
            "discriminator": self.raw_discriminator.state_dict() if self.raw_discriminator else {},
            "discriminator_optimizer": self.d_optimizer.state_dict() if self.d_optimizer else {},
        }

    def load(self, checkpoint: dict) -> None:
        self.raw_model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        if self.raw_discriminator:
            self.raw_discriminator.load_state_dict(checkpoint["discriminator"])
            self.d_optimizer.load_state_dict(checkpoint["discriminator_optimizer"])


@dataclass
class _RunState:
    """Where a run stands: what a checkpoint holds beside the networks."""

    epoch: int = 0
    step: int = 0  # steps done in the current epoch
    records: list = field(default_factory=list)
    train_loss_sum: float = 0.0
    train_images: int = 0

    @classmethod
    def resumed(cls, run: _Run) -> "_RunState":
        checkpoint = run.checkpoint
        _set_rng_state(checkpoint["rng"])
        if checkpoint["finished"]:
            run.total = checkpoint["epoch"]  # the run had stopped early: nothing left to train
        return cls(checkpoint["epoch"], checkpoint["step"], list(checkpoint["records"]), checkpoint["train_loss_sum"], checkpoint["train_images"])

    def history(self) -> list:
        return [schedule.EpochRecord(r["val_loss"], r["phase"]) for r in self.records]

    def checkpoint(self, run: _Run, nets: _Networks, *, finished: bool) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": {**asdict(run.config), "resume": None},
            "epoch": self.epoch, "step": self.step, "finished": finished,
            "train_loss_sum": self.train_loss_sum, "train_images": self.train_images, "records": self.records,
            **nets.state(), "rng": _rng_state(),
        }


@dataclass
class _Data:
    """Each rank's share of every global batch, the validation split, and the sample images."""

    train_batches: object
    train_loader: object
    val_loader: object
    samples: object
    steps: int
    per_rank_batch: int
    device: object

    @classmethod
    def open(cls, run: _Run, *, rank: int, world_size: int) -> "_Data":
        config, device = run.config, run.device
        train_batches = dataset.LabBatches(
            config.data, "train", batch_size=config.batch_size, seed=config.seed,
            rank=rank, world_size=world_size, in_memory=config.in_memory,
        )
        val_batches = dataset.LabBatches(config.data, "val", batch_size=max(1, config.batch_size // world_size))
        workers = config.workers if config.workers is not None else _default_workers(device, world_size)
        return cls(
            train_batches=train_batches,
            train_loader=dataset.loader(train_batches, workers=workers, pin_memory=device.type == "cuda"),
            val_loader=dataset.loader(val_batches, workers=min(workers, 2), pin_memory=device.type == "cuda"),
            samples=_sample_images(val_batches), steps=len(train_batches),
            per_rank_batch=config.batch_size // world_size, device=device,
        )

    def to_device(self, tensor):
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else tensor


def _train_step(run: _Run, nets: _Networks, phase, l, ab, *, progress: float) -> float:
    """One optimizer step (and one of the discriminator in adversarial phases) on a batch of
    (b, 1, S, S) L and (b, 2, S, S) true ab; returns the generator's loss."""
    config = run.config
    lr = schedule.learning_rate(config.lr, config.lr_decay, progress=progress)
    for group in (*nets.optimizer.param_groups, *(nets.d_optimizer.param_groups if nets.d_optimizer else ())):
        group["lr"] = lr
    if nets.discriminator:
        nets.raw_discriminator.requires_grad_(phase.adversarial)
    with devices.autocast_as(run.device, run.precision):
        prediction = nets.model(_with_sampled_hints(l, ab) if config.hints else l)  # (b, 2, S, S) ab in 0..1
        loss = losses.reconstruction_loss(phase.terms, prediction, ab)
        if phase.adversarial:
            # Real and generated pairs in one pass: one forward per backward under DDP.
            logits = nets.discriminator(torch.cat([l, l]), torch.cat([ab, prediction.detach()]))
            real_logits, fake_logits = logits.chunk(2)
            d_loss = losses.discriminator_loss(real_logits, fake_logits)
    if phase.adversarial:
        nets.d_optimizer.zero_grad(set_to_none=True)
        nets.scaler.scale(d_loss).backward()
        nets.scaler.step(nets.d_optimizer)
        nets.raw_discriminator.requires_grad_(False)  # the generator's turn: D is a fixed critic
        with devices.autocast_as(run.device, run.precision):
            adversarial_term = losses.generator_adversarial_loss(nets.raw_discriminator(l, prediction))
            loss = loss + dict(phase.terms)["gan"] * adversarial_term
    nets.optimizer.zero_grad(set_to_none=True)
    nets.scaler.scale(loss).backward()
    nets.scaler.step(nets.optimizer)
    nets.scaler.update()
    return float(loss.detach())


def _end_epoch(run: _Run, nets: _Networks, data: _Data, state: _RunState, phase_index: int, *, seconds: float, images: int, master: bool) -> dict:
    """Validate on the whole val split (every rank: same weights, same numbers), record the
    epoch, and on rank 0 write the best weights, the metrics, the loss curves and samples."""
    phase = run.phases[phase_index]
    metrics = _validate(nets.raw_model, data.val_loader, run.device, run.precision)
    val_loss = sum(
        weight * (1.0 - metrics["val_ssim"] if name == "ssim" else metrics[f"val_{name}"])
        for name, weight in phase.validation_terms
    )
    if not math.isfinite(val_loss):
        raise _diverged(val_loss, f"epoch {state.epoch + 1}/{run.total}, validation", run.run_dir, state.records)
    record = {
        "epoch": state.epoch + 1, "phase": phase_index, "phase_name": phase.name,
        "train_loss": _all_ranks_mean(state.train_loss_sum, state.train_images, run.world_size, run.device),
        "val_loss": val_loss, **metrics, "images_per_s": images / max(seconds, 1e-9), "seconds": seconds,
    }
    state.records.append(record)
    state.epoch, state.step, state.train_loss_sum, state.train_images = state.epoch + 1, 0, 0.0, 0
    if master:
        if schedule.best_epoch(state.history()) == state.epoch - 1:
            save_weights(nets.raw_model, run.run_dir / runs.BEST_WEIGHTS, training={"epoch": state.epoch, "phase": phase.name})
        _write_jsonl(run.run_dir / runs.METRICS, state.records)
        _plot_loss_curves(run.run_dir / runs.LOSS_CURVE, state.records, run.phases)
        _write_sample_grid(runs.sample_path(run.run_dir, state.epoch), nets.raw_model, data.samples, run.device, run.precision)
    return record


def _store_best(run: _Run, records: list, best: int) -> str:
    """The best epoch's weights go into the store, with the typed training summary."""
    config = run.config
    summary = runs.TrainingSummary(
        data=str(Path(config.data).resolve()), data_sha256=(config.data_fingerprint or {}).get("sha256"),
        loss=config.loss, schedule=[p.to_dict() for p in run.phases],
        epochs=len(records), best_epoch=best + 1, validation=records[best],
        batch_size=config.batch_size, lr=config.lr, lr_decay=config.lr_decay, seed=config.seed, world_size=run.world_size,
        init=config.init, run_dir=str(run.run_dir),
        # evaluate's mean-ab baseline for photos, which carry no train split of their own
        mean_ab=setfile.train_mean_ab(config.data)[0],
    ).to_dict()
    return _store_weights(run.run_dir, config.name, summary, set_default=config.set_default, replace=config.replace)


def _load_initial_weights(model, spec: str) -> None:
    """Fine-tuning: copy a stored model's weights into the new network. A narrower model is
    widened first (the wider network starts computing exactly what it computed)."""
    start = resolve_model(spec)
    if start.config.width > model.config.width:
        raise TrainingError(f"--init {spec}: that model has width {start.config.width}, wider than the run's --width {model.config.width}")
    start = widened(start, model.config.width)
    # A model with or without hint inputs starts a run of the other kind (see with_inputs_of).
    model.load_state_dict(with_inputs_of(start, model.config).state_dict())


def _with_sampled_hints(l, ab):
    """(b, 1, S, S) L and (b, 2, S, S) true ab (0..1) -> (b, 1 + HINT_CHANNELS, S, S): L and
    hints sampled from the truth (hints.py): none for NO_HINT_SHARE of the images, else a
    geometric number of square patches, each holding the patch's mean true colour."""
    batch, _, height, width = l.shape
    channels = l.new_zeros(batch, hint_rules.HINT_CHANNELS, height, width)
    true_ab = ab_from_net(ab.detach().float()) / hint_rules.AB_SCALE  # CIELAB / 128
    draws = torch.rand(batch).tolist()
    success = 1.0 / hint_rules.MEAN_TRAINING_POINTS
    for image, draw in enumerate(draws):
        if draw < hint_rules.NO_HINT_SHARE:
            continue
        count = min(int(torch.distributions.Geometric(torch.tensor(success)).sample()) + 1, hint_rules.MAX_TRAINING_POINTS)
        for _ in range(count):
            side = int(torch.randint(1, hint_rules.MAX_TRAINING_PATCH + 1, ()))
            top, left = int(torch.randint(0, height - side + 1, ())), int(torch.randint(0, width - side + 1, ()))
            rows, cols = slice(top, top + side), slice(left, left + side)
            channels[image, :2, rows, cols] = true_ab[image, :, rows, cols].mean(dim=(1, 2))[:, None, None]
            channels[image, 2, rows, cols] = 1.0
    return torch.cat([l, channels], dim=1)


def _store_weights(run_dir: Path, name: str | None, summary: dict, *, set_default: bool, replace: bool) -> str:
    """Put the best epoch's weights into the store under `name` (None: a free name made from
    the run folder's); return the name. If that fails for any reason, the error says where the
    weights are and how to finish the job, so training is never lost."""
    best_path, store = run_dir / runs.BEST_WEIGHTS, WeightsStore()
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


def _diverged(value: float, where: str, run_dir: Path, records: list) -> TrainingError:
    """The error for a loss that stopped being a number (too high an --lr): where it happened and
    which finite weights are left. The checkpoint is not saved again, so it stays finite too."""
    best = _best_record(records)
    kept = (
        f"the best finite weights (epoch {best + 1}) are kept in {run_dir / runs.BEST_WEIGHTS}"
        f" (store them with: portraitcolor models import {run_dir / runs.BEST_WEIGHTS} --name NAME)"
        if best is not None and (run_dir / runs.BEST_WEIGHTS).is_file() else "no epoch had finished, so no model was stored"
    )
    return TrainingError(f"the training loss became {value} at {where}: the run diverged (try a lower --lr); {kept}")


def _best_record(records: list) -> int | None:
    """Index of the best epoch's record so far (None before the first)."""
    return best_epoch([EpochRecord(r["val_loss"], r["phase"]) for r in records])


# ---- checks before any work ------------------------------------------------------------


def _check_options(config: TrainConfig) -> None:
    """Numbers no run can use: refused as usage errors rather than met as NaN weights later."""
    if not (math.isfinite(config.lr) and 0 <= config.lr <= MAX_LR):
        raise TrainingUsageError(f"--lr must be a number from 0 to {MAX_LR:g}, got {config.lr}")
    check_lr_decay(config.lr_decay)


def _checked_device(spec: str):
    """The torch device; a spec this machine cannot give (tpu, cuda without a GPU) is a usage error."""
    try:
        return devices.pick_device(spec)
    except devices.DeviceError as error:
        raise TrainingUsageError(str(error)) from None


def _check_model_name(config: TrainConfig) -> None:
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


def _check_run_dir(config: TrainConfig) -> None:
    """An explicit --run-dir must be new or empty, or --overwrite given: a run never writes
    over another run's checkpoint, metrics and samples unasked."""
    if not config.run_dir:
        return
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingUsageError(f"--run-dir {run_dir} is a file, not a folder")
    if config.overwrite or not run_dir.is_dir():
        return
    if (run_dir / runs.CHECKPOINT).exists():
        raise TrainingUsageError(
            f"{run_dir} already holds a run: continue it with --resume {run_dir}, or pass --overwrite to start afresh there"
        )
    if any(run_dir.iterdir()):
        raise TrainingUsageError(f"--run-dir {run_dir} is not empty: choose a new or empty folder, or pass --overwrite")


def _given_fields(config: TrainConfig, given) -> set:
    if given is not None:
        return set(given)
    return {f.name for f in fields(TrainConfig) if getattr(config, f.name) != f.default}


def _resumed_config(saved: dict, asked: TrainConfig, given: set, run_dir: Path) -> TrainConfig:
    """The run's own config with the runtime options asked for now. A recipe option given beside
    --resume that differs from the run's is refused: the run would silently go on with its own."""
    run = TrainConfig.from_dict(saved)
    recipe = {f.name for f in fields(TrainConfig)} - {*RUNTIME_OPTIONS, *OUTPUT_OPTIONS, *RUN_IDENTITY}
    differing = [
        f"{_option_name(key)} {getattr(asked, key)} (the run's: {getattr(run, key)})"
        for key in sorted(given & recipe) if getattr(asked, key) != getattr(run, key)
    ]
    if "run_dir" in given and asked.run_dir and Path(asked.run_dir).resolve() != run_dir.resolve():
        differing.append(f"--run-dir {asked.run_dir} (the run's: {run_dir})")
    values = asdict(run)
    if "data" in given and asked.data and Path(asked.data).resolve() != Path(run.data).resolve():
        moved = _moved_set(asked.data, run)
        if moved is None:
            differing.append(f"the set {asked.data} (the run's: {run.data})")
        else:
            values.update(moved)
    if differing:
        raise TrainingUsageError(
            f"--resume {asked.resume} continues that run with its own recipe, but "
            + ", ".join(differing) + (" differs" if len(differing) == 1 else " differ") + ": leave them out, or start a new run"
        )
    values.update({key: getattr(asked, key) for key in RUNTIME_OPTIONS})
    values.update({key: getattr(asked, key) for key in OUTPUT_OPTIONS if key in given})
    return TrainConfig(**values)


def _option_name(key: str) -> str:
    return {"in_memory": "--in-memory/--stream"}.get(key, "--" + key.replace("_", "-"))


def _moved_set(path: str, run: TrainConfig) -> dict | None:
    """The set given beside --resume at another path is taken when its content is the run's set
    (moved or copied): {data, data_fingerprint} for it; None when it is another set."""
    fingerprint = run.data_fingerprint
    path = Path(path).resolve()
    if not fingerprint or not path.is_file() or not _same_content(path, fingerprint):
        return None
    return {"data": str(path), "data_fingerprint": {**fingerprint, "mtime_ns": path.stat().st_mtime_ns}}


def _check_same_set(config: TrainConfig) -> None:
    """A resumed run trains on the very file it started on. Its path alone is not enough: a set
    rebuilt under the same name holds other images, and the run would mix the two."""
    fingerprint = config.data_fingerprint
    if fingerprint is None:
        return  # a run from before fingerprints: its path is all there is to go by
    path = Path(config.data)
    if not path.is_file():
        raise TrainingError(f"{path}: the set this run trains on is missing (if it moved, give its new path beside --resume)")
    if not _same_content(path, fingerprint):
        raise TrainingError(
            f"{path}: the set changed since the run started (its sha256 differs): resuming would train on other images; start a new run"
        )


def _set_fingerprint(path: Path) -> dict:
    status = path.stat()
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256": sha256_of(path)}


def _same_content(path: Path, fingerprint: dict) -> bool:
    """Size and mtime unchanged: the same file, without reading gigabytes again. Otherwise
    (copied, touched) the sha256 decides."""
    status = path.stat()
    if status.st_size != fingerprint["size"]:
        return False
    return status.st_mtime_ns == fingerprint["mtime_ns"] or sha256_of(path) == fingerprint["sha256"]


# ---- validation and pictures -----------------------------------------------------------


def _validate(model, val_loader, device, precision) -> dict:
    """MAE, MSE, SSIM and PSNR of ab (0..1), mean over images, and the same for gray."""
    gray_value = float(ab_to_net(0.0))  # a = b = 0: the gray the network would have to beat
    names = ("mae", "mse", "ssim", "psnr", "rebalanced")
    sums = {prefix + name: 0.0 for prefix in ("", "gray_") for name in names}
    count = 0
    model.eval()
    with torch.no_grad():
        for l, ab, _rows in val_loader:
            l, ab = l.to(device), ab.to(device)
            with devices.autocast_as(device, precision):
                prediction = model(l)
            prediction = prediction.float()
            gray = torch.full_like(ab, gray_value)
            for prefix, guess in (("", prediction), ("gray_", gray)):
                mse = ((guess - ab) ** 2).mean(dim=(1, 2, 3))  # (B,)
                sums[prefix + "mae"] += float((guess - ab).abs().mean(dim=(1, 2, 3)).sum())
                sums[prefix + "mse"] += float(mse.sum())
                sums[prefix + "ssim"] += float(ssim(guess, ab).sum())
                sums[prefix + "psnr"] += float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).sum())
                sums[prefix + "rebalanced"] += float(rebalanced_mae(guess, ab).sum())
            count += len(ab)
    model.train()
    return {f"val_{key}": value / count for key, value in sums.items()}


def _sample_images(val_batches):
    """The first SAMPLE_COUNT val images: the same faces in every epoch's grid."""
    ls, abs_ = [], []
    for l, ab, _rows in val_batches:
        ls.append(l)
        abs_.append(ab)
        if sum(len(x) for x in ls) >= SAMPLE_COUNT:
            break
    return torch.cat(ls)[:SAMPLE_COUNT], torch.cat(abs_)[:SAMPLE_COUNT]


def _write_sample_grid(path: Path, model, samples, device, precision) -> None:
    """One row per face: gray | prediction | truth."""
    l, ab = samples
    model.eval()
    with torch.no_grad(), devices.autocast_as(device, precision):
        prediction = model(l.to(device)).float().cpu()
    model.train()

    def rgb(ab_net):  # (B, 2, S, S) 0..1 -> (B, S, S, 3) uint8
        lab = torch.cat([l * 100.0, torch.from_numpy(ab_from_net(ab_net.numpy()))], dim=1)
        return (lab_to_rgb(lab.permute(0, 2, 3, 1).numpy()) * 255 + 0.5).astype(np.uint8)

    gray = torch.full_like(ab, float(ab_to_net(0.0)))
    rows = [np.concatenate(columns, axis=1) for columns in zip(rgb(gray), rgb(prediction), rgb(ab))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        Image.fromarray(np.concatenate(rows, axis=0)).save(temporary, format="PNG")


def _plot_loss_curves(path: Path, records: list, phases) -> None:
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
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


# ---- files of the run ---------------------------------------------------------------------


def _new_run_dir(config: TrainConfig) -> Path:
    """Create the run's folder (checked by _check_run_dir). The default one is made with
    mkdir(exist_ok=False): two runs started in the same second get a folder each."""
    if config.run_dir:
        run_dir = Path(config.run_dir)
        if config.overwrite:
            _remove_run_files(run_dir)
        if run_dir.is_dir():
            return run_dir
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            raise TrainingUsageError(f"--run-dir {run_dir} was just created by another run: choose another folder") from None
        return run_dir

    base = store_root() / "runs" / (config.name or time.strftime("%Y%m%d-%H%M%S"))
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in itertools.count(1):
        run_dir = base if suffix == 1 else base.with_name(f"{base.name}-{suffix}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue


def _remove_run_files(run_dir: Path) -> None:
    """--overwrite: an earlier run's files go, so that none of them (a checkpoint to resume, the
    samples of epochs this run will not reach) is taken for this run's. Other files stay."""
    for name in runs.FILES:
        (run_dir / name).unlink(missing_ok=True)
    for sample in (run_dir / runs.SAMPLES).glob("epoch-*.png"):
        sample.unlink()


def _find_run(spec: str) -> Path:
    """--resume takes a run directory, or the name of a run under the store's runs/."""
    for candidate in (Path(spec), store_root() / "runs" / spec):
        if (candidate / runs.CHECKPOINT).is_file():
            return candidate
    raise TrainingError(f"no run to resume at {spec} (no {runs.CHECKPOINT} there or in {store_root() / 'runs'})")


def _load_checkpoint(run_dir: Path) -> dict:
    path = run_dir / runs.CHECKPOINT
    try:
        # weights_only: tensors and plain types only, never arbitrary unpickling
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise TrainingError(f"{path}: unreadable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not a portraitcolor checkpoint")
    return checkpoint


def _save_checkpoint(run_dir: Path, state: dict) -> None:
    with atomic_output(run_dir / runs.CHECKPOINT) as temporary, open(temporary, "wb") as handle:
        writer = _WriteErrors(handle)
        try:
            torch.save(state, writer)
        except RuntimeError:
            # torch reports a failed write (a full disk) as "enforce fail at inline_container.cc";
            # the OSError underneath says what happened, and atomic_output names the file.
            if writer.error is not None:
                raise writer.error from None
            raise


class _WriteErrors:
    """A file for torch.save that remembers the OSError of a failed write."""

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _write_json(path: Path, document: dict) -> None:
    atomic_write_text(path, json.dumps(document, indent=2, default=str) + "\n")


def _write_jsonl(path: Path, records: list) -> None:
    # Rewritten whole from the checkpoint's records: a resumed run never repeats a line.

    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in records))


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _default_workers(device, world_size: int) -> int:
    # On a CPU the reader would compete with the training step for the same cores.
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // world_size - 1))


# ---- signals ---------------------------------------------------------------------------


def _catch_stop_signals(stop: threading.Event):
    """Ctrl-C / SIGTERM set `stop`: the current step finishes, then the run saves and exits.
    A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {}

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    return previous


def _restore_signals(previous) -> None:
    for signum, handler in (previous or {}).items():
        signal.signal(signum, handler)


# ---- distributed ------------------------------------------------------------------------


def _start_distributed(device_spec: str) -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0

    use_cuda = torch.cuda.is_available() and not str(device_spec).startswith(("cpu", "mps"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def _stop_distributed(world_size: int) -> None:
    if world_size > 1:
        if dist.is_initialized():
            dist.destroy_process_group()


def _wait_for_every_rank(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def _stop_everywhere(stop: threading.Event, world_size: int) -> bool:
    """All ranks stop after the same step, or the others would wait forever in a collective."""
    if world_size == 1:
        return stop.is_set()

    flag = torch.tensor([1.0 if stop.is_set() else 0.0])
    if dist.get_backend() == "nccl":
        flag = flag.cuda()
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _all_ranks_mean(total: float, count: int, world_size: int, device) -> float:
    if world_size == 1:
        return total / max(count, 1)

    sums = torch.tensor([total, float(count)], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(sums)
    return float(sums[0] / sums[1].clamp_min(1))


def _sync_batch_norm(module, device):
    """Batch statistics over all ranks: torch's SyncBatchNorm on GPUs; on CPUs (gloo), where
    torch's version is unavailable, CrossProcessBatchNorm2d."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for child in module.modules():
        if type(child) is torch.nn.BatchNorm2d:
            child.__class__ = CrossProcessBatchNorm2d
    return module


class SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: the sum's gradient reaches every rank's input."""

    @staticmethod
    def forward(ctx, tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CrossProcessBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the whole global batch.

    The sums travel through a differentiable all_reduce, so the gradient is that of
    one process normalising the global batch."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        x32 = x.float()
        channels = x.shape[1]
        sums = torch.cat([x32.sum(dim=(0, 2, 3)), (x32 * x32).sum(dim=(0, 2, 3))])
        sums = SumOverRanks.apply(sums)
        count = x32.numel() // channels * dist.get_world_size()
        mean = sums[:channels] / count
        var = (sums[channels:] / count - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * count / max(count - 1, 1), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        y = x32 * scale[None, :, None, None] + (self.bias - mean * scale)[None, :, None, None]
        return y.to(x.dtype)


def describe_record(record: dict) -> str:
    """One line for the end of an epoch."""
    return (
        f"epoch {record['epoch']} [{record['phase_name']}] train {record['train_loss']:.4f} val {record['val_loss']:.4f}"
        f" | ab MAE {record['val_mae']:.4f} SSIM {record['val_ssim']:.4f} PSNR {record['val_psnr']:.2f} dB"
        f" (gray {record['val_gray_mae']:.4f} / {record['val_gray_ssim']:.4f} / {record['val_gray_psnr']:.2f} dB)"
        f" | {record['images_per_s']:.1f} img/s"
    )

