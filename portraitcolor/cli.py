"""The command-line interface: each command parses its options and calls one core function.

torch and the core modules are imported inside the commands, so `--help` and
`--version` answer at once. Data goes to stdout; everything for humans to stderr
(terminal.py draws it).
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
import typer.core

from . import __version__
from .config import DEFAULT_DEVICE, DEFAULT_EPOCHS, DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_VAL, ColorizeOptions, EvaluateOptions, PrepareOptions, TrainConfig
from .errors import PortraitcolorError, UsageError
from .inputs import check_colorize_usage, read_files_from
from .terminal import (
    evaluate_progress,
    evaluation_table,
    line_console,
    prepare_progress,
    prepare_table,
    redeliver_interrupts_lost_in_finalizers,
    report_colorize,
    stderr_console,
    tolerate_closed_stdout,
    train_progress,
)


class _Commands(typer.core.TyperGroup):
    """The top-level commands. A photo or folder given where the command belongs
    (`portraitcolor photo.jpg`) gets the command line that colours it, not only "No such
    command"."""

    def resolve_command(self, ctx, args):
        try:
            return super().resolve_command(ctx, args)
        except Exception as error:  # click's UsageError, which typer vendors in newer releases
            if hasattr(error, "message") and args and not args[0].startswith("-") and Path(args[0]).exists():
                import shlex

                error.message = f"No such command '{args[0]}'. To colour it: {shlex.join(['portraitcolor', 'colorize', *args])}"
            raise


