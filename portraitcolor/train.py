"""The training loop: one process, or one per GPU/CPU under torchrun (DistributedDataParallel).

    portraitcolor train faces.h5 --epochs 20 --loss mae,ssim
    torchrun --nproc-per-node 8 -m portraitcolor train faces.h5 --batch-size 256

--batch-size is the GLOBAL batch: under torchrun each of N processes takes batch/N images
of every batch, and batch norm statistics are taken over all processes (SyncBatchNorm on
GPUs, a gloo equivalent on CPUs), so N processes compute what one process computes with
the same batch, up to floating-point rounding. Only rank 0 writes files.

Validation metrics are measured on the ab channels in network units (0..1): MAE, SSIM
(11x11 Gaussian window) and PSNR (peak 1.0), beside the gray baseline (a = b = 0).

The run folder's files, the rules for resuming and the checks before any work are runs.py's,
the checkpoint's torch side checkpoint.py's, the process group distributed.py's, the batches
loader.py's, the progress events events.py's: this module is the loop that uses them.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import device as devices
from . import loader, losses, runs, schedule, setfile
from .checkpoint import load_checkpoint, rng_state, set_rng_state, write_checkpoint
from .config import TrainConfig
from .distributed import all_ranks_mean, catch_stop_signals, data_parallel, restore_signals, start_distributed, stop_distributed, stop_everywhere, sync_batch_norm, wait_for_every_rank
from .events import EpochDone, EpochStarted, RunStarted, StepDone, TrainResult
from .model import PatchDiscriminator, UNet, UNetConfig, widened, with_inputs_of
from .runs import TrainingError
from .store import resolve_model
from .weights import save_weights

SAMPLE_COUNT = 8


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM: the checkpoint is saved; the message says how to resume."""


# ---- the loop -------------------------------------------------------------------------


