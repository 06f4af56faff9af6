"""Colour hints: parsing (points, files, scribbles), refusals with one clear line, the
hint-aware network's inputs on both engines, and training that samples hints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import portrait_array, run_cli
from PIL import Image

from portraitcolor import hints as hint_rules
from portraitcolor import images, lab
from portraitcolor.config import EvaluateOptions
from portraitcolor.hints import HintError, Hints, parse_point, read_hints_file, read_scribble
from portraitcolor.inference import open_predictor
from portraitcolor.store import WeightsStore
from portraitcolor.torch_inference import TorchPredictor, load_model


@pytest.fixture
def hint_model_file(tmp_path):
    """A width-4 hint-aware U-Net with random (seeded) weights."""
    import torch

    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.weights import save_weights

    torch.manual_seed(0)
    return save_weights(UNet(UNetConfig(width=4, size=32, hints=True)), tmp_path / "hinted.safetensors")


# ---- parsing --------------------------------------------------------------------------


def test_points_in_pixels_and_fractions_with_hex_and_names():
    pixel = parse_point("120,340=#2a4b8d")
    assert (pixel.x, pixel.y, pixel.x_fraction, pixel.y_fraction) == (120, 340, False, False)
    assert pixel.position(200, 400) == (120, 340)
    fraction = parse_point(" 0.5 , 0.25 = navy ")
    assert fraction.position(200, 400) == (100, 100)
    navy = lab.rgb_to_lab(np.array([[0, 0, 128]], np.float32) / 255)[0]
    assert fraction.ab == pytest.approx((navy[1], navy[2]), abs=1e-3)
    assert parse_point("1,1=#fff").ab == pytest.approx((0, 0), abs=0.01)  # white has no chroma


@pytest.mark.parametrize("text, reason", [
    ("120,340", "not X,Y=COLOUR"),
    ("120=red", "not X,Y=COLOUR"),
    ("a,2=red", "not a number"),
    ("-3,2=red", "neither a pixel"),
    ("1.5,0.2=red", "neither a pixel"),
    ("nan,0.2=red", "neither a pixel"),
    ("1,2=reddish", "unknown colour"),
    ("1,2=#12345", "unknown colour"),
])
def test_malformed_points_are_refused_with_one_line(text, reason):
    with pytest.raises(HintError, match=reason) as error:
        parse_point(text)
    assert "\n" not in str(error.value)


def test_points_outside_the_photo_are_refused():
    with pytest.raises(HintError, match="outside the 80x96 photo"):
        Hints(points=(parse_point("80,10=red"),)).check(80, 96)
    Hints(points=(parse_point("79,95=red"), parse_point("0.99,0.0=red"))).check(80, 96)


def test_hints_files_lines_and_json(tmp_path):
    lines = tmp_path / "hints.txt"
    lines.write_text("# her dress\n120,340=#2a4b8d   # navy\n\n0.5,0.1=skyblue\n")
    assert [hint.text for hint in read_hints_file(lines)] == ["120,340=#2a4b8d", "0.5,0.1=skyblue"]
    as_json = tmp_path / "hints.json"
    as_json.write_text(json.dumps(["1,2=red", {"x": 0.5, "y": 0.5, "color": "#00ff00"}]))
    assert [hint.text for hint in read_hints_file(as_json)] == ["1,2=red", "0.5,0.5=#00ff00"]


@pytest.mark.parametrize("content, reason", [
    ("1,2=red\nthree,4=blue\n", "line 2: hint 'three,4=blue'"),
    ('["1,2=red", 7]', "hint 2 is neither"),
    ('{"x": 1}', "must be a list"),
    ("[1, 2", "not valid JSON"),
])
def test_malformed_hints_files_name_the_file_and_place(tmp_path, content, reason):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(HintError, match=reason) as error:
        read_hints_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_scribble_alpha_marks_the_hinted_pixels(tmp_path):
    scribble = np.zeros((40, 60, 4), np.uint8)
    scribble[10:20, 5:15] = (0, 0, 255, 255)  # a blue stroke, opaque
    path = tmp_path / "scribble.png"
    Image.fromarray(scribble, "RGBA").save(path)
    hints = Hints(scribble=read_scribble(path))
    hints.check(60, 40)
    channels = hints.channels((40, 60), (32, 48), (32, 48))
    painted = channels[2] == 1
    assert painted.any() and not painted[:, 20:].any()  # only where the stroke was
    assert channels[1][painted].max() < -0.5  # b of pure blue is about -108: -0.84 after /128
    with pytest.raises(HintError, match="the scribble is 60x40, the photo 80x96"):
        hints.check(80, 96)


def test_point_hint_channels_land_at_the_scaled_place():
    hints = Hints(points=(parse_point("0.25,0.5=red"),))
    channels = hints.channels((100, 200), (32, 64), (32, 64))
    rows, cols = np.nonzero(channels[2])
    assert set(rows) == {15, 16, 17} and set(cols) == {15, 16, 17}
    assert channels[0][16, 16] > 0.5  # red: a is large and positive


# ---- models that take hints, and those that do not ------------------------------------------


def test_a_model_without_hints_refuses_them_clearly(tmp_path, tiny_model_file):
    WeightsStore().add_file(tiny_model_file, "plain")
    photo = tmp_path / "old.png"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    result = run_cli("colorize", str(photo), "-m", "plain", "--hint", "10,10=navy")
    assert result.returncode == 2
    message = result.stderr.decode().strip()
    assert len(message.splitlines()) == 1 and "model plain takes no hints" in message
    assert not (tmp_path / "old_color.png").exists()


def _two_regions(height: int = 160, width: int = 240) -> images.Picture:
    """A dark cloth on the left, a light wall on the right, with sensor noise (gray)."""
    gray = np.empty((height, width), np.float32)
    gray[:, : width // 2], gray[:, width // 2 :] = 0.35, 0.80
    gray += np.random.default_rng(0).normal(0, 0.02, gray.shape).astype(np.float32)
    return images.Picture(rgb=np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2))


@pytest.mark.parametrize("colour", ["#1f3a93", "#c0392b", "#27ae60"])
def test_a_hint_colours_its_region_and_leaves_a_distant_one(colour):
    """The packaged model on two regions: a hint on the left moves the colour there well toward
    the hint's, and the right region, across the edge, barely changes."""
    from portraitcolor.hints import color_ab
    from portraitcolor.inference import colorize_picture

    model = open_predictor(None, device="cpu")
    picture = _two_regions()
    automatic = lab.rgb_to_lab(colorize_picture(model, picture))[..., 1:]
    hinted = lab.rgb_to_lab(colorize_picture(model, picture, hints=[f"0.25,0.5={colour}"]))[..., 1:]
    height, width = automatic.shape[:2]
    near = (slice(int(height * 0.3), int(height * 0.7)), slice(int(width * 0.1), int(width * 0.4)))
    wanted = np.array(color_ab(colour)) - automatic[near].reshape(-1, 2).mean(axis=0)
    moved = (hinted - automatic)[near].reshape(-1, 2).mean(axis=0)
    assert np.dot(moved, wanted) / np.dot(wanted, wanted) > 0.4  # measured 0.60-0.73
    distant = np.abs(hinted - automatic)[:, int(width * 0.7) :]
    assert distant.mean() < 1.0  # CIELAB units; measured under 0.05
    lightness = lab.rgb_to_l(colorize_picture(model, picture, hints=[f"0.25,0.5={colour}"]))
    np.testing.assert_allclose(lightness, lab.rgb_to_l(picture.rgb), atol=0.5)  # the photo's own L


