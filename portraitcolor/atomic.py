"""Atomic file output: write to a temporary name beside the target, then rename.

A crash, Ctrl-C or a full disk therefore never leaves a half-written file under the
name where a good one is expected; the previous file (if any) stays intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import, before any worker threads exist: os.umask can only be read by setting it.
_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`.

    The temporary name keeps the target's extension (after a `.part` marker) so that
    writers choosing a format by extension (Pillow, h5py) still do the right thing.
    """
    target = Path(path)
    suffix = target.suffix if suffix is None else suffix
    handle, name = tempfile.mkstemp(prefix=f".{target.stem[:64]}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private (0600); a finished output gets the usual mode instead.
    os.chmod(temporary, 0o666 & ~_UMASK)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync(path: Path) -> None:
    # Without it a power cut after the rename can leave an empty file under the new name.
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def output_clash(outputs: dict[str, str | os.PathLike | None], inputs: list[str | os.PathLike]) -> str | None:
    """Why the outputs of a command cannot be written as given, or None.

    Checked before any work starts, for every command: an output that is (or links to) one
    of the inputs would replace it, and two outputs on one path would leave only the last
    (`prepare photos -o s.h5 --report s.h5` used to replace the set with its JSON report).
    `outputs` maps each option, as the user wrote it, to its path (None: not given).
    """
    claimed: dict[str, str] = {}
    sources = {file_identity(path): str(path) for path in inputs}
    folders = [os.path.realpath(path) for path in inputs if os.path.isdir(path)]
    for option, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        key = file_identity(path)
        if key in sources:
            return f"{option} {path} is the input {sources[key]}: it would be replaced"
        folder = _input_folder_holding(path, folders)
        if folder is not None:
            return f"{option} {path} is an image in the input folder {folder}: it would be replaced"
        if key in claimed:
            return f"{option} {path} is also the path of {claimed[key]}: give each output its own name"
        claimed[key] = f"{option} {path}"
    return None


def _input_folder_holding(path: str | os.PathLike, folders: list[str]) -> str | None:
    """The input folder in which `path` is an existing image (and so an input itself), if any."""
    from .inputs import image_suffixes

    real = os.path.realpath(path)
    if not os.path.isfile(real) or Path(real).suffix.lower() not in image_suffixes():
        return None
    return next((folder for folder in folders if os.path.commonpath([real, folder]) == folder), None)


def file_identity(path: str | os.PathLike) -> str:
    """One key for every name of a file: symbolic links resolved, hard links by inode."""
    try:
        status = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return f"inode:{status.st_dev}:{status.st_ino}"
