"""The HDF5 set: its layout, the split rule, the checked reader and the one writer. prepare
writes every set through SetWriter, and so do the tests; train (through loader.py)
and evaluate read it here. No torch: prepare and the tests' set builders need only h5py.

One file holds every image of a set as uint8 LAB (L8, a8, b8; see lab.encode_lab8):

    /images   (N, S, S, 3) uint8, chunked by CHUNK_IMAGES images, compressed
    /sources  (N,) UTF-8 strings: the image's path relative to its source root
    /splits   (N,) uint8: index into SPLIT_NAMES
    /repeats  (N,) uint8, optional: times the image is drawn per training epoch (1 when absent),
              so that a small source mixed with a large one is not drowned (prepare --repeat)

File attributes: format, format_version, size, color_space, tool_version, options
(JSON), filter_report (JSON).  prepare writes it; train and evaluate read it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .atomic import atomic_output
from .errors import PortraitcolorError, first_line
from .lab import AB_OFFSET

FORMAT = "portraitcolor-lab8"
FORMAT_VERSION = 1
COLOR_SPACE = "CIELAB D65, uint8: L8=round(L*255/100), a8=round(a+128), b8=round(b+128)"
IMAGES = "images"
SOURCES = "sources"
SPLITS = "splits"
REPEATS = "repeats"
SPLIT_NAMES = ("train", "val", "test")
CHUNK_IMAGES = 64
COMPRESSION = "lzf"  # ships with h5py; several times faster to read than gzip


class DatasetError(PortraitcolorError):
    """A set file that is not one we can read, with a one-line reason."""


def split_for(source: str, *, val: float, test: float) -> str:
    """The split of an image, decided by a stable hash of its relative source path.

    The same path always lands in the same split, whatever else is in the set, so that
    re-running prepare or appending never moves an image between train and test.
    """
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if position < test:
        return "test"
    if position < test + val:
        return "val"
    return "train"


@dataclass(frozen=True)
class SetInfo:
    path: Path
    count: int
    size: int
    split_counts: dict
    attributes: dict


def inspect_set(path: str | os.PathLike) -> SetInfo:
    """Open a set, check its layout, shapes and dtypes, and describe it (no image data read)."""

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable HDF5 file ({error})") from None
    # A damaged file fails inside HDF5 with OSError (or KeyError, RuntimeError for
    # broken object headers): one line for the user, never a traceback.
    try:
        with handle:
            return _checked_info(path, handle)
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as error:
        raise DatasetError(f"{path}: damaged set file ({first_line(error)})") from None


def _checked_info(path: Path, handle) -> SetInfo:
    """Every check of the layout that can be made without reading the images (the file is untrusted)."""

    attributes = {key: _plain(value) for key, value in handle.attrs.items()}
    if attributes.get("format") is None:  # another program's HDF5 file (a Keras model, a data set)
        raise DatasetError(f"{path}: not a portraitcolor set: an HDF5 file that prepare did not make (make one with: portraitcolor prepare PHOTOS -o SET.h5)")
    if not _is_value(attributes.get("format"), str, FORMAT):
        raise DatasetError(f"{path}: not a portraitcolor set (format attribute is {attributes.get('format')!r})")
    if not _is_value(attributes.get("format_version"), int, FORMAT_VERSION):
        raise DatasetError(f"{path}: unsupported set version {attributes.get('format_version')!r}")
    for name in (IMAGES, SOURCES, SPLITS):
        if not isinstance(handle.get(name), h5py.Dataset):
            raise DatasetError(f"{path}: missing dataset /{name}")
    images, splits, sources = handle[IMAGES], handle[SPLITS], handle[SOURCES]
    size = attributes.get("size")
    if not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise DatasetError(f"{path}: the size attribute must be a positive integer, got {size!r}")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise DatasetError(f"{path}: /images must be uint8 (N, {size}, {size}, 3), got {images.dtype} {images.shape}")
    count = images.shape[0]
    if splits.shape != (count,) or sources.shape != (count,):
        raise DatasetError(f"{path}: /sources and /splits must have one entry per image")
    if splits.dtype != np.uint8:
        raise DatasetError(f"{path}: /splits must be uint8 split codes, got {splits.dtype}")
    if h5py.check_string_dtype(sources.dtype) is None:
        raise DatasetError(f"{path}: /sources must hold strings, got {sources.dtype}")
    repeats = handle.get(REPEATS)
    if repeats is not None and not (isinstance(repeats, h5py.Dataset) and repeats.shape == (count,) and repeats.dtype == np.uint8):
        raise DatasetError(f"{path}: /{REPEATS} must be uint8 with one entry per image")
    codes = splits[...]
    if count and int(codes.max()) >= len(SPLIT_NAMES):
        raise DatasetError(f"{path}: /splits holds an unknown split code")
    split_counts = {name: int((codes == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    return SetInfo(path=path, count=count, size=size, split_counts=split_counts, attributes=attributes)


def _is_value(value, kind: type, expected) -> bool:
    # Attributes of an untrusted file can be arrays, whose == is element-wise.
    return isinstance(value, kind) and not isinstance(value, bool) and value == expected


def _plain(value):
    """HDF5 attribute -> plain Python (JSON strings decoded)."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


