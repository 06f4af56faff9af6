"""The model that ships inside the package: present, small, valid, and used when the store is empty."""

import numpy as np
from PIL import Image

from portraitcolor import images, lab
from portraitcolor.store import resolve_model
from portraitcolor.weights import BUILTIN_NAME, PACKAGED, read_header
from tests.conftest import REPO, run_cli, write_portrait

PACKAGED_DEFAULT = PACKAGED[BUILTIN_NAME]


def test_packaged_model_is_small_and_described():
    assert PACKAGED_DEFAULT.is_file()
    assert PACKAGED_DEFAULT.stat().st_size <= 10 * 1024 * 1024
    _, metadata = read_header(PACKAGED_DEFAULT)
    assert metadata["config"]["size"] == 128
    assert metadata["training"]["data"]  # where it came from is recorded


def test_packaged_model_is_the_default_of_an_empty_store():
    model = resolve_model()
    assert model.config == resolve_model(PACKAGED_DEFAULT).config


def test_colorize_with_no_model_argument_gives_colour(tmp_path):
    source = write_portrait(tmp_path / "old.png", 160, 128, seed=4, gray=True)
    result = run_cli("colorize", str(source), check=True)
    output = tmp_path / "old_color.png"
    assert result.stdout.decode().strip() == str(output)
    colour = lab.rgb_to_lab(images.read_image(output).rgb)
    chroma = np.hypot(colour[..., 1], colour[..., 2])
    assert chroma.mean() > 3.0  # visibly coloured, not left gray
    assert np.abs(colour[..., 0] - lab.rgb_to_l(images.read_image(source).rgb)).mean() < 0.5


def test_shipped_sample_colours(tmp_path):
    result = run_cli("colorize", str(REPO / "examples" / "portrait_gray.jpg"), "-o", str(tmp_path / "sample.png"), check=True)
    assert result.returncode == 0
    assert Image.open(tmp_path / "sample.png").size == Image.open(REPO / "examples" / "portrait_gray.jpg").size
