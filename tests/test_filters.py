"""The drop rules' statistics, on images whose answer is known."""

from __future__ import annotations

import numpy as np

from portraitcolor.filters import image_statistics
from portraitcolor.lab import rgb_to_lab
from tests.conftest import portrait_array, sepia


def test_colorfulness_statistic_separates_colour_from_toned_monochrome():
    colour = image_statistics(rgb_to_lab(portrait_array(seed=0) / np.float32(255)))["colorfulness"]
    toned = image_statistics(rgb_to_lab(sepia(0) / np.float32(255)))["colorfulness"]
    gray = image_statistics(rgb_to_lab(portrait_array(seed=0, gray=True) / np.float32(255)))["colorfulness"]
    assert gray < 0.01 and toned < 1.0 and colour > 5.0
