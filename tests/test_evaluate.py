"""`portraitcolor evaluate`: HDF5 and photo targets, baselines, outputs (the HTML report: test_report.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from portraitcolor import evaluate as core
from portraitcolor import report as outputs
from portraitcolor.config import EvaluateOptions
from portraitcolor.lab import decode_lab8
from portraitcolor.report import write_report
from portraitcolor.setfile import iter_split
from portraitcolor.targets import EvaluateError, open_target, square_resize
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
    evaluation = core.evaluate([portrait_dir], models=models, options=EvaluateOptions(device="cpu", batch_size=5))
    assert evaluation.mean_ab == (12.0, 15.0)
    assert list(evaluation.methods) == ["other", core.GRAY, core.MEAN_AB]
    assert evaluation.count == 12 and evaluation.size == 32


def test_batch_size_does_not_change_the_numbers(tiny_set, tiny_model_file):
    models = core.load_models([str(tiny_model_file)])
    results = [
        outputs.aggregate(core.evaluate([tiny_set], models=models, options=EvaluateOptions(device="cpu", batch_size=size)))
        for size in (3, 64)
    ]
    for method in results[0]:
        for metric, stats in results[0][method].items():
            assert stats["mean"] == pytest.approx(results[1][method][metric]["mean"], abs=1e-4)


def test_square_resize_crops_the_centre():
    wide = np.zeros((40, 80, 3), np.float32)
    wide[:, 20:60] = 1.0  # only the centre square is white
    out = square_resize(wide, 16)
    assert out.shape == (16, 16, 3) and out.min() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "targets,options,message",
    [
        (["set"], EvaluateOptions(full_res=True), "--full-res applies to photos"),
        (["set", "photo"], EvaluateOptions(), "not mixed with other targets"),
        (["set"], EvaluateOptions(split="val", limit=None), None),
        (["empty"], EvaluateOptions(), "no images found"),
    ],
)
def test_target_checks(tmp_path, tiny_set, targets, options, message):
    paths = {"set": tiny_set, "photo": write_portrait(tmp_path / "p.png"), "empty": tmp_path / "nothing"}
    (tmp_path / "nothing").mkdir()
    if message is None:
        assert open_target([paths[t] for t in targets], options).count == SPLITS.count("val")
        return
    with pytest.raises(EvaluateError, match=message):
        open_target([paths[t] for t in targets], options)


def test_unwritable_csv_is_refused_before_evaluating(tmp_path):
    with pytest.raises(EvaluateError, match="does not exist"):
        outputs.check_csv_path(tmp_path / "missing" / "out.csv")


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

    calls = []

    def colorize_picture(model, picture, render_size=None, device=None):
        calls.append((picture.rgb.shape, render_size, device))
        return picture.rgb.astype(np.float32)

    monkeypatch.setattr("portraitcolor.evaluate.colorize_picture", colorize_picture)
    for i, (height, width) in enumerate([(70, 50), (48, 90)]):
        write_portrait(tmp_path / "photos" / f"p{i}.png", height, width, seed=i)
    models = core.load_models([str(tiny_model_file)])
    options = EvaluateOptions(full_res=True, device="cpu", strips=True)
    evaluation = core.evaluate([tmp_path / "photos"], models=models, options=options)
    assert [shape for shape, _, _ in calls] == [(70, 50, 3), (48, 90, 3)]
    assert evaluation.size is None and evaluation.count == 2
    np.testing.assert_allclose(evaluation.methods["tiny"]["ab_mae"], evaluation.methods[core.GRAY]["ab_mae"], atol=0.05)
    write_report(evaluation, tmp_path / "report")
    assert (tmp_path / "report" / "index.html").is_file()
    assert len(calls) == 2  # the report's strips came with the evaluation: no model ran again
