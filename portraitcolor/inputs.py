"""Finding input images, shared by prepare, evaluate and colorize: folder walks and
--files-from lists (newline or NUL separated, for `find -print0 | ... --files-from - -0`)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import UsageError


@functools.lru_cache(maxsize=1)
def image_suffixes() -> frozenset[str]:
    """Every file extension Pillow knows (lower case, with the dot), and HEIF's: such a photo
    is read through an optional extra, and without it gets a line saying so, not silence."""
    from PIL import Image

    return frozenset(Image.registered_extensions()) | HEIF_SUFFIXES


# HEIF's extensions (an iPhone's .heic): Pillow reads them only with pillow-heif (images.py).
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})


# colorize's default output name: <stem>_color<ext> beside the input.
OUTPUT_TAG = "_color"


def image_files(folder: Path, *, recursive: bool, leave_out: Iterable[Path] = ()) -> list[Path]:
    """Image files in a folder by extension, sorted; hidden files (our own .part temporaries) left out.

    Symbolic links are listed even when broken or looping, so that the reader reports
    them by name instead of the file silently going missing from the job. colorize's earlier
    results are no one's input (no command colours, trains on or measures them): *_color
    files that it wrote (images.written_by_portraitcolor; a photo of the user's that only
    shares the name is kept), and folders in `leave_out` that lie inside this one (a run's own
    output folder: `colorize photos -r -O photos/colour`, `evaluate photos --report
    photos/report`), which a second run would otherwise take for inputs.
    """
    candidates = folder.rglob("*") if recursive else folder.glob("*")
    suffixes = image_suffixes()
    real_folder = os.path.realpath(folder)
    outputs = [real for real in map(os.path.realpath, leave_out) if real != real_folder and _real_within(real, real_folder)]
    return sorted(
        p
        for p in candidates
        if p.suffix.lower() in suffixes and not p.name.startswith(".") and (p.is_file() or p.is_symlink())
        and not (outputs and any(_real_within(os.path.realpath(p), output) for output in outputs)) and not _earlier_result(p)
    )


def _earlier_result(path: Path) -> bool:
    if not path.stem.endswith(OUTPUT_TAG):
        return False
    from .images import written_by_portraitcolor  # Pillow and OpenCV: not for --help

    return written_by_portraitcolor(path)


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    # realpath, unlike Path.resolve, does not raise on symlink loops.
    return _real_within(os.path.realpath(path), os.path.realpath(folder))


def _real_within(real_path: str, real_folder: str) -> bool:
    return os.path.commonpath([real_path, real_folder]) == real_folder


def utf8_name(name: str) -> str:
    """A file name as valid UTF-8 text, for sets, JSON, CSV and HTML.

    A name that is not UTF-8 on disk reaches Python with its odd bytes as surrogate
    escapes, which no UTF-8 writer accepts; they become \\xNN, as Python shows them.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def read_file_list(data: bytes, *, nul: bool = False) -> list[str]:
    """Paths from a --files-from list: NUL-separated with nul (or when the data holds a NUL),
    else one per line. Names are decoded as the file system does, so any byte survives."""
    separator = b"\0" if nul or b"\0" in data else b"\n"
    names = []
    for raw in data.split(separator):
        if separator == b"\n":
            raw = raw.rstrip(b"\r")
        if raw.strip():
            names.append(os.fsdecode(raw))
    return names


def read_files_from(source: str, *, nul: bool = False) -> list[str]:
    """The paths listed in FILE, or on stdin for "-" (--files-from)."""
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as error:
        raise UsageError(f"{source}: cannot read the file list ({error.strerror or error})") from None
    return read_file_list(data, nul=nul)


def check_colorize_usage(inputs: list[str], *, output: str | None, output_dir: Path | None, files_from: str | None, skip_existing: bool, overwrite: bool, stdout_is_terminal: bool) -> None:
    """colorize's inputs and outputs that no run can use, refused before any work (usage errors);
    here, not in colorize.py, so that a mistyped command line fails before OpenCV is loaded."""
    if not inputs and files_from is None:
        raise UsageError("no inputs: give image files, folders, - (stdin) or --files-from")
    if output is not None and output_dir is not None:
        raise UsageError("-o and -O cannot be used together")
    if skip_existing and overwrite:
        raise UsageError("--skip-existing and --overwrite cannot be used together")
    if "-" in inputs and files_from == "-":
        raise UsageError("stdin cannot carry both an image (-) and --files-from -")
    if "-" in inputs and output is None:
        raise UsageError("an image read from stdin needs -o FILE, or -o - for stdout")
    if output == "-" and stdout_is_terminal:
        raise UsageError("refusing to write image bytes to a terminal; redirect stdout or use -o FILE")
