"""Two CPU processes under the real torchrun compute what one process computes.

--batch-size is the global batch: each rank takes half of every batch, batch norm
statistics span both ranks (CrossProcessBatchNorm2d on gloo), and DDP averages the
gradients; so the weights after training must match a single process with the same
batch, up to float rounding (the sums travel in a different order).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from portraitcolor.config import TrainConfig
from portraitcolor.runs import CHECKPOINT
from portraitcolor.train import train
from tests.conftest import REPO, portrait_stack, write_set

OPTIONS = dict(epochs=2, loss="mae:1,ssim:1", width=4, batch_size=6, lr=3e-3, seed=2)


def test_two_gloo_processes_match_one_process(tmp_path):
    data = write_set(tmp_path / "faces.h5", portrait_stack(24, 32), ["val" if i % 4 == 0 else "train" for i in range(24)])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "PORTRAITCOLOR_HOME": str(tmp_path / "store"),
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "portraitcolor", "train", str(data), "--device", "cpu", "--run-dir", str(tmp_path / "ddp"),
        "--name", "ddp", "--epochs", "2", "--loss", OPTIONS["loss"], "--width", "4", "--batch-size", "6",
        "--lr", "3e-3", "--seed", "2",
    ]
    result = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert result.stdout.decode().strip() == "ddp"  # rank 0 alone reports (and writes)
    assert "2 processes" in result.stderr.decode()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(TrainConfig(data=str(data), device="cpu", run_dir=str(tmp_path / "one"), **OPTIONS))
    finally:
        torch.set_num_threads(threads)

    distributed = torch.load(tmp_path / "ddp" / CHECKPOINT, weights_only=True)
    alone = torch.load(tmp_path / "one" / CHECKPOINT, weights_only=True)
    initial = _initial_weights()
    difference = movement = 0.0
    for key, expected in alone["model"].items():
        got = distributed["model"][key]
        if not expected.is_floating_point():
            assert torch.equal(got, expected), key  # num_batches_tracked: same step count
            continue
        # Adam moves a weight whose gradient is ~0 by up to lr per step in the direction of
        # the gradient's sign, which rounding can flip: so bound the worst weight loosely
        # (a few steps) and the total tightly, against how far training moved the weights.
        assert float((got - expected).abs().max()) < 3 * OPTIONS["lr"], key
        difference += float((got - expected).abs().sum())
        if key in initial:
            movement += float((expected - initial[key]).abs().sum())
    # A real check: the runs agree far more closely than training moved the weights.
    # (measured: about 1% of the movement)
    assert difference < movement / 20, (difference, movement)
    assert [r["val_loss"] for r in distributed["records"]] == pytest.approx([r["val_loss"] for r in single.records], abs=1e-4)
    # Same image count per epoch, so the same number of optimizer steps.
    assert distributed["optimizer"]["state"][0]["step"] == alone["optimizer"]["state"][0]["step"]


def _initial_weights() -> dict:
    from portraitcolor.model import UNet, UNetConfig

    torch.manual_seed(OPTIONS["seed"])
    return UNet(UNetConfig(width=4, size=32)).state_dict()
