"""Colour hints: what a person knows about a photo's colours ("her dress was blue"), as the
extra inputs of a hint-aware network (Zhang et al., SIGGRAPH 2017, "Real-Time User-Guided
Image Colorization with Learned Deep Priors").

Beside L, a hint-aware U-Net (UNetConfig.hints) sees three channels at its input size: the a
and b of the hinted pixels in CIELAB units / 128 (so about -1..1, 0 elsewhere) and a mask (1
where a hint is). A hint sets only chroma: the output keeps the photo's own lightness.

Hints come as points (`x,y=COLOUR`, pixels or fractions of the width and height), as a file
of such lines or JSON, or as a scribble image whose non-transparent pixels are hints. Training
samples hints from the true colours (loader.with_sampled_hints): often none, else a geometric number of small
patches, so one model serves with and without hints.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import ImageColor

from . import images, lab
from .errors import UsageError

HINT_CHANNELS = 3  # a, b, mask
AB_SCALE = 128.0  # CIELAB a/b units per unit of the hint channels
# A point covers a square of this many pixels of the network's input (about 1/40 of a
# 128-pixel render): enough for the network to see, small enough to stay in one region.
POINT_SIDE = 3
# Training: the share of images without hints (the automatic case must stay as good), and
# the mean number of patches on the others (a geometric count, at most MAX_TRAINING_POINTS).
NO_HINT_SHARE = 0.5
MEAN_TRAINING_POINTS = 8
MAX_TRAINING_POINTS = 64
MAX_TRAINING_PATCH = 5
_POINT = re.compile(r"^\s*([^,=\s]+)\s*,\s*([^,=\s]+)\s*=\s*(\S.*?)\s*$")
# In a hints file, # starts a comment unless it begins a hex colour (#2a4b8d).
_COMMENT = re.compile(r"(^|\s)#(?![0-9a-fA-F]{3,8}\b).*$")


class HintError(UsageError):
    """A hint that cannot be used, with a one-line reason (exit status 2: the command line)."""


@dataclass(frozen=True)
class PointHint:
    """A chroma at a point: x and y in pixels of the upright photo, or fractions (0..1) of
    its width and height when written with a decimal point."""

    x: float
    y: float
    x_fraction: bool
    y_fraction: bool
    ab: tuple[float, float]
    text: str

    def position(self, width: int, height: int) -> tuple[float, float]:
        """(x, y) in pixels of a width x height image; HintError if outside it."""
        x = self.x * width if self.x_fraction else self.x
        y = self.y * height if self.y_fraction else self.y
        if not (0 <= x < width and 0 <= y < height):
            raise HintError(f"hint {self.text!r} lies outside the {width}x{height} photo")
        return x, y


def color_ab(spec: str) -> tuple[float, float]:
    """A colour as hex (#2a4b8d, #abc) or a CSS/X11 name (navy) -> its CIELAB (a, b)."""
    try:
        red, green, blue = ImageColor.getrgb(spec.strip())[:3]
    except ValueError:
        raise HintError(f"unknown colour {spec!r} (use #rrggbb or a CSS name such as navy)") from None
    values = lab.rgb_to_lab(np.array([[red, green, blue]], np.float32) / 255.0)[0]
    return float(values[1]), float(values[2])


def parse_point(text: str) -> PointHint:
    """`X,Y=COLOUR`: `120,340=#2a4b8d` (pixels), `0.52,0.8=navy` (fractions)."""
    match = _POINT.match(text)
    if not match:
        raise HintError(f"hint {text!r} is not X,Y=COLOUR (for example 120,340=#2a4b8d or 0.5,0.8=navy)")
    (x, x_fraction), (y, y_fraction) = (_coordinate(value, text) for value in match.group(1, 2))
    return PointHint(x, y, x_fraction, y_fraction, color_ab(match.group(3)), text.strip())


def _coordinate(value: str, text: str) -> tuple[float, bool]:
    try:
        number = float(value)
    except ValueError:
        raise HintError(f"hint {text!r}: {value!r} is not a number") from None
    fraction = "." in value or "e" in value.lower()
    if not math.isfinite(number) or number < 0 or (fraction and number > 1):
        raise HintError(f"hint {text!r}: {value!r} is neither a pixel (0, 1, 2, ...) nor a fraction in 0..1")
    return number, fraction


def read_hints_file(path: str | os.PathLike) -> list[PointHint]:
    """Hints from a file: one X,Y=COLOUR per line (# comments, blank lines), or JSON: a list
    of "X,Y=COLOUR" strings or of {"x": .., "y": .., "color": ..} objects."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise HintError(f"{path}: cannot read hints ({reason})") from None
    if text.lstrip().startswith(("[", "{")):
        return _json_hints(path, text)
    hints = []
    for number, line in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub("", line)
        if line.strip():
            try:
                hints.append(parse_point(line))
            except HintError as error:
                raise HintError(f"{path}, line {number}: {error}") from None
    return hints


def _json_hints(path: Path, text: str) -> list[PointHint]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise HintError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(items, list):
        raise HintError(f"{path}: JSON hints must be a list")
    hints = []
    for number, item in enumerate(items, 1):
        if isinstance(item, dict) and {"x", "y", "color"} <= set(item):
            item = f"{item['x']},{item['y']}={item['color']}"
        if not isinstance(item, str):
            raise HintError(f"{path}: hint {number} is neither \"X,Y=COLOUR\" nor {{\"x\", \"y\", \"color\"}}")
        try:
            hints.append(parse_point(item))
        except HintError as error:
            raise HintError(f"{path}, hint {number}: {error}") from None
    return hints


@dataclass(frozen=True)
class ScribbleHint:
    """A colour scribble image: its non-transparent pixels are hints (alpha = how much)."""

    ab: np.ndarray  # (H, W, 2) CIELAB a, b
    weight: np.ndarray  # (H, W) 0..1
    source: str


def read_scribble(path: str | os.PathLike) -> ScribbleHint:
    """A PNG (or any image with alpha) painted over the photo; without alpha, pure white and
    pure black pixels count as unpainted."""
    picture = _read_scribble_picture(path)
    rgb = picture.rgb
    if picture.alpha is not None:
        weight = picture.alpha
    else:
        extreme = (rgb.min(axis=2) >= 254 / 255) | (rgb.max(axis=2) <= 1 / 255)
        weight = (~extreme).astype(np.float32)
    if not weight.any():
        raise HintError(f"{path}: the scribble has no painted pixels")
    return ScribbleHint(lab.rgb_to_lab(rgb)[..., 1:], weight, str(path))


def _read_scribble_picture(path) -> images.Picture:
    try:
        return images.read_image(path)
    except images.ImageReadError as error:
        raise HintError(f"{path}: {error}") from None


@dataclass(frozen=True)
class Hints:
    """Everything hinted for one photo."""

    points: tuple[PointHint, ...] = ()
    scribble: ScribbleHint | None = None

    def __bool__(self) -> bool:
        return bool(self.points) or self.scribble is not None

    def check(self, width: int, height: int) -> None:
        """HintError unless every hint fits a width x height photo."""
        for point in self.points:
            point.position(width, height)
        if self.scribble is not None and self.scribble.weight.shape != (height, width):
            got_height, got_width = self.scribble.weight.shape
            raise HintError(f"{self.scribble.source}: the scribble is {got_width}x{got_height}, the photo {width}x{height}")

    def channels(self, size: tuple[int, int], shape: tuple[int, int], padded: tuple[int, int]) -> np.ndarray:
        """(3, padded h, padded w) network channels for a photo of `size` (h, w) rendered at
        `shape` (h, w) inside a `padded` input."""
        height, width = size
        out = np.zeros((HINT_CHANNELS, *padded), np.float32)
        if self.scribble is not None:
            _add_scribble(out, self.scribble, shape)
        for point in self.points:
            x, y = point.position(width, height)
            col = min(int(x * shape[1] / width), shape[1] - 1)
            row = min(int(y * shape[0] / height), shape[0] - 1)
            half = POINT_SIDE // 2
            top, left = max(row - half, 0), max(col - half, 0)
            _paint(out, slice(top, min(row + half + 1, shape[0])), slice(left, min(col + half + 1, shape[1])), point.ab)
        return out


def as_hints(hints) -> Hints:
    """None, a Hints, or "X,Y=COLOUR" strings (one, or an iterable) -> Hints."""
    if hints is None:
        return Hints()
    if isinstance(hints, Hints):
        return hints
    if isinstance(hints, str):
        hints = [hints]
    return Hints(points=tuple(parse_point(text) for text in hints))


def read_hints(points: list[str], hints_file: str | os.PathLike | None, scribble: str | os.PathLike | None) -> Hints:
    """colorize's --hint, --hints FILE and --hint-mask IMAGE as one Hints."""
    parsed = [parse_point(text) for text in points]
    if hints_file is not None:
        parsed += read_hints_file(hints_file)
    return Hints(points=tuple(parsed), scribble=read_scribble(scribble) if scribble is not None else None)


def _paint(out: np.ndarray, rows: slice, cols: slice, ab) -> None:
    """One hint on the (3, h, w) channels: its a, b over the square, and the mask."""
    out[0, rows, cols], out[1, rows, cols] = ab[0] / AB_SCALE, ab[1] / AB_SCALE
    out[2, rows, cols] = 1.0


def _add_scribble(out: np.ndarray, scribble: ScribbleHint, shape: tuple[int, int]) -> None:
    """Area-average the painted chroma (weighted by alpha) onto the render grid; a render
    pixel is hinted where a quarter or more of its area was painted."""
    size = (shape[1], shape[0])
    weight = cv2.resize(scribble.weight, size, interpolation=cv2.INTER_AREA)
    weighted = cv2.resize(scribble.ab * scribble.weight[..., None], size, interpolation=cv2.INTER_AREA)
    painted = weight >= 0.25
    for channel in (0, 1):
        region = out[channel, : shape[0], : shape[1]]
        region[painted] = weighted[..., channel][painted] / weight[painted] / AB_SCALE
    out[2, : shape[0], : shape[1]][painted] = 1.0


def sample_from_truth(true_ab: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """evaluate --hints: `count` POINT_SIDE-square hints at random places of a (S, S, 2) true
    ab image, each the patch's mean colour -> (3, S, S) channels."""
    height, width = true_ab.shape[:2]
    out = np.zeros((HINT_CHANNELS, height, width), np.float32)
    for _ in range(count):
        row, col = int(rng.integers(0, height - POINT_SIDE + 1)), int(rng.integers(0, width - POINT_SIDE + 1))
        rows, cols = slice(row, row + POINT_SIDE), slice(col, col + POINT_SIDE)
        _paint(out, rows, cols, true_ab[rows, cols].reshape(-1, 2).mean(axis=0))
    return out


# ---- making sure each hint reaches its region ---------------------------------------------
# The network sees the hints and learns to spread them, but a network trained briefly
# (or small) follows them only partly. What it left out at each hint, the hint's colour minus
# its prediction there, is carried over the picture along geodesic paths: the lightness is
# first smoothed by a bilateral filter (fabric grain and noise go, region borders stay); a
# step then costs one pixel, plus EDGE_COST per unit of L beyond GRAIN_L that it crosses, so a
# correction flows across a shirt and stops at its border. Each hint's share fades as
# exp(-distance / (SPREAD x the shorter side)); where several reach a pixel, their
# corrections are averaged by those shares, so neighbouring hints meet softly.
EDGE_COST = 8.0
GRAIN_L = 1.5
SPREAD = 0.5
_BILATERAL = (9, 12.0, 2.0)  # diameter, sigma of L, sigma of space (pixels of the network's input)
_BILATERAL_PASSES = 2
MAX_GROUPS = 32  # hint patches spread separately (each one geodesic pass); beyond, by colour
_SWEEPS = 2  # passes of the four scan directions: enough for paths that turn a few times


def follow_hints(ab: np.ndarray, l: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """(h, w, 2) predicted ab, (h, w) L 0..100 at the network's input size and the (3, h, w)
    hint channels -> ab in which every hinted pixel has its hint's colour and each correction
    fades along its region."""
    groups = _hint_groups(channels)
    if not groups:
        return ab
    smooth = l.astype(np.float32)
    for _ in range(_BILATERAL_PASSES):
        smooth = cv2.bilateralFilter(smooth, *_BILATERAL)
    steps = tuple(1.0 + EDGE_COST * np.maximum(np.abs(np.diff(smooth, axis=axis)) - GRAIN_L, 0.0) for axis in (0, 1))
    hinted = np.stack([channels[0], channels[1]], axis=-1) * AB_SCALE
    total_weight = np.zeros(l.shape, np.float32)
    total_correction = np.zeros(ab.shape, np.float32)
    for inside in groups:
        correction = (hinted[inside] - ab[inside]).mean(axis=0)
        weight = np.exp(-_geodesic_distance(steps, inside) / (SPREAD * min(l.shape)))
        total_weight += weight
        total_correction += weight[..., None] * correction
    return (ab + total_correction / np.maximum(total_weight, 1.0)[..., None]).astype(np.float32)


def _hint_groups(channels: np.ndarray) -> list[np.ndarray]:
    """The hinted pixels as masks that spread separately: each connected patch (a point, a
    stroke), or, beyond MAX_GROUPS patches (a scribble of many specks), the patches of one
    colour together, rounded ever more coarsely until MAX_GROUPS colours remain: a few
    geodesic passes, not thousands."""
    hinted = channels[2] > 0
    count, labels = cv2.connectedComponents(hinted.astype(np.uint8), connectivity=8)
    if count - 1 <= MAX_GROUPS:
        return [labels == component for component in range(1, count)]
    ab = np.stack([channels[0][hinted], channels[1][hinted]], axis=1) * AB_SCALE
    step = 4.0
    while True:
        keys, inverse = np.unique(np.round(ab / step), axis=0, return_inverse=True)
        if len(keys) <= MAX_GROUPS:
            break
        step *= 2
    colour_of = np.full(hinted.shape, -1)
    colour_of[hinted] = inverse.ravel()
    return [colour_of == group for group in range(len(keys))]


def _geodesic_distance(steps: tuple[np.ndarray, np.ndarray], seeds: np.ndarray) -> np.ndarray:
    """Distance to the nearest seed over a grid whose steps cost `steps` (down, right), by
    raster sweeps; each line of a sweep is one vectorised step across the image."""
    distance = np.where(seeds, 0.0, np.inf).astype(np.float32)
    for _ in range(_SWEEPS):
        for axis in (0, 1):
            d = distance if axis == 0 else distance.T
            step = steps[0] if axis == 0 else steps[1].T
            for order in (range(1, d.shape[0]), range(d.shape[0] - 2, -1, -1)):
                for k in order:
                    previous = k - 1 if order.step == 1 else k + 1
                    np.minimum(d[k], d[previous] + step[min(k, previous)], out=d[k])
    return distance


def predict_following(predictor, batch: np.ndarray, channels: np.ndarray | None) -> np.ndarray:
    """predictor.predict with the hints, then follow_hints on each picture: (B, 1, h, w) L in
    0..1 and (B, HINT_CHANNELS, h, w) or None -> (B, 2, h, w) ab. colorize and evaluate both
    colour through here, so evaluate --hints measures what colorize --hint gives."""
    ab = predictor.predict(batch, channels)
    if channels is None:
        return ab
    followed = [
        follow_hints(np.ascontiguousarray(item.transpose(1, 2, 0)), l[0] * lab.L_MAX, hint).transpose(2, 0, 1)
        for item, l, hint in zip(ab, batch, channels)
    ]
    return np.stack(followed).astype(np.float32)
