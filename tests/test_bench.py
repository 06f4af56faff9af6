"""The benchmark scripts run in tiny CPU modes and write valid JSON, and the harness reads the
parts' rows() as they say; no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

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


def test_hook_rows_calls_the_modules_rows_with_quick_and_a_scratch_folder(monkeypatch):
    from bench import hooks
    from bench.report import Row

    seen = {}

    def rows(*, quick, scratch):
        seen.update(quick=quick, scratch_was_a_folder=scratch.is_dir())
        return [Row(group="prepare", figure="images/s", value=1.0)]

    monkeypatch.setitem(sys.modules, "bench.prepare_bench", types.SimpleNamespace(rows=rows))
    assert [row.figure for row in hooks.hook_rows("prepare", quick=True)] == ["images/s"]
    assert seen == {"quick": True, "scratch_was_a_folder": True}


def test_prepare_rows_put_the_figures_beside_every_ceiling(monkeypatch, tmp_path):
    from bench import prepare_bench

    figures = {"images": 8, "workers": 2, "crop": "center", "prepare_images_per_s": 20.0,
               "ceiling_images_per_s": 40.0, "ratio_to_ceiling": 0.5, "reduced_ceiling_images_per_s": 80.0, "ratio_to_reduced_ceiling": 0.25,
               "parallel_reduced_images_per_s": 50.0, "ratio_to_parallel_reduced": 0.4}
    monkeypatch.setattr(prepare_bench, "write_synthetic_jpegs", lambda folder, count: folder)
    monkeypatch.setattr(prepare_bench, "measure", lambda folder: figures)
    reduced, parallel, full = prepare_bench.rows(quick=True, scratch=tmp_path)
    assert reduced.figure.startswith("images/s (2 workers, 8 JPEGs") and (reduced.value, reduced.ceiling, reduced.ratio, reduced.met) == (20.0, 80.0, 0.25, False)
    assert (parallel.ceiling, parallel.ratio, parallel.met) == (50.0, 0.4, None) and "2 processes at once" in parallel.ceiling_label
    assert (full.value, full.ceiling, full.ratio, full.met) == (20.0, 40.0, 0.5, None) and full.details is figures


def test_prepare_measure_gives_every_figure_the_rows_read(tmp_path):
    """The real producer of those figures, on a few small photos."""
    from bench import prepare_bench

    figures = prepare_bench.measure(prepare_bench.write_synthetic_jpegs(tmp_path / "photos", count=4, width=600, height=400), workers=2)
    assert figures["images"] == 4 and figures["kept"] == 4
    for key in ("prepare_images_per_s", "reduced_ceiling_images_per_s", "parallel_reduced_images_per_s", "ceiling_images_per_s"):
        assert figures[key] > 0, key
    assert figures["ratio_to_parallel_reduced"] == pytest.approx(figures["prepare_images_per_s"] / figures["parallel_reduced_images_per_s"], rel=0.01)


def test_train_rows_set_the_loader_against_the_fastest_training_step(monkeypatch, tmp_path):
    from bench import train_bench

    step = {"size": 128, "batch_size": 8, "tflops": 0.05}
    figures = {"device": "cpu", "threads": 2,
               "training": [{**step, "width": 64, "images_per_s": 1.0}, {**step, "width": 16, "images_per_s": 4.0}],
               "loader": [{"batch_size": 64, "workers": 0, "in_memory": False, "images_per_s": 100.0},
                          {"batch_size": 64, "workers": 0, "in_memory": True, "images_per_s": 20.0}],
               "hints": {"size": 128, "batch_size": 32, "device": "cpu", "images_per_s": 200.0}}
    monkeypatch.setattr(train_bench, "measure", lambda: figures)
    rows = train_bench.rows(quick=True, scratch=tmp_path)
    assert [row.value for row in rows] == [1.0, 4.0, 100.0, 20.0, 200.0]
    assert [(row.ceiling, row.ratio, row.met) for row in rows[2:]] == [(4.0, 25.0, True), (4.0, 5.0, False), (4.0, 50.0, True)]
    assert "w16" in rows[2].ceiling_label and all(row.details is figures for row in rows)
    assert "hints" in rows[4].figure and "batches of 32 @128" in rows[4].figure


def test_hint_sampling_is_measured_on_real_batches():
    from bench import train_bench

    figures = train_bench.measure_hint_sampling(size=16, batch_size=4, batches=2)
    assert figures["batch_size"] == 4 and figures["size"] == 16 and figures["images_per_s"] > 0


def test_evaluate_rows_set_the_evaluation_against_its_inference_alone(monkeypatch, tmp_path):
    from bench import evaluate_bench

    figures = {"images": 32, "size": 128, "width": 16, "batch_size": 64, "device": "cpu", "images_per_second": 10.0, "inference_images_per_second": 40.0}
    calls = []
    monkeypatch.setattr(evaluate_bench, "measure", lambda **options: calls.append(options) or figures)
    (row,) = evaluate_bench.rows(quick=True, scratch=tmp_path)
    assert calls == [{"images": 32, "device": "cpu"}]
    assert (row.value, row.ceiling, row.ratio, row.unit) == (10.0, 40.0, 0.25, "images/s") and row.details is figures
