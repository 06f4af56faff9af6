"""One photo into its set images (decoded, filtered, cropped, resized, in LAB; run in
prepare's worker processes), and more training images from it: cut-outs composited onto
scene backgrounds, and random square crops at several scales.

A corpus of studio headshots on one flat background teaches a model that everything
around a face is that background, and face crops alone never show it a sky, a wall or a
shirt; both make a colorizer paint a whole photo in skin tones. Compositing the cut-outs
onto real scenes and cropping large photos at several scales give it those things.

Every draw comes from a generator seeded by (seed, the photo's name in the set), so the
same photo gives the same variants whatever the order or the number of worker processes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from . import faces
from .config import PrepareOptions
from .dedupe import perceptual_hash
from .filters import Dropped, content_rejection
from .images import ImageReadError, read_image_reduced
from .inputs import image_files
from .lab import encode_lab8, rgb_to_lab

# Random crops take sides between this fraction of the photo's shorter side and all of it.
RANDOM_CROP_MIN_SCALE = 0.25
# A background window covers between this fraction of the background's largest window of
# the cut-out's shape and all of it: from close-ups of a texture to the whole scene.
BACKGROUND_MIN_SCALE = 0.3
# Backgrounds are decoded with at least this shorter side (JPEG DCT scaling keeps it cheap).
BACKGROUND_MIN_SIDE = 512
# Each worker process keeps this many decoded backgrounds (uint8, about 1 MB each).
BACKGROUND_CACHE = 64
# Big JPEGs are decoded at a reduced scale (see images.read_image_reduced) keeping the
# shorter side at least this many times the set's size: twice the size leaves the area
# filter real pixels to average; a face crop is a part of the frame, so it gets more.
_DECODE_FACTOR = 2
_FACE_DECODE_FACTOR = 4


def source_rng(seed: int, name: str) -> np.random.Generator:
    """The generator of one photo's variants: the same for the same seed and name."""
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "big")])


def random_squares(height: int, width: int, count: int, rng: np.random.Generator, *, min_side: int) -> list[tuple[int, int, int]]:
    """`count` squares (top, left, side) inside an image of height x width.

    Sides are log-uniform between RANDOM_CROP_MIN_SCALE of the shorter side (but not under
    min_side pixels) and the whole shorter side: as many close-ups as wide views.
    """
    short = min(height, width)
    low = min(short, max(min_side, int(short * RANDOM_CROP_MIN_SCALE)))
    sides = np.rint(np.exp(rng.uniform(np.log(low), np.log(short), count))).astype(int)
    tops = rng.integers(0, height - sides + 1)
    lefts = rng.integers(0, width - sides + 1)
    return [(int(t), int(l), int(s)) for t, l, s in zip(tops, lefts, sides)]


def is_cutout(alpha: np.ndarray | None) -> bool:
    """A picture with a transparent background (an exact matte to composite with)."""
    return alpha is not None and bool((alpha < 1.0).any())


def composite(rgb: np.ndarray, alpha: np.ndarray, background: np.ndarray | float) -> np.ndarray:
    """Foreground over background blended by the matte: (H, W, 3) 0..1.

    Edges are feathered exactly as the alpha says, and where alpha is 1 the result is
    the foreground pixel itself (x * 1 + y * 0 == x in floating point).
    """
    weight = alpha[..., None]
    return rgb * weight + background * (1.0 - weight)


@functools.lru_cache(maxsize=BACKGROUND_CACHE)
def decoded_background(path: str) -> np.ndarray:
    """A background as uint8 RGB (H, W, 3), decoded at a reduced scale; raises ImageReadError."""
    picture, _ = read_image_reduced(path, min_side=BACKGROUND_MIN_SIDE)
    return np.clip(np.rint(picture.rgb * 255.0), 0, 255).astype(np.uint8)


