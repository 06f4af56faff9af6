"""Decoding (modes, orientation, alpha, the reasons for unusable inputs) and encoding with
metadata; colour management and unusual pixel formats are in test_color_management.py."""

import io

import numpy as np
import pytest
from conftest import portrait_array
from PIL import Image, ImageCms

from portraitcolor import images, lab


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
    picture = images.read_image(path)
    assert picture.rgb.dtype == np.float32 and picture.rgb.shape == (96, 80, 3)
    assert 0.0 <= picture.rgb.min() and picture.rgb.max() <= 1.0
    assert picture.rgb.mean() > 0.1  # real content, not a black frame
    if name in ("la.png", "rgba.png"):
        assert picture.alpha is not None and picture.alpha.shape == (96, 80)


@pytest.mark.parametrize("name, make", READ_CASES)
def test_read_lightness_equals_the_lightness_of_read_image(tmp_path, name, make):
    """colorize's fast reader (lookup tables for 8-bit pixels) agrees with the full path."""
    path = _save(make(), tmp_path / name)
    picture, fast = images.read_image(path), images.read_lightness(path)
    assert fast.l.dtype == np.float32 and fast.l.shape == picture.rgb.shape[:2]
    np.testing.assert_allclose(fast.l, lab.rgb_to_l(picture.rgb), atol=1e-3)
    assert (fast.alpha is None) == (picture.alpha is None)
    if fast.alpha is not None:
        np.testing.assert_array_equal(fast.alpha, picture.alpha)
    assert (fast.format, fast.exif, fast.dpi) == (picture.format, picture.exif, picture.dpi)


def test_sixteen_bit_precision_is_kept(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "ramp.png"
    Image.fromarray(ramp).save(path)
    picture = images.read_image(path)
    assert len(np.unique(picture.rgb[..., 0])) > 1000  # more levels than 8 bits hold


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(portrait_array(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert images.read_image(path).rgb.shape == (40, 60, 3)


def test_palette_transparency_gives_alpha(tmp_path):
    image = Image.fromarray(portrait_array()).convert("P")
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    assert images.read_image(path).alpha is not None


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "0 bytes"), (b"hello world", "not an image"), (b"<html><body>404</body></html>", "not an image")],
)
def test_bad_bytes_give_a_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(images.ImageReadError, match=reason):
        images.read_image(path)


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(portrait_array(200, 200)).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(images.ImageReadError, match="truncated"):
        images.read_image(path)


def test_pixel_limit(tmp_path):
    path = _save(Image.new("L", (300, 300)), tmp_path / "big.png")
    with pytest.raises(images.ImageReadError, match="too large"):
        images.read_image(path, max_pixels=10_000)


def test_directory_and_missing(tmp_path):
    with pytest.raises(images.ImageReadError, match="directory"):
        images.read_image(tmp_path)
    with pytest.raises(images.ImageReadError, match="no such file"):
        images.read_image(tmp_path / "missing.png")


@pytest.mark.parametrize("file_format", ["JPEG", "PNG", "TIFF", "WEBP", "BMP"])
def test_encode_tags_srgb_and_carries_exif_and_dpi_where_the_format_holds_them(file_format):
    exif = Image.Exif()
    exif[270] = "A portrait"
    rgba = images.to_pil(portrait_array(24, 16), np.full((24, 16), 0.5, np.float32))
    buffer = io.BytesIO()
    images.encode(rgba, file_format, buffer, exif=exif.tobytes(), dpi=(300, 150))
    written = Image.open(io.BytesIO(buffer.getvalue()))
    assert written.size == (16, 24) and written.mode == ("RGB" if file_format in ("JPEG", "BMP") else "RGBA")
    if file_format != "BMP":
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).profile.profile_description
        assert ImageCms.ImageCmsProfile(io.BytesIO(written.info["icc_profile"])).profile.profile_description == srgb
        assert written.getexif().get(270) == "A portrait"
    if file_format != "WEBP":
        assert tuple(round(v) for v in written.info["dpi"]) == (300, 150)


def test_format_of_suffix():
    assert images.format_of_suffix(".jpg") == "JPEG" and images.format_of_suffix(".tif") == "TIFF"
    assert images.format_of_suffix(".nothing") is None