# Enough images for the mean colour to two decimals; a whole large set would take minutes.
MEAN_AB_SAMPLE_IMAGES = 4096


def train_mean_ab(path: str | os.PathLike, *, most: int = MEAN_AB_SAMPLE_IMAGES) -> tuple[tuple[float, float] | None, int]:
    """The train split's mean (a, b) over its first `most` images -> ((a, b) or None, images).

    Train records it in every model's summary; evaluate's mean-ab baseline uses it."""

    total, images = np.zeros(2), 0
    for _, lab8 in iter_split(path, "train", batch_size=256):
        lab8 = lab8[: most - images]
        total += lab8[..., 1:].reshape(-1, 2).sum(axis=0, dtype=np.float64) / (lab8.shape[1] * lab8.shape[2])
        images += len(lab8)
        if images >= most:
            break
    if images == 0:
        return None, 0
    a, b = (total / images - AB_OFFSET).tolist()  # the stored a8, b8 are offset by AB_OFFSET
    return (a, b), images


def iter_split(path: str | os.PathLike, split: str | None, *, batch_size: int = 256):
    """Yield (sources, lab8) batches of one split (None: all images) in file order.

    Reads whole chunk-aligned blocks and keeps the split's rows, because h5py's fancy
    indexing of scattered rows is many times slower than a contiguous read.
    lab8 is uint8 (B, S, S, 3). The order is the file's, so results are deterministic.
    """

    inspect_set(path)
    if split is not None and split not in SPLIT_NAMES:
        raise DatasetError(f"unknown split {split!r} (use one of {', '.join(SPLIT_NAMES)})")
    block = max(CHUNK_IMAGES, (batch_size // CHUNK_IMAGES) * CHUNK_IMAGES)
    try:
        with h5py.File(path, "r") as handle:
            images, sources = handle[IMAGES], handle[SOURCES]
            codes = handle[SPLITS][...]
            wanted = np.ones_like(codes, dtype=bool) if split is None else codes == SPLIT_NAMES.index(split)
            for start in range(0, images.shape[0], block):
                keep = wanted[start : start + block]
                if not keep.any():
                    continue
                rows = images[start : start + block][keep]
                names = [decode_name(name) for name, kept in zip(sources[start : start + block], keep) if kept]
                for offset in range(0, len(rows), batch_size):
                    yield names[offset : offset + batch_size], rows[offset : offset + batch_size]
    except (OSError, KeyError, RuntimeError, ValueError) as error:
        # Damaged chunks show only when read (the layout checks passed).
        raise DatasetError(f"{path}: damaged set file ({first_line(error)})") from None


def decode_name(name) -> str:
    """A stored source name as text (h5py gives bytes or str by version and dtype)."""
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)


def split_bytes(info: SetInfo, split: str) -> int:
    return info.split_counts[split] * info.size * info.size * 3


# Not part of the format that train and evaluate read: --dedupe --append checks new
# images against these instead of decoding the whole set again.
PHASHES = "phash"


class SetWriter:
    """Appends images to an open set file in chunk-aligned blocks."""

    def __init__(self, handle, size: int, *, chunk_images: int | None = None):

        self.handle = handle
        self.size = size
        chunk_images = chunk_images or CHUNK_IMAGES  # read now: tests shrink it to see blocks written
        if IMAGES not in handle:
            shape = (size, size, 3)
            handle.create_dataset(IMAGES, shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8,
                                  chunks=(chunk_images, *shape), compression=COMPRESSION)
            handle.create_dataset(SOURCES, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(1024,))
            handle.create_dataset(SPLITS, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(4096,))
        if PHASHES not in handle:
            handle.create_dataset(PHASHES, shape=(0,), maxshape=(None,), dtype=np.uint64, chunks=(4096,))
        self.chunk_images = handle[IMAGES].chunks[0]
        self.count = handle[IMAGES].shape[0]
        if REPEATS not in handle:  # a set from before repeats: each image drawn once
            handle.create_dataset(REPEATS, data=np.ones(self.count, np.uint8), maxshape=(None,), chunks=(4096,))
        self._buffer: list[tuple[str, int, np.ndarray, int, int]] = []

    def add(self, name: str, split_code: int, lab8: np.ndarray, phash: int = 0, repeat: int = 1) -> None:
        self._buffer.append((name, split_code, lab8, phash, repeat))
        # Fill up to the next chunk boundary, so every block write covers whole chunks.
        if len(self._buffer) >= self.chunk_images - self.count % self.chunk_images:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        names, codes, images, hashes, repeats = zip(*self._buffer)
        start, end = self.count, self.count + len(names)
        for key, values in ((IMAGES, np.stack(images)), (SOURCES, list(names)),
                            (SPLITS, np.array(codes, np.uint8)), (PHASHES, np.array(hashes, np.uint64)),
                            (REPEATS, np.array(repeats, np.uint8))):
            self.handle[key].resize(end, axis=0)
            self.handle[key][start:end] = values
        self.count = end
        self._buffer.clear()


def seal(handle, *, size: int, options: dict, filter_report: dict) -> None:
    """The set's attributes, with the format marker last: until then no reader takes the
    file for a set (a crash half-way leaves something inspect_set refuses)."""
    attrs = handle.attrs
    attrs["format_version"] = FORMAT_VERSION
    attrs["size"] = size
    attrs["color_space"] = COLOR_SPACE
    attrs["tool_version"] = __version__
    attrs["options"] = json.dumps(options)
    attrs["filter_report"] = json.dumps(filter_report)
    handle.flush()
    attrs["format"] = FORMAT


def write_set(path: str | os.PathLike, lab8: np.ndarray, splits: Sequence[str | int], *, names: Sequence[str] | None = None,
              repeats: Sequence[int] | None = None, chunk_images: int = CHUNK_IMAGES,
              options: dict | None = None, filter_report: dict | None = None) -> Path:
    """A whole set in one call (N, S, S, 3) uint8 LAB8 images with their splits (names or
    codes), written atomically. Names default to face0000.png, ..."""

    lab8 = np.asarray(lab8, dtype=np.uint8)
    count, size = lab8.shape[0], lab8.shape[1]
    codes = [SPLIT_NAMES.index(split) if isinstance(split, str) else int(split) for split in splits]
    names = list(names) if names is not None else [f"face{i:04d}.png" for i in range(count)]
    repeats = list(repeats) if repeats is not None else [1] * count
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary, h5py.File(temporary, "w") as handle:
        writer = SetWriter(handle, size, chunk_images=max(1, min(chunk_images, count)))
        for name, code, image, repeat in zip(names, codes, lab8, repeats):
            writer.add(name, code, image, repeat=repeat)
        writer.flush()
        seal(handle, size=size, options=options or {}, filter_report=filter_report or {})
    return path


@contextlib.contextmanager
def sole_writer(path: Path, error: type[Exception]) -> Iterator[None]:
    """Held while a set is written: a second job writing the same set meanwhile (an --append
    started beside another) is refused before any work with one `error`. Each job writes a
    copy and renames it into place, so the later rename used to replace the earlier job's
    images without a word. The lock files live in the user's cache folder, named by a hash
    of the set's real path: nothing is left beside the set. Where that folder cannot be
    made or locked, the set is written without the lock."""
    lock = _set_lock(path, error)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _set_lock(path: Path, error: type[Exception]):
    """The held lock of the set at `path`, or None where none can be taken."""
    import platformdirs
    from filelock import FileLock, Timeout

    folder = Path(platformdirs.user_cache_dir("portraitcolor")) / "set-locks"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(folder / (hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:32] + ".lock"))
        lock.acquire(timeout=0)
    except Timeout:
        raise error(f"{path}: another job is writing this set now: start the next one when it ends") from None
    except OSError:  # a cache folder that cannot be made, or takes no locks (some network file systems)
        return None
    return lock