def test_hints_need_exactly_one_input(tmp_path, hint_model_file):
    for name in ("a.png", "b.png"):
        Image.fromarray(portrait_array(gray=True)).save(tmp_path / name)
    result = run_cli("colorize", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-m", str(hint_model_file), "--hint", "1,1=red")
    assert result.returncode == 2 and b"exactly one input" in result.stderr


def test_cli_hint_errors_are_one_line_and_exit_2(tmp_path, hint_model_file):
    photo = tmp_path / "old.png"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    for arguments, reason in (
        (["--hint", "10,10=reddish"], b"unknown colour"),
        (["--hints", str(tmp_path / "missing.txt")], b"cannot read hints"),
    ):
        result = run_cli("colorize", str(photo), "-m", str(hint_model_file), *arguments)
        assert result.returncode == 2, result.stderr
        assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
    outside = run_cli("colorize", str(photo), "-m", str(hint_model_file), "--hint", "500,10=red")
    assert outside.returncode == 1 and b"lies outside the 80x96 photo" in outside.stderr
    assert not (tmp_path / "old_color.png").exists()


def test_hint_aware_model_runs_on_both_engines_with_and_without_hints(tmp_path, hint_model_file):
    WeightsStore().add_file(hint_model_file, "hinted")
    onnx, torch_engine = open_predictor("hinted", device="cpu"), TorchPredictor(load_model("hinted"))
    assert onnx.takes_hints and torch_engine.takes_hints
    batch = np.random.default_rng(0).random((1, 1, 32, 48), dtype=np.float32)
    channels = Hints(points=(parse_point("0.5,0.5=red"),)).channels((64, 96), (32, 48), (32, 48))[None]
    for hints in (None, channels):
        assert np.abs(onnx.predict(batch, hints) - torch_engine.predict(batch, hints)).max() < 0.5
    # no hints is the same as empty hint channels
    empty = np.zeros_like(channels)
    np.testing.assert_allclose(onnx.predict(batch), onnx.predict(batch, empty), atol=1e-5)

    photo = tmp_path / "old.png"
    Image.fromarray(portrait_array(gray=True)).save(photo)
    result = run_cli("colorize", str(photo), "-m", "hinted", "--hint", "40,48=#2a4b8d", "--hint", "0.1,0.1=orange", "-o", str(tmp_path / "out.png"))
    assert result.returncode == 0, result.stderr
    out = images.read_image(tmp_path / "out.png")
    np.testing.assert_allclose(lab.rgb_to_l(out.rgb), lab.rgb_to_l(images.read_image(photo).rgb), atol=0.5)  # lightness kept


def test_training_with_hints_from_a_model_without_them_starts_as_that_model(tmp_path, tiny_model_file):
    """--hints --init: the hint inputs start at zero weight, so before any step the new network
    colours exactly as the old one; after training it is a hint-aware model in the store."""
    import torch
    from conftest import portrait_stack, write_set

    from portraitcolor.config import TrainConfig
    from portraitcolor.model import UNet, UNetConfig
    from portraitcolor.train import _load_initial_weights, train

    WeightsStore().add_file(tiny_model_file, "plain")
    widened = UNet(UNetConfig(width=4, size=32, hints=True))
    _load_initial_weights(widened, "plain")
    plain = load_model("plain").eval()
    x = torch.rand(2, 1, 32, 32)
    hinted_input = torch.cat([x, torch.rand(2, hint_rules.HINT_CHANNELS, 32, 32)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(widened.eval()(hinted_input), plain(x))

    data = write_set(tmp_path / "faces.h5", portrait_stack(24, 32), ["val" if i % 4 == 0 else "train" for i in range(24)])
    result = train(TrainConfig(data=str(data), device="cpu", run_dir=str(tmp_path / "run"), epochs=1, loss="mae",
                               width=4, batch_size=6, hints=True, init="plain", name="hinted"))
    assert result.model_name == "hinted"
    assert open_predictor("hinted", device="cpu").takes_hints


def test_evaluate_with_hints_sampled_from_the_truth(tmp_path, hint_model_file, tiny_model_file):
    from portraitcolor import evaluate as core

    WeightsStore().add_file(hint_model_file, "hinted")
    for i in range(3):
        Image.fromarray(portrait_array(64, 48, seed=i)).save(tmp_path / f"p{i}.png")
    models = core.load_models(["hinted"])
    errors = {
        count: float(np.mean(core.evaluate([tmp_path], models=models, options=EvaluateOptions(device="cpu", hints=count)).methods["hinted"]["ab_mae"]))
        for count in (0, 5)
    }
    assert errors[0] != errors[5]  # the hints reached the network
    again = core.evaluate([tmp_path], models=models, options=EvaluateOptions(device="cpu", hints=5)).methods["hinted"]["ab_mae"]
    assert float(np.mean(again)) == errors[5]  # seeded: the same hints every run
    WeightsStore().add_file(tiny_model_file, "plain")
    plain = core.load_models(["plain"])
    with pytest.raises(HintError, match="takes no hints"):
        core.evaluate([tmp_path], models=plain, options=EvaluateOptions(device="cpu", hints=5))


def test_a_scribble_of_many_specks_spreads_in_a_bounded_number_of_colour_groups():
    """Each hint colour is one geodesic pass: thousands of specks of many colours are grouped
    (by coarser rounding) into at most MAX_GROUPS, and every hinted pixel still gets its group's
    colour correction."""
    rng = np.random.default_rng(0)
    channels = np.zeros((3, 96, 128), np.float32)
    specks = rng.random((96, 128)) < 0.05
    channels[0][specks], channels[1][specks] = rng.uniform(-0.8, 0.8, (2, specks.sum()))
    channels[2][specks] = 1
    groups = hint_rules._hint_groups(channels)
    assert 1 < len(groups) <= hint_rules.MAX_GROUPS
    assert np.array_equal(np.logical_or.reduce(groups), specks)  # every speck in one group
    assert sum(int(group.sum()) for group in groups) == int(specks.sum())
    out = hint_rules.follow_hints(np.zeros((96, 128, 2), np.float32), rng.uniform(0, 100, (96, 128)).astype(np.float32), channels)
    assert np.isfinite(out).all()
