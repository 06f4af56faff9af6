"""The store under concurrency and tampering, and weights that load but cannot work."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli

import portraitcolor.model
from portraitcolor.model import UNet, UNetConfig
from portraitcolor.store import WeightsStore
from portraitcolor.weights import WeightsError, load_weights_file, save_weights


def test_parallel_imports_keep_every_model(tmp_path, tiny_model_file):
    # Each import reads the index, copies a file and writes the index back: without a lock,
    # two imports that overlap keep only one of their entries.
    store = WeightsStore()
    names = [f"m{k}" for k in range(12)]
    errors = []

    def add(name):
        try:
            store.add_file(tiny_model_file, name)
        except Exception as error:  # noqa: BLE001 - collected for the assert
            errors.append(error)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.names() == sorted(names)
    assert all(store.load(name).config.width == 4 for name in names)


def test_parallel_import_processes_through_the_cli(tmp_path, tiny_model_file):
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "portraitcolor", "models", "import", str(tiny_model_file), "--name", f"p{k}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for k in range(4)
    ]
    printed = [process.communicate()[0].decode().strip() for process in processes]
    assert [process.returncode for process in processes] == [0] * 4
    assert sorted(printed) == WeightsStore().names() == ["p0", "p1", "p2", "p3"]


def test_one_name_imported_twice_at_once_is_stored_once(tiny_model_file):
    store = WeightsStore()
    outcomes = []

    def add():
        try:
            store.add_file(tiny_model_file, "same")
            outcomes.append("stored")
        except WeightsError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("stored") == 1
    assert all("already exists" in outcome for outcome in outcomes if outcome != "stored")
    assert sorted(path.name for path in store.models_dir.iterdir()) == ["same.onnx", "same.safetensors"]  # no staging left


def test_save_model_replaces_only_when_asked(tiny_model_file):
    store = WeightsStore()
    model = load_weights_file(tiny_model_file)
    store.save_model(model, "run")
    with pytest.raises(WeightsError, match="already exists"):
        store.save_model(model, "run")
    store.save_model(model, "run", replace=True)
    assert store.names() == ["run"]


def _tamper(store, models):
    index = json.loads(store.index_path.read_text())
    index["models"].update(models)
    store.index_path.write_text(json.dumps(index))


def test_remove_never_deletes_outside_the_store(tmp_path, tiny_model_file):
    store = WeightsStore()
    store.add_file(tiny_model_file, "good")
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    entry = {"file": "../../precious.txt", "sha256": None, "added": None}
    _tamper(store, {"evil": entry})
    result = run_cli("models", "show", "evil")
    assert result.returncode == 1 and b"not a file inside the store" in result.stderr
    assert b"Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert run_cli("models", "remove", "evil").returncode == 0
    assert victim.read_text() == "keep me"
    assert store.names() == ["good"]


@pytest.mark.parametrize(
    "entry",
    [
        "just a string",
        {"file": 12, "sha256": None},
        {"file": "x.safetensors", "sha256": ["not", "a", "hash"]},
        {"file": "/etc/passwd", "sha256": None},
        {"file": "x.safetensors", "sha256": None, "added": 5},
    ],
)
def test_index_entries_of_the_wrong_type_give_one_line(tiny_model_file, entry):
    store = WeightsStore()
    store.add_file(tiny_model_file, "good")
    _tamper(store, {"bad": entry})
    shown = run_cli("models", "show", "bad")
    assert shown.returncode == 1 and b"Traceback" not in shown.stderr
    assert len(shown.stderr.strip().splitlines()) == 1 and b"index" in shown.stderr
    listed = run_cli("models", "list")
    assert listed.returncode == 0 and b"good" in listed.stdout and b"bad" in listed.stdout
    assert run_cli("models", "remove", "bad").returncode == 0
    assert store.names() == ["good"]


def test_wrong_type_of_default_is_refused_clearly(tiny_model_file):
    store = WeightsStore()
    store.add_file(tiny_model_file, "good")
    index = json.loads(store.index_path.read_text())
    index["default"] = {"name": "good"}
    store.index_path.write_text(json.dumps(index))
    result = run_cli("models", "list")
    assert result.returncode == 1 and b"corrupt store index" in result.stderr and b"Traceback" not in result.stderr


def test_export_never_overwrites_without_asking(tmp_path, tiny_model_file):
    WeightsStore().add_file(tiny_model_file, "tiny")
    precious = tmp_path / "precious.jpg"
    precious.write_bytes(b"a photo")
    refused = run_cli("models", "export", "tiny", str(precious))
    assert refused.returncode == 1 and b"--overwrite" in refused.stderr
    assert precious.read_bytes() == b"a photo"
    assert run_cli("models", "export", "tiny", str(precious), "--overwrite").returncode == 0
    assert precious.read_bytes() == tiny_model_file.read_bytes()


def test_export_never_lands_on_the_stores_own_files(tmp_path, tiny_model_file, isolated_store):
    """Through the CLI: another model's file in the store (named, through a link to the
    folder, or as the folder), the index and the packaged models' folder are refused with
    --overwrite, and every stored model still loads; a path beside the store is fine."""
    WeightsStore().add_file(tiny_model_file, "tiny")
    torch.manual_seed(1)
    WeightsStore().add_file(save_weights(UNet(UNetConfig(width=2, size=32)), tmp_path / "other.safetensors"), "other")
    models = isolated_store / "models"
    before = {path.name: path.read_bytes() for path in [*models.iterdir(), isolated_store / "index.json"]}
    (tmp_path / "link").symlink_to(models)
    packaged = Path(portraitcolor.model.__file__).parent / "data"
    for destination in (models / "other.safetensors", models / "other.onnx", tmp_path / "link" / "other.safetensors", models, isolated_store / "index.json", packaged / "default.safetensors"):
        refused = run_cli("models", "export", "tiny", str(destination), "--overwrite")
        assert refused.returncode == 1 and b"Traceback" not in refused.stderr, refused.stderr
        assert b"where portraitcolor keeps its models" in refused.stderr or b"the model store's index" in refused.stderr
    assert before == {path.name: path.read_bytes() for path in [*models.iterdir(), isolated_store / "index.json"]}
    assert WeightsStore().load("other").config.width == 2
    assert run_cli("models", "export", "tiny", str(isolated_store / "tiny.safetensors")).returncode == 0


# ---- weights that load but cannot work --------------------------------------------


def _model_with(tmp_path, change) -> Path:
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32))
    state = model.state_dict()
    change(state)
    # Written past save_weights' own check, as a damaged or hostile file would be.
    from safetensors.torch import save_file

    from portraitcolor.weights import METADATA_KEY, build_metadata

    path = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={METADATA_KEY: json.dumps(build_metadata(model.config.to_dict()))})
    return path


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda state: state["head.weight"].view(-1)[0].fill_(float("nan")), "NaN or infinite"),
        (lambda state: state["head.bias"].fill_(float("inf")), "NaN or infinite"),
        (lambda state: next(v for k, v in state.items() if k.endswith("running_var")).fill_(-1.0), "negative variance"),
    ],
)
def test_weights_that_cannot_work_are_refused_at_import_and_load(tmp_path, change, reason):
    path = _model_with(tmp_path, change)
    with pytest.raises(WeightsError, match=reason):
        load_weights_file(path)
    result = run_cli("models", "import", str(path), "--name", "broken")
    assert result.returncode == 1 and reason.encode() in result.stderr and b"Traceback" not in result.stderr
    assert WeightsStore().names() == []
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("L", (40, 40), 128).save(photo)
    colorized = run_cli("colorize", str(photo), "-m", str(path))
    assert colorized.returncode != 0 and not (tmp_path / "photo_color.png").exists()


def test_a_model_with_nan_values_is_never_saved(tmp_path):
    model = UNet(UNetConfig(width=4, size=32))
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(WeightsError, match="not saved"):
        save_weights(model, tmp_path / "nan.safetensors")
    assert not list(tmp_path.iterdir())


def test_a_huge_width_is_refused_before_any_allocation(tmp_path, monkeypatch):
    # A header that claims width 512 (gigabytes of weights) over a file of a few bytes.
    from portraitcolor.weights import METADATA_KEY, build_metadata

    header = {"__metadata__": {METADATA_KEY: json.dumps(build_metadata({"width": 512, "size": 128}))}}
    with torch.device("meta"):
        shapes = UNet(UNetConfig(width=512, size=128)).state_dict()
    for name, tensor in shapes.items():
        header[name] = {"dtype": "F32" if tensor.is_floating_point() else "I64", "shape": list(tensor.shape), "data_offsets": [0, 0]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = tmp_path / "huge.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)

    built = []
    real_init = portraitcolor.model.UNet.__init__

    def recording_init(self, config):
        built.append((config.width, str(torch.get_default_device())))
        real_init(self, config)

    monkeypatch.setattr(portraitcolor.model.UNet, "__init__", recording_init)
    with pytest.raises(WeightsError, match="bytes"):
        load_weights_file(path)
    assert all(device == "meta" for _, device in built)