# errno values that mean the set cannot be written where it was asked for.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


class WriteGuard:
    """Turns a failed write of the set (full disk, quota, I/O error) into one `error` (the
    exception of the job that writes it, prepare's PrepareError).

    HDF5 also writes cached chunks when h5py objects are freed, and h5py can report a
    failure there only through sys.unraisablehook: tracebacks on stderr ("Exception
    ignored in ...") while the job carries on. Inside the guard such failures are
    collected instead, and any of them fails the job, because a set missing data must
    never be renamed into place.
    """

    def __init__(self, output: Path, error: type[Exception]) -> None:
        self.output = output
        self.error = error
        self.failures: list[BaseException] = []

    def __enter__(self) -> None:
        self._previous_hook = sys.unraisablehook
        sys.unraisablehook = self._collect

    def _collect(self, unraisable) -> None:
        if _write_failure_reason(unraisable.exc_value) is None:
            self._previous_hook(unraisable)
        else:
            self.failures.append(unraisable.exc_value)

    def __exit__(self, kind, error, trace) -> None:
        sys.unraisablehook = self._previous_hook
        if error is not None and _write_failure_reason(error) is not None:
            self.failures.insert(0, error)
        if self.failures:
            reason = _write_failure_reason(self.failures[0])
            self.failures.clear()
            raise self.error(f"{self.output}: cannot write the set: {reason}") from None


def _write_failure_reason(error: BaseException | None) -> str | None:
    """A short reason when `error` is a failed write to disk, else None.

    h5py raises RuntimeError or OSError carrying HDF5's message, which holds the
    operating system's own ('... errno = 28, error message = 'No space left on device' ...').
    """
    found = re.search(r"errno = (\d+), error message = '([^']*)'", str(error))
    if isinstance(error, (OSError, RuntimeError)) and found and int(found.group(1)) in _WRITE_ERRNOS:
        return found.group(2)
    if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
        return os.strerror(error.errno)
    return None
