"""`portraitcolor evaluate`: HDF5 and photo targets, baselines, outputs, the HTML report."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portraitcolor import evaluate as core
from portraitcolor import runs
from portraitcolor.setfile import iter_split
from portraitcolor.lab import decode_lab8
from tests.conftest import portrait_array, run_cli, write_portrait, write_set

SPLITS = ["train"] * 10 + ["test"] * 7 + ["val"] * 3


@pytest.fixture
def tiny_set(tmp_path):
    images = np.stack([portrait_array(32, 32, seed=i) for i in range(len(SPLITS))])
    return write_set(tmp_path / "faces.h5", images, SPLITS)


def _second_model(tmp_path, *, training: dict) -> Path:
    import torch

    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.weights import save_weights

    torch.manual_seed(1)
    return save_weights(UNet(UNetConfig(width=4, size=32)), tmp_path / "other.safetensors", training=training)


def _csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _split_lab(path: Path, split: str) -> np.ndarray:
    return np.concatenate([decode_lab8(lab8) for _, lab8 in iter_split(path, split)])


# ---- HDF5 target through the CLI ---------------------------------------------------------


def test_hdf5_target_json_csv_baselines_and_determinism(tmp_path, tiny_set, tiny_model_file):
    runs = []
    for number in (1, 2):
        csv_path = tmp_path / f"run{number}.csv"
        result = run_cli("evaluate", str(tiny_set), "--model", str(tiny_model_file), "--json", "--csv", str(csv_path), check=True)
        runs.append((result, csv_path))
    (first, first_csv), (second, second_csv) = runs
    assert first.stdout == second.stdout, "two runs must give the same JSON"
    assert first_csv.read_bytes() == second_csv.read_bytes(), "two runs must give the same CSV"

    document = json.loads(first.stdout)
    assert document["images"] == SPLITS.count("test") and document["split"] == "test"
    methods = document["methods"]
    assert list(methods) == ["tiny", core.GRAY, core.MEAN_AB]
    truth = _split_lab(tiny_set, "test")
    # Gray predicts ab = 0, so its ab error is exactly the truth's mean |ab|.
    assert methods[core.GRAY]["ab_mae"]["mean"] == pytest.approx(np.abs(truth[..., 1:]).mean(), rel=1e-6)
    assert methods[core.GRAY]["colourfulness"]["mean"] < 0.1
    train_ab = _split_lab(tiny_set, "train")[..., 1:].reshape(-1, 2).mean(axis=0)
    np.testing.assert_allclose(document["mean_ab"], train_ab, atol=1e-4)
    for method in methods.values():
        assert 0 < method["ssim"]["mean"] <= 1 and 0 < method["psnr"]["mean"] < 100
        assert method["ab_mae"]["median"] is not None
    truth_colour = {m["colourfulness_truth"]["mean"] for m in methods.values()}
    assert len(truth_colour) == 1, "every method is measured on the same images"

    rows = _csv_rows(first_csv)
    assert len(rows) == 3 * SPLITS.count("test")
    tiny_rows = [row for row in rows if row["method"] == "tiny"]
    assert [row["source"] for row in tiny_rows] == [f"face{i:04d}.png" for i in range(10, 17)]
    assert np.mean([float(row["ab_mae"]) for row in tiny_rows]) == pytest.approx(methods["tiny"]["ab_mae"]["mean"], rel=1e-5)
    assert "ab MAE" in first.stderr.decode() and "mean ab" in first.stderr.decode()


def test_two_models_side_by_side(tmp_path, tiny_set, tiny_model_file):
    other = _second_model(tmp_path, training={})
    result = run_cli("evaluate", str(tiny_set), "-m", str(tiny_model_file), "-m", str(other), "--split", "all", "--limit", "12", "--json", check=True)
    document = json.loads(result.stdout)
    assert document["images"] == 12 and document["split"] is None
    assert list(document["methods"]) == ["tiny", "other", core.GRAY, core.MEAN_AB]
    assert document["methods"]["tiny"]["ab_mae"] != document["methods"]["other"]["ab_mae"]
    assert [m["label"] for m in document["models"]] == ["tiny", "other"]


def test_three_models_are_refused(tiny_set, tiny_model_file):
    result = run_cli("evaluate", str(tiny_set), *["-m", str(tiny_model_file)] * 3)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines() == ["portraitcolor: error: at most two models can be compared, 3 were given"]


# ---- photo targets ---------------------------------------------------------------------------


def test_folder_target_with_a_broken_file(tmp_path, portrait_dir, tiny_model_file):
    broken = portrait_dir / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    csv_path = tmp_path / "folder.csv"
    result = run_cli("evaluate", str(portrait_dir), "--model", str(tiny_model_file), "--json", "--csv", str(csv_path))
    assert result.returncode == 1, "a failed input must show in the exit status"
    errors = [line for line in result.stderr.decode().splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "not an image" in errors[0]
    document = json.loads(result.stdout)
    assert document["images"] == 12 and document["size"] == 32
    assert document["failed"][0]["source"].endswith("broken.jpg")
    # The random test model records no training mean ab, so that baseline is skipped with a note.
    assert list(document["methods"]) == ["tiny", core.GRAY]
    assert any("mean-ab baseline skipped" in note for note in document["notes"])
    sources = {row["source"] for row in _csv_rows(csv_path)}
    assert "sub/face00.png" in sources and len(sources) == 12


def test_folder_target_mean_ab_from_model_metadata(tmp_path, portrait_dir):
    model_path = _second_model(tmp_path, training={"mean_ab": [12.0, 15.0]})
    models = core.load_models([str(model_path)])
    evaluation = core.evaluate([portrait_dir], models=models, options=core.EvaluateOptions(device="cpu", batch_size=5))
    assert evaluation.mean_ab == (12.0, 15.0)
    assert list(evaluation.methods) == ["other", core.GRAY, core.MEAN_AB]
    assert evaluation.count == 12 and evaluation.size == 32


def test_batch_size_does_not_change_the_numbers(tiny_set, tiny_model_file):
    models = core.load_models([str(tiny_model_file)])
    results = [
        core.aggregate(core.evaluate([tiny_set], models=models, options=core.EvaluateOptions(device="cpu", batch_size=size)))
        for size in (3, 64)
    ]
    for method in results[0]:
        for metric, stats in results[0][method].items():
            assert stats["mean"] == pytest.approx(results[1][method][metric]["mean"], abs=1e-4)


def test_square_resize_crops_the_centre():
    wide = np.zeros((40, 80, 3), np.float32)
    wide[:, 20:60] = 1.0  # only the centre square is white
    out = core.square_resize(wide, 16)
    assert out.shape == (16, 16, 3) and out.min() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "targets,options,message",
    [
        (["set"], core.EvaluateOptions(full_res=True), "--full-res applies to photos"),
        (["set", "photo"], core.EvaluateOptions(), "not mixed with other targets"),
        (["set"], core.EvaluateOptions(split="val", limit=None), None),
        (["empty"], core.EvaluateOptions(), "no images found"),
    ],
)
def test_target_checks(tmp_path, tiny_set, targets, options, message):
    paths = {"set": tiny_set, "photo": write_portrait(tmp_path / "p.png"), "empty": tmp_path / "nothing"}
    (tmp_path / "nothing").mkdir()
    if message is None:
        assert core.open_target([paths[t] for t in targets], options).count == SPLITS.count("val")
        return
    with pytest.raises(core.EvaluateError, match=message):
        core.open_target([paths[t] for t in targets], options)


def test_unwritable_outputs_are_refused_before_evaluating(tmp_path):
    with pytest.raises(core.EvaluateError, match="does not exist"):
        core.check_outputs(csv_path=tmp_path / "missing" / "out.csv")
    (tmp_path / "file").write_text("x")
    with pytest.raises(core.EvaluateError, match="not a folder"):
        core.check_outputs(report_dir=tmp_path / "file")


def test_full_resolution_photos(tmp_path, tiny_model_file):
    for i, (height, width) in enumerate([(70, 50), (48, 90)]):
        write_portrait(tmp_path / "photos" / f"p{i}.png", height, width, seed=i)
    result = run_cli("evaluate", str(tmp_path / "photos"), "--model", str(tiny_model_file), "--full-res", "--json", check=True)
    document = json.loads(result.stdout)
    assert document["images"] == 2 and document["size"] is None
    assert 0 < document["methods"]["tiny"]["ssim"]["mean"] <= 1


def test_full_resolution_path_with_a_stand_in_colorize(monkeypatch, tmp_path, tiny_model_file):
    """--full-res through colorize_picture's signature; the stand-in answers gray, so the
    model's numbers must equal the gray baseline's, at each photo's own size."""
    import sys
    import types

    calls = []

    def colorize_picture(model, picture, render_size=None, device=None):
        calls.append((picture.rgb.shape, render_size, device))
        return picture.rgb.astype(np.float32)

    monkeypatch.setitem(sys.modules, "portraitcolor.colorize", types.SimpleNamespace(colorize_picture=colorize_picture))
    for i, (height, width) in enumerate([(70, 50), (48, 90)]):
        write_portrait(tmp_path / "photos" / f"p{i}.png", height, width, seed=i)
    models = core.load_models([str(tiny_model_file)])
    options = core.EvaluateOptions(full_res=True, device="cpu")
    evaluation = core.evaluate([tmp_path / "photos"], models=models, options=options)
    assert [shape for shape, _, _ in calls] == [(70, 50, 3), (48, 90, 3)]
    assert evaluation.size is None and evaluation.count == 2
    np.testing.assert_allclose(evaluation.methods["tiny"]["ab_mae"], evaluation.methods[core.GRAY]["ab_mae"], atol=0.05)
    core.write_report(evaluation, tmp_path / "report", targets=[tmp_path / "photos"], models=models, options=options)
    assert (tmp_path / "report" / "index.html").is_file()


# ---- the HTML report ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
        assert strip.height == core.STRIP_TILE_HEIGHT and strip.width > 4 * strip.height  # gray | 2 models | truth
    for heading in ("Best by ab error", "Median by ab error", "Worst by ab error", "Random sample"):
        assert heading in page
    assert len(_csv_rows(report_dir / "per_image.csv")) == 4 * SPLITS.count("test")
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
