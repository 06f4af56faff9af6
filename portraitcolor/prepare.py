"""From a pile of photos to a clean LAB training set in HDF5 (the layout of setfile.py).

    sources -> (worker processes: workers.py, variants.py) decode, filter, crop, resize, LAB
            -> (parent) dedupe, write

Every image that is not kept is counted under one reason, the first filter that
rejects it, in the order of filters.REASONS; the counts form the filter report that is
stored in the set and returned to the caller.

The set is written to a temporary file beside the target and renamed when complete,
and the `format` attribute (what inspect_set checks first) is the last thing written:
a crash or Ctrl-C never leaves a file that looks finished. --append works on a copy
of the finished set made the same way, because HDF5 has no journal: an in-place
append killed half-way can corrupt the images already in the file.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, setfile, variants
from .atomic import atomic_output, atomic_write_text, output_clash
from .config import DEFAULT_SIZE, DEFAULT_TEST, DEFAULT_VAL, PrepareOptions
from .dedupe import HashIndex, existing_hashes
from .errors import PortraitcolorError, UsageError
from .filters import REASONS, Dropped, RunCounts, add_reports, drop_summary
from .inputs import image_files, utf8_name
from .setfile import SetWriter, WriteGuard, seal
from .variants import Job, Kept
from .workers import default_workers, processed

SKIPPED_PRESENT = "already in the set"
SKIPPED_BACKGROUND = "background unreadable (not used)"
# --repeat is stored as uint8; more than this would let one source swamp an epoch anyway.
MAX_REPEAT = 100
NOTE_FACE_FALLBACK = "face crop fell back to center (no face found)"

CROP_MODES = ("center", "face", "none", "random")
# The name of a variant in the set: the photo's name, then what was made of it.
_VARIANT_SUFFIX = re.compile(r"(#composite-\d+)?(#crop-\d+)?$")


class PrepareError(PortraitcolorError):
    """A prepare job that cannot run or produced nothing; the message says why."""


@dataclass(frozen=True)
class Source:
    """One input image: where to read it, and its name in the set (hashed for the split)."""

    path: Path
    name: str
    root: Path | None = None  # the folder source it was found in


@dataclass
class Progress:
    """Counts so far, passed to the progress callback after every image."""

    total: int
    seen: int = 0
    kept: int = 0
    dropped: int = 0


@dataclass
class PrepareResult:
    path: Path
    report: dict = field(default_factory=dict)


# ---- sources ---------------------------------------------------------------------


def collect_sources(paths: Iterable[str | os.PathLike], *, files_from: Iterable[str] = ()) -> list[Source]:
    """Expand folders (recursively, image extensions only, sorted), files and listed names.

    A folder's images are named by their path relative to the folder, so that moving
    the folder keeps every image in its split; a file named directly or in a list is
    named as it was written. Names are stored as UTF-8, so bytes that are not UTF-8
    are written as \\xNN escapes (inputs.utf8_name).
    """
    sources = []
    for given in itertools.chain(paths, files_from):
        path = Path(given)
        if path.is_dir():
            found = image_files(path, recursive=True)
            sources.extend(Source(path=p, name=utf8_name(p.relative_to(path).as_posix()), root=path) for p in found)
        else:
            sources.append(Source(path=path, name=utf8_name(Path(os.path.normpath(given)).as_posix())))
    _refuse_shared_names(sources)
    return sources


def _refuse_shared_names(sources: list[Source]) -> None:
    """Two photos under one name would be one key in the set: the second would be dropped as
    'already in the set'. Refused before any work, with the way out."""
    seen: dict[str, Path] = {}
    for source in sources:
        first = seen.setdefault(source.name, source.path)
        if first != source.path and os.path.realpath(first) != os.path.realpath(source.path):
            raise PrepareError(
                f"{first} and {source.path} would both be named {source.name!r} in the set; "
                "give their common parent folder instead (names then keep the sub-folder), or prepare them in separate sets"
            )


def check_usage(output: Path, *, sources: list, report: Path | None, append: bool, overwrite: bool) -> None:
    """Refuse what no run can do with these sources and outputs, before any work (usage errors)."""
    if append and overwrite:
        raise UsageError("--append and --overwrite exclude each other")
    if output.exists() and not (append or overwrite):
        raise UsageError(f"{output} exists: use --append to add to it or --overwrite to replace it")
    if not sources:
        raise UsageError("no sources: give image folders or files, or --files-from")
    clash = output_clash({"-o": output, "--report": report}, sources)
    if clash is not None:
        raise UsageError(clash)
    if report is not None and not overwrite and not is_report_of(report, output):
        raise UsageError(f"{report} exists (pass --overwrite to replace it)")


def write_report(report: Path, result: PrepareResult) -> None:
    """The filter report, with every dropped file and why, as JSON (--report)."""
    atomic_write_text(report, json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")


def is_report_of(report: Path, output: Path) -> bool:
    """True when `report` is free, or is the filter report of the set `output` (an --append
    brings it up to date); any other existing file is the user's and is not replaced unasked."""
    if not (report.exists() or report.is_symlink()):
        return True
    try:
        earlier = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(earlier, dict) and earlier.get("output") == utf8_name(str(output))


