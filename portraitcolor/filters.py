"""The drop rules of prepare and their counting: why an image is not kept.

The content rules judge an image by its CIELAB statistics: blank or near-uniform
(contrast), placeholder or flat graphic (few tones), grayscale or tinted monochrome
(colour that lightness does not explain). Every dropped image is counted under one
reason of REASONS; the counts of a run, merged over appends, are the set's filter report.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import PrepareOptions

# Reasons an image is dropped, in the order the filters run, with the words for humans.
REASONS = {
    "unreadable": "unreadable, truncated or not an image",
    "colorized": "written by portraitcolor (a model's colours)",
    "too-large": "too large (decompression-bomb guard)",
    "too-small": "too small",
    "imdb-faces": "IMDB metadata: not exactly one clear face",
    "blank": "blank or near-uniform",
    "placeholder": "placeholder or flat graphic (few tones)",
    "grayscale": "grayscale or tinted monochrome",
    "no-face": "no face found",
    "duplicate": "duplicate of a kept image",
}
# Lightness histogram bins used to take out the colour that lightness explains (see _colorfulness).
_L_BINS = 32


@dataclass(frozen=True)
class Dropped:
    """An image that is not kept: its reason (a key of REASONS) and the detail for humans."""

    reason: str
    detail: str
    suffix: str = ""


def image_statistics(lab: np.ndarray) -> dict[str, float]:
    """The numbers the content filters compare with their thresholds (LAB (H, W, 3) float)."""
    lightness = lab[..., 0].ravel()
    return {
        "contrast": float(lightness.std()),
        "detail": _lightness_entropy(lightness),
        "colorfulness": _colorfulness(lightness, lab[..., 1:].reshape(-1, 2)),
    }


def content_rejection(lab: np.ndarray, options: PrepareOptions) -> Dropped | None:
    stats = image_statistics(lab)
    if stats["contrast"] < options.min_contrast:
        return Dropped("blank", f"lightness spread {stats['contrast']:.2f} < --min-contrast {options.min_contrast}")
    if stats["detail"] < options.min_detail:
        return Dropped("placeholder", f"{stats['detail']:.2f} bits of tones < --min-detail {options.min_detail}")
    if stats["colorfulness"] < options.min_colorfulness:
        return Dropped("grayscale", f"colourfulness {stats['colorfulness']:.2f} < --min-colorfulness {options.min_colorfulness}")
    return None


def _lightness_entropy(lightness: np.ndarray) -> float:
    """Shannon entropy (bits) of the 8-bit lightness histogram.

    A silhouette placeholder or a logo is a handful of flat tones (1-3 bits, whatever
    their contrast); a photo, even on a plain studio background, has 4-7 bits.
    """
    levels = np.clip(np.rint(lightness * 2.55), 0, 255).astype(np.intp)
    shares = np.bincount(levels, minlength=256) / levels.size
    shares = shares[shares > 0]
    return float(-(shares * np.log2(shares)).sum())


def _colorfulness(lightness: np.ndarray, ab: np.ndarray) -> float:
    """RMS of the chroma that lightness does not explain (CIELAB units).

    A grayscale image has a = b = 0; a sepia or tinted monochrome one has non-zero a, b
    that are a function of lightness only (the toning curve). So the statistic removes,
    per lightness bin, the mean (a, b) of that bin and measures what is left: colour
    that varies independently of lightness, which is exactly what a colour photo has
    and a toned print lacks. On the headshots corpus, real photos score 3.4 and up,
    grayscale, sepia and tinted versions of the same photos under 1.
    """
    bins = np.minimum((lightness * (_L_BINS / 100.0)).astype(np.intp), _L_BINS - 1)
    bins = np.maximum(bins, 0)
    counts = np.maximum(np.bincount(bins, minlength=_L_BINS), 1)
    residual_sq = 0.0
    for channel in range(2):
        values = ab[:, channel].astype(np.float64)
        means = np.bincount(bins, weights=values, minlength=_L_BINS) / counts
        residual_sq += float(np.mean((values - means[bins]) ** 2))
    return math.sqrt(residual_sq)


@dataclass
class RunCounts:
    """What a prepare run has seen, kept, dropped (why and which files) and skipped."""

    seen: int = 0
    kept: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    skipped: collections.Counter = field(default_factory=collections.Counter)
    notes: collections.Counter = field(default_factory=collections.Counter)
    splits: collections.Counter = field(default_factory=collections.Counter)
    dropped_files: dict = field(default_factory=lambda: collections.defaultdict(list))
    bad_backgrounds: list = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def drop(self, name: str, reason: str, detail: str) -> None:
        self.seen += 1
        self.dropped[reason] += 1
        self.dropped_files[reason].append({"source": name, "why": detail})


def drop_summary(counts: RunCounts) -> str:
    if not counts.seen:
        return " (no images found in the sources)" if not counts.skipped else " (every source is already in the set)"
    reasons = ", ".join(f"{count} {REASONS[reason]}" for reason, count in counts.dropped.most_common())
    return f": {counts.seen} seen, {reasons}"


def add_reports(old: dict, new: dict) -> dict:
    """The set's filter report over all runs that built it (first run plus appends)."""
    total = {}
    for key in ("seen", "kept"):
        total[key] = int(old.get(key, 0)) + int(new.get(key, 0))
    for key in ("dropped", "skipped", "notes"):
        merged = collections.Counter(old.get(key) or {})
        merged.update(new.get(key) or {})
        total[key] = dict(merged)
    return total
