"""The file pipeline: inputs, folders, lists and streams in, output files (or bytes) out.

Inputs become jobs (output naming, distinct outputs, nothing written outside -O), and files
flow through a small pipeline: a thread pool decodes ahead, the main thread batches
pictures of equal render shape through the network (inference.py), and the pool converts
and writes the results atomically, so decoding, inference and encoding overlap (numpy,
OpenCV and Pillow release the GIL for their heavy work).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import images, lab
from .atomic import atomic_output, cut_utf8, file_identity
from .config import ColorizeOptions
from .hints import HintError, Hints, predict_following
from .inference import Predictor, as_predictor, check_takes_hints, hint_batch, join_to_rgb, network_input, padded_shape, render_shape, upsample_ab
from .inputs import OUTPUT_TAG, image_files, is_within

# Used when the file system cannot say how long a name may be (Linux and macOS: 255 bytes).
_DEFAULT_NAME_MAX = 255


# ---- jobs: which inputs, which outputs ---------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input and where its result goes. `source` is a Path, or None for stdin bytes."""

    label: str  # how the input is named in messages and JSON
    source: Path | None
    output: Path | None  # None: image bytes to stdout
    data: bytes | None = None


@dataclass(frozen=True)
class Result:
    job: Job
    ok: bool
    error: str | None = None
    skipped: bool = False
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    image_bytes: bytes | None = None  # for `-o -`
    warning: str | None = None  # for a result that holds less than its input (one frame of several)

    @property
    def output(self) -> str | None:
        return None if self.job.output is None else str(self.job.output)


def default_output(path: Path) -> Path:
    """<stem>_color<ext> beside the input, shortened when that is too long a name (see
    fitted_name); <ext> is the input's, or the format its result is written in
    (images.result_suffix: photo.gif -> photo_color.png)."""
    return path.with_name(fitted_name(path.stem, OUTPUT_TAG, images.result_suffix(path.suffix), folder=path.parent))


def fitted_name(stem: str, tag: str, suffix: str, *, folder: Path) -> str:
    """stem + tag + suffix, or, when that is longer than the folder's file system allows
    (255 bytes on most), the stem cut on a UTF-8 character boundary followed by a short
    hash of the full name, then the tag and suffix.

    A too-long name used to fail with "File name too long" and stop the whole folder. The
    hash keeps long names that share their start distinct, and the same input always gets
    the same output name (so --skip-existing still finds it).
    """
    name = os.fsencode(stem + tag + suffix)
    limit = _name_limit(folder)
    if len(name) <= limit:
        return stem + tag + suffix
    marker = "~" + hashlib.sha256(name).hexdigest()[:12]
    tail = os.fsencode(marker + tag + suffix)
    if len(tail) >= limit:  # an absurd suffix: the format then comes from the input
        tail = os.fsencode(marker + tag)
    return os.fsdecode(cut_utf8(os.fsencode(stem), limit - len(tail)) + tail)


def _name_limit(folder: Path) -> int:
    """The longest file name, in bytes, of the file system holding `folder` (or the nearest
    existing folder above it: output folders are made later)."""
    for candidate in (folder, *folder.parents):
        try:
            limit = os.pathconf(candidate, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):  # missing folder; no pathconf (Windows)
            continue
        return limit if limit > 0 else _DEFAULT_NAME_MAX
    return _DEFAULT_NAME_MAX


def plan_jobs(inputs: Iterable[str], *, output: str | None, output_dir: Path | None, recursive: bool, stdin_bytes: Callable[[], bytes]) -> list[Job | Result]:
    """Turn the command line's inputs into Jobs (or failed Results for inputs that cannot be
    planned), all of them before any work (so that a run knows its length).

    Folder inputs mirror their relative layout under output_dir; files go to
    output_dir/NAME; without output_dir a result goes beside its input as <stem>_color<ext>.
    Every output is distinct and no input: a job whose output is an input of the run, or
    another input's output, fails.
    """
    return list(_distinct_outputs(_planned(inputs, output=output, output_dir=output_dir, recursive=recursive, stdin_bytes=stdin_bytes)))


