"""Choosing the torch device and its execution settings, shared by train, evaluate and colorize."""

from __future__ import annotations

import contextlib

from .errors import PortraitcolorError


class DeviceError(PortraitcolorError, ValueError):
    pass


def pick_device(spec: str = "auto"):
    """'auto' (or 'torch') -> CUDA, then Apple MPS, then CPU; or an explicit 'cpu', 'cuda',
    'cuda:N', 'mps'."""
    import torch

    spec = (spec or "auto").lower()
    if spec in ("auto", "torch"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for but no CUDA device is available")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was asked for but is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unsupported device {spec!r}")
    return device


def autocast(device):
    """bf16 autocast on CUDA (where the card supports it); full precision elsewhere."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model, device):
    """Move a model to the device; channels_last on CUDA, where it speeds up convolutions."""
    import torch

    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    return model


def training_precision(device) -> str:
    """'bf16' on CUDA cards that have it, 'fp16' (with a GradScaler) on older ones, else 'fp32'."""
    import torch

    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast_as(device, precision: str):
    """An autocast context for a precision from training_precision."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
