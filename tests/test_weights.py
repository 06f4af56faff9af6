import json
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import run_cli

from portraitcolor.model import UNet, UNetConfig
from portraitcolor.store import WeightsStore
from portraitcolor.weights import WeightsError, load_weights_file, read_header, save_weights


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32)).eval()
    path = save_weights(model, tmp_path / "m.safetensors", training={"epochs": 3})
    loaded = load_weights_file(path)
    assert loaded.config == model.config
    assert loaded.metadata["training"] == {"epochs": 3} and loaded.metadata["tool_version"]
    l = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(l), model(l))


def test_half_precision_file_is_smaller_and_loads(tmp_path):
    model = UNet(UNetConfig(width=8, size=32))
    full = save_weights(model, tmp_path / "full.safetensors")
    half = save_weights(model, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert load_weights_file(half).head.weight.dtype == torch.float32


def test_truncated_file_is_refused(tmp_path, tiny_model_file):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tiny_model_file.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated"):
        load_weights_file(cut)


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(WeightsError, match="pickle"):
        load_weights_file(path)
    torch_file = tmp_path / "model.pt"
    torch.save(UNet(UNetConfig(width=4, size=32)).state_dict(), torch_file)
    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_weights_file(torch_file)


def _rewrite_metadata(source, target, change):
    data = source.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    change(header)
    raw = json.dumps(header).encode()
    target.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
    return target


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h["__metadata__"].pop("portraitcolor"), "not a portraitcolor weights file"),
        (lambda h: h["__metadata__"].update(portraitcolor="{not json"), "corrupt portraitcolor metadata"),
        (lambda h: h["__metadata__"].update(portraitcolor=json.dumps({"format": "portraitcolor-weights/1", "config": {"width": 8, "size": 32}})), "shape"),
        (lambda h: h["__metadata__"].update(portraitcolor=json.dumps({"format": "portraitcolor-weights/1", "config": {"width": 4, "evil": 1}})), "invalid model config"),
        (lambda h: h.pop("head.bias"), "do not match"),
        (lambda h: h["head.bias"].update(dtype="I32"), "dtype"),
    ],
)
def test_bad_headers_are_refused(tmp_path, tiny_model_file, change, message):
    path = _rewrite_metadata(tiny_model_file, tmp_path / "bad.safetensors", change)
    with pytest.raises(WeightsError, match=message):
        load_weights_file(path)


def _header_length(path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


def test_every_header_length_reads_as_safetensors(tmp_path):
    """A safetensors file begins with its header length, so one valid file in 32 begins with
    0x80, the first byte of a pickle: the header must be read before any signature is looked at."""
    from safetensors.numpy import save_file

    seen = set()
    for pad in range(0, 560):
        path = tmp_path / "plain.safetensors"
        save_file({"x": np.zeros(1, np.float32)}, str(path), metadata={"pad": "p" * pad})
        length = _header_length(path)
        if not 64 <= length <= 600 or length in seen:
            continue
        seen.add(length)
        # A safetensors file, though not one of ours: refused for that reason, never as a pickle.
        with pytest.raises(WeightsError, match="no portraitcolor metadata"):
            read_header(path)
    assert {length % 256 for length in seen} == set(range(0, 256, 8))  # headers are padded to 8 bytes


def test_models_with_every_header_residue_store_import_and_load(tmp_path):
    torch.manual_seed(0)
    model = UNet(UNetConfig(width=4, size=32))
    store = WeightsStore()
    residues = set()
    for pad in range(0, 300):
        path = save_weights(model, tmp_path / "padded.safetensors", training={"note": "n" * pad})
        residue = _header_length(path) % 256
        if residue in residues:
            continue
        residues.add(residue)
        name = f"r{residue}"
        store.save_model(model, f"{name}-saved", training={"note": "n" * pad})  # train's final save
        store.add_file(path, f"{name}-imported")  # models import
        for stored in (f"{name}-saved", f"{name}-imported"):
            assert torch.equal(store.load(stored).state_dict()["head.bias"], model.state_dict()["head.bias"])
        if residue == 128:  # begins with 0x80, like a pickle: the user's path, end to end
            assert path.read_bytes()[:1] == b"\x80"
            run_cli("models", "import", str(path), "--name", "cli", check=True)
            run_cli("models", "show", "cli", check=True)
    assert residues == set(range(0, 256, 8))
