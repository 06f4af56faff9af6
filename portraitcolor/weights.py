"""The weights file: safetensors tensors with portraitcolor's JSON metadata in the header.

One file is one model: its tensors, and under the "portraitcolor" metadata key the format,
the model config, the training summary, the tool version and the date. Weights are never
unpickled: safetensors holds only raw tensors, and the header is checked (size, JSON metadata,
config fields, tensor names, shapes and dtypes) before any tensor reaches the network. The
models packaged inside portraitcolor (PACKAGED) are such files, each with its ONNX form beside it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
from pathlib import Path

from . import __version__
from .atomic import atomic_output
from .errors import PortraitcolorError, first_line

# torch is imported inside the functions that build or save a network, not here: the store
# reads headers on CPU colorize's path, which must never import torch.

METADATA_KEY = "portraitcolor"
WEIGHTS_FORMAT = "portraitcolor-weights/1"
BUILTIN_NAME = "builtin"
# The models inside the package, by their reserved names. Beside each: NAME.onnx and
# NAME.onnx.sha256, its ONNX form and that file's sha256 (scripts/build_packaged_onnx.py).
PACKAGED = {
    BUILTIN_NAME: Path(__file__).parent / "data" / "default.safetensors",
}
# A header larger than this is not one we wrote (ours are a few kB): refuse before reading it.
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_FLOAT_DTYPES = {"F16", "BF16", "F32"}
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "I64": 8}


class WeightsError(PortraitcolorError):
    """A weights file or store problem, with a one-line reason for humans."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_metadata(config: dict, *, training: dict | None = None) -> dict:
    return {
        "format": WEIGHTS_FORMAT,
        "config": config,
        "tool_version": __version__,
        "training": training or {},
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_weights(model, path: str | os.PathLike, *, training: dict | None = None, half: bool = False) -> Path:
    """Write the model's state (optionally as float16) and its metadata, atomically."""
    import torch
    from safetensors.torch import save_file

    state = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        state[key] = tensor
    problem = unusable_values(state)
    if problem:
        raise WeightsError(f"{path}: not saved, the weights cannot work ({problem})")
    metadata = build_metadata(model.config.to_dict(), training=training)
    path = Path(path)
    with atomic_output(path) as temporary:
        try:
            save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(metadata)})
        except OSError:
            raise
        except Exception as error:  # noqa: BLE001 - safetensors reports a full disk as its own error type
            raise WeightsError(f"{path}: cannot write the weights ({first_line(error)})") from None
    return path


# How pickles (protocol 2 and later) and torch.save's zip archives begin. Looked for only
# after a file fails to read as safetensors, to name what it is in the refusal: a valid
# safetensors file whose header length is 128 modulo 256 also begins with 0x80.
_PICKLE_MAGICS = (b"\x80", b"PK\x03\x04")


