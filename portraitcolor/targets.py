"""Where evaluate's true images come from: one split of a set file (the stored LAB is the
truth, as training saw it), or colour photos turned gray here, read in batches of the same
order on every run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .config import EvaluateOptions
from .errors import PortraitcolorError
from .faces import center_square, crop_square, resize_square
from .images import ImageReadError, Picture, read_image
from .inputs import image_files, utf8_name
from .lab import decode_lab8, lab_to_rgb, rgb_to_lab
from .setfile import inspect_set, iter_split, train_mean_ab

SET_SUFFIXES = (".h5", ".hdf5")

FailureCallback = Callable[[str, str], None]  # (source, one-line reason)


class EvaluateError(PortraitcolorError):
    """A problem with the evaluation's inputs, with a one-line reason."""


@dataclass
class Batch:
    keys: list[int]
    sources: list[str]
    true_lab: np.ndarray  # (B, S, S, 3) float32 CIELAB
    true_rgb: np.ndarray  # (B, S, S, 3) float32 0..1


class SetTarget:
    """One split of an HDF5 set: the stored LAB is the truth, as training saw it."""

    colorized: frozenset[str] = frozenset()  # a set holds no files to leave out (see PhotoTarget)

    def __init__(self, path: Path, split: str | None, limit: int | None) -> None:

        self.path, self.split = path, split
        info = inspect_set(path)
        self.size = info.size
        available = info.count if split is None else info.split_counts.get(split, 0)
        if available == 0:
            raise EvaluateError(f"{path}: the {split or 'whole'} split holds no images")
        self.count = available if limit is None else min(limit, available)

    def batches(self, batch_size: int, *, only: set[int] | None = None) -> Iterator[Batch]:

        position = 0
        for sources, lab8 in iter_split(self.path, self.split, batch_size=batch_size):
            keys = list(range(position, min(position + len(sources), self.count)))
            position += len(sources)
            rows = [i for i, key in enumerate(keys) if only is None or key in only]
            if rows:
                true_lab = decode_lab8(lab8[rows])
                yield Batch([keys[i] for i in rows], [sources[i] for i in rows], true_lab, lab_to_rgb(true_lab))
            if position >= self.count:
                return

    def mean_ab(self) -> tuple[tuple[float, float] | None, str]:
        """The train split's mean (a, b): what train records in every model's summary."""

        value, images = train_mean_ab(self.path)
        if value is None:
            return None, "mean-ab baseline skipped: the set's train split is empty"
        a, b = value
        return (a, b), f"mean ab baseline: a={a:.2f}, b={b:.2f}, from {images} images of the set's train split"


class PhotoTarget:
    """Colour photos; each is read, centre-cropped and resized, or kept whole (full_res)."""

    def __init__(self, paths: list[Path], limit: int | None, *, leave_out: tuple[str, ...] = ()) -> None:
        self.files = _list_photos(paths, leave_out=leave_out)
        if not self.files:
            raise EvaluateError("no images found in " + ", ".join(str(path) for path in paths))
        if limit is not None:
            self.files = self.files[:limit]
        self.count = len(self.files)
        self.colorized: set[str] = set()  # sources left out: written by portraitcolor, not true colours

    def pictures(self, *, only: set[int] | None, on_failure: FailureCallback | None) -> Iterator[tuple[int, str, Picture]]:
        for key, (path, source) in enumerate(self.files):
            if only is not None and key not in only:
                continue
            try:
                picture = read_image(path)
            except ImageReadError as error:
                if on_failure is not None:
                    on_failure(utf8_name(str(path)), str(error))
                continue
            if picture.colorized:
                self.colorized.add(source)
                continue
            yield key, source, picture

    def batches(
        self, batch_size: int, *, size: int, only: set[int] | None = None, on_failure: FailureCallback | None = None
    ) -> Iterator[Batch]:
        pending: list[tuple[int, str, np.ndarray]] = []
        for key, source, picture in self.pictures(only=only, on_failure=on_failure):
            pending.append((key, source, square_resize(picture.rgb, size)))
            if len(pending) == batch_size:
                yield _photo_batch(pending)
                pending = []
        if pending:
            yield _photo_batch(pending)


def _photo_batch(items: list[tuple[int, str, np.ndarray]]) -> Batch:
    true_rgb = np.stack([rgb for _, _, rgb in items])
    return Batch([key for key, _, _ in items], [source for _, source, _ in items], rgb_to_lab(true_rgb), true_rgb)


def _list_photos(paths: list[Path], *, leave_out: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """(path, source name) of every photo: named files as given, folders searched recursively
    (but not the folders in leave_out)."""
    found = []
    for path in paths:
        if path.is_dir():
            files = image_files(path, recursive=True, leave_out=[Path(folder) for folder in leave_out])
            found.extend((file, utf8_name(file.relative_to(path).as_posix())) for file in files)
        else:
            found.append((path, utf8_name(str(path))))  # a missing file is reported when it is read
    return found


def square_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize to size x size, as prepare's center crop does:
    (H, W, 3) -> (S, S, 3) float32."""

    square = crop_square(rgb, center_square(*rgb.shape[:2]))
    return resize_square(np.ascontiguousarray(square, dtype=np.float32), size)


def open_target(paths: list[Path], options: EvaluateOptions):
    """An HDF5 set (one file) or photos; refuses mixtures and options that do not apply."""

    paths = [Path(path) for path in paths]
    if not paths:
        raise EvaluateError("no target given (an HDF5 set, or photos / folders)")
    # A damaged set is still a set: its name says so, and inspect_set says what is wrong.
    sets = [path for path in paths if path.is_file() and (path.suffix.lower() in SET_SUFFIXES or h5py.is_hdf5(path))]
    if sets:
        if len(paths) > 1:
            raise EvaluateError(f"{sets[0]}: give one HDF5 set on its own, not mixed with other targets")
        if options.full_res:
            raise EvaluateError(f"{sets[0]}: --full-res applies to photos; a set holds images at its own size")
        return SetTarget(sets[0], options.split, options.limit)
    return PhotoTarget(paths, options.limit, leave_out=options.leave_out)