app = typer.Typer(
    name="portraitcolor",
    cls=_Commands,
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

# Every default comes from the core's option dataclasses (config.py).
PREPARE, TRAIN, EVALUATE, COLORIZE = PrepareOptions(), TrainConfig(), EvaluateOptions(), ColorizeOptions()

# Exit codes: 1 when some input or the job failed, 2 for usage errors (as click does).
EXIT_FAILED = 1
EXIT_USAGE = 2

_state = {"debug": False}


DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps."

# Options that several commands share, declared once (typer reads these as defaults).
DEVICE_OPTION = typer.Option(DEFAULT_DEVICE, "--device", metavar="DEVICE", help=DEVICE_HELP)
COLORIZE_DEVICE_OPTION = typer.Option(
    DEFAULT_DEVICE, "--device", metavar="DEVICE",
    help="auto (a GPU through PyTorch where one is present, else the CPU without PyTorch), cpu (OpenCV, no PyTorch), torch (PyTorch's own choice), cuda, cuda:N or mps.",
)
FILES_FROM_OPTION = typer.Option(None, "--files-from", metavar="FILE", help="Read more input paths from FILE (- for stdin), one per line.")
NULL_OPTION = typer.Option(False, "-0", "--null", help="--files-from paths are NUL-separated (find -print0).")


def fail(message: str, *, code: int = EXIT_FAILED) -> "typer.Exit":
    """Print one line `portraitcolor: error: ...` on stderr and return the Exit to raise."""
    line_console().print(f"portraitcolor: error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


# Exceptions that carry a message for the user: ours, and the operating system's (a full
# disk, a read-only folder). Anything else is a bug, and keeps its traceback.
_HANDLED_ERRORS = (PortraitcolorError, OSError)


def _one_line(error: Exception) -> str:
    """The message for the user. An OSError as `FILE: reason` (a full disk, a read-only
    folder), not Python's `[Errno 28] No space left on device: 'FILE'`."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename is not None else error.strerror
    return str(error)


def run_job(job, *args, **kwargs):
    """Call a core function; known errors become one line on stderr unless --debug."""
    try:
        return job(*args, **kwargs)
    except KeyboardInterrupt:
        raise fail("interrupted", code=130) from None
    except Exception as error:  # noqa: BLE001 - filtered just below
        if _state["debug"] or not isinstance(error, _HANDLED_ERRORS):
            raise
        code = EXIT_USAGE if isinstance(error, UsageError) else EXIT_FAILED
        raise fail(_one_line(error), code=code) from None


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

    from .store import WeightsStore

    store = WeightsStore()
    infos = run_job(store.list)
    if json_output:
        for info in infos:
            summary = {"name": info.name, "default": info.is_default, "path": str(info.path), "sha256": info.sha256, "added": info.added}
            summary["config"] = info.metadata.get("config")
            typer.echo(json.dumps(summary))
        return
    if not infos:
        line_console().print(f"no models in {store.root}", markup=False)
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

    from .store import WeightsStore

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
    from .store import WeightsStore

    info = run_job(WeightsStore().add_file, file, name or file.stem, set_default=default, replace=replace)
    if default:
        _say_default(info.name)
    elif info.is_default:  # --replace of the default model: its colours change
        _say_default_replaced(info.name)
    typer.echo(info.name)


@models_app.command("export")
def models_export(
    name: str = typer.Argument(..., help="Model name."),
    destination: Path = typer.Argument(..., help="File or folder to write the .safetensors file to; a name ending in .onnx gets the ONNX form."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file at the destination."),
) -> None:
    """Copy a model out of the store as a .safetensors file, or as ONNX (NAME.onnx) for other
    runtimes (an existing file only with --overwrite; never onto the store's own files)."""
    from .store import WeightsStore

    typer.echo(str(run_job(WeightsStore().export, name, destination, overwrite=overwrite)))


@models_app.command("remove")
def models_remove(name: str = typer.Argument(..., help="Model name.")) -> None:
    """Delete a model from the store (the packaged one is the default again if it was)."""
    from .store import WeightsStore
    from .weights import BUILTIN_NAME

    if run_job(WeightsStore().remove, name):
        _say_default(BUILTIN_NAME)


@models_app.command("default")
def models_default(name: str = typer.Argument(..., help="Model name ('builtin' for the packaged model).")) -> None:
    """Make a model the default one that colorize and evaluate use."""
    from .store import WeightsStore

    run_job(WeightsStore().set_default, name)
    _say_default(name)


def _say_default(name: str) -> None:
    """Every change of the default model is said, on stderr."""
    line_console().print(f"default model is now {name}", markup=False, soft_wrap=True)


def _say_default_replaced(name: str) -> None:
    """A --replace of the default model changes what colorize gives as much as a new default."""
    line_console().print(f"default model {name} now has the new weights", markup=False, soft_wrap=True)


# ---- prepare ---------------------------------------------------------------------


class CropMode(str, Enum):
    center = "center"
    face = "face"
    none = "none"
    random = "random"


@app.command("prepare")
def prepare_command(
    sources: Optional[List[Path]] = typer.Argument(None, metavar="SOURCE...", help="Image folders (searched recursively) and image files."),
    output: Path = typer.Option(..., "-o", "--output", help="The HDF5 set to write."),
    files_from: Optional[str] = FILES_FROM_OPTION,
    null: bool = NULL_OPTION,
    size: Optional[int] = typer.Option(None, "--size", min=16, help=f"Side of the stored square images [default: {DEFAULT_SIZE}, or the set's with --append]."),
    crop: CropMode = typer.Option(CropMode(PREPARE.crop), "--crop", help="center: the central square; face: a square around the largest face (center when none is found); none: the whole image squashed to a square (for sets already cropped); random: --crops-per-image squares at random places and scales (a quarter of the shorter side to all of it)."),
    crops_per_image: int = typer.Option(PREPARE.crops_per_image, "--crops-per-image", min=1, max=64, help="With --crop random: crops taken from each image."),
    backgrounds: Optional[Path] = typer.Option(None, "--backgrounds", metavar="DIR", help="Scene photos to composite cut-outs (images with a transparent background) onto, besides the cut-out on white."),
    composites: int = typer.Option(PREPARE.composites, "--composites", min=0, max=64, help="With --backgrounds: composites made of each cut-out, each on a random window of a random background."),
    seed: int = typer.Option(PREPARE.seed, "--seed", help="Seed of the random crops and composites (the same seed and file name give the same images)."),
    repeat: int = typer.Option(PREPARE.repeat, "--repeat", min=1, max=100, help="Times each image added by this run is drawn per training epoch, so that a small source mixed into a large set is not drowned."),
    face_margin: float = typer.Option(PREPARE.face_margin, "--face-margin", min=0.0, help="Room around the face box, as a fraction of its side, on each side."),
    val: Optional[float] = typer.Option(None, "--val", min=0.0, max=1.0, help=f"Fraction of images for validation, by a stable hash of the path [default: {DEFAULT_VAL}]."),
    test: Optional[float] = typer.Option(None, "--test", min=0.0, max=1.0, help=f"Fraction of images for test [default: {DEFAULT_TEST}]."),
    min_size: int = typer.Option(PREPARE.min_size, "--min-size", min=0, help="Drop images whose shorter side has fewer pixels (0: off)."),
    max_pixels: int = typer.Option(PREPARE.max_pixels, "--max-pixels", min=0, help="Drop images that claim more pixels (decompression-bomb guard; 0: off)."),
    min_contrast: float = typer.Option(PREPARE.min_contrast, "--min-contrast", min=0.0, help="Drop blank images: spread (std) of L under this (0: off)."),
    min_detail: float = typer.Option(PREPARE.min_detail, "--min-detail", min=0.0, help="Drop placeholders and flat graphics: entropy of the L histogram under this many bits (0: off)."),
    min_colorfulness: float = typer.Option(PREPARE.min_colorfulness, "--min-colorfulness", min=0.0, help="Drop grayscale, sepia and tinted monochrome: chroma not explained by lightness under this, CIELAB units (0: off)."),
    require_face: bool = typer.Option(False, "--require-face", help="Drop images where OpenCV finds no frontal face."),
    dedupe: bool = typer.Option(False, "--dedupe", help="Drop exact and near duplicates (perceptual hash)."),
    dedupe_distance: int = typer.Option(PREPARE.dedupe_distance, "--dedupe-distance", min=0, max=63, help="Hashes this many bits apart or closer count as duplicates."),
    imdb_meta: bool = typer.Option(False, "--imdb-meta", help="IMDB-WIKI: use the folder's imdb.mat / wiki.mat to drop images without exactly one clear face (needs scipy)."),
    min_face_score: float = typer.Option(PREPARE.min_face_score, "--min-face-score", help="With --imdb-meta: the lowest face_score kept."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Stop after keeping this many images."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes [default: all cores]."),
    append: bool = typer.Option(False, "--append", help="Add new images to an existing set, skipping those already in it."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing set, and an existing --report file that is not this set's."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the filter report (with every dropped file and why) as JSON."),
) -> None:
    """Turn photos into a filtered, cropped CIELAB training set (HDF5).

    Unreadable, tiny, huge, blank, placeholder and grayscale images, and results of colorize,
    are dropped and counted per reason; the table goes to stderr, the set's path to stdout.
    """
    from .prepare import check_usage, collect_sources, prepare, write_report

    listed = run_job(read_files_from, files_from, nul=null) if files_from else []
    run_job(check_usage, output, sources=[*(sources or []), *listed], report=report, append=append, overwrite=overwrite)
    options = run_job(
        PrepareOptions,
        size=size, crop=crop.value, face_margin=face_margin, min_size=min_size, max_pixels=max_pixels,
        min_contrast=min_contrast, min_detail=min_detail, min_colorfulness=min_colorfulness,
        require_face=require_face, dedupe=dedupe, dedupe_distance=dedupe_distance, imdb_meta=imdb_meta,
        min_face_score=min_face_score, val=val, test=test, limit=limit,
        backgrounds=None if backgrounds is None else str(backgrounds), composites=composites,
        crops_per_image=crops_per_image, seed=seed, repeat=repeat,
    )
    console = stderr_console()
    found = run_job(collect_sources, sources or [], files_from=listed)
    with prepare_progress(console) as on_progress:
        result = run_job(prepare, found, output, options=options, workers=workers, append=append, overwrite=overwrite, progress=on_progress)
    if report is not None:
        run_job(write_report, report, result)
    console.print(prepare_table(result.report))
    typer.echo(str(result.path))


# ---- train ----------------------------------------------------------------------


class LrDecay(str, Enum):
    none = "none"
    cosine = "cosine"


@app.command("train")
def train_command(
    typer_context: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="The HDF5 set written by `portraitcolor prepare` (not needed with --resume)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Epochs in all (default {DEFAULT_EPOCHS}, or the sum of the phases' own counts)."),
    loss: str = typer.Option(TRAIN.loss, "--loss", help="Loss schedule: phases separated by commas, e.g. mae,ssim | mae:12,ssim:8 | mae+0.1*ssim | mae,gan | mae+rebalanced. Terms: mae, mse, ssim, rebalanced (MAE weighted by colour rarity), chroma (keeps each picture as saturated as the truth), gan."),
    switch_on_plateau: Optional[int] = typer.Option(None, "--switch-on-plateau", min=1, help="Move to the next phase after N epochs without validation improvement."),
    lr: float = typer.Option(TRAIN.lr, "--lr", help="Adam learning rate (a finite number, 0 or more)."),
    lr_decay: LrDecay = typer.Option(LrDecay(TRAIN.lr_decay), "--lr-decay", help="none: a constant rate (the paper's); cosine: decay along half a cosine to 5% of --lr by the last step."),
    batch_size: int = typer.Option(TRAIN.batch_size, "--batch-size", min=1, help="Global batch size (split across processes under torchrun)."),
    width: int = typer.Option(TRAIN.width, "--width", min=1, max=512, help="U-Net width: channels of the first stage (the paper: 64)."),
    seed: int = typer.Option(TRAIN.seed, "--seed", help="Seed for the initial weights, shuffling and augmentation."),
    hints: bool = typer.Option(False, "--hints", help="Train a model that takes colour hints (colorize --hint): it learns from hints sampled from the true colours, and colours without hints too. With --init from a model without hints, it starts as that model."),
    init: Optional[str] = typer.Option(None, "--init", metavar="MODEL", help="Start from this model's weights (a store name, builtin, or a .safetensors path) instead of random ones: fine-tuning. A larger --width grows it: the wider network starts computing exactly what it computed."),
    device: str = DEVICE_OPTION,
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the network (faster on GPUs after a warm-up)."),
    patience: Optional[int] = typer.Option(None, "--patience", min=1, help="Stop when the last phase has not improved for N epochs."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory (default: a new folder runs/NAME-or-time in the store). An existing one must be empty, unless --overwrite."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start afresh in a --run-dir that holds files: the files of an earlier run there are replaced (never another tool's checkpoint.pt, config.json or sample pictures)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue an interrupted run (its directory or name) with its own set and recipe; recipe options given beside it must match the run's."),
    name: Optional[str] = typer.Option(None, "--name", help="Store the best weights under this model name (default: the run's name, made unique in the store). A name already in the store is refused unless --replace."),
    replace: bool = typer.Option(False, "--replace", help="Let --name replace a model of that name in the store."),
    set_default: bool = typer.Option(False, "--set-default", help="Make the trained model the default for colorize and evaluate."),
    in_memory: Optional[bool] = typer.Option(None, "--in-memory/--stream", help="Load the training split into memory (default: when under 1 GiB)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Loader worker processes (default: 0 on CPU, up to 8 on GPU)."),
) -> None:
    """Train the U-Net on a prepared set; the best epoch's weights go into the store.

    Prints the model name on stdout. Under `torchrun --nproc-per-node N -m portraitcolor
    train ...` it trains with DistributedDataParallel; --batch-size stays the global batch.

    Checked before any work, as usage errors (exit 2): the options, a --name that is invalid
    or already in the store (unless --replace), a --run-dir that holds files (unless
    --overwrite), and with --resume any recipe option that differs from the run's. A resumed
    run trains on the very set it started on (its absolute path and sha256 are in the run's
    config.json). A loss that stops being a number ends the run (exit 1); the best finite
    epoch's weights stay in the run folder.
    """
    from .train import TrainingInterrupted, train

    if data is None and resume is None:
        raise fail("give the set to train on (SET.h5), or --resume RUN", code=EXIT_USAGE)
    config = TrainConfig(
        data=str(data) if data else "", epochs=epochs, loss=loss, switch_on_plateau=switch_on_plateau, lr=lr, lr_decay=lr_decay.value,
        batch_size=batch_size, width=width, hints=hints, init=init, seed=seed, device=device, compile=compile_model, patience=patience,
        run_dir=str(run_dir) if run_dir else None, resume=resume, name=name, set_default=set_default,
        in_memory=in_memory, workers=workers, replace=replace, overwrite=overwrite,
    )
    try:
        result = run_job(train, config, on_event=train_progress(), given=_given_options(typer_context))
    except TrainingInterrupted as stopped:  # checkpoint saved; the message says how to resume
        raise fail(str(stopped), code=130) from None
    if result.model_name:
        if set_default:
            _say_default(result.model_name)
        elif replace and _is_default(result.model_name):
            _say_default_replaced(result.model_name)
        typer.echo(result.model_name)


def _is_default(name: str) -> bool:
    from .store import WeightsStore

    return WeightsStore().default_name() == name


# train's parameters under another name than their TrainConfig field.
_TRAIN_FIELDS = {"compile_model": "compile"}


def _given_options(context: typer.Context) -> set:
    """The TrainConfig fields the user wrote on the command line (or in the environment):
    with --resume these must agree with the run, while defaults say nothing."""
    written = ("COMMANDLINE", "ENVIRONMENT")  # ParameterSource names (typer vendors its own click)
    return {
        _TRAIN_FIELDS.get(name, name)
        for name in context.params
        if getattr(context.get_parameter_source(name), "name", None) in written
    }


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
    split: EvaluateSplit = typer.Option(EvaluateSplit(EVALUATE.split), "--split", help="Split of an HDF5 set to evaluate on."),
    full_res: bool = typer.Option(False, "--full-res", help="Photos at full resolution through colorize's path (default: centre crop at the model's size)."),
    batch_size: int = typer.Option(EVALUATE.batch_size, "--batch-size", min=1, metavar="N", help="Images per inference batch."),
    device: str = DEVICE_OPTION,
    json_output: bool = typer.Option(False, "--json", help="Print the aggregate metrics as one JSON document on stdout."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", metavar="FILE", help="Write per-image metrics (source, method, metrics) to this CSV file."),
    report: Optional[Path] = typer.Option(None, "--report", metavar="DIR", help="Write an HTML report (index.html, images, per-image CSV) into this folder."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, metavar="N", help="Evaluate only the first N images."),
    hints: int = typer.Option(EVALUATE.hints, "--hints", min=0, metavar="N", help="Give hint-aware models N hints per image, sampled from the true colours (seeded: the same for every model and run)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --csv file or the report in --report DIR (never files a report did not write)."),
) -> None:
    """Measure models against the truth and the gray / mean-ab baselines: ab error, PSNR, SSIM, CIEDE2000, colourfulness."""
    import json

    from . import evaluate as core
    from . import report as outputs

    options = EvaluateOptions(
        split=None if split is EvaluateSplit.all else split.value,
        full_res=full_res,
        batch_size=batch_size,
        device=device,
        limit=limit,
        hints=hints,
        strips=report is not None,
        leave_out=(str(report),) if report is not None else (),
    )
    console = stderr_console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # logs have no width limit; keep the table on one line per metric
    run_job(outputs.check_outputs, csv_path=csv_path, report_dir=report, overwrite=overwrite, inputs=targets)
    models = run_job(core.load_models, model)

    def on_failure(source: str, reason: str) -> None:
        console.print(f"portraitcolor: error: {source}: {reason}", markup=False, soft_wrap=True)

    with evaluate_progress(console) as on_progress:
        evaluation = run_job(core.evaluate, targets, models=models, options=options, on_progress=on_progress, on_failure=on_failure)
    console.print(evaluation_table(evaluation))
    for note in evaluation.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    rate = evaluation.count / evaluation.seconds if evaluation.seconds > 0 else float("inf")
    console.print(f"{evaluation.count} images in {evaluation.seconds:.1f} s ({rate:.1f} images/s) on {evaluation.device}", markup=False)
    page = run_job(outputs.write_outputs, evaluation, csv_path=csv_path, report_dir=report, overwrite=overwrite)
    if page is not None:
        console.print(f"report: {page}", markup=False)
    if json_output:
        typer.echo(json.dumps(outputs.json_document(evaluation), indent=2))
    if evaluation.failures:
        raise typer.Exit(EXIT_FAILED)


# ---- colorize --------------------------------------------------------------------


@app.command()
def colorize(
    inputs: Optional[List[str]] = typer.Argument(None, help="Image files, folders, or - for image bytes on stdin.", show_default=False, metavar="INPUT"),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE", help="Output file for a single input; - writes the image to stdout."),
    output_dir: Optional[Path] = typer.Option(None, "-O", "--output-dir", metavar="DIR", help="Write results here, mirroring the layout of folder inputs."),
    recursive: bool = typer.Option(False, "-r", "--recursive", help="Search folders recursively."),
    files_from: Optional[str] = FILES_FROM_OPTION,
    null: bool = NULL_OPTION,
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave inputs whose output already exists."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that already exist."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per result on stdout instead of paths: input, output, width, height, seconds, skipped, and a warning where there is one."),
    model: Optional[str] = typer.Option(None, "-m", "--model", metavar="NAME|PATH", help="Model name in the store, or a .safetensors path (default: the default model)."),
    render_size: Optional[int] = typer.Option(None, "--render-size", min=16, metavar="PIXELS", help="Short side the network sees (default: the model's training size)."),
    batch_size: int = typer.Option(COLORIZE.batch_size, "--batch-size", min=1, metavar="N", help="Images per network batch."),
    device: str = COLORIZE_DEVICE_OPTION,
    max_pixels: int = typer.Option(COLORIZE.max_pixels, "--max-pixels", min=1, metavar="N", help="Refuse larger images (decompression-bomb guard)."),
    hint: Optional[List[str]] = typer.Option(None, "--hint", metavar="X,Y=COLOUR", help="A colour you know at a point: X,Y in pixels (120,340) or fractions of width and height (0.52,0.8); COLOUR as #2a4b8d or a CSS name (navy). Repeat for more. Needs one input and a model that takes hints (the packaged one does; train --hints)."),
    hints_file: Optional[Path] = typer.Option(None, "--hints", metavar="FILE", help="Read hints from FILE: one X,Y=COLOUR per line (# comments), or JSON."),
    hint_mask: Optional[Path] = typer.Option(None, "--hint-mask", metavar="IMAGE", help="A colour scribble the size of the photo: its non-transparent pixels are hints (without alpha: all but pure white and black)."),
) -> None:
    """Colorize photos; output paths go to stdout, one per line.

    Each result keeps the input's full-resolution lightness, aspect ratio and alpha; a 16-bit
    scan's result keeps 16 bits a channel where its format holds them (PNG, TIFF).
    By default a result is written beside its input as NAME_color.EXT, in the input's format;
    a GIF's result, and that of a format that cannot be written (PSD, XPM, ...), is a PNG, and
    a HEIC photo's (read with the optional extra: pip install 'portraitcolor[heif]') a JPEG.

    Results name portraitcolor as their EXIF Software, so that a later run over their folder
    (or a shell glob that lists them) leaves them out; a photo that only shares such a name is
    an input like any other. No output ever replaces an input of the run, even with
    --overwrite.
    """
    inputs = list(inputs or [])
    run_job(check_colorize_usage, inputs, output=output, output_dir=output_dir, files_from=files_from, skip_existing=skip_existing, overwrite=overwrite, stdout_is_terminal=sys.stdout.isatty())
    if files_from is not None:
        inputs += run_job(read_files_from, files_from, nul=null)
    if output is not None and len(inputs) != 1:
        raise fail(f"-o takes exactly one input, got {len(inputs)} (use -O DIR for several)", code=EXIT_USAGE)
    if output is not None and Path(inputs[0]).is_dir():
        raise fail("-o takes one file; use -O DIR for a folder", code=EXIT_USAGE)

    from .colorize import colorize_jobs, plan_jobs
    from .hints import read_hints
    from .inference import check_takes_hints, open_predictor

    hints = run_job(read_hints, hint or [], hints_file, hint_mask)
    if hints and (len(inputs) != 1 or Path(inputs[0]).is_dir()):
        raise fail("hints describe one photo: give exactly one input file with --hint, --hints or --hint-mask", code=EXIT_USAGE)
    predictor = run_job(open_predictor, model, device=device)
    if hints:
        run_job(check_takes_hints, predictor)
    jobs = plan_jobs(inputs, output=output, output_dir=output_dir, recursive=recursive, stdin_bytes=sys.stdin.buffer.read)
    results = colorize_jobs(jobs, predictor, render_size=render_size, batch_size=batch_size, max_pixels=max_pixels, overwrite=overwrite, skip_existing=skip_existing, hints=hints)
    failures = report_colorize(results, json_output=json_output, total=len(jobs))
    if failures:
        raise typer.Exit(EXIT_FAILED)


# Registered last so that `portraitcolor --help` lists the jobs first, in the order they are used.
app.add_typer(models_app, name="models")


def main() -> None:
    import signal

    # SIGTERM (kill, a scheduler's time limit) takes the Ctrl-C path, so cleanup runs:
    # temporary files are removed and only complete outputs remain.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    tolerate_closed_stdout()
    redeliver_interrupts_lost_in_finalizers()
    status = 1  # an unexpected exception keeps its own traceback and status
    try:
        app(prog_name="portraitcolor")
    except KeyboardInterrupt:  # came after the command had handled its own: nothing is half-done
        status = 130
    except SystemExit as done:
        status = done.code
    else:
        status = 0
    finally:
        # The job is over, its outputs written or cleaned up: a Ctrl-C during the interpreter's
        # own shutdown (torch's exit handlers) would only print a traceback. One already on its
        # way (a signal, or one redelivered from a finalizer) can land between these lines: it
        # is taken here, inline, where no frame boundary lets it escape, instead of killing the
        # process by SIGINT (exit -2) after a job that ended well.
        while True:
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                break
            except KeyboardInterrupt:
                status = 130 if status == 0 else status
    sys.exit(status)
