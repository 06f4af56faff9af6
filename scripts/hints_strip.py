"""A before/after strip for colour hints: gray input | automatic | with hints (points ringed) |
the true colours, from a colour photo made gray.

    python scripts/hints_strip.py PHOTO OUT.png --hint 0.5,0.8=navy [--hint ...] [-m MODEL]
    python scripts/hints_strip.py PHOTO OUT.png --from-truth 5     # N hints taken from the photo

--from-truth picks N points at random (seeded) and uses the photo's own colour there: what a
person who remembers those colours would give.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portraitcolor import images, lab  # noqa: E402
from portraitcolor.atomic import atomic_write_bytes  # noqa: E402
from portraitcolor.hints import Hints, PointHint, parse_point  # noqa: E402
from portraitcolor.inference import (  # noqa: E402
    colorize_picture,
    open_predictor,
)
from portraitcolor.report import png_bytes  # noqa: E402


def hints_from_truth(true_lab: np.ndarray, count: int, seed: int) -> tuple[PointHint, ...]:
    rng = np.random.default_rng(seed)
    height, width = true_lab.shape[:2]
    points = []
    for _ in range(count):
        x, y = int(rng.integers(width // 10, width - width // 10)), int(rng.integers(height // 10, height - height // 10))
        a, b = true_lab[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3, 1:].reshape(-1, 2).mean(axis=0)
        points.append(PointHint(float(x), float(y), False, False, (float(a), float(b)), f"{x},{y}"))
    return tuple(points)


def ringed(rgb8: np.ndarray, hints: Hints) -> np.ndarray:
    out = rgb8.copy()
    height, width = out.shape[:2]
    radius = max(4, min(height, width) // 60)
    for point in hints.points:
        x, y = (int(round(v)) for v in point.position(width, height))
        cv2.circle(out, (x, y), radius + 2, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.circle(out, (x, y), radius, (0, 0, 0), 2, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("-m", "--model", default="hints")
    parser.add_argument("--hint", action="append", default=[])
    parser.add_argument("--from-truth", type=int, default=0, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)

    picture = images.read_image(options.photo)
    true_lab = lab.rgb_to_lab(picture.rgb)
    gray = images.Picture(rgb=lab.lab_to_rgb(np.dstack([true_lab[..., 0], np.zeros(true_lab.shape[:2] + (2,), np.float32)])))
    points = tuple(parse_point(text) for text in options.hint) + hints_from_truth(true_lab, options.from_truth, options.seed)
    hints = Hints(points=points)
    model = open_predictor(options.model, device="cpu")
    automatic = colorize_picture(model, gray)
    hinted = colorize_picture(model, gray, hints=hints)
    to8 = lambda rgb: np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)  # noqa: E731
    gap = np.full((gray.rgb.shape[0], 6, 3), 255, np.uint8)
    panels = [to8(gray.rgb), to8(automatic), ringed(to8(hinted), hints), to8(picture.rgb)]
    strip = np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
    atomic_write_bytes(options.out, png_bytes(strip))
    print(f"{options.out}: gray | automatic | {len(points)} hints | truth", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
