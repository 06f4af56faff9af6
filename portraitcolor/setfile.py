"""The one writer of the HDF5 set (layout: dataset.py and DESIGN.md). prepare writes every set
through it, and so do the tests: a set that the reader accepts is one this writer made.

No torch here: prepare and the tests' set builders need only h5py and numpy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__, dataset
from .atomic import atomic_output

# Not part of the format that train and evaluate read: --dedupe --append checks new
# images against these instead of decoding the whole set again.
PHASHES = "phash"


class SetWriter:
    """Appends images to an open set file in chunk-aligned blocks."""

    def __init__(self, handle, size: int, *, chunk_images: int = dataset.CHUNK_IMAGES):
        import h5py

        self.handle = handle
        self.size = size
        if dataset.IMAGES not in handle:
            shape = (size, size, 3)
            handle.create_dataset(dataset.IMAGES, shape=(0, *shape), maxshape=(None, *shape), dtype=np.uint8,
                                  chunks=(chunk_images, *shape), compression=dataset.COMPRESSION)
            handle.create_dataset(dataset.SOURCES, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"), chunks=(1024,))
            handle.create_dataset(dataset.SPLITS, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(4096,))
        if PHASHES not in handle:
            handle.create_dataset(PHASHES, shape=(0,), maxshape=(None,), dtype=np.uint64, chunks=(4096,))
        self.chunk_images = handle[dataset.IMAGES].chunks[0]
        self.count = handle[dataset.IMAGES].shape[0]
        if dataset.REPEATS not in handle:  # a set from before repeats: each image drawn once
            handle.create_dataset(dataset.REPEATS, data=np.ones(self.count, np.uint8), maxshape=(None,), chunks=(4096,))
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
        for key, values in ((dataset.IMAGES, np.stack(images)), (dataset.SOURCES, list(names)),
                            (dataset.SPLITS, np.array(codes, np.uint8)), (PHASHES, np.array(hashes, np.uint64)),
                            (dataset.REPEATS, np.array(repeats, np.uint8))):
            self.handle[key].resize(end, axis=0)
            self.handle[key][start:end] = values
        self.count = end
        self._buffer.clear()


def seal(handle, *, size: int, options: dict, filter_report: dict) -> None:
    """The set's attributes, with the format marker last: until then no reader takes the
    file for a set (a crash half-way leaves something inspect_set refuses)."""
    attrs = handle.attrs
    attrs["format_version"] = dataset.FORMAT_VERSION
    attrs["size"] = size
    attrs["color_space"] = dataset.COLOR_SPACE
    attrs["tool_version"] = __version__
    attrs["options"] = json.dumps(options)
    attrs["filter_report"] = json.dumps(filter_report)
    handle.flush()
    attrs["format"] = dataset.FORMAT


def write_set(path: str | os.PathLike, lab8: np.ndarray, splits: Sequence[str | int], *, names: Sequence[str] | None = None,
              repeats: Sequence[int] | None = None, chunk_images: int = dataset.CHUNK_IMAGES,
              options: dict | None = None, filter_report: dict | None = None) -> Path:
    """A whole set in one call (N, S, S, 3) uint8 LAB8 images with their splits (names or
    codes), written atomically. Names default to face0000.png, ..."""
    import h5py

    lab8 = np.asarray(lab8, dtype=np.uint8)
    count, size = lab8.shape[0], lab8.shape[1]
    codes = [dataset.SPLIT_NAMES.index(split) if isinstance(split, str) else int(split) for split in splits]
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
