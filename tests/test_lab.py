import io

import numpy as np
import pytest
from PIL import Image
from skimage import color

from portraitcolor import lab
from conftest import portrait_array


@pytest.fixture(scope="module")
def random_rgb():
    rng = np.random.default_rng(0)
    return rng.random((64, 64, 3), dtype=np.float32)


def test_rgb_to_lab_matches_skimage(random_rgb):
    ours = lab.rgb_to_lab(random_rgb)
    reference = color.rgb2lab(random_rgb.astype(np.float64))
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 0.01


def test_lab_to_rgb_matches_skimage_inside_gamut(random_rgb):
    lab_values = color.rgb2lab(random_rgb.astype(np.float64))
    ours = lab.lab_to_rgb(lab_values.astype(np.float32))
    reference = color.lab2rgb(lab_values)
    assert np.abs(ours - reference).max() < 1e-3


def test_round_trip_rgb_lab_rgb(random_rgb):
    assert np.abs(lab.lab_to_rgb(lab.rgb_to_lab(random_rgb)) - random_rgb).max() < 1e-4


def test_rgb_to_l_equals_first_channel(random_rgb):
    np.testing.assert_allclose(lab.rgb_to_l(random_rgb), lab.rgb_to_lab(random_rgb)[..., 0], atol=1e-3)


def test_storage_error_under_one_unit(random_rgb):
    values = lab.rgb_to_lab(random_rgb)
    stored = lab.encode_lab8(values)
    assert stored.dtype == np.uint8
    assert np.abs(lab.decode_lab8(stored) - values).max() < 1.0


def test_out_of_gamut_keeps_lightness():
    rng = np.random.default_rng(1)
    values = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-128, 127, 5000), rng.uniform(-128, 127, 5000)], 1).astype(np.float32)
    rgb = lab.lab_to_rgb(values)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert np.abs(lab.rgb_to_lab(rgb)[:, 0] - values[:, 0]).max() < 0.2


def test_network_encoding_is_the_inverse_of_decoding():
    ab = np.array([[-128.0, 0.0], [40.5, 127.0]], np.float32)
    np.testing.assert_allclose(lab.ab_from_net(lab.ab_to_net(ab)), ab, atol=1e-4)
    l_net, ab_net = lab.lab8_to_net(lab.encode_lab8(np.array([[50.0, 10.0, -20.0]], np.float32)))
    assert abs(l_net[0, 0] - 0.5) < 0.005 and abs(lab.ab_from_net(ab_net)[0, 0] - 10) < 0.01


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


READ_CASES = [
        ("rgb.jpg", lambda: Image.fromarray(portrait_array())),
        ("rgb.png", lambda: Image.fromarray(portrait_array())),
        ("rgb.webp", lambda: Image.fromarray(portrait_array())),
        ("rgb.bmp", lambda: Image.fromarray(portrait_array())),
        ("rgb.tif", lambda: Image.fromarray(portrait_array())),
        ("gray.png", lambda: Image.fromarray(portrait_array()).convert("L")),
        ("gray16.png", lambda: Image.fromarray((np.asarray(Image.fromarray(portrait_array()).convert("L")).astype(np.uint16) * 257)).convert("I;16")),
        ("gray16.tif", lambda: Image.fromarray((np.asarray(Image.fromarray(portrait_array()).convert("L")).astype(np.uint16) * 257))),
        ("float.tif", lambda: Image.fromarray(np.asarray(Image.fromarray(portrait_array()).convert("L")).astype(np.float32) / 255)),
        ("palette.png", lambda: Image.fromarray(portrait_array()).convert("P")),
        ("cmyk.jpg", lambda: Image.fromarray(portrait_array()).convert("CMYK")),
        ("la.png", lambda: Image.fromarray(portrait_array()).convert("LA")),
        ("rgba.png", lambda: Image.fromarray(portrait_array()).convert("RGBA")),
]


@pytest.mark.parametrize("name, make", READ_CASES)
def test_read_image_modes(tmp_path, name, make):
    path = _save(make(), tmp_path / name)
    picture = lab.read_image(path)
    assert picture.rgb.dtype == np.float32 and picture.rgb.shape == (96, 80, 3)
    assert 0.0 <= picture.rgb.min() and picture.rgb.max() <= 1.0
    assert picture.rgb.mean() > 0.1  # real content, not a black frame
    if name in ("la.png", "rgba.png"):
        assert picture.alpha is not None and picture.alpha.shape == (96, 80)


@pytest.mark.parametrize("name, make", READ_CASES)
def test_read_lightness_equals_the_lightness_of_read_image(tmp_path, name, make):
    """colorize's fast reader (lookup tables for 8-bit pixels) agrees with the full path."""
    path = _save(make(), tmp_path / name)
    picture, fast = lab.read_image(path), lab.read_lightness(path)
    assert fast.l.dtype == np.float32 and fast.l.shape == picture.rgb.shape[:2]
    np.testing.assert_allclose(fast.l, lab.rgb_to_l(picture.rgb), atol=1e-3)
    assert (fast.alpha is None) == (picture.alpha is None)
    if fast.alpha is not None:
        np.testing.assert_array_equal(fast.alpha, picture.alpha)
    assert (fast.format, fast.exif, fast.dpi) == (picture.format, picture.exif, picture.dpi)


def test_lab_to_srgb8_is_lab_to_rgb_within_one_level_and_keeps_lightness():
    """The fast 8-bit conversion, over the whole LAB box (most of it outside the gamut)."""
    rng = np.random.default_rng(3)
    values = np.stack([rng.uniform(0, 100, 90_000), rng.uniform(-128, 127, 90_000), rng.uniform(-128, 127, 90_000)], 1)
    values = values.astype(np.float32).reshape(300, 300, 3)
    fast = lab.lab_to_srgb8(values)
    exact = np.rint(lab.lab_to_rgb(values) * 255.0)
    assert fast.dtype == np.uint8 and fast.shape == values.shape
    assert np.abs(fast.astype(np.float32) - exact).max() <= 1.0
    lightness = lab.rgb_to_l(fast.astype(np.float32) / 255.0)
    assert np.abs(lightness - values[..., 0]).max() < 0.5  # 8-bit rounding, never a clipped channel


def test_sixteen_bit_precision_is_kept(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    picture = lab.read_image(path)
    assert len(np.unique(picture.rgb[..., 0])) > 1000  # more levels than 8 bits hold


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(portrait_array(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert lab.read_image(path).rgb.shape == (40, 60, 3)


def test_palette_transparency_gives_alpha(tmp_path):
    image = Image.fromarray(portrait_array()).convert("P")
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    assert lab.read_image(path).alpha is not None


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "0 bytes"), (b"hello world", "not an image"), (b"<html><body>404</body></html>", "not an image")],
)
def test_bad_bytes_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(lab.ImageReadError, match=reason):
        lab.read_image(path)


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(portrait_array(200, 200)).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(lab.ImageReadError, match="truncated"):
        lab.read_image(path)


def test_pixel_limit(tmp_path):
    path = _save(Image.new("L", (300, 300)), tmp_path / "big.png")
    with pytest.raises(lab.ImageReadError, match="too large"):
        lab.read_image(path, max_pixels=10_000)


def test_directory_and_missing(tmp_path):
    with pytest.raises(lab.ImageReadError, match="directory"):
        lab.read_image(tmp_path)
    with pytest.raises(lab.ImageReadError, match="no such file"):
        lab.read_image(tmp_path / "missing.png")
