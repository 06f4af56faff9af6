"""The weights store: safetensors files with JSON metadata, addressed by name.

Layout of the store (platformdirs.user_data_dir("portraitcolor"), or $PORTRAITCOLOR_HOME):

    models/NAME.safetensors   one file per model
    models/NAME.onnx          its ONNX form, which colorize runs on the CPU without torch
    index.json                {"default": NAME, "models": {NAME: {"file", "sha256", "added",
                                                                  "onnx", "onnx_sha256"}}}

Weights are never unpickled: safetensors holds only raw tensors, and the header is
checked (size, JSON metadata, config fields, tensor names, shapes and dtypes) before any
tensor reaches the network. The sha256 recorded at import catches files changed later;
the ONNX form has its own, checked on every load. A store written before ONNX forms existed
gains each one the first time colorize needs it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .atomic import atomic_output, atomic_write_text
from .errors import PortraitcolorError

STORE_ENV = "PORTRAITCOLOR_HOME"
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
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME_PATTERN = re.compile(f"^{_NAME}$")
_FLOAT_DTYPES = {"F16", "BF16", "F32"}
_DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "I64": 8}
# The files the index may point to: plain names inside models/, never a path elsewhere.
_STORED_FILE_PATTERN = re.compile(f"^{_NAME}\\.safetensors$")
_STORED_ONNX_PATTERN = re.compile(f"^{_NAME}\\.onnx$")
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# Index updates take milliseconds; a lock held this long belongs to a stuck process.
_LOCK_TIMEOUT_SECONDS = 60

NO_MODEL_HELP = (
    "no colorization model is installed. Train one with "
    "`portraitcolor prepare PHOTOS/ -o faces.h5 && portraitcolor train faces.h5 --set-default`, "
    "or import a weights file with `portraitcolor models import FILE.safetensors --default`."
)


class WeightsError(PortraitcolorError):
    """A weights file or store problem, with a one-line reason for humans."""


class NoModelError(WeightsError):
    pass


@dataclass(frozen=True)
class OnnxForm:
    """A model's ONNX form: the file, its recorded sha256 and the render size it was trained at."""

    name: str
    path: Path
    sha256: str | None
    render_size: int
    takes_hints: bool = False

    @classmethod
    def of(cls, name: str, path: Path, sha256: str | None, metadata: dict) -> "OnnxForm":
        """The form of the model whose weights header holds `metadata`."""
        config = metadata["config"]
        return cls(name, path, sha256, int(config["size"]), bool(config.get("hints", False)))

    def read_checked(self) -> bytes:
        """The file's bytes, once read (the bytes checked are the bytes run)."""
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise WeightsError(f"{self.path}: cannot read the ONNX form of {self.name} ({error.strerror or error})") from None
        if self.sha256 is not None and hashlib.sha256(data).hexdigest() != self.sha256:
            raise WeightsError(f"{self.path}: the ONNX form of {self.name} has changed since it was stored (sha256 mismatch)")
        return data


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
            raise WeightsError(f"{path}: cannot write the weights ({(str(error).splitlines() or [type(error).__name__])[0]})") from None
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


# ---- the store -------------------------------------------------------------------


def check_name(name: str) -> str:
    if not _NAME_PATTERN.match(name or "") or name in PACKAGED:
        raise WeightsError(
            f"invalid model name {name!r}: use 1-64 letters, digits, '.', '_' or '-'"
            f" (and not {' or '.join(map(repr, PACKAGED))}, the packaged models)"
        )
    return name


