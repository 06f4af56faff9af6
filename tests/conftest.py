"""Shared test helpers: synthetic portraits on disk and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def portrait_array(height: int = 96, width: int = 80, *, seed: int = 0, gray: bool = False) -> np.ndarray:
    """A tiny synthetic colour portrait (uint8 RGB): tinted background, skin-toned
    face ellipse, dark hair cap, red lips. Different seeds vary tones and placement."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = rng.uniform(40, 200, 3)
    image = np.empty((height, width, 3), np.float32)
    image[:] = background
    image += (yy / height)[..., None] * rng.uniform(-30, 30, 3)  # a gentle gradient
    cy, cx = height * rng.uniform(0.45, 0.55), width * rng.uniform(0.45, 0.55)
    ry, rx = height * 0.3, width * 0.25
    face = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    skin = np.array([rng.uniform(150, 230), rng.uniform(100, 170), rng.uniform(70, 130)])
    image[face] = skin
    hair = (((yy - (cy - ry * 0.6)) / (ry * 0.6)) ** 2 + ((xx - cx) / (rx * 1.1)) ** 2 <= 1) & (yy < cy - ry * 0.4)
    image[hair] = rng.uniform(20, 90, 3)
    lips = (((yy - (cy + ry * 0.55)) / (ry * 0.08)) ** 2 + ((xx - cx) / (rx * 0.35)) ** 2) <= 1
    image[lips] = [170, 40, 50]
    image += rng.normal(0, 3, image.shape)  # sensor noise, so nothing is perfectly flat
    image = np.clip(image, 0, 255).astype(np.uint8)
    if gray:
        image = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
    return image


def write_portrait(path: Path, height: int = 96, width: int = 80, *, seed: int = 0, gray: bool = False, **save_options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(portrait_array(height, width, seed=seed, gray=gray))
    if gray:
        image = image.convert("L")
    image.save(path, **save_options)
    return path


@pytest.fixture
def portrait_dir(tmp_path):
    """A folder of 12 small colour portraits (JPEG and PNG, nested one level)."""
    root = tmp_path / "photos"
    for i in range(12):
        suffix = ".jpg" if i % 2 else ".png"
        write_portrait(root / ("sub" if i % 3 == 0 else "") / f"face{i:02d}{suffix}", seed=i)
    return root


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test gets its own empty weights store, never the user's."""
    home = tmp_path / "store"
    monkeypatch.setenv("PORTRAITCOLOR_HOME", str(home))
    return home


def run_cli(*args: str, input: bytes | None = None, env: dict | None = None, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run `python -m portraitcolor ARGS` as a real subprocess (bytes in, bytes out)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "portraitcolor", *args],
        input=input,
        capture_output=True,
        env=full_env,
        cwd=cwd,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"portraitcolor {' '.join(args)} exited {result.returncode}:\n{result.stderr.decode(errors='replace')}")
    return result


@pytest.fixture
def tiny_model_file(tmp_path):
    """A width-4 U-Net weights file with random (seeded) weights."""
    import torch

    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.weights import save_weights

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32))
    return save_weights(model, tmp_path / "tiny.safetensors", training={"note": "random weights for tests"})


def write_set(path: Path, images_rgb_uint8, splits) -> Path:
    """Write a set in dataset.py's layout from uint8 RGB images (N, S, S, 3) and split names.

    Sources are img00000.png, ...; the images go through lab.rgb_to_lab and lab.encode_lab8,
    as prepare stores them.
    """
    import json

    import h5py

    from portraitcolor import __version__, dataset
    from portraitcolor.lab import encode_lab8, rgb_to_lab

    images_rgb_uint8 = np.asarray(images_rgb_uint8, dtype=np.uint8)
    count, size = images_rgb_uint8.shape[0], images_rgb_uint8.shape[1]
    lab8 = encode_lab8(rgb_to_lab(images_rgb_uint8.astype(np.float32) / 255.0))
    codes = np.array([dataset.SPLIT_NAMES.index(split) for split in splits], dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(
            dataset.IMAGES,
            data=lab8,
            chunks=(min(dataset.CHUNK_IMAGES, max(count, 1)), size, size, 3),
            compression=dataset.COMPRESSION,
        )
        handle.create_dataset(
            dataset.SOURCES, data=[f"img{i:05d}.png" for i in range(count)], dtype=h5py.string_dtype("utf-8")
        )
        handle.create_dataset(dataset.SPLITS, data=codes)
        handle.attrs["format"] = dataset.FORMAT
        handle.attrs["format_version"] = dataset.FORMAT_VERSION
        handle.attrs["size"] = size
        handle.attrs["color_space"] = dataset.COLOR_SPACE
        handle.attrs["tool_version"] = __version__
        handle.attrs["options"] = json.dumps({})
        handle.attrs["filter_report"] = json.dumps({})
    return path


def pytest_collection_modifyitems(config, items):
    """Long fuzzing runs (@pytest.mark.fuzz) only when asked for with -m fuzz."""
    if "fuzz" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="long fuzzing run: use -m fuzz")
    for item in items:
        if "fuzz" in item.keywords:
            item.add_marker(skip)
