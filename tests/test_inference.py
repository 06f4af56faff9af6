"""The two inference engines: a stored model's ONNX form through OpenCV (the CPU, no torch)
and the torch network. They must agree, the ONNX form must be as trustworthy as the weights
(written at store time, sha256-checked on load), and CPU colorize must never import torch."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, portrait_array, run_cli
from PIL import Image

from portraitcolor import images, lab
from portraitcolor.config import EvaluateOptions
from portraitcolor.inference import OnnxPredictor, colorize_picture, network_input, open_predictor, render_shape, uses_torch
from portraitcolor.store import WeightsStore
from portraitcolor.torch_inference import TorchPredictor, load_model
from portraitcolor.weights import WeightsError

# The bound for the two engines on photos, in CIELAB a/b units.
AB_AGREEMENT = 0.5


def _photos(count: int = 3) -> list[images.Picture]:
    sizes = [(96, 80), (160, 224), (301, 197)]
    return [images.Picture(rgb=portrait_array(*sizes[i % 3], seed=i).astype(np.float32) / 255.0) for i in range(count)]


def test_onnx_and_torch_engines_agree_on_the_packaged_model():
    onnx, torch_model = open_predictor(None, device="cpu"), TorchPredictor(load_model(None))
    assert isinstance(onnx, OnnxPredictor) and onnx.render_size == torch_model.render_size
    for picture in _photos():
        l_full = lab.rgb_to_l(picture.rgb)
        batch = network_input(l_full, render_shape(*l_full.shape, onnx.render_size))[None]
        assert np.abs(onnx.predict(batch) - torch_model.predict(batch)).max() < AB_AGREEMENT
        # and the full-resolution colours that reach the file
        by_onnx = lab.rgb_to_lab(colorize_picture(onnx, picture))[..., 1:]
        by_torch = lab.rgb_to_lab(colorize_picture(torch_model, picture))[..., 1:]
        assert np.abs(by_onnx - by_torch).max() < AB_AGREEMENT


def test_cpu_colorize_never_imports_torch(tmp_path):
    photo = tmp_path / "old.jpg"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    code = (
        "import sys\nfrom portraitcolor.cli import main\n"
        f"sys.argv = ['portraitcolor', 'colorize', {str(photo)!r}, '--device', 'cpu']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch imported by CPU colorize'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "old_color.jpg").exists()


@pytest.mark.parametrize("device, expected", [("cpu", False), ("CPU", False), ("torch", True), ("cuda", True), ("cuda:1", True), ("mps", True)])
def test_device_chooses_the_engine(device, expected):
    assert uses_torch(device) is expected


def test_imported_model_gets_a_checked_onnx_form(tmp_path, tiny_model_file):
    run_cli("models", "import", str(tiny_model_file), "--name", "tiny", check=True)
    store = WeightsStore()
    entry = json.loads(store.index_path.read_text())["models"]["tiny"]
    assert entry["onnx"] == "tiny.onnx" and (store.models_dir / "tiny.onnx").exists()
    predictor = open_predictor("tiny", device="cpu")
    reference = TorchPredictor(load_model("tiny"))
    batch = np.random.default_rng(0).random((2, 1, 32, 48), dtype=np.float32)
    assert np.abs(predictor.predict(batch) - reference.predict(batch)).max() < AB_AGREEMENT

    # Exported for other runtimes: a file OpenCV (and onnxruntime) reads as it is.
    run_cli("models", "export", "tiny", str(tmp_path / "tiny.onnx"), check=True)
    net = cv2.dnn.readNetFromONNX(str(tmp_path / "tiny.onnx"))
    net.setInput(batch)
    np.testing.assert_allclose(lab.ab_from_net(net.forward()), predictor.predict(batch), atol=1e-4)

    # Removed with its model.
    run_cli("models", "remove", "tiny", check=True)
    assert not list(store.models_dir.iterdir())


def test_a_changed_onnx_form_is_refused_with_one_line(tmp_path, tiny_model_file):
    run_cli("models", "import", str(tiny_model_file), "--name", "tiny", check=True)
    onnx = WeightsStore().models_dir / "tiny.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    photo = tmp_path / "a.png"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    result = run_cli("colorize", str(photo), "-m", "tiny", "--device", "cpu")
    assert result.returncode != 0
    message = result.stderr.decode().strip()
    assert len(message.splitlines()) == 1 and "tiny.onnx" in message and "changed since it was stored" in message
    assert not (tmp_path / "a_color.png").exists()


def test_a_model_stored_before_onnx_forms_gains_one_on_first_use(tmp_path, tiny_model_file):
    store = WeightsStore()
    store.add_file(tiny_model_file, "old")
    index = json.loads(store.index_path.read_text())
    entry = index["models"]["old"]
    (store.models_dir / entry.pop("onnx")).unlink()
    entry.pop("onnx_sha256")
    store.index_path.write_text(json.dumps(index))  # the layout of a store from before

    photo = tmp_path / "a.png"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    run_cli("colorize", str(photo), "-m", "old", "--device", "cpu", check=True)
    entry = json.loads(store.index_path.read_text())["models"]["old"]
    assert entry["onnx"] == "old.onnx" and len(entry["onnx_sha256"]) == 64
    assert isinstance(open_predictor("old", device="cpu"), OnnxPredictor)


def test_a_weights_file_outside_the_store_runs_on_torch(tiny_model_file):
    assert isinstance(open_predictor(str(tiny_model_file), device="cpu"), TorchPredictor)


def test_tampered_index_onnx_entry_is_refused(tiny_model_file):
    store = WeightsStore()
    store.add_file(tiny_model_file, "tiny")
    index = json.loads(store.index_path.read_text())
    index["models"]["tiny"]["onnx"] = "../../elsewhere.onnx"
    store.index_path.write_text(json.dumps(index))
    with pytest.raises(WeightsError, match="not a file inside the store"):
        open_predictor("tiny", device="cpu")


def test_packaged_onnx_form_matches_the_packaged_weights():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "build_packaged_onnx.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_evaluate_measures_the_engine_colorize_uses(tmp_path, tiny_model_file):
    """evaluate on the CPU runs a stored model's ONNX form, as colorize does, and its figures
    equal the torch engine's to well within the engines' bound."""
    from portraitcolor import evaluate as core

    WeightsStore().add_file(tiny_model_file, "tiny")
    for i in range(3):
        Image.fromarray(portrait_array(64, 48, seed=i)).save(tmp_path / f"p{i}.png")
    models = core.load_models(["tiny"])
    assert isinstance(core.engines_for(models, "cpu")["tiny"], OnnxPredictor)
    assert isinstance(core.engines_for(models, "torch")["tiny"], TorchPredictor)
    by_engine = {
        device: core.evaluate([tmp_path], models=models, options=EvaluateOptions(device=device)).methods["tiny"]["ab_mae"]
        for device in ("cpu", "torch")
    }
    assert np.abs(np.asarray(by_engine["cpu"]) - np.asarray(by_engine["torch"])).max() < 0.05


@pytest.mark.parametrize("shape, size, expected", [((4000, 3000), 128, (171, 128)), ((128, 128), 128, (128, 128)), ((50, 200), 64, (64, 256))])
def test_render_shape_keeps_aspect(shape, size, expected):
    assert render_shape(*shape, size) == expected


@pytest.mark.parametrize("height, width", [(3000, 4000), (4032, 3024), (2701, 1999), (1200, 1602), (700, 513), (128, 128)])
def test_network_input_of_a_large_photo_is_the_area_resize(height, width):
    """A large photo may be shrunk in two steps (a whole factor first, for speed); the
    network must see what one area resize of the whole photo gives, to a fraction of an L
    unit."""
    small = portrait_array(max(64, height // 8), max(64, width // 8), seed=3)
    grain = np.random.default_rng(3).normal(0, 4, (height, width, 1))
    rgb = np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) + grain, 0, 255).astype(np.uint8)
    l_full = lab.lightness_of_8bit(rgb)
    shape = render_shape(height, width, 128)
    direct = lab.l_to_net(cv2.resize(l_full, (shape[1], shape[0]), interpolation=cv2.INTER_AREA))
    fed = network_input(l_full, shape)[0, : shape[0], : shape[1]]
    difference = np.abs(fed - direct) * lab.L_MAX  # in L units
    assert difference.max() < 0.5 and difference.mean() < 0.05
