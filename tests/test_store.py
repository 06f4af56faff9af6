"""The model store: import, default, export and remove, through the API and the models command."""

import json

import pytest
from conftest import run_cli

from portraitcolor import weights
from portraitcolor.store import NoModelError, WeightsStore, resolve_model
from portraitcolor.weights import WeightsError, read_header


def test_store_import_default_export_remove(tmp_path, tiny_model_file, monkeypatch):
    store = WeightsStore()
    info = store.add_file(tiny_model_file, "tiny")
    # Even the first model of a store becomes the default only when asked.
    assert not info.is_default and store.default_name() is None
    store.set_default("tiny")
    assert resolve_model().config.width == 4
    (tmp_path / "out").mkdir()
    exported = store.export("tiny", tmp_path / "out")
    assert exported.read_bytes() == tiny_model_file.read_bytes()
    with pytest.raises(WeightsError, match="already exists"):
        store.add_file(tiny_model_file, "tiny")
    store.remove("tiny")
    assert store.names() == [] and store.default_name() is None
    monkeypatch.setitem(weights.PACKAGED, weights.BUILTIN_NAME, tmp_path / "no-packaged-model.safetensors")
    with pytest.raises(NoModelError, match="portraitcolor train"):
        resolve_model()


def test_tampered_file_in_store_is_refused(tiny_model_file):
    store = WeightsStore()
    info = store.add_file(tiny_model_file, "tiny")
    data = bytearray(info.path.read_bytes())
    data[-10] ^= 0xFF
    info.path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        store.load("tiny")


def test_models_cli(tmp_path, tiny_model_file):
    assert run_cli("models", "import", str(tiny_model_file), "--name", "mine", check=True).stdout.strip() == b"mine"
    listing = run_cli("models", "list", check=True).stdout.decode()
    assert "* builtin" in listing and "* mine" not in listing and "mine" in listing and "width 4" in listing
    shown = json.loads(run_cli("models", "show", "mine", check=True).stdout)
    assert shown["config"] == {"width": 4, "size": 32} and shown["default"] is False
    switched = run_cli("models", "default", "mine", check=True)
    assert switched.stderr.decode().strip() == "default model is now mine"
    assert json.loads(run_cli("models", "show", "mine", check=True).stdout)["default"] is True
    run_cli("models", "export", "mine", str(tmp_path / "copy.safetensors"), check=True)
    assert read_header(tmp_path / "copy.safetensors")[1]["config"]["width"] == 4
    missing = run_cli("models", "show", "nope")
    assert missing.returncode == 1 and b"no model named 'nope'" in missing.stderr and b"Traceback" not in missing.stderr
    # Replacing or removing the default model changes what colorize gives: both are said.
    replaced = run_cli("models", "import", str(tiny_model_file), "--name", "mine", "--replace", check=True)
    assert replaced.stderr.decode().strip() == "default model mine now has the new weights"
    removed = run_cli("models", "remove", "mine", check=True)
    assert removed.stderr.decode().strip() == "default model is now builtin"
    assert b"mine" not in run_cli("models", "list", check=True).stdout
    run_cli("models", "import", str(tiny_model_file), "--name", "other", check=True)
    assert run_cli("models", "remove", "other", check=True).stderr == b""  # not the default: nothing to say
