"""The torch engine of inference.py: GPUs, `--device torch`, and weights files outside the store."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch

from . import lab
from .device import autocast, pick_device, prepare_model
from .inference import network_inputs
from .model import UNet


def load_model(spec: str | os.PathLike | None = None, *, device: str = "cpu") -> UNet:
    """A ready-to-run torch network: a path, a store name, or None for the default one."""
    from .store import resolve_model

    return prepare_model(resolve_model(spec), pick_device(device))


def predict_ab(model: UNet, batch: np.ndarray, device: torch.device) -> np.ndarray:
    """(B, 1, h, w) network input -> (B, 2, h, w) a, b in CIELAB units (float32 numpy)."""
    tensor = torch.from_numpy(batch).to(device)
    if device.type == "cuda":
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(device):
        out = model(tensor)
    return lab.ab_from_net(out.float().cpu().numpy())


class TorchPredictor:
    """A torch UNet as an inference.Predictor."""

    def __init__(self, model: UNet, *, name: str | None = None) -> None:
        self.model, self.name, self.render_size = model, name or "model", model.config.size
        self.takes_hints = model.config.hints
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, spec: str | os.PathLike | None, *, device: str) -> "TorchPredictor":
        return cls(load_model(spec, device=device), name=None if spec is None else str(spec))

    def predict(self, batch: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        return predict_ab(self.model, network_inputs(self, batch, hints), self.device)

    @contextlib.contextmanager
    def running(self, *, io_threads: int) -> Iterator[None]:
        """On the CPU, leave the I/O threads their cores while the batch runs.

        Decoding and the LAB conversion run beside inference; torch's threads competing
        with them for the same cores stall at every barrier (bench/: 1 torch thread beside
        2 I/O threads colorized 512x512 photos 1.75x faster than 2 on a 2-core machine).
        """
        if self.device.type != "cpu":
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, previous - io_threads))
        try:
            yield
        finally:
            torch.set_num_threads(previous)
