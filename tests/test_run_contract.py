"""The run folder and the training summary, from the real producer (train) to the real
consumer (evaluate): nothing planted by the test."""

import json

import numpy as np

from portraitcolor import evaluate as core
from portraitcolor import runs
from portraitcolor.setfile import train_mean_ab
from tests.conftest import portrait_array, run_cli, write_portrait, write_set

SPLITS = ["train"] * 8 + ["val"] * 4 + ["test"] * 4


def test_a_trained_model_brings_its_loss_curve_and_mean_ab_to_the_report(tmp_path):
    images = np.stack([portrait_array(32, 32, seed=i) for i in range(len(SPLITS))])
    faces = write_set(tmp_path / "faces.h5", images, SPLITS)
    trained = run_cli("train", str(faces), "--width", "2", "--epochs", "2", "--batch-size", "4", "--device", "cpu",
                      "--run-dir", str(tmp_path / "run"), "--name", "tiny")
    assert trained.returncode == 0, trained.stderr
    for i in range(4):
        write_portrait(tmp_path / "photos" / f"p{i}.png", seed=100 + i)

    evaluated = run_cli("evaluate", str(tmp_path / "photos"), "-m", "tiny", "--report", str(tmp_path / "report"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    document = json.loads(evaluated.stdout)
    # The mean-ab baseline of photos comes from the model's summary: the set's train split.
    expected, _ = train_mean_ab(faces)
    np.testing.assert_allclose(document["mean_ab"], expected, atol=1e-6)
    assert core.MEAN_AB in document["methods"]
    # The loss curve train drew is the one the report shows.
    page = (tmp_path / "report" / "index.html").read_text()
    assert "images/loss-curves-1.png" in page
    assert (tmp_path / "report" / "images" / "loss-curves-1.png").read_bytes() == (tmp_path / "run" / runs.LOSS_CURVE).read_bytes()
