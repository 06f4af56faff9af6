"""The weights store: safetensors files with JSON metadata, addressed by name.

Layout of the store (platformdirs.user_data_dir("portraitcolor"), or $PORTRAITCOLOR_HOME):

    models/NAME.safetensors   one file per model
    index.json                {"default": NAME, "models": {NAME: {"file", "sha256", "added"}}}

Weights are never unpickled: safetensors holds only raw tensors, and the header is
checked (size, JSON metadata, config fields, tensor names, shapes and dtypes) before any
tensor reaches the network. The sha256 recorded at import catches files changed later.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .atomic import atomic_output, atomic_write_text

STORE_ENV = "PORTRAITCOLOR_HOME"
METADATA_KEY = "portraitcolor"
WEIGHTS_FORMAT = "portraitcolor-weights/1"
PACKAGED_DEFAULT = Path(__file__).parent / "data" / "default.safetensors"
BUILTIN_NAME = "builtin"
# A header larger than this is not one we wrote (ours are a few kB): refuse before reading it.
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FLOAT_DTYPES = {"F16", "BF16", "F32"}

NO_MODEL_HELP = (
    "no colorization model is installed. Train one with "
    "`portraitcolor prepare PHOTOS/ -o faces.h5 && portraitcolor train faces.h5 --set-default`, "
    "or import a weights file with `portraitcolor models import FILE.safetensors --default`."
)


class WeightsError(Exception):
    """A weights file or store problem, with a one-line reason for humans."""


class NoModelError(WeightsError):
    pass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    path: Path
    sha256: str | None
    added: str | None
    is_default: bool
    metadata: dict = field(default_factory=dict, compare=False)


def store_root() -> Path:
    override = os.environ.get(STORE_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # only here: the env override must work without touching it

    return Path(platformdirs.user_data_dir("portraitcolor"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- single files ----------------------------------------------------------------


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
    metadata = build_metadata(model.config.to_dict(), training=training)
    path = Path(path)
    with atomic_output(path) as temporary:
        save_file(state, str(temporary), metadata={METADATA_KEY: json.dumps(metadata)})
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


    raw_metadata = header.pop("__metadata__", {}) or {}
    data_bytes = size - 8 - header_length
    _check_tensor_entries(path, header, data_bytes)
    return header, _parse_metadata(path, raw_metadata)


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
    model = UNet(config)
    _check_against_model(path, header, model.state_dict())
    try:
        state = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{path}: corrupt weights file ({error})") from None
    state = {key: value.to(model.state_dict()[key].dtype) for key, value in state.items()}
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


# ---- the store -------------------------------------------------------------------


def check_name(name: str) -> str:
    if not _NAME_PATTERN.match(name or "") or name == BUILTIN_NAME:
        raise WeightsError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-'"
            f" (and not {BUILTIN_NAME!r}, the packaged model)"
        )
    return name


class WeightsStore:
    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else store_root()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def _read_index(self) -> dict:
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"default": None, "models": {}}
        except (OSError, json.JSONDecodeError) as error:
            raise WeightsError(f"{self.index_path}: unreadable store index ({error})") from None
        if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
            raise WeightsError(f"{self.index_path}: corrupt store index")
        return index

    def _write_index(self, index: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")

    def default_name(self) -> str | None:
        return self._read_index().get("default")

    def names(self) -> list[str]:
        return sorted(self._read_index()["models"])

    def info(self, name: str) -> ModelInfo:
        if name == BUILTIN_NAME:
            return self._builtin_info()
        index = self._read_index()
        entry = index["models"].get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise WeightsError(f"no model named {name!r} in the store {self.root} (models: {known})")
        path = self.models_dir / entry["file"]
        _, metadata = read_header(path)
        return ModelInfo(name, path, entry.get("sha256"), entry.get("added"), index.get("default") == name, metadata)

    def _builtin_info(self) -> ModelInfo:
        if not PACKAGED_DEFAULT.exists():
            raise NoModelError(NO_MODEL_HELP)
        _, metadata = read_header(PACKAGED_DEFAULT)
        return ModelInfo(BUILTIN_NAME, PACKAGED_DEFAULT, None, None, self.default_name() is None, metadata)

    def list(self) -> list[ModelInfo]:
        infos = []
        if PACKAGED_DEFAULT.exists():
            infos.append(self._builtin_info())
        for name in self.names():
            try:
                infos.append(self.info(name))
            except WeightsError as error:  # list the others; say what is wrong with this one
                entry = self._read_index()["models"][name]
                infos.append(ModelInfo(name, self.models_dir / entry["file"], entry.get("sha256"), None, False, {"error": str(error)}))
        return infos

    def add_file(self, source: str | os.PathLike, name: str, *, set_default: bool = False, replace: bool = False) -> ModelInfo:
        """Copy a weights file into the store (after checking it fully loads) under `name`."""
        check_name(name)
        source = Path(source)
        load_weights_file(source)  # refuse anything that would not load later
        index = self._read_index()
        if name in index["models"] and not replace:
            raise WeightsError(f"a model named {name!r} already exists (remove it first, or pass --replace)")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / f"{name}.safetensors"
        with atomic_output(target) as temporary:
            temporary.write_bytes(source.read_bytes())
        index["models"][name] = {
            "file": target.name,
            "sha256": sha256_of(target),
            "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        # The default changes only when asked: a new model, even the first in the store, may
        # be worse than the packaged one, and would silently colour every later photo.
        if set_default:
            index["default"] = name
        self._write_index(index)
        return self.info(name)

    def save_model(self, model, name: str, *, training: dict | None = None, set_default: bool = False, half: bool = False) -> ModelInfo:
        """Save a trained network into the store under `name` (replacing an older one)."""
        check_name(name)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        staging = self.models_dir / f".{name}.incoming.safetensors"
        try:
            save_weights(model, staging, training=training, half=half)
            return self.add_file(staging, name, set_default=set_default, replace=True)
        finally:
            staging.unlink(missing_ok=True)

    def export(self, name: str, destination: str | os.PathLike) -> Path:
        info = self.info(name)
        destination = Path(destination)
        if destination.is_dir():
            destination = destination / f"{name}.safetensors"
        with atomic_output(destination) as temporary:
            temporary.write_bytes(info.path.read_bytes())
        return destination

    def remove(self, name: str) -> None:
        if name == BUILTIN_NAME:
            raise WeightsError("the packaged model cannot be removed")
        index = self._read_index()
        entry = index["models"].pop(name, None)
        if entry is None:
            raise WeightsError(f"no model named {name!r} in the store {self.root}")
        if index.get("default") == name:
            index["default"] = None
        self._write_index(index)
        (self.models_dir / entry["file"]).unlink(missing_ok=True)

    def set_default(self, name: str) -> None:
        index = self._read_index()
        if name == BUILTIN_NAME:
            index["default"] = None  # no store default means the packaged model
        elif name not in index["models"]:
            raise WeightsError(f"no model named {name!r} in the store {self.root}")
        else:
            index["default"] = name
        self._write_index(index)

    def load(self, name: str):
        if name == BUILTIN_NAME:
            return load_weights_file(self._builtin_info().path)
        info = self.info(name)
        return load_weights_file(info.path, expected_sha256=info.sha256)


def resolve_model(spec: str | os.PathLike | None = None, *, store: WeightsStore | None = None):
    """A model from a path, a store name, the store's default, or the packaged default."""
    store = store or WeightsStore()
    if spec is not None:
        text = str(spec)
        if os.sep in text or text.endswith(".safetensors") or Path(text).is_file():
            return load_weights_file(text)
        return store.load(text)
    default = store.default_name()
    if default:
        return store.load(default)
    if PACKAGED_DEFAULT.exists():
        return load_weights_file(PACKAGED_DEFAULT)
    raise NoModelError(NO_MODEL_HELP)
