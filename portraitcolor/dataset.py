"""The HDF5 training set: layout constants, the split rule, and the checked reader.

One file holds every image of a set as uint8 LAB (L8, a8, b8; see lab.encode_lab8):

    /images   (N, S, S, 3) uint8, chunked by CHUNK_IMAGES images, compressed
    /sources  (N,) UTF-8 strings: the image's path relative to its source root
    /splits   (N,) uint8: index into SPLIT_NAMES

File attributes: format, format_version, size, color_space, tool_version, options
(JSON), filter_report (JSON).  prepare writes it; train and evaluate read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

FORMAT = "portraitcolor-lab8"
FORMAT_VERSION = 1
COLOR_SPACE = "CIELAB D65, uint8: L8=round(L*255/100), a8=round(a+128), b8=round(b+128)"
IMAGES = "images"
SOURCES = "sources"
SPLITS = "splits"
SPLIT_NAMES = ("train", "val", "test")
CHUNK_IMAGES = 64
COMPRESSION = "lzf"  # ships with h5py; several times faster to read than gzip


class DatasetError(Exception):
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
    import h5py
    import numpy as np

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
        raise DatasetError(f"{path}: damaged set file ({_first_line(error)})") from None


def _checked_info(path: Path, handle) -> SetInfo:
    """Every check of the layout that can be made without reading the images (the file is untrusted)."""
    import h5py
    import numpy as np

    attributes = {key: _plain(value) for key, value in handle.attrs.items()}
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
    codes = splits[...]
    if count and int(codes.max()) >= len(SPLIT_NAMES):
        raise DatasetError(f"{path}: /splits holds an unknown split code")
    split_counts = {name: int((codes == i).sum()) for i, name in enumerate(SPLIT_NAMES)}
    return SetInfo(path=path, count=count, size=size, split_counts=split_counts, attributes=attributes)


def _is_value(value, kind: type, expected) -> bool:
    # Attributes of an untrusted file can be arrays, whose == is element-wise.
    return isinstance(value, kind) and not isinstance(value, bool) and value == expected


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


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


def iter_split(path: str | os.PathLike, split: str | None, *, batch_size: int = 256):
    """Yield (sources, lab8) batches of one split (None: all images) in file order.

    Reads whole chunk-aligned blocks and keeps the split's rows, because h5py's fancy
    indexing of scattered rows is many times slower than a contiguous read.
    lab8 is uint8 (B, S, S, 3). The order is the file's, so results are deterministic.
    """
    import h5py
    import numpy as np

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
                names = [_decode(name) for name, kept in zip(sources[start : start + block], keep) if kept]
                for offset in range(0, len(rows), batch_size):
                    yield names[offset : offset + batch_size], rows[offset : offset + batch_size]
    except (OSError, KeyError, RuntimeError, ValueError) as error:
        # Damaged chunks show only when read (the layout checks passed).
        raise DatasetError(f"{path}: damaged set file ({_first_line(error)})") from None


def _decode(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)