def train(config: TrainConfig, *, on_event=None, stop: threading.Event | None = None, given=None) -> TrainResult:
    """Run (or resume) training; the best epoch's weights go into the store.

    given: the config fields the caller set on purpose (the CLI: the options written on the
    command line); None: those that differ from TrainConfig's defaults. With --resume they
    must agree with the run's recipe.
    """
    stop = stop or threading.Event()
    rank, world_size, local_rank = start_distributed(config.device)
    master = rank == 0
    emit = (on_event or _ignore) if master else _ignore  # one voice on the terminal
    run = _plan(config, given, master=master, world_size=world_size, local_rank=local_rank)
    nets = _Networks.build(run)
    state = _RunState.resumed(run) if run.checkpoint else _RunState()
    data = _Data.open(run, rank=rank, world_size=world_size)
    if master and not run.run_dir:  # made only now: a run that fails to set up leaves no empty folder behind
        run.run_dir = runs.new_run_dir(run_dir=run.config.run_dir, name=run.config.name, overwrite=run.config.overwrite)
    run.run_dir = run.run_dir or Path(run.config.run_dir or ".")
    if master:
        runs.write_json(run.run_dir / runs.CONFIG, {**asdict(run.config), "resume": None, "phases": [p.to_dict() for p in run.phases], "world_size": world_size})

    def save_checkpoint(finished: bool = False) -> None:
        if master:
            write_checkpoint(run.run_dir, state.checkpoint(run, nets, finished=finished))

    emit(RunStarted(run.run_dir, run.total, data.steps, str(run.device), run.precision, world_size, state.epoch if run.checkpoint else None))
    previous_handlers = catch_stop_signals(stop)
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
                where = lambda: f"epoch {state.epoch + 1}/{run.total}, step {state.step}/{data.steps}"  # noqa: E731 - words for the two messages below
                if not math.isfinite(value):  # the weights are ruined: nothing of them may be saved
                    raise _diverged(value, where(), run.run_dir, state.records)
                state.train_loss_sum += value * data.per_rank_batch
                state.train_images += data.per_rank_batch
                timed_images += data.per_rank_batch * world_size
                emit(StepDone(state.epoch, state.step, data.steps, value, timed_images / max(time.perf_counter() - started, 1e-9)))
                if stop_everywhere(stop, world_size):
                    save_checkpoint()
                    raise TrainingInterrupted(f"interrupted at {where()}; checkpoint saved. Resume with: portraitcolor train --resume {run.run_dir}")
            record = _end_epoch(run, nets, data, state, phase_index, seconds=time.perf_counter() - started, images=timed_images, master=master)
            stopping = schedule.should_stop(state.history(), run.phases, run.config.patience, run.config.switch_on_plateau)
            save_checkpoint(finished=stopping or state.epoch == run.total)
            emit(EpochDone(record))
            if stopping:
                break
        wait_for_every_rank(world_size)  # none leaves while another still uses the group
    finally:
        restore_signals(previous_handlers)
        # The DDP wrappers hold the process group: dropped first, the group and its gloo threads
        # end in destroy_process_group, not in the interpreter's shutdown (a SIGABRT there).
        nets.unwrap()
        gc.collect()
        stop_distributed(world_size)
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
        run_dir = runs.find_run(config.resume)
        checkpoint = load_checkpoint(run_dir)
        saved = asdict(TrainConfig.from_dict(checkpoint["config"]))
        config = TrainConfig(**runs.resumed_config(saved, asdict(config), runs.given_fields(config, given), run_dir))
    phases = schedule.parse_schedule(config.loss, config.epochs)
    config.epochs = schedule.total_epochs(phases)  # saved as a number, so that a resume can compare --epochs with it
    runs.check_options(config)
    device = runs.checked_device(config.device)
    if master:
        runs.check_model_name(config)
        if not checkpoint:
            runs.check_run_dir(config.run_dir, overwrite=config.overwrite)
    if checkpoint:
        runs.check_same_set(config.data, config.data_fingerprint)
    info = setfile.inspect_set(config.data)
    if info.split_counts["val"] == 0:
        raise setfile.DatasetError(f"{config.data}: the set has no val images to validate on")
    if not checkpoint:
        config.data = str(Path(config.data).resolve())  # a resume from another folder finds the same file
        config.data_fingerprint = runs.set_fingerprint(Path(config.data)) if master else None  # only rank 0 saves it
    if config.in_memory is None:  # fixed at the start: it decides the shuffling order
        config.in_memory = setfile.split_bytes(info, "train") <= loader.IN_MEMORY_BYTES
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # A checkpoint of a run that had stopped early (patience): nothing is left to train.
    total = checkpoint["epoch"] if checkpoint and checkpoint["finished"] else config.epochs
    return _Run(config, phases, total, device, devices.training_precision(device), info.size, world_size, checkpoint, run_dir)


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
            model = sync_batch_norm(model, device)
            discriminator = sync_batch_norm(discriminator, device) if discriminator else None
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
        self.model = data_parallel(self.raw_model, run.device, run.world_size)
        self.discriminator = data_parallel(self.raw_discriminator, run.device, run.world_size)
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
        set_rng_state(checkpoint["rng"])
        return cls(checkpoint["epoch"], checkpoint["step"], list(checkpoint["records"]), checkpoint["train_loss_sum"], checkpoint["train_images"])

    def history(self) -> list:
        return _history(self.records)

    def checkpoint(self, run: _Run, nets: _Networks, *, finished: bool) -> dict:
        return {
            "config": {**asdict(run.config), "resume": None},
            "epoch": self.epoch, "step": self.step, "finished": finished,
            "train_loss_sum": self.train_loss_sum, "train_images": self.train_images, "records": self.records,
            **nets.state(), "rng": rng_state(),
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
        train_batches = loader.LabBatches(
            config.data, "train", batch_size=config.batch_size, seed=config.seed,
            rank=rank, world_size=world_size, in_memory=config.in_memory,
        )
        val_batches = loader.LabBatches(config.data, "val", batch_size=max(1, config.batch_size // world_size))
        workers = config.workers if config.workers is not None else loader.default_workers(device, world_size)
        return cls(
            train_batches=train_batches,
            train_loader=loader.loader(train_batches, workers=workers, pin_memory=device.type == "cuda"),
            val_loader=loader.loader(val_batches, workers=min(workers, 2), pin_memory=device.type == "cuda"),
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
        prediction = nets.model(loader.with_sampled_hints(l, ab) if config.hints else l)  # (b, 2, S, S) ab in 0..1
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
    metrics = losses.validation_metrics(nets.raw_model, data.val_loader, run.device, run.precision)
    val_loss = losses.validation_loss(phase.validation_terms, metrics)
    if not math.isfinite(val_loss):
        raise _diverged(val_loss, f"epoch {state.epoch + 1}/{run.total}, validation", run.run_dir, state.records)
    record = {
        "epoch": state.epoch + 1, "phase": phase_index, "phase_name": phase.name,
        "train_loss": all_ranks_mean(state.train_loss_sum, state.train_images, run.world_size, run.device),
        "val_loss": val_loss, **metrics, "images_per_s": images / max(seconds, 1e-9), "seconds": seconds,
    }
    state.records.append(record)
    state.epoch, state.step, state.train_loss_sum, state.train_images = state.epoch + 1, 0, 0.0, 0
    if master:
        if _best_record(state.records) == state.epoch - 1:
            save_weights(nets.raw_model, run.run_dir / runs.BEST_WEIGHTS, training={"epoch": state.epoch, "phase": phase.name})
        runs.write_jsonl(run.run_dir / runs.METRICS, state.records)
        runs.plot_loss_curves(run.run_dir / runs.LOSS_CURVE, state.records, run.phases)
        _write_samples(runs.sample_path(run.run_dir, state.epoch), nets.raw_model, data.samples, run.device, run.precision)
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
    return runs.store_weights(run.run_dir, config.name, summary, set_default=config.set_default, replace=config.replace)


def _load_initial_weights(model, spec: str) -> None:
    """Fine-tuning: copy a stored model's weights into the new network. A narrower model is
    widened first (the wider network starts computing exactly what it computed)."""
    start = resolve_model(spec)
    if start.config.width > model.config.width:
        raise TrainingError(f"--init {spec}: that model has width {start.config.width}, wider than the run's --width {model.config.width}")
    if start.config.width < model.config.width:
        start = widened(start, model.config.width)
    # A model with or without hint inputs starts a run of the other kind (see with_inputs_of).
    model.load_state_dict(with_inputs_of(start, model.config).state_dict())


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
    return schedule.best_epoch(_history(records))


def _history(records: list) -> list:
    """The epoch records as the schedule reads them."""
    return [schedule.EpochRecord(r["val_loss"], r["phase"]) for r in records]


# ---- the sample faces -----------------------------------------------------------------


def _sample_images(val_batches):
    """The first SAMPLE_COUNT val images: the same faces in every epoch's grid."""
    ls, abs_ = [], []
    for l, ab, _rows in val_batches:
        ls.append(l)
        abs_.append(ab)
        if sum(len(x) for x in ls) >= SAMPLE_COUNT:
            break
    return torch.cat(ls)[:SAMPLE_COUNT], torch.cat(abs_)[:SAMPLE_COUNT]


def _write_samples(path: Path, model, samples, device, precision) -> None:
    """The sample faces colorized by the model now, in the run folder's grid (gray | prediction | truth)."""
    l, ab = samples
    model.eval()
    with torch.no_grad(), devices.autocast_as(device, precision):
        prediction = model(l.to(device)).float().cpu()
    model.train()
    runs.write_sample_grid(path, l.numpy(), prediction.numpy(), ab.numpy())
