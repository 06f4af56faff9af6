"""The model store: weights files addressed by name, the default model, and their ONNX forms.

Layout of the store (platformdirs.user_data_dir("portraitcolor"), or $PORTRAITCOLOR_HOME):

    models/NAME.safetensors   one file per model
    models/NAME.onnx          its ONNX form, which colorize runs on the CPU without torch
    index.json                {"default": NAME, "models": {NAME: {"file", "sha256", "added",
                                                                  "onnx", "onnx_sha256"}}}

The sha256 recorded at import catches files changed later; the ONNX form has its own,
checked on every load. A store written before ONNX forms existed gains each one the first
time colorize needs it. resolve_model turns a --model value (a path, a stored name, or
nothing: the default) into a network.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_output, atomic_write_text, file_identity
from .inputs import is_within
from .weights import (
    BUILTIN_NAME,
    PACKAGED,
    WeightsError,
    load_weights_file,
    packaged_onnx_paths,
    read_header,
    save_weights,
    sha256_of,
)

STORE_ENV = "PORTRAITCOLOR_HOME"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME_PATTERN = re.compile(f"^{_NAME}$")
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
        self._refuse_inside(destination)
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

    def _refuse_inside(self, destination: Path) -> None:
        """An export never lands on the files portraitcolor keeps its models in (the store's
        models folder and index, the packaged models): `models export a
        STORE/models/b.safetensors --overwrite` replaced model b's weights behind the index's back."""
        for folder in (self.models_dir, *{path.parent for path in PACKAGED.values()}):
            if is_within(destination, folder):
                raise WeightsError(f"{destination} is inside {folder}, where portraitcolor keeps its models: export to a path outside it")
        if file_identity(destination) == file_identity(self.index_path):
            raise WeightsError(f"{destination} is the model store's index: export to another path")

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

    def remove(self, name: str) -> bool:
        """Delete a model; True when it was the default (the packaged model is then)."""
        if name in PACKAGED:
            raise WeightsError(f"the packaged model {name!r} cannot be removed")
        with self._locked_index() as index:
            entry = index["models"].pop(name, None)
            if entry is None:
                raise WeightsError(f"no model named {name!r} in the store {self.root}")
            was_default = index.get("default") == name
            if was_default:
                index["default"] = None
        # A damaged entry is dropped from the index, but no file it names is touched.
        if self._entry_problem(name, entry) is None:
            (self.models_dir / entry["file"]).unlink(missing_ok=True)
            if entry.get("onnx"):
                (self.models_dir / entry["onnx"]).unlink(missing_ok=True)
        return was_default

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
