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
