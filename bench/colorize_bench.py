"""`portraitcolor colorize` end to end against the model alone (both engines: the ONNX form
through OpenCV, which the CPU uses, and torch), one photo in a fresh process against the
floor of importing the image libraries and decoding and encoding it, its peak memory on a
24-megapixel photo, and the start-up time of `portraitcolor --help`."""

from __future__ import annotations

import compileall
import itertools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import portraitcolor
from portraitcolor import images
from portraitcolor.colorize import colorize_jobs, plan_jobs
from portraitcolor.inference import (
    OnnxPredictor,
    Predictor,
    join_to_rgb,
    network_input,
    padded_shape,
    render_shape,
    upsample_ab,
)
from portraitcolor.onnx_export import write_onnx
from portraitcolor.torch_inference import TorchPredictor
from portraitcolor.weights import save_weights

from .model_bench import random_model, thread_counts, threads
from .report import REPO, Row
from .timing import best_seconds

PIPELINE_TARGET = 0.8  # issue 7: end to end at >= 80% of the model-only rate (512x512)
RSS_LIMIT_MB = 1500  # issue 2: a 6000x4000 photo under 1.5 GB
ONE_PHOTO_TARGET = 2.5  # issue 13: one 512x640 photo, fresh process, vs imports + decode + encode
BIG_PHOTO_TARGET = 3.0  # issue 13: one 4000x3000 photo vs decoding and encoding it