class WeightsStore:
    """Models by name. Every read-modify-write of the index holds the store's file lock, so
    parallel imports and trainings never lose each other's entries; every path the store
    touches is a plain file name inside models/, whatever the index says."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else store_root()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    @contextlib.contextmanager
    def _locked_index(self) -> Iterator[dict]:
        """Yield the index under the store's lock; it is written back if the block succeeds."""
        # Imported here: only writers lock, and colorize, which only reads, starts faster.
        from filelock import FileLock, Timeout

        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".index.lock", timeout=_LOCK_TIMEOUT_SECONDS)
        try:
            with lock:
                index = self._read_index()
                yield index
                self._write_index(index)
        except Timeout:
            raise WeightsError(f"{self.root}: the store is locked by another portraitcolor process (lock file {lock.lock_file})") from None

    def _read_index(self) -> dict:
        try:
            index = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"default": None, "models": {}}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise WeightsError(f"{self.index_path}: unreadable store index ({error})") from None
        if not isinstance(index, dict) or not isinstance(index.get("models"), dict):
            raise WeightsError(f"{self.index_path}: corrupt store index (no 'models' object)")
        if index.get("default") is not None and not isinstance(index["default"], str):
            raise WeightsError(f"{self.index_path}: corrupt store index ('default' is not a model name)")
        return index

    def _write_index(self, index: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")

    def _entry_problem(self, name: str, entry) -> str | None:
        """What is wrong with an index entry (a hand-edited or damaged index), or None."""
        if not _NAME_PATTERN.match(name) or name in PACKAGED:
            return f"invalid model name {name!r} in the index"
        if not isinstance(entry, dict):
            return f"index entry {name!r} is not an object"
        file = entry.get("file")
        if not isinstance(file, str) or not _STORED_FILE_PATTERN.match(file):
            return f"index entry {name!r} names {file!r}, not a file inside the store"
        if not (entry.get("sha256") is None or (isinstance(entry["sha256"], str) and _SHA256_PATTERN.match(entry["sha256"]))):
            return f"index entry {name!r} has an invalid sha256"
        if not (entry.get("added") is None or isinstance(entry["added"], str)):
            return f"index entry {name!r} has an invalid date"
        onnx = entry.get("onnx")
        if not (onnx is None or (isinstance(onnx, str) and _STORED_ONNX_PATTERN.match(onnx))):
            return f"index entry {name!r} names {onnx!r} as its ONNX form, not a file inside the store"
        if not (entry.get("onnx_sha256") is None or (isinstance(entry["onnx_sha256"], str) and _SHA256_PATTERN.match(entry["onnx_sha256"]))):
            return f"index entry {name!r} has an invalid onnx_sha256"
        return None

    def _entry(self, index: dict, name: str) -> dict:
        entry = index["models"].get(name)
        if entry is None:
            known = ", ".join(sorted(index["models"])) or "none"
            raise WeightsError(f"no model named {name!r} in the store {self.root} (models: {known})")
        problem = self._entry_problem(name, entry)
        if problem:
            raise WeightsError(f"{self.index_path}: {problem}; `portraitcolor models remove {name}` drops the entry")
        return entry

    def default_name(self) -> str | None:
        return self._read_index().get("default")

    def names(self) -> list[str]:
        return sorted(self._read_index()["models"])

    def info(self, name: str) -> ModelInfo:
        if name in PACKAGED:
            return self._packaged_info(name)
        index = self._read_index()
        entry = self._entry(index, name)
        path = self.models_dir / entry["file"]
        _, metadata = read_header(path)
        return ModelInfo(name, path, entry.get("sha256"), entry.get("added"), index.get("default") == name, metadata)

    def _packaged_info(self, name: str) -> ModelInfo:
        path = PACKAGED[name]
        if not path.exists():
            raise NoModelError(NO_MODEL_HELP)
        _, metadata = read_header(path)
        return ModelInfo(name, path, None, None, name == BUILTIN_NAME and self.default_name() is None, metadata)

    def list(self) -> list[ModelInfo]:
        infos = [self._packaged_info(name) for name, path in PACKAGED.items() if path.exists()]
        for name in self.names():
            try:
                infos.append(self.info(name))
            except WeightsError as error:  # list the others; say what is wrong with this one
                infos.append(ModelInfo(name, self.models_dir, None, None, False, {"error": str(error)}))
        return infos

    def add_file(self, source: str | os.PathLike, name: str, *, set_default: bool = False, replace: bool = False) -> ModelInfo:
        """Copy a weights file into the store (after checking it fully loads) under `name`."""
        check_name(name)
        source = Path(source)
        model = load_weights_file(source)  # refuse anything that would not load later
        with self._staging(name) as staging, self._staged_onnx(name, model) as onnx_staging:
            staging.write_bytes(source.read_bytes())
            return self._adopt(staging, name, set_default=set_default, replace=replace, onnx_staging=onnx_staging)

    def save_model(self, model, name: str, *, training: dict | None = None, set_default: bool = False, half: bool = False, replace: bool = False) -> ModelInfo:
        """Save a trained network into the store under `name` (an existing one only with replace)."""
        check_name(name)
        with self._staging(name) as staging:
            save_weights(model, staging, training=training, half=half)
            stored = load_weights_file(staging)  # what is stored must load, exactly as written
            with self._staged_onnx(name, stored) as onnx_staging:
                return self._adopt(staging, name, set_default=set_default, replace=replace, onnx_staging=onnx_staging)

    @contextlib.contextmanager
    def _staging(self, name: str, suffix: str = ".safetensors") -> Iterator[Path]:
        """A private file in models/ for one incoming file; gone afterwards, adopted or not."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=f".{name}.", suffix=f".incoming{suffix}", dir=self.models_dir)
        os.close(handle)
        try:
            yield Path(staging)
        finally:
            Path(staging).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _staged_onnx(self, name: str, model) -> Iterator[Path]:
        """The model's checked ONNX form in a staging file (see _staging)."""
        with self._staging(name, ".onnx") as staging:
            _write_onnx(model, staging)
            yield staging

    def _install(self, staging: Path, target_name: str) -> None:
        """A checked staging file becomes models/TARGET_NAME (under the index lock)."""
        os.chmod(staging, 0o644)
        os.replace(staging, self.models_dir / target_name)

    def _adopt(self, staging: Path, name: str, *, set_default: bool, replace: bool, onnx_staging: Path) -> ModelInfo:
        """Rename checked staging files to models/NAME.* and record them, all under the lock."""
        digest, onnx_digest = sha256_of(staging), sha256_of(onnx_staging)
        with self._locked_index() as index:
            if name in index["models"] and not replace:
                raise WeightsError(f"a model named {name!r} already exists (remove it first, or pass --replace)")
            target, onnx_target = f"{name}.safetensors", f"{name}.onnx"
            self._install(staging, target)
            self._install(onnx_staging, onnx_target)
            index["models"][name] = {
                "file": target,
                "sha256": digest,
                "onnx": onnx_target,
                "onnx_sha256": onnx_digest,
                "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            # The default changes only when asked: a new model, even the first in the store,
            # may be worse than the packaged one, and would silently colour every later photo.
            if set_default:
                index["default"] = name
        return self.info(name)

    def export(self, name: str, destination: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Copy a model's weights out of the store; a destination ending in .onnx gets its
        ONNX form instead (for onnxruntime, browsers, phones)."""
        info = self.info(name)
        destination = Path(destination)
        if destination.is_dir():
            destination = destination / f"{name}.safetensors"
        if (destination.exists() or destination.is_symlink()) and not overwrite:
            raise WeightsError(f"{destination} exists (pass --overwrite to replace it)")
        if destination.suffix.lower() == ".onnx":
            form = self.onnx_form(name)
            if form is None:
                raise WeightsError(f"model {name} has no ONNX form (this installation lacks {info.path.with_suffix('.onnx').name})")
            data = form.read_checked()
        else:
            data = info.path.read_bytes()
        with atomic_output(destination) as temporary:
            temporary.write_bytes(data)
        return destination

    def onnx_form(self, spec: str | None) -> OnnxForm | None:
        """The ONNX form of a stored model (None: the default), made now for a model stored
        before ONNX forms existed; None for a packaged model installed without one."""
        index = self._read_index()
        name = spec or index.get("default") or BUILTIN_NAME
        if name in PACKAGED:
            return _packaged_onnx_form(self._packaged_info(name))
        entry = self._entry(index, name)
        if entry.get("onnx") is None:
            entry = self._add_onnx(name)
        _, metadata = read_header(self.models_dir / entry["file"])
        return OnnxForm.of(name, self.models_dir / entry["onnx"], entry.get("onnx_sha256"), metadata)

    def _add_onnx(self, name: str) -> dict:
        """Write the ONNX form of a model stored without one, and record it."""
        with self._staged_onnx(name, self.load(name)) as onnx_staging:
            digest = sha256_of(onnx_staging)
            with self._locked_index() as index:
                entry = self._entry(index, name)
                if entry.get("onnx") is None:  # else a parallel run added it a moment ago
                    self._install(onnx_staging, f"{name}.onnx")
                    entry.update(onnx=f"{name}.onnx", onnx_sha256=digest)
                return dict(entry)

    def remove(self, name: str) -> None:
        if name in PACKAGED:
            raise WeightsError(f"the packaged model {name!r} cannot be removed")
        with self._locked_index() as index:
            entry = index["models"].pop(name, None)
            if entry is None:
                raise WeightsError(f"no model named {name!r} in the store {self.root}")
            if index.get("default") == name:
                index["default"] = None
        # A damaged entry is dropped from the index, but no file it names is touched.
        if self._entry_problem(name, entry) is None:
            (self.models_dir / entry["file"]).unlink(missing_ok=True)
            if entry.get("onnx"):
                (self.models_dir / entry["onnx"]).unlink(missing_ok=True)

    def set_default(self, name: str) -> None:
        with self._locked_index() as index:
            if name == BUILTIN_NAME:
                index["default"] = None  # no store default means the packaged model
            elif name in PACKAGED:
                raise WeightsError(f"the packaged model {name!r} cannot be the default (import a copy of it: models export {name} DIR, then models import)")
            else:
                self._entry(index, name)
                index["default"] = name

    def load(self, name: str):
        if name in PACKAGED:
            return load_weights_file(self._packaged_info(name).path)
        info = self.info(name)
        return load_weights_file(info.path, expected_sha256=info.sha256)


def resolve_model(spec: str | os.PathLike | None = None, *, store: WeightsStore | None = None):
    """A model from a path, a store name, the store's default, or the packaged default."""
    store = store or WeightsStore()
    if spec is not None:
        if is_path_spec(spec):
            return load_weights_file(spec)
        return store.load(str(spec))
    default = store.default_name()
    if default:
        return store.load(default)
    if PACKAGED[BUILTIN_NAME].exists():
        return load_weights_file(PACKAGED[BUILTIN_NAME])
    raise NoModelError(NO_MODEL_HELP)


def is_path_spec(spec: str | os.PathLike) -> bool:
    """Whether a --model value names a file rather than a stored model."""
    text = str(spec)
    return os.sep in text or text.endswith(".safetensors") or Path(text).is_file()


def _write_onnx(model, path: Path) -> None:
    from .onnx_export import OnnxExportError, write_onnx

    try:
        write_onnx(model, path)
    except OnnxExportError as error:
        raise WeightsError(f"not stored: {error}") from None


def packaged_onnx_paths(weights: Path) -> tuple[Path, Path]:
    """A packaged model's ONNX form and the file holding its sha256."""
    return weights.with_suffix(".onnx"), weights.with_suffix(".onnx.sha256")


def _packaged_onnx_form(info: ModelInfo) -> OnnxForm | None:
    onnx, recorded_in = packaged_onnx_paths(info.path)
    if not onnx.exists():
        return None
    try:
        recorded = recorded_in.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        recorded = ""
    if not _SHA256_PATTERN.match(recorded):
        raise WeightsError(f"{recorded_in}: missing or unreadable; reinstall portraitcolor")
    return OnnxForm.of(info.name, onnx, recorded, info.metadata)