def _distinct_outputs(planned: Iterable[Job | Result]) -> Iterator[Job | Result]:
    """Refuse a job whose output is an input of the run (`colorize a.jpg a_color.jpg` would
    replace the second photo with the first one's result) or another job's output (it would
    silently replace that result: `colorize a/face.png b/face.png -O out`). The whole plan is
    known first: a later input must be protected from an earlier job's output too.

    An input that is another job's output and that colorize wrote is that job's earlier
    result (`colorize *.jpg`, run twice, lists a_color.jpg beside a.jpg): it is not coloured
    again, and the other job treats it as any existing output (--overwrite, --skip-existing)."""
    # Each job's input and output as file identities, taken once (a stat each).
    planned = [(item, *_identities(item)) for item in planned]
    inputs = {source: item.label for item, source, _ in planned if source is not None}
    results = _earlier_results(planned, inputs)
    claimed: dict[str, str] = {}
    for item, source, output in planned:
        if source in results:
            item = Result(replace(item, output=None), ok=True, skipped=True, warning=f"a result of {results[source]} that colorize wrote: not coloured again")
        elif output is not None:
            if output in inputs and output not in results:
                item = Result(item, ok=False, error=f"output {item.output} is the input {inputs[output]}: it would be replaced")
            elif output in claimed:
                item = Result(item, ok=False, error=f"output {item.output} is already the output of {claimed[output]} (give the inputs distinct names, or -O with their folders)")
            else:
                claimed[output] = item.label
        yield item


def _identities(item: Job | Result) -> tuple[str | None, str | None]:
    """A job's (input, output) file identities; None where it has no such file."""
    if not isinstance(item, Job):
        return None, None
    source = file_identity(item.source) if item.source is not None else None
    return source, file_identity(item.output) if item.output is not None else None


def _earlier_results(planned: list[tuple[Job | Result, str | None, str | None]], inputs: dict[str, str]) -> dict[str, str]:
    """Identity of each input that is another job's output and colorize's result -> that job."""
    return {
        output: item.label
        for item, _, output in planned
        if output in inputs and inputs[output] != item.label and images.written_by_portraitcolor(item.output)
    }


def _planned(inputs: Iterable[str], *, output: str | None, output_dir: Path | None, recursive: bool, stdin_bytes: Callable[[], bytes]) -> Iterator[Job | Result]:
    for text in inputs:
        if text == "-":
            target = None if output in (None, "-") else Path(output)
            yield Job(label="<stdin>", source=None, output=target, data=stdin_bytes())
            continue
        path = Path(text)
        if _is_web_address(text) and not path.exists():
            yield Result(Job(text, None, None), ok=False, error=f"a web address: colorize reads files (download it first, or: curl -sL '{text}' | portraitcolor colorize - -o photo_color.jpg)")
            continue
        if path.is_dir():
            # Without earlier results: *_color files colorize wrote, an output folder inside this one.
            files = image_files(path, recursive=recursive, leave_out=[output_dir] if output_dir is not None else [])
            if not files:
                yield Result(Job(text, path, None), ok=False, error="folder holds no images" + ("" if recursive else " (use --recursive for subfolders)"))
            for file in files:
                yield _job_for(file, file.relative_to(path), output=output, output_dir=output_dir)
        else:
            yield _job_for(path, Path(path.name), output=output, output_dir=output_dir)


def _is_web_address(text: str) -> bool:
    """http://..., https://..., ftp://...: pasted from a browser (a path would lose its '//')."""
    scheme, separator, _ = text.partition("://")
    return bool(separator) and scheme.isascii() and scheme.isalpha()


def _job_for(path: Path, relative: Path, *, output: str | None, output_dir: Path | None) -> Job | Result:
    label = str(path)
    if output == "-":
        return Job(label, path, None)
    if output is not None:
        unwritable = images.unwritable_suffix(Path(output).suffix)
        if unwritable:
            return Result(Job(label, path, None), ok=False, error=f"cannot write {unwritable} files ({output}): name the output .png, .jpg, .tif or .webp")
        return Job(label, path, Path(output))
    if output_dir is None:
        return Job(label, path, default_output(path))
    target = output_dir / relative
    if target.name:  # the input's name fits its own file system, not necessarily the output folder's
        target = target.with_name(fitted_name(target.stem, "", images.result_suffix(target.suffix), folder=target.parent))
    # Names come from the file system: refuse anything that would land outside output_dir.
    if not is_within(target, output_dir):
        return Result(Job(label, path, None), ok=False, error=f"output {target} would escape {output_dir}")
    return Job(label, path, target)


# ---- the pipeline ----------------------------------------------------------------


@dataclass
class _Decoded:
    job: Job
    l_full: np.ndarray | None = None
    alpha: np.ndarray | None = None
    format: str | None = None
    started: float = 0.0
    error: str | None = None
    exif: bytes | None = None  # the input's, to carry on to the output (see images.Picture)
    dpi: tuple[float, float] | None = None
    frames: int = 1
    deep: bool = False


