"""Atomic file output: write to a temporary name beside the target, then rename.

A crash, Ctrl-C or a full disk therefore never leaves a half-written file under the
name where a good one is expected; the previous file (if any) stays intact.

Temporaries are named `.STEM.HOST-PID.RANDOM.partSUFFIX`. Only SIGKILL (or a power cut)
can leave one behind; the host and pid in the name let a later write into the same folder
tell such an orphan from a temporary another process is still writing, and remove it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import threading
import time
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
    An OSError names `path`, never the temporary: that is the file the user asked for.
    """
    target = Path(path)
    suffix = target.suffix if suffix is None else suffix
    remove_orphans(target.parent)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{os.fsdecode(cut_utf8(os.fsencode(target.stem), 64))}.{_owner()}.", suffix=f".part{suffix}", dir=target.parent)
    except OSError as error:
        raise _naming_target(error, target) from error
    os.close(handle)
    temporary = Path(name)
    _ours.add(temporary.name)
    try:
        yield temporary
        # mkstemp makes the file private (0600), and some writers (safetensors) make a new
        # file of that mode in its place: a finished output gets the usual mode instead.
        os.chmod(temporary, 0o666 & ~_UMASK)
        _fsync(temporary)
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(error, OSError):
            raise _naming_target(error, target, temporary) from error
        raise
    finally:
        _ours.discard(temporary.name)


def _naming_target(error: OSError, target: Path, temporary: Path | None = None) -> OSError:
    """The same error about `target`, when it was about the hidden temporary (or about no file,
    as a failed write() is): `.x.1f2e-77.k3j2.part.png: Permission denied` would send the
    user looking for a file that never existed."""
    about = error.filename
    if about is not None and temporary is not None and os.fspath(about) != os.fspath(temporary):
        return error  # another file (an input a writer read, say): its own name is right
    if about is not None and temporary is None and Path(os.fspath(about)).parent != target.parent:
        return error
    renamed = OSError(error.errno, error.strerror or str(error), os.fspath(target))
    return renamed if error.errno is not None else error


# ---- orphaned temporaries ----------------------------------------------------------------

# A short hash of the host name: a folder may be shared over NFS, where the pids of other
# hosts mean nothing here.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
# Temporaries of another host are judged by age: a live writer touches its file far more
# often than this.
ORPHAN_AGE_S = 3600
# Only names with the owner mark: a user's own hidden file is never taken for an orphan.
# (Temporaries of versions before the mark are left alone for the same reason.)
_NAME = re.compile(r"^\..+?\.(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.part(?:\.[^./]*)?$")
_ours: set[str] = set()  # temporaries this process has open: its own pid must not condemn them
_cleaned: set[str] = set()  # folders already swept by this process: one directory listing each
_cleaned_lock = threading.Lock()


def remove_orphans(folder: str | os.PathLike) -> list[Path]:
    """Remove temporaries left in `folder` by writers that were killed; once per process and folder
    (colorize writes thousands of files into one folder: one listing, not one per file)."""
    key = os.path.realpath(folder)
    removed = []
    # Held while sweeping: no thread of this process makes a temporary in the folder before
    # the sweep is over, so the sweep never takes one of ours for an orphan.
    with _cleaned_lock:
        if key in _cleaned:
            return []
        _cleaned.add(key)
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") and _is_orphan(entry):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
    return removed


def _is_orphan(entry: os.DirEntry) -> bool:
    match = _NAME.match(entry.name)
    if match is None or not entry.is_file(follow_symlinks=False):
        return False
    if match["host"] == _HOST:
        pid = int(match["pid"])
        # This host: the writer is gone when its pid is; our own pid with a name we did not
        # make is a previous process that had the same pid (a restarted container).
        if pid == os.getpid():
            return entry.name not in _ours
        return not _pid_alive(pid)
    with contextlib.suppress(OSError):
        return time.time() - entry.stat(follow_symlinks=False).st_mtime > ORPHAN_AGE_S
    return False


def _owner() -> str:
    """This process's mark in temporary names (read at each call: a forked worker has its own pid)."""
    return f"{_HOST}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def cut_utf8(data: bytes, size: int) -> bytes:
    """data cut to at most size bytes without splitting a UTF-8 character."""
    if len(data) <= size:
        return data
    end = max(size, 0)
    # Step back over continuation bytes (0b10xxxxxx) to the start of the character they
    # belong to; at most 3, so that names that are not UTF-8 are cut near size too.
    while end > max(size - 3, 0) and data[end] & 0xC0 == 0x80:
        end -= 1
    return data[:end]


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
