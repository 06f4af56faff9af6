"""`train` checks what it will write and what it resumes before any work.

Through the real CLI (a subprocess, or typer's runner where a test must reach inside):
a taken or invalid --name, a --run-dir holding files, parallel runs without --name, a
resume whose set moved, changed or vanished, recipe options beside --resume, and a loss
that stops being a number. Each refusal is one line on stderr, and nothing is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import torch
from typer.testing import CliRunner

from portraitcolor.cli import app
from portraitcolor.config import TrainConfig
from portraitcolor.events import StepDone
from portraitcolor.runs import CHECKPOINT
from portraitcolor.store import WeightsStore
from portraitcolor.train import TrainingInterrupted, train
from tests.conftest import REPO, portrait_stack, run_cli, write_portrait, write_set

# 9 train and 3 val images of 16x16, 3 steps an epoch: a run takes a few seconds on a CPU.
TINY = ("--width", "2", "--batch-size", "3", "--loss", "mae", "--device", "cpu")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny_set(path, *, seed: int = 0):
    return write_set(path, portrait_stack(12, 16, seed=seed), ["val" if i % 4 == 0 else "train" for i in range(12)])


@pytest.fixture
def faces(tmp_path):
    return tiny_set(tmp_path / "faces.h5")


def train_cli(*args, cwd=None):
    return run_cli("train", *map(str, args), env=ONE_THREAD, cwd=cwd)


def refusal(result, code: int) -> str:
    """The single stderr line of a command that refused before starting any work."""
    stderr = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    lines = stderr.strip().splitlines()
    returncode = getattr(result, "returncode", getattr(result, "exit_code", None))
    assert returncode == code and len(lines) == 1 and lines[0].startswith("portraitcolor: error: "), (returncode, stderr)
    return lines[0]


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_state(folder) -> dict:
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- the store name ----------------------------------------------------------------------


def test_a_name_already_in_the_store_is_refused_before_training_unless_replace(faces, tmp_path, tiny_model_file):
    WeightsStore().add_file(tiny_model_file, "taken")
    stored = WeightsStore().info("taken").path
    before = digest(stored)

    result = train_cli(faces, *TINY, "--epochs", "1", "--name", "taken", "--run-dir", tmp_path / "run")
    line = refusal(result, 2)
    assert "'taken'" in line and "--replace" in line
    assert not (tmp_path / "run").exists()  # refused before any work: no run folder
    assert digest(stored) == before

    result = train_cli(faces, *TINY, "--epochs", "1", "--name", "taken", "--replace", "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "taken"
    training = WeightsStore().info("taken").metadata["training"]
    assert training["run_dir"] == str(tmp_path / "run")  # replaced, as asked
    assert "default model" not in result.stderr.decode()  # not the default: nothing to say

    WeightsStore().set_default("taken")  # replacing the default changes colorize's colours: said
    result = train_cli(faces, *TINY, "--epochs", "1", "--name", "taken", "--replace", "--run-dir", tmp_path / "run2")
    assert result.returncode == 0 and "default model taken now has the new weights" in result.stderr.decode().splitlines()


@pytest.mark.parametrize("name", ["../../x", "", "builtin", "a" * 65, "my model"])
def test_an_invalid_name_is_refused_before_training(faces, tmp_path, name):
    result = CliRunner().invoke(app, ["train", str(faces), *TINY, "--epochs", "1", "--name", name, "--run-dir", str(tmp_path / "run")])
    assert "--name" in refusal(result, 2)
    assert not (tmp_path / "run").exists() and WeightsStore().names() == []


def test_runs_without_a_name_started_in_the_same_second_keep_apart(faces, tmp_path, isolated_store):
    """Two `train` processes at once with one clock reading: the default run folder and model
    name come from the time, and used to be shared (one run's files and model replaced the other's)."""
    frozen = (
        "import sys, time; time.strftime = lambda *args: '20250101-120000'; "
        "from portraitcolor.cli import main; sys.argv[0] = 'portraitcolor'; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), **ONE_THREAD}
    runs = [
        subprocess.Popen([sys.executable, "-c", frozen, "train", str(faces), *TINY, "--epochs", "1", "--seed", str(seed)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for seed in (1, 2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err.decode() for _, err in outputs]
    names = sorted(out.decode().strip() for out, _ in outputs)
    assert names == ["20250101-120000", "20250101-120000-2"]
    assert WeightsStore().names() == names
    folders = sorted((isolated_store / "runs").iterdir())
    assert [folder.name for folder in folders] == names
    seeds = {json.loads((folder / "config.json").read_text())["seed"] for folder in folders}
    assert seeds == {1, 2}  # each folder holds one run's files, not a mix
    for name in names:  # each model came from its own folder
        assert WeightsStore().info(name).metadata["training"]["run_dir"] == str(isolated_store / "runs" / name)


# ---- the run folder ----------------------------------------------------------------------


def test_a_run_folder_with_files_is_refused_unless_overwrite(faces, tmp_path):
    run = tmp_path / "run"
    assert train_cli(faces, *TINY, "--epochs", "2", "--run-dir", run).returncode == 0
    before = folder_state(run)

    line = refusal(train_cli(faces, *TINY, "--epochs", "1", "--seed", "5", "--run-dir", run), 2)
    assert f"--resume {run}" in line and "--overwrite" in line
    assert folder_state(run) == before  # nothing written over

    mine = tmp_path / "mine"
    (mine / "notes.txt").parent.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert "--overwrite" in refusal(train_cli(faces, *TINY, "--epochs", "1", "--run-dir", mine), 2)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert train_cli(faces, *TINY, "--epochs", "1", "--run-dir", empty).returncode == 0

    project = tmp_path / "project"  # another tool's folder: its checkpoint and config are its own
    project.mkdir()
    (project / "checkpoint.pt").write_bytes(b"another tool's weights")
    (project / "config.json").write_text('{"learning_rate": 0.1}')
    line = refusal(train_cli(faces, *TINY, "--epochs", "1", "--run-dir", project, "--overwrite"), 2)
    assert line.endswith(f"{project / 'checkpoint.pt'} is not from a portraitcolor run and is kept: give --run-dir a folder of its own")
    assert (project / "checkpoint.pt").read_bytes() == b"another tool's weights" and sorted(p.name for p in project.iterdir()) == ["checkpoint.pt", "config.json"]

    gan = tmp_path / "gan"  # another tool's run: its sample pictures are named as a run names its grids
    theirs = write_portrait(gan / "samples" / "epoch-001.png")
    sample = theirs.read_bytes()
    line = refusal(train_cli(faces, *TINY, "--epochs", "1", "--run-dir", gan, "--overwrite"), 2)
    assert line.endswith(f"{theirs} is not from a portraitcolor run and is kept: give --run-dir a folder of its own")
    assert theirs.read_bytes() == sample and [p.name for p in gan.iterdir()] == ["samples"]

    result = train_cli(faces, *TINY, "--epochs", "1", "--seed", "5", "--run-dir", run, "--overwrite")
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((run / "config.json").read_text())["seed"] == 5
    # the earlier run's second epoch is gone, not left to pass for this run's
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch-001.png"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


# ---- resume ----------------------------------------------------------------------------


def interrupted_run(data: str, run_dir, **options):
    """A run of 2 epochs stopped during the second (as Ctrl-C stops it): a checkpoint to resume."""
    stop = threading.Event()

    def stop_in_epoch_two(event):
        if isinstance(event, StepDone) and event.epoch == 1 and event.step == 1:
            stop.set()

    values = dict(data=data, epochs=2, loss="mae", width=2, batch_size=3, lr=3e-3, seed=1, device="cpu", run_dir=str(run_dir))
    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(**{**values, **options}), on_event=stop_in_epoch_two, stop=stop)
    return run_dir


def test_resume_trains_on_the_runs_own_set_and_refuses_a_changed_or_missing_one(tmp_path, monkeypatch):
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    original = tiny_set(started / "faces.h5", seed=0)
    tiny_set(elsewhere / "faces.h5", seed=40)  # the same relative name, other faces
    monkeypatch.chdir(started)
    run = interrupted_run("faces.h5", tmp_path / "run")  # a relative path, as users type it
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == str(original) and config["data_fingerprint"]["sha256"] == digest(original)
    checkpoint = digest(run / CHECKPOINT)

    kept = tmp_path / "kept.h5"
    shutil.copyfile(original, kept)
    shutil.copyfile(elsewhere / "faces.h5", original)  # the set rebuilt under its name
    line = refusal(train_cli("--resume", run, cwd=elsewhere), 1)
    assert str(original) in line and "changed" in line
    original.unlink()
    line = refusal(train_cli("--resume", run, cwd=elsewhere), 1)
    assert str(original) in line and "missing" in line
    assert digest(run / CHECKPOINT) == checkpoint  # refused: the run is as it was

    shutil.copyfile(kept, original)  # the same content back (a new mtime: the sha256 decides)
    result = train_cli("--resume", run, cwd=elsewhere)  # from another folder with its own faces.h5
    assert result.returncode == 0, result.stderr.decode()
    training = WeightsStore().info(result.stdout.decode().strip()).metadata["training"]
    assert training["data"] == str(original) and training["data_sha256"] == digest(original)


def test_recipe_options_beside_resume_must_be_the_runs(tmp_path, monkeypatch):
    original = tiny_set(tmp_path / "faces.h5")
    run = interrupted_run(str(original), tmp_path / "run")
    checkpoint = digest(run / CHECKPOINT)

    line = refusal(train_cli("--resume", run, "--lr", "0.05", "--width", "3"), 2)
    assert "--lr 0.05" in line and "--width 3" in line and "0.003" in line
    line = refusal(train_cli(tiny_set(tmp_path / "other.h5", seed=40), "--resume", run), 2)
    assert "other.h5" in line
    assert digest(run / CHECKPOINT) == checkpoint

    # The run's own values may be repeated, runtime options changed, and a moved set given.
    moved = tmp_path / "moved" / "faces.h5"
    moved.parent.mkdir()
    shutil.move(original, moved)
    result = train_cli(moved, "--resume", run, "--lr", "0.003", "--width", "2", "--device", "cpu", "--name", "resumed")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "resumed"
    assert json.loads((run / "config.json").read_text())["data"] == str(moved)
    assert torch.load(run / CHECKPOINT, weights_only=True)["epoch"] == 2


# ---- a loss that stops being a number ----------------------------------------------------


def test_a_diverging_run_stops_with_one_line_and_stores_nothing(faces, tmp_path):
    run = tmp_path / "run"
    result = train_cli(faces, *TINY, "--epochs", "2", "--lr", "1e10", "--run-dir", run)
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr, stderr
    error = stderr.strip().splitlines()[-1]
    assert error.startswith("portraitcolor: error: the training loss became ") and "at epoch 1/2, step " in error, error
    assert WeightsStore().names() == [] and not (run / "best.safetensors").exists()
    assert result.stdout == b""


def test_a_run_diverging_later_keeps_its_best_finite_epoch(faces, tmp_path, monkeypatch):
    from portraitcolor import losses

    finite = losses.reconstruction_loss
    calls = []

    def nan_from_the_second_epoch(*args, **kwargs):  # 3 steps an epoch
        calls.append(1)
        loss = finite(*args, **kwargs)
        return loss * float("nan") if len(calls) > 3 else loss

    monkeypatch.setattr(losses, "reconstruction_loss", nan_from_the_second_epoch)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(faces), *TINY, "--epochs", "3", "--run-dir", str(run), "--name", "never"])
    assert result.exit_code == 1 and "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert "the training loss became nan at epoch 2/3, step 1/3" in error
    assert f"epoch 1) are kept in {run / 'best.safetensors'}" in error
    assert "never" not in WeightsStore().names()
    checkpoint = torch.load(run / CHECKPOINT, weights_only=True)
    assert checkpoint["epoch"] == 1  # the end of the last finite epoch, not the NaN weights
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values() if tensor.is_floating_point())
