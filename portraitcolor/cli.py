"""The command-line interface: each command parses its options and calls one core function.

torch and the core modules are imported inside the commands, so `--help` and
`--version` answer at once. Data goes to stdout; everything for humans to stderr.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__

app = typer.Typer(
    name="portraitcolor",
    help="Colorize grayscale portraits with a U-Net trained in CIELAB space.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(
    help="List, inspect, import, export and remove models in the weights store.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

# Exit codes: 1 when some input or the job failed, 2 for usage errors (as click does).
EXIT_FAILED = 1
EXIT_USAGE = 2

_state = {"debug": False}


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def _stderr():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fail(message: str, *, code: int = EXIT_FAILED) -> "typer.Exit":
    """Print one line `portraitcolor: error: ...` on stderr and return the Exit to raise."""
    _stderr().print(f"portraitcolor: error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def _handled_errors():
    """Exception types that carry a message for the user (imported lazily)."""
    from .dataset import DatasetError
    from .device import DeviceError
    from .lab import ImageReadError
    from .schedule import ScheduleError
    from .train import TrainingError
    from .weights import WeightsError

    return (
        DatasetError, DeviceError, ImageReadError, ScheduleError, TrainingError, WeightsError,
        FileNotFoundError, PermissionError, IsADirectoryError,
    )


def run_job(job, *args, **kwargs):
    """Call a core function; known errors become one line on stderr unless --debug."""
    try:
        return job(*args, **kwargs)
    except KeyboardInterrupt:
        raise fail("interrupted", code=130) from None
    except Exception as error:  # noqa: BLE001 - filtered just below
        if _state["debug"] or not isinstance(error, _handled_errors()):
            raise
        raise fail(str(error)) from None


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"portraitcolor {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
) -> None:
    """Colorize grayscale portraits with a U-Net trained in CIELAB space.

    Jobs: prepare a training set from photos, train a model, evaluate it, colorize photos.
    """
    _state["debug"] = debug


# ---- models ----------------------------------------------------------------------


@models_app.command("list")
def models_list(json_output: bool = typer.Option(False, "--json", help="One JSON object per model on stdout.")) -> None:
    """List the models in the store; the default is marked with *."""
    import json

    from .weights import WeightsStore

    store = WeightsStore()
    infos = run_job(store.list)
    if json_output:
        for info in infos:
            summary = {"name": info.name, "default": info.is_default, "path": str(info.path), "sha256": info.sha256, "added": info.added}
            summary["config"] = info.metadata.get("config")
            typer.echo(json.dumps(summary))
        return
    if not infos:
        _stderr().print(f"no models in {store.root}", markup=False)
        return
    for info in infos:
        marker = "*" if info.is_default else " "
        config = info.metadata.get("config") or {}
        detail = info.metadata.get("error") or f"width {config.get('width')}, size {config.get('size')}"
        typer.echo(f"{marker} {info.name}\t{detail}")


@models_app.command("show")
def models_show(name: str = typer.Argument(..., help="Model name (see `portraitcolor models list`).")) -> None:
    """Print a model's metadata (config, training summary, version, date) as JSON."""
    import json

    from .weights import WeightsStore

    info = run_job(WeightsStore().info, name)
    document = {"name": info.name, "path": str(info.path), "default": info.is_default, "sha256": info.sha256, **info.metadata}
    typer.echo(json.dumps(document, indent=2))


@models_app.command("import")
def models_import(
    file: Path = typer.Argument(..., help="A portraitcolor .safetensors weights file."),
    name: Optional[str] = typer.Option(None, "--name", help="Name in the store (default: the file's stem)."),
    default: bool = typer.Option(False, "--default", help="Make it the default model."),
    replace: bool = typer.Option(False, "--replace", help="Replace a model of the same name."),
) -> None:
    """Check a weights file and copy it into the store."""
    from .weights import WeightsStore

    info = run_job(WeightsStore().add_file, file, name or file.stem, set_default=default, replace=replace)
    typer.echo(info.name)


@models_app.command("export")
def models_export(
    name: str = typer.Argument(..., help="Model name."),
    destination: Path = typer.Argument(..., help="File or folder to write the .safetensors file to."),
) -> None:
    """Copy a model out of the store as a .safetensors file."""
    from .weights import WeightsStore

    typer.echo(str(run_job(WeightsStore().export, name, destination)))


