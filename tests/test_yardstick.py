"""scripts/yardstick.py: models side by side on colour photos, with strips of chosen cases."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from tests.conftest import REPO, write_portrait


def test_yardstick_compares_models_and_writes_strips(tmp_path, tiny_model_file):
    photos = tmp_path / "photos"
    for i in range(5):
        write_portrait(photos / f"p{i}.jpg", 48, 40, seed=i)
    worst, sample, figures = tmp_path / "worst.png", tmp_path / "sample.png", tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "yardstick.py"), str(photos), "-m", str(tiny_model_file), "-m", str(tiny_model_file),
         "--worst", "3", "--strip", str(worst), "--sample-strip", str(sample), "--json", str(figures)],
        capture_output=True, text=True, check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| model | ab / gray |") and lines[2].startswith("| tiny |") and lines[3].startswith("| tiny (2) |")
    rows = json.loads(figures.read_text())
    assert [row["images"] for row in rows] == [5, 5] and rows[0]["ab_over_gray"] == rows[1]["ab_over_gray"]
    assert 0 <= rows[0]["beats_gray"] <= 1 and rows[0]["gray_ab"] > 0
    for strip in (worst, sample):
        width, height = Image.open(strip).size
        assert height == 3 * 128 + 2 * 4 and width > 3 * 128  # 3 photos: gray | 2 models | truth
