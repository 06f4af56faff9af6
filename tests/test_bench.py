"""The benchmark harness runs and writes valid JSON (a smoke run: no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO


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
