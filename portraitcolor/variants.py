"""More training images from one photo: cut-outs composited onto scene backgrounds, and
random square crops at several scales.

A corpus of studio headshots on one flat background teaches a model that everything
around a face is that background, and face crops alone never show it a sky, a wall or a
shirt; both make a colorizer paint a whole photo in skin tones. Compositing the cut-outs
onto real scenes and cropping large photos at several scales give it those things.

Every draw comes from a generator seeded by (seed, the photo's name in the set), so the
same photo gives the same variants whatever the order or the number of worker processes.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .images import ImageReadError, read_image_reduced
from .inputs import image_files

# Random crops take sides between this fraction of the photo's shorter side and all of it.
RANDOM_CROP_MIN_SCALE = 0.25
# A background window covers between this fraction of the background's largest window of
# the cut-out's shape and all of it: from close-ups of a texture to the whole scene.
BACKGROUND_MIN_SCALE = 0.3
# Backgrounds are decoded with at least this shorter side (JPEG DCT scaling keeps it cheap).
BACKGROUND_MIN_SIDE = 512
# Each worker process keeps this many decoded backgrounds (uint8, about 1 MB each).
BACKGROUND_CACHE = 64


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
    import cv2

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