def background_window(backgrounds: Sequence[str], height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random window of a random background, of the cut-out's shape, resized to it: float32 0..1."""

    image = decoded_background(backgrounds[int(rng.integers(len(backgrounds)))])
    bg_height, bg_width = image.shape[:2]
    aspect = width / height
    full_height = min(bg_height, bg_width / aspect)  # the largest window of this shape
    win_height = max(1, int(full_height * rng.uniform(BACKGROUND_MIN_SCALE, 1.0)))
    win_width = max(1, min(bg_width, int(round(win_height * aspect))))
    top = int(rng.integers(0, bg_height - win_height + 1))
    left = int(rng.integers(0, bg_width - win_width + 1))
    window = image[top : top + win_height, left : left + win_width]
    if rng.random() < 0.5:
        window = window[:, ::-1]
    shrinking = win_height >= height
    resized = cv2.resize(np.ascontiguousarray(window), (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return resized.astype(np.float32) / 255.0


def usable_backgrounds(folder: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """(paths that decode, [(path, reason)] of those that do not), checked once before the job.

    Sorted, because the draws depend on the order. The decoded images stay in this process's
    cache, which worker processes started by fork inherit.
    """
    good, bad = [], []
    for path in image_files(Path(folder), recursive=True):
        try:
            decoded_background(str(path))
        except ImageReadError as error:
            bad.append((str(path), str(error)))
        else:
            good.append(str(path))
    return good, bad


# ---- one photo -> its set images (runs in a worker process) -------------------------


@dataclass(frozen=True)
class Kept:
    lab8: np.ndarray  # (S, S, 3) uint8
    phash: int
    face_fallback: bool
    suffix: str = ""  # what was made of the photo: "" for the photo itself, "#crop-2", ...


@dataclass(frozen=True)
class Job:
    """What every worker needs besides the photo: the options, the set's size, and the
    backgrounds that decoded (checked once by the parent)."""

    options: PrepareOptions
    size: int
    backgrounds: tuple[str, ...] = ()


def process_image(path: str | os.PathLike, options: PrepareOptions, size: int) -> Kept | Dropped:
    """One photo as one set image (the first of its variants)."""
    return process_source(str(path), Path(path).name, Job(options, size))[0]


def process_source(path: str, name: str, job: Job) -> list[Kept | Dropped]:
    """Decode, filter, crop, resize and convert one photo into its set images: the photo
    itself (or its random crops), then its composites when it is a cut-out. Every result
    carries the photo's perceptual hash, by which duplicates are found."""

    options, size = job.options, job.size
    find_face = options.crop == "face" or options.require_face
    factor = _FACE_DECODE_FACTOR if find_face else _DECODE_FACTOR
    if options.crop == "random":
        factor = round(_DECODE_FACTOR / RANDOM_CROP_MIN_SCALE)
    try:
        picture, (stored_width, stored_height) = read_image_reduced(path, min_side=size * factor, max_pixels=options.max_pixels or sys.maxsize)
    except ImageReadError as error:
        reason = "too-large" if str(error).startswith("image is too large") else "unreadable"
        return [Dropped(reason, str(error))]
    if picture.colorized:  # training on a model's own colours would teach its guesses back to it
        return [Dropped("colorized", "written by portraitcolor (its EXIF Software): a colorize result or a report's strip")]
    if min(stored_width, stored_height) < options.min_size:
        return [Dropped("too-small", f"{stored_width}x{stored_height} is under --min-size {options.min_size}")]
    height, width = picture.height, picture.width
    # Cut-out portraits are shown on white almost everywhere; what hides under alpha 0 is
    # arbitrary (often black) and would teach nonsense.
    rgb = composite(picture.rgb, picture.alpha, 1.0) if picture.alpha is not None else picture.rgb
    face = faces.largest_face(_gray_uint8(rgb)) if find_face else None
    rng = source_rng(options.seed, name)
    squares = _squares(height, width, face, rng, options, size)
    # The photo is judged by its own crop (its central square for random crops): a blank,
    # placeholder or grayscale photo gives no variants, and one hash per photo sends every
    # variant of a duplicate with it.
    base = faces.center_square(height, width) if options.crop == "random" else squares[""]
    base_lab = _small_lab(rgb, base, size)
    rejection = content_rejection(base_lab, options)
    if rejection is not None:
        return [rejection]
    if options.require_face and face is None:
        return [Dropped("no-face", "no frontal face found")]
    phash = perceptual_hash(base_lab[..., 0])
    frames = {"": rgb}
    if job.backgrounds and is_cutout(picture.alpha):
        for k in range(options.composites):
            background = background_window(job.backgrounds, height, width, rng)
            frames[f"#composite-{k}"] = composite(picture.rgb, picture.alpha, background)
    fell_back = options.crop == "face" and face is None
    images = []
    for frame_suffix, frame in frames.items():
        for crop_suffix, square in squares.items():
            suffix = frame_suffix + crop_suffix
            if suffix == "":  # the photo's own crop: converted and judged above
                images.append(Kept(lab8=encode_lab8(base_lab), phash=phash, face_fallback=fell_back, suffix=suffix))
            else:
                images.append(_set_image(_small_lab(frame, square, size), options, phash=phash, face_fallback=fell_back, suffix=suffix))
    return images


def _squares(height: int, width: int, face, rng, options: PrepareOptions, size: int) -> dict:
    """The crops of a photo by name suffix: {"": (top, left, side)}, {"": None} for the whole
    image, or {"#crop-0": ..., "#crop-1": ...} for random crops."""

    if options.crop == "none":
        return {"": None}
    if options.crop == "random":
        found = random_squares(height, width, options.crops_per_image, rng, min_side=min(size, options.min_size or size))
        return {f"#crop-{k}": square for k, square in enumerate(found)}
    if options.crop == "face" and face is not None:
        return {"": faces.face_square(face, height, width, margin=options.face_margin)}
    return {"": faces.center_square(height, width)}


def _small_lab(rgb: np.ndarray, square, size: int) -> np.ndarray:
    """A square of the picture (None: all of it) at the set's size, in CIELAB."""

    return rgb_to_lab(faces.resize_square(rgb if square is None else faces.crop_square(rgb, square), size))


def _set_image(lab: np.ndarray, options: PrepareOptions, *, phash: int, face_fallback: bool, suffix: str) -> Kept | Dropped:
    rejection = content_rejection(lab, options)
    if rejection is not None:
        return dataclasses.replace(rejection, suffix=suffix)
    return Kept(lab8=encode_lab8(lab), phash=phash, face_fallback=face_fallback, suffix=suffix)


def _gray_uint8(rgb: np.ndarray) -> np.ndarray:

    return cv2.cvtColor(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
