"""The network as one function, L in, ab out, on one of two engines.

On the CPU a stored model runs in its ONNX form through OpenCV's DNN module: no torch is
imported, which is most of the wait for one photo (importing torch alone takes longer than
decoding, colouring and encoding a 12-megapixel photo). On a GPU, with `--device torch`,
and for a weights file outside the store, the torch network runs (torch_inference.py).
Both engines give the same colours to well within one CIELAB unit (a test holds them to it).
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from . import lab
from .errors import PortraitcolorError
from .hints import HINT_CHANNELS, HintError

# Four halvings between the U-Net's five encoder stages: input sides must divide by this.
SIDE_MULTIPLE = 16


class InferenceError(PortraitcolorError):
    pass


class Predictor(Protocol):
    """What colorize and evaluate need of a model."""

    name: str
    render_size: int  # the training size: colorize's default short side for the network
    takes_hints: bool  # trained with hints (train --hints)

    def predict(self, batch: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        """(B, 1, h, w) L in 0..1, sides multiples of 16, and for a hint-aware model optional
        (B, HINT_CHANNELS, h, w) hints (hints.py) -> (B, 2, h, w) a, b in CIELAB units."""
        ...

    def running(self, *, io_threads: int) -> contextlib.AbstractContextManager:
        """Held while batches run beside `io_threads` decoding and encoding threads."""
        ...


class OnnxPredictor:
    """A model's ONNX form run by OpenCV's DNN module on the CPU."""

    def __init__(self, onnx_bytes: bytes, *, name: str, render_size: int, takes_hints: bool = False) -> None:
        import cv2

        self.name, self.render_size, self.takes_hints = name, render_size, takes_hints
        try:
            self._net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
        except cv2.error as error:
            raise InferenceError(f"model {name}: OpenCV cannot read its ONNX form ({lab.first_line(error)})") from None

    def predict(self, batch: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        self._net.setInput(network_inputs(self, batch, hints))
        return lab.ab_from_net(self._net.forward())

    @contextlib.contextmanager
    def running(self, *, io_threads: int) -> Iterator[None]:
        yield  # OpenCV shares one thread pool between the network and the I/O threads' work


def uses_torch(device: str | None) -> bool:
    """Whether `--device` asks for the torch engine; 'auto' does where a GPU is present."""
    spec = (device or "auto").lower()
    if spec == "auto":
        return accelerator_present()
    return spec != "cpu"


def accelerator_present() -> bool:
    """Whether torch would find a GPU here, judged without importing torch: the NVIDIA or
    ROCm device nodes on Linux (and WSL's), Apple silicon's Metal on macOS."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))


def open_predictor(spec: str | os.PathLike | None = None, *, device: str = "auto") -> Predictor:
    """The model named by `spec` (a store name, a .safetensors path, None: the default) on the
    engine `device` asks for. A stored model on the CPU runs without torch."""
    from .weights import WeightsStore, is_path_spec

    on_torch = uses_torch(device)
    if not on_torch and not (spec is not None and is_path_spec(spec)):
        form = WeightsStore().onnx_form(None if spec is None else str(spec))
        if form is not None:
            return OnnxPredictor(form.read_checked(), name=form.name, render_size=form.render_size, takes_hints=form.takes_hints)
    # A weights file outside the store, a GPU, or a packaged model without its ONNX form: torch.
    # Imported only here: it costs a second of start-up that the CPU path never pays.
    from .torch_inference import TorchPredictor

    return TorchPredictor.load(spec, device=device if on_torch else "cpu")


def as_predictor(model) -> Predictor:
    """A Predictor as is; a torch UNet (the Python API's argument) wrapped on its device."""
    if hasattr(model, "predict") and hasattr(model, "render_size"):
        return model
    from .torch_inference import TorchPredictor

    return TorchPredictor(model)


def network_inputs(predictor: Predictor, batch: np.ndarray, hints: np.ndarray | None) -> np.ndarray:
    """The array a model's network takes: L alone, or for a hint-aware model L and the hint
    channels (zeros: no hints)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if not predictor.takes_hints:
        if hints is not None:
            check_takes_hints(predictor)
        return batch
    if hints is None:
        hints = np.zeros((batch.shape[0], HINT_CHANNELS, *batch.shape[2:]), np.float32)
    return np.concatenate([batch, hints.astype(np.float32)], axis=1)


def check_takes_hints(predictor: Predictor) -> None:
    """A clear refusal before any work when hints are given to a model trained without them."""
    if not predictor.takes_hints:
        raise HintError(
            f"model {predictor.name} takes no hints: it was trained without --hints "
            "(train one with `portraitcolor train SET.h5 --hints --init builtin`, or pick one with -m)"
        )