def read_header(path: str | os.PathLike) -> tuple[dict, dict]:
    """Parse and check a safetensors header without loading tensors -> (tensors, metadata)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            header_length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
            plausible = header_length is not None and header_length <= _MAX_HEADER_BYTES and 8 + header_length <= size
            raw = handle.read(header_length) if plausible else b""
    except OSError as error:
        raise WeightsError(f"{path}: cannot read ({error.strerror or error})") from None
    header = _json_object(raw) if raw[:1] == b"{" else None
    if header is None:
        raise WeightsError(f"{path}: {_not_safetensors_reason(prefix, plausible, raw)}")
    raw_metadata = header.pop("__metadata__", {}) or {}
    data_bytes = size - 8 - header_length
    _check_tensor_entries(path, header, data_bytes)
    return header, _parse_metadata(path, raw_metadata)


def _json_object(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _not_safetensors_reason(prefix: bytes, plausible: bool, raw: bytes) -> str:
    """Why a file that failed to read as safetensors was refused, naming what it looks like."""
    if prefix.startswith(_PICKLE_MAGICS):
        return "not a safetensors file (a pickle-based .pt/.pth file is refused)"
    if len(prefix) < 8:
        return "not a safetensors file (too short)"
    if not plausible:
        return "not a safetensors file, or truncated (bad header length)"
    if raw[:1] != b"{":
        return "not a safetensors file (the header is not JSON)"
    return "corrupt safetensors header"


def _check_tensor_entries(path: Path, header: dict, data_bytes: int) -> None:
    for name, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise WeightsError(f"{path}: corrupt safetensors header (entry {name!r})")
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(value) is int for value in offsets)):
            raise WeightsError(f"{path}: corrupt safetensors header (offsets of {name!r})")
        start, end = offsets
        if not (0 <= start <= end <= data_bytes):
            raise WeightsError(f"{path}: truncated weights file (tensor {name!r} lies past its end)")


def _parse_metadata(path: Path, raw_metadata: dict) -> dict:
    text = raw_metadata.get(METADATA_KEY) if isinstance(raw_metadata, dict) else None
    if text is None:
        raise WeightsError(f"{path}: not a portraitcolor weights file (no portraitcolor metadata)")
    try:
        metadata = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise WeightsError(f"{path}: corrupt portraitcolor metadata") from None
    if not isinstance(metadata, dict) or metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: unsupported weights format {metadata.get('format') if isinstance(metadata, dict) else None!r}")
    if not isinstance(metadata.get("config"), dict):
        raise WeightsError(f"{path}: weights metadata has no model config")
    return metadata


def load_weights_file(path: str | os.PathLike, *, expected_sha256: str | None = None):
    """Build the network a weights file describes and load its tensors -> UNet (eval mode)."""
    import torch
    from safetensors.torch import load_file

    from .model import UNet, UNetConfig

    path = Path(path)
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        raise WeightsError(
            f"{path}: file changed since it was added to the store (sha256 mismatch); import it again"
        )
    header, metadata = read_header(path)
    try:
        config = UNetConfig.from_dict(metadata["config"])
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: invalid model config ({error})") from None
    # The config's cost is checked from its numbers: a network on the meta device has every
    # shape and no storage, so a header claiming a huge width is refused before any allocation.
    with torch.device("meta"):
        expected = UNet(config).state_dict()
    _check_against_model(path, header, expected)
    try:
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{path}: corrupt weights file ({error})") from None
    problem = unusable_values(state)
    if problem:
        raise WeightsError(f"{path}: the weights cannot work ({problem})")
    model = UNet(config)
    state = {key: value.to(expected[key].dtype) for key, value in state.items()}
    model.load_state_dict(state, strict=True)
    model.metadata = metadata
    return model.eval().requires_grad_(False).to(torch.float32)


def _check_against_model(path: Path, header: dict, expected: dict) -> None:
    missing = sorted(set(expected) - set(header))
    extra = sorted(set(header) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{path}: tensors do not match the model config"
            f" ({len(missing)} missing, {len(extra)} unexpected, e.g. {(missing or extra)[0]!r})"
        )
    for name, tensor in expected.items():
        entry = header[name]
        if not isinstance(entry["shape"], list) or entry["shape"] != list(tensor.shape):
            raise WeightsError(f"{path}: tensor {name!r} has shape {entry['shape']}, expected {list(tensor.shape)}")
        wanted = _FLOAT_DTYPES if tensor.is_floating_point() else {"I64"}
        if entry["dtype"] not in wanted:
            raise WeightsError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, expected one of {sorted(wanted)}")
        start, end = entry["data_offsets"]
        if end - start != tensor.numel() * _DTYPE_BYTES[entry["dtype"]]:
            raise WeightsError(f"{path}: tensor {name!r} holds {end - start} bytes, not the {tensor.numel()} values of its shape")


def unusable_values(state: dict) -> str | None:
    """Why a state dict cannot colour anything (a NaN, an inf, a negative variance), or None.

    Such weights load without complaint and then write black images; a diverged training
    run (a learning rate of inf) produces exactly these.
    """
    import torch

    for name, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            return f"tensor {name!r} holds NaN or infinite values"
        if name.endswith("running_var") and bool((tensor < 0).any()):
            return f"tensor {name!r} holds a negative variance"
    return None


def packaged_onnx_paths(weights: Path) -> tuple[Path, Path]:
    """A packaged model's ONNX form and the file holding its sha256."""
    return weights.with_suffix(".onnx"), weights.with_suffix(".onnx.sha256")
