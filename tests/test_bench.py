"""The benchmark scripts run in tiny CPU modes and write valid JSON; no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_script_dry_run_writes_its_json(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), str(tmp_path), "--dry-run"],
                            capture_output=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    figures = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert figures["dry_run"] and {row["variant"] for row in figures["training"]} == {"fp32", "bf16", "bf16+channels_last"}
    assert all(row["images_per_s"] > 0 and row["tflops"] > 0 for row in figures["training"])
    assert figures["inference"] and figures["loader"]


@pytest.mark.slow
def test_train_bench_measure_returns_figures():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from train_bench import measure
    finally:
        sys.path.remove(str(REPO / "bench"))
    figures = measure(widths=(4,), size=32, batch_size=2, steps=1, loader_images=128)
    assert figures["training"][0]["images_per_s"] > 0
    assert [row["in_memory"] for row in figures["loader"]] == [False, True]


@pytest.mark.slow
def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "help,model,prepare", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["machine"]["cores"] >= 1 and document["machine"]["torch"]
    groups = {row["group"] for row in document["rows"]}
    assert {"ceiling", "U-Net", "CLI", "prepare"} <= groups
    forward = next(row for row in document["rows"] if row["figure"].startswith("forward"))
    assert forward["value"] > 0 and forward["ceiling"] > 0
    assert "| figure | value |" in result.stdout


def test_unknown_benchmark_is_a_usage_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "bench", "--only", "nonsense"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown benchmark" in result.stderr
