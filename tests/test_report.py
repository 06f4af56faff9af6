"""`portraitcolor evaluate --report`: the HTML report's files, references and rendering."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from portraitcolor import runs
from portraitcolor.evaluate import STRIP_TILE_HEIGHT
from portraitcolor.report import check_report_dir
from portraitcolor.targets import EvaluateError
from tests.conftest import portrait_array, run_cli, write_set

SPLITS = ["train"] * 10 + ["test"] * 7 + ["val"] * 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_unwritable_report_folder_is_refused_before_evaluating(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EvaluateError, match="not a folder"):
        check_report_dir(tmp_path / "file")


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.references.append(value)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """One report, shared by the report tests: two models, the first with a run's loss curves."""
    import torch

    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.weights import save_weights

    root = tmp_path_factory.mktemp("report")
    images = np.stack([portrait_array(32, 32, seed=i) for i in range(len(SPLITS))])
    set_path = write_set(root / "faces.h5", images, SPLITS)
    (root / "run").mkdir()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(root / "run" / runs.LOSS_CURVE)
    model_paths = []
    for seed, training in ((1, {"run_dir": str(root / "run"), "epochs": 3}), (0, {})):
        torch.manual_seed(seed)
        model_paths.append(save_weights(UNet(UNetConfig(width=4, size=32)), root / f"model{seed}.safetensors", training=training))
    report = root / "report"
    run_cli(
        "evaluate", str(set_path), "-m", str(model_paths[0]), "-m", str(model_paths[1]), "--report", str(report),
        env={"PORTRAITCOLOR_HOME": str(root / "store")}, check=True,
    )
    return report


def test_report_files_and_references(report_dir):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    parser = _References()
    parser.feed(page)
    assert parser.references, "the page shows images"
    for reference in parser.references:
        assert "://" not in reference and not reference.startswith("//"), f"network reference {reference}"
        assert (report_dir / reference).is_file(), f"missing {reference}"
    assert "images/loss-curves-1.png" in parser.references, "the run's loss curves are copied"
    strips = [r for r in parser.references if "strip-" in r]
    assert len(set(strips)) == SPLITS.count("test")  # 7 images: every one is some case
    with Image.open(report_dir / strips[0]) as strip:
        assert strip.height == STRIP_TILE_HEIGHT and strip.width > 4 * strip.height  # gray | 2 models | truth
    for heading in ("Best by ab error", "Median by ab error", "Worst by ab error", "Random sample"):
        assert heading in page
    rows = list(csv.DictReader(io.StringIO((report_dir / "per_image.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 4 * SPLITS.count("test")
    assert not list(report_dir.rglob("*.part*")), "no temporary files left behind"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package: chromium)")
def test_report_renders_in_headless_chromium(tmp_path, report_dir):
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={screenshot}",
            "--window-size=1200,2000", (report_dir / "index.html").as_uri(),
        ],
        capture_output=True, timeout=120, check=True,
    )
    with Image.open(screenshot) as image:
        assert image.format == "PNG" and image.size == (1200, 2000)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    assert pixels.std() > 10, "the screenshot is blank"
    # The strips' colour (the truth tiles) must show on the page, not only black text on white.
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 60).mean() > 0.01