def _decode(job: Job, *, max_pixels: int, alone: bool = True) -> _Decoded:
    started = time.perf_counter()
    try:
        with _strips(alone):
            picture = images.read_lightness(job.data if job.source is None else job.source, max_pixels=max_pixels)
    except images.ImageReadError as error:
        return _Decoded(job, error=str(error), started=started)
    return _Decoded(job, picture.l, picture.alpha, picture.format, started, exif=picture.exif, dpi=picture.dpi, frames=picture.frames, deep=picture.deep)


def _output_format(job: Job, decoded: _Decoded) -> str:
    if job.output is not None:
        known = images.format_of_suffix(job.output.suffix.lower())
        if known:
            return known
    return images.result_format(decoded.format)


def _strips(alone: bool) -> contextlib.AbstractContextManager:
    """A photo with no other in flight spreads its conversions over every core (a camera's
    photo, coloured alone); beside others, each keeps to its thread (see lab.strips_in_order)."""
    return contextlib.nullcontext() if alone else lab.strips_in_order()


def _finish(decoded: _Decoded, ab_small: np.ndarray, shape: tuple[int, int], *, alone: bool = True) -> Result:
    job = decoded.job
    try:
        ab_full = upsample_ab(ab_small, shape, decoded.l_full.shape)
        file_format = _output_format(job, decoded)
        with _strips(alone):
            rgb = join_to_rgb(decoded.l_full, ab_full, dtype=_depth(decoded, file_format))
        write = _writer(decoded, rgb, file_format)
        del ab_full
        if job.output is None:
            buffer = io.BytesIO()
            write(buffer)
            payload = buffer.getvalue()
        else:
            payload = None
            with atomic_output(job.output) as temporary:
                write(temporary)
    except (OSError, ValueError, KeyError) as error:
        return Result(job, ok=False, error=f"cannot write output: {error}")
    height, width = decoded.l_full.shape
    seconds = time.perf_counter() - decoded.started
    return Result(job, ok=True, width=width, height=height, seconds=seconds, image_bytes=payload, warning=_frames_warning(decoded.frames))


def _depth(decoded: _Decoded, file_format: str) -> type:
    """uint16 for a 16-bit scan's result in a format that holds it (PNG, TIFF; alpha comes
    with 8-bit inputs only), so that it keeps the scan's tonal steps; else uint8."""
    return np.uint16 if decoded.deep and decoded.alpha is None and file_format in images.DEEP_FORMATS else np.uint8


def _writer(decoded: _Decoded, rgb: np.ndarray, file_format: str) -> Callable:
    """The result's encoder, given where it goes (a file or a buffer)."""
    metadata = {"exif": decoded.exif, "dpi": decoded.dpi}
    if rgb.dtype == np.uint16:
        return lambda target: images.encode_deep(rgb, file_format, target, **metadata)
    image = images.to_pil(rgb, decoded.alpha)
    return lambda target: images.encode(image, file_format, target, **metadata)


def _frames_warning(frames: int) -> str | None:
    return f"it holds {frames} frames or pages: only the first is coloured" if frames > 1 else None


def _precheck(job: Job, *, overwrite: bool, skip_existing: bool) -> Result | None:
    """Results for jobs that need no decoding: an existing output, a missing output folder."""
    if job.output is None:
        return None
    try:
        return _check_output(job, overwrite=overwrite, skip_existing=skip_existing)
    except OSError as error:  # a name the file system refuses (-o with 300 bytes): this job only
        return Result(job, ok=False, error=f"cannot use output {job.output}: {error.strerror or error}")


def _check_output(job: Job, *, overwrite: bool, skip_existing: bool) -> Result | None:
    if job.output.exists() and not overwrite:
        if skip_existing:
            return Result(job, ok=True, skipped=True)
        return Result(job, ok=False, error=f"output {job.output} exists (use --overwrite or --skip-existing)")
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # the folder, or one above it, is a file (-O photo.jpg)
        folder = job.output.parent
        blocking = next((path for path in (folder, *folder.parents) if path.exists() and not path.is_dir()), folder)
        return Result(job, ok=False, error=f"cannot create output folder {folder}: {blocking} is a file")
    except OSError as error:
        return Result(job, ok=False, error=f"cannot create output folder {job.output.parent}: {error.strerror or error}")
    return None


