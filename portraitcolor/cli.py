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
    from .evaluate import EvaluateError
    from .lab import ImageReadError
    from .weights import WeightsError

    return (DatasetError, DeviceError, EvaluateError, ImageReadError, WeightsError, FileNotFoundError, PermissionError, IsADirectoryError)


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


# ---- evaluate ----------------------------------------------------------------------


class EvaluateSplit(str, Enum):
    train = "train"
    val = "val"
    test = "test"
    all = "all"


@app.command()
def evaluate(
    targets: List[Path] = typer.Argument(..., metavar="TARGET", help="An HDF5 set written by prepare, or colour photos / folders of them."),
    model: List[str] = typer.Option([], "--model", "-m", metavar="NAME|PATH", help="Model name or .safetensors path (default: the default model). Give twice to compare two models."),
    split: EvaluateSplit = typer.Option(EvaluateSplit.test, "--split", help="Split of an HDF5 set to evaluate on."),
    full_res: bool = typer.Option(False, "--full-res", help="Photos at full resolution through colorize's path (default: centre crop at the model's size)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, metavar="N", help="Images per inference batch."),
    device: Device = typer.Option(Device.auto, "--device", help="Where the models run."),
    json_output: bool = typer.Option(False, "--json", help="Print the aggregate metrics as one JSON document on stdout."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", metavar="FILE", help="Write per-image metrics (source, method, metrics) to this CSV file."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="DIR", help="Write an HTML report (index.html, images, per-image CSV) into this folder."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, metavar="N", help="Evaluate only the first N images."),
) -> None:
    """Measure models against the truth and the gray / mean-ab baselines: ab error, PSNR, SSIM, CIEDE2000, colourfulness."""
    import json

    from . import evaluate as core

    options = core.EvaluateOptions(
        split=None if split is EvaluateSplit.all else split.value,
        full_res=full_res,
        batch_size=batch_size,
        device=device.value,
        limit=limit,
    )
    console = _stderr()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs have no width limit; keep the table on one line per metric
    run_job(core.check_outputs, csv_path=csv_path, report_dir=report)
    models = run_job(core.load_models, model)

    def on_failure(source: str, reason: str) -> None:
        console.print(f"portraitcolor: error: {source}: {reason}", markup=False, soft_wrap=True)

    with _evaluate_progress(console) as on_progress:
        evaluation = run_job(core.evaluate, targets, models=models, options=options, on_progress=on_progress, on_failure=on_failure)
    console.print(_evaluation_table(evaluation, core))
    for note in evaluation.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    rate = evaluation.count / evaluation.seconds if evaluation.seconds > 0 else float("inf")
    console.print(f"{evaluation.count} images in {evaluation.seconds:.1f} s ({rate:.1f} images/s) on {evaluation.device}", markup=False)
    if csv_path is not None:
        run_job(core.write_csv, evaluation, csv_path)
    if report is not None:
        page = run_job(core.write_report, evaluation, report, targets=targets, models=models, options=options)
        console.print(f"report: {page}", markup=False)
    if json_output:
        typer.echo(json.dumps(core.json_document(evaluation), indent=2))
    if evaluation.failures:
        raise typer.Exit(EXIT_FAILED)


def _evaluation_table(evaluation, core):
    from rich.table import Table

    header, rows = core.summary_table(evaluation)
    title = f"{evaluation.count} images of {evaluation.target}" + (f" ({evaluation.split})" if evaluation.split else "")
    table = Table(title=title, caption=core.TABLE_LEGEND)
    for i, name in enumerate(header):
        style = "bold" if name in evaluation.model_labels else None
        table.add_column(name, justify="left" if i == 0 else "right", style=style, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def _evaluate_progress(console):
    """A rich progress bar on a terminal; elsewhere a callback that prints nothing."""
    import contextlib

    if not console.is_terminal:
        return contextlib.nullcontext(None)
    from rich.progress import Progress

    @contextlib.contextmanager
    def bar():
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=None)
            yield lambda done, total: progress.update(task, completed=done, total=total)

    return bar()


def main() -> None:
    app(prog_name="portraitcolor")
