"""Face detection and portrait cropping (OpenCV's Haar frontal-face cascade).

Boxes are (x, y, width, height) in pixels, as OpenCV returns them. Crops are
always squares inside the image, so that resizing to the set's size keeps the
face's proportions.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import DEFAULT_FACE_MARGIN
from .errors import PortraitcolorError

CASCADE_FILE = "haarcascade_frontalface_default.xml"

# Haar detection cost grows with the pixel count while small faces gain nothing
# from more pixels, so the search runs on a copy whose longer side is at most this.
DETECT_MAX_SIDE = 640
# Faces smaller than this share of the shorter image side are background people
# or texture that the cascade mistakes for a face.
MIN_FACE_SHARE = 0.08


class FaceDetectorError(PortraitcolorError):
    """The Haar cascade file cannot be loaded (a broken OpenCV install)."""


@functools.lru_cache(maxsize=1)
def _cascade():
    """The cascade, loaded once per process on first use (worker processes each load their own)."""
    import cv2

    path = cv2.data.haarcascades + CASCADE_FILE
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectorError(f"cannot load OpenCV's face cascade from {path}")
    return cascade


def largest_face(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """The largest frontal face in a uint8 grayscale image (H, W), or None."""
    import cv2

    height, width = gray.shape
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    min_side = max(20, int(min(small.shape) * MIN_FACE_SHARE))
    faces = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda box: box[2] * box[3])
    return tuple(int(round(value / scale)) for value in (x, y, w, h))


def face_square(box: tuple[int, int, int, int], height: int, width: int, *, margin: float = DEFAULT_FACE_MARGIN) -> tuple[int, int, int]:
    """The square (top, left, side) around a face box with `margin`, shifted and
    shrunk as needed to stay inside an image of height x width."""
    x, y, w, h = box
    side = min(int(round(max(w, h) * (1 + 2 * margin))), height, width)
    centre_x, centre_y = x + w / 2, y + h / 2
    left = int(round(min(max(centre_x - side / 2, 0), width - side)))
    top = int(round(min(max(centre_y - side / 2, 0), height - side)))
    return top, left, side


def center_square(height: int, width: int) -> tuple[int, int, int]:
    """The central square (top, left, side) of an image of height x width."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def crop_square(image: np.ndarray, square: tuple[int, int, int]) -> np.ndarray:
    top, left, side = square
    return image[top : top + side, left : left + side]


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize a square crop to size x size: an area filter when shrinking (no aliasing),
    cubic when enlarging; values stay in 0..1."""
    import cv2

    height, width = rgb.shape[:2]
    shrinking = height >= size and width >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return np.clip(cv2.resize(np.ascontiguousarray(rgb), (size, size), interpolation=interpolation), 0.0, 1.0)