# ---- the job -----------------------------------------------------------------------


def prepare(
    sources: list[Source],
    output: str | os.PathLike,
    *,
    options: PrepareOptions = PrepareOptions(),
    workers: int | None = None,
    append: bool = False,
    overwrite: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> PrepareResult:
    """Filter, crop and convert `sources` into the set `output`; returns its report.

    Raises PrepareError when the job cannot run or nothing at all could be kept
    (then no file is written and an existing one is left as it was).
    """
    output = Path(output)
    with setfile.sole_writer(output, PrepareError):
        return _prepare(sources, output, options=options, workers=workers, append=append, overwrite=overwrite, progress=progress)


def _prepare(sources, output: Path, *, options: PrepareOptions, workers, append: bool, overwrite: bool, progress) -> PrepareResult:
    import h5py

    started = time.perf_counter()
    if output.exists() and not (append or overwrite):
        raise PrepareError(f"{output} exists: use --append to add to it or --overwrite to replace it")
    if options.crop not in CROP_MODES:
        raise PrepareError(f"unknown crop mode {options.crop!r} (use one of {', '.join(CROP_MODES)})")
    if not 1 <= options.repeat <= MAX_REPEAT:
        raise PrepareError(f"--repeat must be between 1 and {MAX_REPEAT}, got {options.repeat}")
    appending = append and output.exists()
    previous = _previous_set(output) if appending else None
    options = _resolve_options(options, previous)
    size = options.size
    workers = workers or default_workers()
    counts = RunCounts()
    job = Job(options, size, _checked_backgrounds(options, counts))
    with atomic_output(output) as temporary, WriteGuard(output, PrepareError):
        if appending:
            shutil.copyfile(output, temporary)
        # No chunk cache: every block is written whole at once anyway, and without a cache
        # a failed write (a full disk) raises here instead of when h5py frees an object.
        with h5py.File(temporary, "a" if appending else "w", rdcc_nbytes=0) as handle:
            # Written last (in _finish): until then the file is not a set to any reader.
            handle.attrs.pop("format", None)
            writer = SetWriter(handle, size)
            present = {_photo_name(setfile.decode_name(name)) for name in handle[setfile.SOURCES][...]}
            hashes = HashIndex(options.dedupe_distance) if options.dedupe else None
            if hashes is not None:
                for value in existing_hashes(handle):
                    hashes.add(value)
            todo = _pending_sources(sources, present, options, counts)
            # Progress counts photos; kept and dropped count set images (a photo can give several).
            already = counts.seen
            state = Progress(total=len(todo) + already)
            state.seen = state.dropped = already
            results = processed([(str(source.path), source.name) for source in todo], job, workers)
            try:
                for done, (source, result) in enumerate(zip(todo, results), start=1):
                    _account(source, result, writer, hashes, options, counts)
                    state.seen, state.kept, state.dropped = already + done, counts.kept, counts.dropped_total
                    if progress is not None:
                        progress(state)
                    if options.limit is not None and counts.kept >= options.limit:
                        break
            finally:
                results.close()
            writer.flush()
            if writer.count == 0:
                raise PrepareError("no image could be kept" + drop_summary(counts))
            report = _report(output, counts, options, writer, time.perf_counter() - started)
            _finish(handle, options, report, previous)
    return PrepareResult(path=output, report=report)


def _previous_set(output: Path) -> setfile.SetInfo:
    return setfile.inspect_set(output)


def _resolve_options(options: PrepareOptions, previous: setfile.SetInfo | None) -> PrepareOptions:
    """Fill size, val and test; with --append they must agree with the set (splits stay stable)."""
    if previous is None:
        return dataclasses.replace(
            options,
            size=options.size or DEFAULT_SIZE,
            val=DEFAULT_VAL if options.val is None else options.val,
            test=DEFAULT_TEST if options.test is None else options.test,
        )
    stored = previous.attributes.get("options") or {}
    settled = {"size": previous.size, "val": stored.get("val", DEFAULT_VAL), "test": stored.get("test", DEFAULT_TEST)}
    for key, value in settled.items():
        asked = getattr(options, key)
        if asked is not None and asked != value:
            raise PrepareError(f"{previous.path} was made with --{key} {value}; appending with --{key} {asked} would mix sets")
    options = dataclasses.replace(options, **settled)
    if not (0 <= options.val and 0 <= options.test and options.val + options.test < 1):
        raise PrepareError("--val and --test must be fractions that add up to less than 1")
    return options


def _pending_sources(sources: list[Source], present: set[str], options: PrepareOptions, counts: RunCounts) -> list[Source]:
    """Sources still to decode: not in the set yet, named once, and passing the IMDB metadata."""
    verdicts: dict[str, bool] = {}
    if options.imdb_meta:
        # Imported here: imdb_wiki builds on this module's Source and PrepareError.
        from .imdb_wiki import imdb_verdicts

        verdicts = imdb_verdicts(sources, options)
    todo, names = [], set(present)
    for source in sources:
        if source.name in names:
            counts.skipped[SKIPPED_PRESENT] += 1
            continue
        names.add(source.name)
        if verdicts.get(source.name, True) is False:
            counts.drop(source.name, "imdb-faces", f"face_score under {options.min_face_score} or a second face")
            continue
        todo.append(source)
    return todo


def _account(source: Source, results: list[Kept | Dropped], writer: SetWriter, hashes: HashIndex | None,
             options: PrepareOptions, counts: RunCounts) -> None:
    """Store or count each set image made of one photo. All of them take the photo's split
    (by the hash of its name), so a photo and its variants never land in two splits."""
    first_kept = next((result for result in results if isinstance(result, Kept)), None)
    if hashes is not None and first_kept is not None:
        if hashes.contains_near(first_kept.phash):
            for result in results:
                counts.drop(source.name + result.suffix, "duplicate", f"within {options.dedupe_distance} bits of a kept image")
            return
        hashes.add(first_kept.phash)
    split = setfile.split_for(source.name, val=options.val, test=options.test)
    for result in results:
        if isinstance(result, Dropped):
            counts.drop(source.name + result.suffix, result.reason, result.detail)
            continue
        writer.add(source.name + result.suffix, setfile.SPLIT_NAMES.index(split), result.lab8, result.phash, options.repeat)
        counts.seen += 1
        counts.kept += 1
        counts.splits[split] += 1
        if result.face_fallback:
            counts.notes[NOTE_FACE_FALLBACK] += 1


def _photo_name(name: str) -> str:
    """The photo a set image was made of ("a.png#composite-1#crop-0" -> "a.png")."""
    return _VARIANT_SUFFIX.sub("", name, count=1)


def _checked_backgrounds(options: PrepareOptions, counts: RunCounts) -> tuple[str, ...]:
    """The backgrounds that decode; the others are counted as skipped and named in the report."""
    if options.backgrounds is None:
        return ()
    if not Path(options.backgrounds).is_dir():
        raise PrepareError(f"--backgrounds {options.backgrounds}: not a folder")
    good, bad = variants.usable_backgrounds(options.backgrounds)
    for path, reason in bad:
        counts.skipped[SKIPPED_BACKGROUND] += 1
        counts.bad_backgrounds.append({"source": utf8_name(path), "why": reason})
    if not good:
        raise PrepareError(f"--backgrounds {options.backgrounds}: no readable image in the folder")
    return tuple(good)


def _report(output: Path, counts: RunCounts, options: PrepareOptions, writer: SetWriter, elapsed: float) -> dict:
    return {
        "output": utf8_name(str(output)),
        "tool_version": __version__,
        "seen": counts.seen,
        "kept": counts.kept,
        "dropped": {reason: counts.dropped[reason] for reason in REASONS if counts.dropped[reason]},
        "skipped": dict(counts.skipped),
        "notes": dict(counts.notes),
        "splits": {name: counts.splits[name] for name in setfile.SPLIT_NAMES},
        "set_count": writer.count,
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(counts.seen / elapsed, 2) if elapsed > 0 else None,
        "reasons": dict(REASONS),
        "options": _options_record(options),
        "dropped_files": {reason: counts.dropped_files[reason] for reason in REASONS if reason in counts.dropped_files},
        "unreadable_backgrounds": counts.bad_backgrounds,
    }


def _options_record(options: PrepareOptions) -> dict:
    return dataclasses.asdict(options)


def _finish(handle, options: PrepareOptions, report: dict, previous: setfile.SetInfo | None) -> None:
    """The set's attributes; the file becomes a set only now."""
    summary = {key: report[key] for key in ("seen", "kept", "dropped", "skipped", "notes")}
    if previous is not None:
        summary = add_reports(previous.attributes.get("filter_report") or {}, summary)
    seal(handle, size=options.size, options=_options_record(options), filter_report=summary)
