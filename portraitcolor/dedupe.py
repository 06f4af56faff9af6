"""Near-duplicate detection for prepare --dedupe: a perceptual hash per photo, an index
that finds hashes within a few bits of each other, and the hashes of a set being appended to.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import numpy as np

from . import setfile
from .setfile import PHASHES


def perceptual_hash(lightness: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash) of a lightness image: survives resizing, JPEG
    re-compression and small colour or exposure changes, unlike a byte hash."""
    import cv2

    small = cv2.resize(np.ascontiguousarray(lightness, dtype=np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term only says how bright the image is
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


class HashIndex:
    """Near-duplicate lookup by Hamming distance (multi-index hashing).

    Split the 64 bits into distance + 1 parts: two hashes within `distance` bits of each
    other agree exactly on at least one part (pigeonhole), so only hashes sharing a part
    are compared, instead of every kept image.
    """

    def __init__(self, distance: int):
        self.distance = distance
        parts = distance + 1
        edges = np.linspace(0, 64, parts + 1).astype(int)
        self._masks = [(int(low), (1 << int(high - low)) - 1) for low, high in zip(edges[:-1], edges[1:])]
        self._tables = [collections.defaultdict(list) for _ in self._masks]

    def _keys(self, value: int):
        return [(value >> shift) & mask for shift, mask in self._masks]

    def contains_near(self, value: int) -> bool:
        for table, key in zip(self._tables, self._keys(value)):
            if any((value ^ other).bit_count() <= self.distance for other in table.get(key, ())):
                return True
        return False

    def add(self, value: int) -> None:
        for table, key in zip(self._tables, self._keys(value)):
            table[key].append(value)


def existing_hashes(handle) -> Iterator[int]:
    """The perceptual hashes of the images already in an open set: stored, else computed."""
    if PHASHES in handle and handle[PHASHES].shape[0] == handle[setfile.IMAGES].shape[0]:
        yield from (int(value) for value in handle[PHASHES][...])
        return
    images = handle[setfile.IMAGES]
    from .lab import decode_lab8

    for start in range(0, images.shape[0], setfile.CHUNK_IMAGES):
        for lab8 in images[start : start + setfile.CHUNK_IMAGES]:
            yield perceptual_hash(decode_lab8(lab8)[..., 0])