def synthetic_photo(width: int, height: int, *, seed: int) -> np.ndarray:
    """A camera-sized portrait: a small synthetic one upscaled, plus sensor grain (uint8 RGB)."""
    sys.path.insert(0, str(REPO))
    from tests.conftest import portrait_array

    small = portrait_array(max(64, height // 8), max(64, width // 8), seed=seed)
    big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = np.random.default_rng(seed).normal(0, 4, (height, width, 1)).astype(np.float32)
    return np.clip(big + grain, 0, 255).astype(np.uint8)


def write_photos(folder: Path, count: int, width: int, height: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(synthetic_photo(width, height, seed=i)).save(folder / f"photo{i:03d}.jpg", quality=90)
    return folder


def onnx_predictor(model, folder: Path) -> OnnxPredictor:
    """The model's ONNX form, as the store keeps it, run by OpenCV."""
    path = write_onnx(model, folder / "model.onnx")
    return OnnxPredictor(path.read_bytes(), name="bench", render_size=model.config.size)


def _run_pipeline(folder: Path, out: Path, model: Predictor, *, batch_size: int) -> int:
    jobs = plan_jobs([str(folder)], output=None, output_dir=out, recursive=False, stdin_bytes=bytes)
    results = list(colorize_jobs(jobs, model, batch_size=batch_size, overwrite=True))
    failed = [result.error for result in results if not result.ok]
    if failed:
        raise RuntimeError(f"colorize failed during the benchmark: {failed[0]}")
    return len(results)


def model_only_rate(model: Predictor, shape: tuple[int, int], *, batch_size: int, repeats: int) -> float:
    """images/s of the engine alone on the padded render shape colorize uses."""
    batch = np.random.default_rng(0).random((batch_size, 1, *padded_shape(shape)), dtype=np.float32)
    best = float("inf")
    for count in thread_counts():  # the ceiling is the model's best rate on this machine
        with threads(count):
            best = min(best, best_seconds(lambda: model.predict(batch), repeats=repeats))
    return batch_size / best


def stage_seconds(path: Path, model: Predictor, *, repeats: int) -> dict[str, float]:
    """Seconds per image of each pipeline stage, one image, in this thread (where time goes)."""
    l_full = images.read_lightness(path).l
    shape = render_shape(*l_full.shape, model.render_size)
    net_in = network_input(l_full, shape)[None]
    ab_small = model.predict(net_in)[0]
    ab_full = upsample_ab(ab_small, shape, l_full.shape)
    rgb8 = join_to_rgb(l_full, ab_full, )
    image = Image.fromarray(rgb8)

    def encode():
        with tempfile.TemporaryFile() as handle:
            image.save(handle, format="JPEG", quality=95)

    stages = {
        "decode + L (read_lightness)": lambda: images.read_lightness(path),
        "network_input": lambda: network_input(l_full, shape),
        "model (batch 1)": lambda: model.predict(net_in),
        "upsample_ab": lambda: upsample_ab(ab_small, shape, l_full.shape),
        "join_to_rgb (lab_to_srgb8)": lambda: join_to_rgb(l_full, ab_full, ),
        "encode JPEG": encode,
    }
    return {name: best_seconds(work, repeats=repeats) for name, work in stages.items()}


def pipeline_rows(*, quick: bool) -> list[Row]:
    network = random_model(16)
    repeats = 1 if quick else 2
    batch_size = 8
    cases = [("512x512", 512, 512, 4 if quick else 32, True)]
    if not quick:
        cases.append(("4000x3000", 4000, 3000, 4, False))
    rows = []
    with tempfile.TemporaryDirectory(prefix="portraitcolor-bench-") as scratch:
        engines = {"onnx": onnx_predictor(network, Path(scratch)), "torch": TorchPredictor(network)}
        for (label, width, height, count, has_target), (engine, model) in itertools.product(cases, engines.items()):
            folder = write_photos(Path(scratch) / label, count, width, height)
            out = Path(scratch) / f"{label}-out"
            pipeline = count / best_seconds(lambda: _run_pipeline(folder, out, model, batch_size=batch_size), repeats=repeats, warmup=0 if quick else 1)  # noqa: B023 - timed at once
            shape = render_shape(height, width, model.render_size)
            alone = model_only_rate(model, shape, batch_size=min(batch_size, count), repeats=repeats + 2)
            stages = stage_seconds(next(folder.glob("*.jpg")), model, repeats=repeats)
            ratio = pipeline / alone
            rows.append(Row(
                group="colorize", figure=f"end to end {label} ({count} JPEGs, w16, batch {batch_size}, {engine})", value=pipeline, unit="images/s",
                ceiling=alone, ceiling_label=f"images/s model only @{padded_shape(shape)[0]}x{padded_shape(shape)[1]}", ratio=ratio,
                target=f">= {PIPELINE_TARGET:.0%} of model only" if has_target else "",
                met=(ratio >= PIPELINE_TARGET) if has_target else None,
                note="stages ms/image: " + ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in stages.items()),
                details={"stage_seconds": stages, "count": count, "batch_size": batch_size},
            ))
    return rows


# ---- one photo -------------------------------------------------------------------------


def _decode_encode_seconds(path: Path, *, repeats: int) -> float:
    """The floor for one photo: Pillow decoding it and encoding a colour JPEG of its size."""
    def work():
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        with tempfile.TemporaryFile() as handle:
            rgb.save(handle, format="JPEG", quality=95)

    return best_seconds(work, repeats=repeats)


def _compile_package() -> None:
    """Bytecode for every module, as `pip install` writes it: a source checkout run with
    PYTHONDONTWRITEBYTECODE (or on a read-only file system) would otherwise compile each
    module again in every fresh process, a cost no installed copy pays."""
    compileall.compile_dir(Path(portraitcolor.__file__).parent, quiet=1)


def one_photo_rows(*, quick: bool) -> list[Row]:
    """The wait for one photo: the CLI in a fresh process (the packaged model, both engines)
    against importing the image libraries plus decoding and encoding the same photo; and a
    camera-sized photo in process against decoding and encoding it."""
    repeats = 2 if quick else 5
    rows = []
    _compile_package()
    with tempfile.TemporaryDirectory(prefix="portraitcolor-bench-") as scratch:
        folder = Path(scratch)
        env = {"PORTRAITCOLOR_HOME": str(folder / "store")}  # an empty store: the packaged model
        small = folder / "small.jpg"
        Image.fromarray(synthetic_photo(512, 640, seed=3)).convert("L").save(small, quality=90)
        floor = _wall_seconds([sys.executable, "-c", "import cv2, numpy, PIL.Image"], repeats=repeats) + _decode_encode_seconds(small, repeats=repeats)
        for device in ("cpu", "torch"):
            command = [sys.executable, "-m", "portraitcolor", "colorize", str(small), "-o", str(folder / "out.jpg"), "--overwrite", "--device", device]
            wall = _wall_seconds(command, repeats=repeats, env=env)
            rows.append(Row(
                group="colorize", figure=f"one 512x640 photo, fresh process (--device {device})", value=wall * 1e3, unit="ms",
                ceiling=floor * 1e3, ceiling_label="ms import cv2+numpy+PIL, decode, encode", ratio=wall / floor,
                target=f"<= {ONE_PHOTO_TARGET}x" if device == "cpu" else "", met=(wall / floor <= ONE_PHOTO_TARGET) if device == "cpu" else None,
                note="ratio is ours / floor (lower is better)",
            ))
        if not quick:
            big = folder / "big.jpg"
            Image.fromarray(synthetic_photo(4000, 3000, seed=4)).save(big, quality=90)
            ours, floor = _big_photo_seconds_in_a_clean_process(big)
            rows.append(Row(
                group="colorize", figure="one 4000x3000 photo in process (onnx, w16)", value=ours, unit="s",
                ceiling=floor, ceiling_label="s decode + encode", ratio=ours / floor,
                target=f"<= {BIG_PHOTO_TARGET}x", met=ours / floor <= BIG_PHOTO_TARGET, note="ratio is ours / floor (lower is better)",
            ))
    return rows


def _big_photo_seconds_in_a_clean_process(big: Path) -> tuple[float, float]:
    """colorize's seconds for one large photo in process (model loaded), and the floor, both
    timed in a process of their own: in the process that had just run the pipeline rows
    (torch's and OpenCV's threads, a grown heap) the same photo took 1.5-2x as long."""
    script = f"from bench.colorize_bench import big_photo_seconds; print(*big_photo_seconds({str(big)!r}))"
    output = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=True).stdout
    ours, floor = map(float, output.split())
    return ours, floor


def big_photo_seconds(path: str) -> tuple[float, float]:
    folder = Path(path).parent
    model = onnx_predictor(random_model(16), folder)
    jobs = lambda: plan_jobs([path], output=None, output_dir=folder / "out", recursive=False, stdin_bytes=bytes)  # noqa: E731
    ours = best_seconds(lambda: list(colorize_jobs(jobs(), model, overwrite=True)), repeats=3)
    return ours, _decode_encode_seconds(Path(path), repeats=3)


# ---- peak memory ---------------------------------------------------------------------

_RSS_PROBE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_mb(arguments: list[str], *, env: dict) -> float:
    """Peak RSS of a fresh `python -m portraitcolor ...` (a wrapper isolates it from our own children)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    probe = subprocess.run([sys.executable, "-c", _RSS_PROBE, sys.executable, "-m", "portraitcolor", *arguments], env=env, capture_output=True, text=True, check=True)
    return int(probe.stdout.split()[-1]) / 1024  # kilobytes on Linux


def rss_rows(*, quick: bool) -> list[Row]:
    width, height = (1200, 800) if quick else (6000, 4000)
    with tempfile.TemporaryDirectory(prefix="portraitcolor-bench-") as scratch:
        folder = Path(scratch)
        model_path = folder / "w16.safetensors"
        save_weights(random_model(16), model_path)
        env = {"PORTRAITCOLOR_HOME": str(folder / "store")}  # stored: the CPU runs its ONNX form
        subprocess.run([sys.executable, "-m", "portraitcolor", "models", "import", str(model_path), "--name", "w16"],
                       env={**os.environ, "PYTHONPATH": str(REPO), **env}, check=True, capture_output=True)
        big = folder / "big.jpg"
        Image.fromarray(synthetic_photo(width, height, seed=1)).save(big, quality=90)
        tiny = folder / "tiny.jpg"
        Image.fromarray(synthetic_photo(128, 128, seed=2)).save(tiny, quality=90)
        peak = _peak_rss_mb(["colorize", str(big), "-o", str(folder / "big_out.jpg"), "--model", "w16", "--device", "cpu"], env=env)
        floor = _peak_rss_mb(["colorize", str(tiny), "-o", str(folder / "tiny_out.jpg"), "--model", "w16", "--device", "cpu"], env=env)
    return [Row(
        group="colorize", figure=f"peak RSS, one {width}x{height} JPEG", value=peak, unit="MB",
        ceiling=floor, ceiling_label="MB for a 128x128 JPEG (libraries + model)", ratio=peak / floor,
        target=f"< {RSS_LIMIT_MB} MB", met=peak < RSS_LIMIT_MB,
        note=f"{width * height * 4 / 2**20:.0f} MB per float32 plane",
    )]


# ---- start-up ----------------------------------------------------------------------


def _wall_seconds(command: list[str], *, repeats: int, env: dict | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}

    def run():
        subprocess.run(command, env=env, capture_output=True, check=True)

    return best_seconds(run, repeats=repeats)


def help_rows(*, quick: bool) -> list[Row]:
    repeats = 2 if quick else 5
    _compile_package()
    ours = _wall_seconds([sys.executable, "-m", "portraitcolor", "--help"], repeats=repeats)
    typer_only = _wall_seconds([sys.executable, "-c", "import typer"], repeats=repeats)
    ratio = ours / typer_only
    return [Row(
        group="CLI", figure="`portraitcolor --help` wall time", value=ours * 1e3, unit="ms",
        ceiling=typer_only * 1e3, ceiling_label="ms `python -c 'import typer'`", ratio=ratio,
        target="close to typer: <= 1.5x", met=ratio <= 1.5, note="ratio is ours / typer (lower is better)",
    )]