def colorize_jobs(
    jobs: Iterable[Job | Result],
    model,
    *,
    render_size: int | None = None,
    batch_size: int = ColorizeOptions.batch_size,
    max_pixels: int = ColorizeOptions.max_pixels,
    overwrite: bool = False,
    skip_existing: bool = False,
    io_threads: int = 2,
    hints: Hints | None = None,
) -> Iterator[Result]:
    """Colorize every job, yielding one Result per job in input order; never raises for a bad input.

    model: an inference.Predictor, or a torch UNet (run on its own device). hints: for every
    job (a photo they do not fit fails with the reason); the model must take hints."""
    predictor = as_predictor(model)
    if hints:
        check_takes_hints(predictor)
    render_size = render_size or predictor.render_size
    pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="portraitcolor-io")
    try:
        with predictor.running(io_threads=io_threads):
            yield from _run_pipeline(pool, iter(jobs), predictor, render_size=render_size, batch_size=batch_size, max_pixels=max_pixels, overwrite=overwrite, skip_existing=skip_existing, hints=hints)
    finally:
        # On Ctrl-C or SIGTERM: writes already running finish (and are complete files);
        # queued work is dropped.
        pool.shutdown(wait=True, cancel_futures=True)


def _run_pipeline(pool, job_iter, predictor: Predictor, *, render_size, batch_size, max_pixels, overwrite, skip_existing, hints) -> Iterator[Result]:
    decoding: deque[Future | Result] = deque()
    finishing: deque[Future | Result] = deque()
    batch: list[tuple[_Decoded, tuple[int, int]]] = []
    lab_tables = _LabTables(pool)

    def refill() -> None:
        # Decode at most one batch ahead: large photos must not pile up in memory.
        while len(decoding) < batch_size:
            job = next(job_iter, None)
            if job is None:
                return
            if isinstance(job, Result):
                decoding.append(job)
                continue
            ready = _precheck(job, overwrite=overwrite, skip_existing=skip_existing)
            alone = not (decoding or finishing or batch)
            decoding.append(ready or pool.submit(_decode, job, max_pixels=max_pixels, alone=alone))

    def flush() -> None:
        if not batch:
            return
        inputs = np.stack([network_input(decoded.l_full, shape) for decoded, shape in batch])
        predictions = predict_following(predictor, inputs, hint_batch([(decoded.l_full.shape, shape) for decoded, shape in batch], hints))
        alone = len(batch) == 1 and not (decoding or finishing)
        for (decoded, shape), ab_small in zip(batch, predictions):
            finishing.append(pool.submit(_finish, decoded, ab_small, shape, alone=alone))
        batch.clear()

    def drain(*, wait_all: bool) -> Iterator[Result]:
        while finishing and (wait_all or _done(finishing[0])):
            item = finishing.popleft()
            yield item if isinstance(item, Result) else item.result()

    refill()
    while decoding:
        item = decoding.popleft()
        refill()
        decoded = item if isinstance(item, Result) else item.result()
        if isinstance(decoded, Result):
            flush()  # keep results in input order
            finishing.append(decoded)
        elif decoded.error is not None:
            flush()
            finishing.append(Result(decoded.job, ok=False, error=decoded.error))
        else:
            lab_tables.saw_photo(decoded.l_full.size)
            shape = render_shape(*decoded.l_full.shape, render_size)
            problem = _hint_problem(hints, decoded.l_full.shape)
            if problem:
                flush()
                finishing.append(Result(decoded.job, ok=False, error=problem))
                yield from drain(wait_all=False)
                continue
            if batch and padded_shape(batch[0][1]) != padded_shape(shape):
                flush()
            batch.append((decoded, shape))
            if len(batch) >= batch_size:
                flush()
        yield from drain(wait_all=False)
    flush()
    yield from drain(wait_all=True)


class _LabTables:
    """Builds OpenCV's LAB tables in the pool once they pay for themselves: for a large photo
    or a second one (lab.COLD_START_PIXELS); one small photo is converted faster without."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool, self._photos, self._started = pool, 0, False

    def saw_photo(self, pixels: int) -> None:
        self._photos += 1
        if not self._started and (self._photos > 1 or pixels > lab.COLD_START_PIXELS):
            self._started = True
            self._pool.submit(lab.prepare_lab_to_srgb8)  # beside this photo's forward pass


def _hint_problem(hints: Hints | None, size: tuple[int, int]) -> str | None:
    if not hints:
        return None
    try:
        hints.check(size[1], size[0])
    except HintError as error:
        return str(error)
    return None


def _done(item: Future | Result) -> bool:
    return isinstance(item, Result) or item.done()
