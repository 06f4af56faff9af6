"""The ONNX form of a model: what colorize runs on the CPU without torch (see inference.py).

Written when a model is stored (train, models import, the packaged model's recipe) and
checked there against the torch network on random inputs of two shapes, so a form that
OpenCV would run differently never reaches the store.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from .atomic import atomic_output
from .errors import PortraitcolorError
from .model import SIDE_MULTIPLE, UNet

# Opset 17: every operator of the U-Net, read by OpenCV 4.9 and later and by onnxruntime.
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "l", "ab"
# Sigmoid outputs (0..1) may differ by this much: 0.0005 x 255 is 0.13 CIELAB units.
AGREEMENT = 5e-4
# Checked at two shapes, one square and one not, each a multiple of the network's stride.
_CHECK_SHAPES = ((1, 64, 64), (2, 48, 80))  # batch, height, width
# torch's exporter keeps global state: two threads exporting at once fail (parallel imports).
_EXPORTING = threading.Lock()


class OnnxExportError(PortraitcolorError):
    pass


def write_onnx(model: UNet, path: str | os.PathLike) -> Path:
    """Export the network (batch, height and width free) to `path`, atomically, after
    checking that OpenCV's DNN computes what torch computes."""
    path = Path(path)
    model = model.eval().to("cpu")
    with atomic_output(path) as temporary:
        example = torch.zeros(1, model.config.in_channels, SIDE_MULTIPLE * 4, SIDE_MULTIPLE * 4)
        free = {0: "batch", 2: "height", 3: "width"}
        with _EXPORTING, warnings.catch_warnings():  # the exporter's notes on tracing, for developers
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(temporary), dynamo=False, opset_version=OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: free, OUTPUT_NAME: free},
            )
        check_agreement(temporary.read_bytes(), model)
    return path


def check_agreement(onnx_bytes: bytes, model: UNet) -> None:
    """Raise OnnxExportError unless OpenCV runs the ONNX bytes as torch runs `model`."""
    net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
    rng = np.random.default_rng(0)
    for batch_size, height, width in _CHECK_SHAPES:
        shape = (batch_size, model.config.in_channels, height, width)
        batch = rng.random(shape, dtype=np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(batch)).numpy()
        net.setInput(batch)
        got = net.forward()
        difference = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
        if not difference <= AGREEMENT:
            raise OnnxExportError(
                f"the ONNX form disagrees with the network by {difference:.2g} at input shape {shape} (allowed {AGREEMENT})"
            )