@models_app.command("remove")
def models_remove(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Delete a model from the store."""
    from .weights import WeightsStore

    run_job(WeightsStore().remove, name)


@models_app.command("default")
def models_default(name: str = typer.Argument(..., help="Model name ('builtin' for the packaged model).")) -> None:
    """Make a model the default one that colorize and evaluate use."""
    from .weights import WeightsStore

    run_job(WeightsStore().set_default, name)


# ---- train ----------------------------------------------------------------------


@app.command("train")
def train_command(
    data: Optional[Path] = typer.Argument(None, help="The HDF5 set written by `portraitcolor prepare` (not needed with --resume)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs in all (default 20, or the sum of the phases' own counts)."),
    loss: str = typer.Option("mae,ssim", "--loss", help="Loss schedule: phases separated by commas, e.g. mae,ssim | mae:12,ssim:8 | mae+0.1*ssim | mae,gan."),
    switch_on_plateau: Optional[int] = typer.Option(None, "--switch-on-plateau", min=1, help="Move to the next phase after N epochs without validation improvement."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Adam learning rate."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Global batch size (split across processes under torchrun)."),
    width: int = typer.Option(64, "--width", min=1, max=512, help="U-Net width: channels of the first stage (the paper: 64)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the initial weights, shuffling and augmentation."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the network (faster on GPUs after a warm-up)."),
    patience: Optional[int] = typer.Option(None, "--patience", min=1, help="Stop when the last phase has not improved for N epochs."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: runs/NAME-or-time in the store)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue an interrupted run (its directory or name)."),
    name: Optional[str] = typer.Option(None, "--name", help="Store the best weights under this model name (default: the run's name)."),
    set_default: bool = typer.Option(False, "--set-default", help="Make the trained model the default for colorize and evaluate."),
    in_memory: Optional[bool] = typer.Option(None, "--in-memory/--stream", help="Load the training split into memory (default: when under 1 GiB)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Loader worker processes (default: 0 on CPU, up to 8 on GPU)."),
) -> None:
    """Train the U-Net on a prepared set; the best epoch's weights go into the store.

    Prints the model name on stdout. Under `torchrun --nproc-per-node N -m portraitcolor
    train ...` it trains with DistributedDataParallel; --batch-size stays the global batch.
    """
    from .train import TrainConfig, TrainingInterrupted, train

    if data is None and resume is None:
        raise fail("give the set to train on (SET.h5), or --resume RUN", code=EXIT_USAGE)
    config = TrainConfig(
        data=str(data) if data else "", epochs=epochs, loss=loss, switch_on_plateau=switch_on_plateau, lr=lr,
        batch_size=batch_size, width=width, seed=seed, device=device, compile=compile_model, patience=patience,
        run_dir=str(run_dir) if run_dir else None, resume=resume, name=name, set_default=set_default,
        in_memory=in_memory, workers=workers,
    )
    try:
        result = run_job(train, config, on_event=_train_progress())
    except TrainingInterrupted as stopped:  # checkpoint saved; the message says how to resume
        raise fail(str(stopped), code=130) from None
    if result.model_name:
        typer.echo(result.model_name)


def _train_progress():
    """Render training events on stderr: a rich bar per epoch on a terminal, else one line per epoch."""
    from .train import EpochDone, EpochStarted, RunStarted, StepDone, describe_record

    console = _stderr()
    live = {"progress": None, "task": None}

    def close_bar() -> None:
        if live["progress"] is not None:
            live["progress"].stop()
            live["progress"] = None

    def on_event(event) -> None:
        if isinstance(event, RunStarted):
            where = f"resuming at epoch {event.resumed_epoch + 1}, " if event.resumed_epoch is not None else ""
            console.print(
                f"training in {event.run_dir}: {where}{event.epochs} epochs of {event.steps} steps on {event.device}"
                f" ({event.precision}, {event.world_size} process{'es' if event.world_size > 1 else ''})",
                markup=False, soft_wrap=True,
            )
        elif isinstance(event, EpochStarted) and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            close_bar()
            progress = Progress(
                TextColumn(f"epoch {event.epoch + 1}/{event.epochs} [{event.phase}]"),
                BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                console=console, transient=True,
            )
            live["task"] = progress.add_task("train", total=event.steps, completed=event.first_step, status="")
            live["progress"] = progress
            progress.start()
        elif isinstance(event, StepDone) and live["progress"] is not None:
            live["progress"].update(
                live["task"], completed=event.step, status=f"loss {event.loss:.4f}  {event.images_per_s:.1f} img/s"
            )
        elif isinstance(event, EpochDone):
            close_bar()
            console.print(describe_record(event.record), markup=False, soft_wrap=True)

    return on_event


def main() -> None:
    app(prog_name="portraitcolor")
