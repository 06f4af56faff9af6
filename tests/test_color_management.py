"""Colour management and unusual pixel formats: embedded ICC profiles are applied on reading,
outputs are tagged sRGB and keep the input's EXIF and DPI, float and 32-bit images are
scaled to their content, and transparency survives colorize."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from conftest import portrait_array, run_cli
from PIL import Image, ImageCms, TiffImagePlugin

from portraitcolor import images, lab

# ---- ICC profiles written here, independently of portraitcolor's own code ---------------
# Pillow can only create sRGB, Lab and XYZ profiles; a gray gamma-1.8 profile and an
# Adobe-RGB-like one (its primaries, D50-adapted, and gamma 563/256) are small enough to
# write from the ICC specification: a 128-byte header, a tag table and the tags.

D50 = (0.9642, 1.0, 0.8249)
GAMMA_18 = 461 / 256  # 1.8 as the u8Fixed8 number stored in the curve


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _curve(gamma: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(8) + bytes(3) + bytes(67)


def _icc(space: bytes, tags: dict[str, bytes]) -> bytes:
    table_size = 4 + 12 * len(tags)
    table, body = [], b""
    for signature, data in tags.items():
        table.append(signature.encode() + struct.pack(">II", 128 + table_size + len(body), len(data)))
        body += data + bytes(-len(data) % 4)
    header = struct.pack(">I", 128 + table_size + len(body)) + b"test" + struct.pack(">I", 0x02100000)
    header += b"mntr" + space + b"XYZ " + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp" + bytes(28)
    header += _s15(D50[0]) + _s15(D50[1]) + _s15(D50[2]) + b"test"
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def gray_profile(gamma: float = 1.8) -> bytes:
    return _icc(b"GRAY", {"desc": _desc(f"Gray gamma {gamma}"), "wtpt": _xyz(*D50), "kTRC": _curve(gamma)})


def adobe_like_profile() -> bytes:
    gamma = _curve(563 / 256)
    return _icc(
        b"RGB ",
        {
            "desc": _desc("Adobe RGB (1998) like"),
            "wtpt": _xyz(*D50),
            "rXYZ": _xyz(0.60974, 0.31111, 0.01947),
            "gXYZ": _xyz(0.20528, 0.62567, 0.06087),
            "bXYZ": _xyz(0.14919, 0.06322, 0.74457),
            "rTRC": gamma,
            "gTRC": gamma,
            "bTRC": gamma,
        },
    )


def _through_profile(image: Image.Image, icc: bytes) -> np.ndarray:
    """The reference: LittleCMS (via Pillow) converting the same pixels to sRGB, as 0..1."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return np.asarray(ImageCms.profileToProfile(image, source, srgb, outputMode="RGB"), np.float32) / 255.0


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    return np.where(linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, linear * 12.92)


GRAY_RAMP = np.tile(np.arange(256, dtype=np.uint8), (4, 1))


# ---- (a) embedded profiles are applied --------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_gray_gamma_18_profile_gives_the_profiles_lightness(tmp_path, suffix):
    tagged, stripped = tmp_path / f"tagged{suffix}", tmp_path / f"stripped{suffix}"
    options = {"quality": 100} if suffix == ".jpg" else {}
    Image.fromarray(GRAY_RAMP).save(tagged, icc_profile=gray_profile(1.8), **options)
    Image.fromarray(GRAY_RAMP).save(stripped, **options)
    as_tagged, as_stored = images.read_image(tagged).rgb, images.read_image(stripped).rgb
    stored = np.asarray(Image.open(stripped), np.float32) / 255.0  # JPEG's own rounding included

    reference = _through_profile(Image.open(stripped), gray_profile(1.8))
    exact = _srgb_encode(stored.astype(np.float64) ** GAMMA_18)
    # LittleCMS's 8-bit path is off by up to 1.5/255 near black; ours is exact in float.
    assert np.abs(as_tagged - reference).max() < 1.6 / 255
    assert np.abs(as_tagged[..., 0] - exact).max() < 0.1 / 255
    assert np.abs(as_tagged - as_stored).max() > 15 / 255  # the profile changed the lightness
    np.testing.assert_allclose(as_stored[..., 0], stored, atol=1e-6)  # untagged: as stored


def test_sixteen_bit_gray_profile_keeps_precision(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 4096).astype(np.uint16), (2, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path, icc_profile=gray_profile(1.8))
    gray = images.read_image(path).rgb[..., 0]
    assert len(np.unique(gray)) > 2000  # far more levels than 8 bits hold
    assert np.abs(gray - _srgb_encode((ramp / 65535.0) ** GAMMA_18)).max() < 0.1 / 255


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_rgb_profile_is_converted_to_srgb(tmp_path, suffix):
    pixels = portrait_array(48, 40, seed=3)
    path = tmp_path / f"adobe{suffix}"
    lossless = {".jpg": {"quality": 100}, ".webp": {"lossless": True}}.get(suffix, {})
    Image.fromarray(pixels).save(path, icc_profile=adobe_like_profile(), **lossless)
    stored = Image.open(path).convert("RGB")
    picture = images.read_image(path)
    np.testing.assert_allclose(picture.rgb, _through_profile(stored, adobe_like_profile()), atol=1e-6)
    assert np.abs(picture.rgb - np.asarray(stored) / 255.0).max() > 10 / 255
    # prepare reads through the same path, reduced JPEG decoding included
    reduced, _ = images.read_image_reduced(path, min_side=16)
    small = (reduced.width, reduced.height)
    to_converted = np.abs(reduced.rgb - _through_profile(stored.resize(small, Image.BOX), adobe_like_profile())).mean()
    to_stored = np.abs(reduced.rgb - np.asarray(stored.resize(small, Image.BOX)) / 255.0).mean()
    assert to_converted < 2.5 / 255 and to_converted < to_stored / 3


@pytest.mark.parametrize("profile, mode", [(adobe_like_profile, "RGB"), (adobe_like_profile, "RGBA"), (gray_profile, "L")])
def test_read_lightness_applies_profiles_like_read_image(tmp_path, profile, mode):
    path = tmp_path / "tagged.png"
    Image.fromarray(portrait_array()).convert(mode).save(path, icc_profile=profile())
    np.testing.assert_allclose(images.read_lightness(path).l, lab.rgb_to_l(images.read_image(path).rgb), atol=1e-3)


def test_palette_and_rgba_images_are_converted_too(tmp_path):
    face = Image.fromarray(portrait_array(48, 40, seed=4))
    for name, image, options in [("p.png", face.convert("P"), {"transparency": 0}), ("rgba.png", face.convert("RGBA"), {})]:
        path = tmp_path / name
        image.save(path, icc_profile=adobe_like_profile(), **options)
        picture = images.read_image(path)
        reference = _through_profile(Image.open(path).convert("RGB"), adobe_like_profile())
        np.testing.assert_allclose(picture.rgb, reference, atol=1e-6)
        assert picture.alpha is not None


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
@pytest.mark.parametrize("mode", ["L", "I;16", "RGB"])
def test_quarter_turned_tiffs_of_every_mode_are_upright_and_intact(tmp_path, orientation, mode):
    """Pillow memory-maps uncompressed gray TIFFs with their turned size, scrambling the
    pixels; they must come out as the same photo saved as PNG does."""
    face = Image.fromarray(portrait_array(48, 40, seed=9, gray=True)).convert("L")
    image = {"L": face, "RGB": face.convert("RGB"), "I;16": Image.fromarray(np.asarray(face).astype(np.uint16) * 257)}[mode]
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(tmp_path / "turned.tif", exif=exif)
    image.save(tmp_path / "turned.png", exif=exif)
    from_tiff, from_png = images.read_image(tmp_path / "turned.tif").rgb, images.read_image(tmp_path / "turned.png").rgb
    assert from_tiff.shape == (40, 48, 3)
    np.testing.assert_array_equal(from_tiff, from_png)


# ---- (b) profiles that must not change or cost the photo --------------------------------


@pytest.mark.parametrize(
    "name, icc",
    [
        ("garbage", b"this is not an ICC profile" * 8),
        ("truncated", adobe_like_profile()[:150]),
        ("wrong space", gray_profile(1.8)),  # a gray profile on RGB pixels is ignored, as browsers do
        ("srgb", ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
    ],
)
def test_profiles_that_cannot_apply_keep_the_pixels_as_stored(tmp_path, name, icc):
    pixels = portrait_array(40, 32, seed=5)
    path = tmp_path / f"{name}.png"
    Image.fromarray(pixels).save(path, icc_profile=icc)
    np.testing.assert_allclose(images.read_image(path).rgb, pixels / 255.0, atol=1e-6)


# ---- (d) float and 32-bit integer images ------------------------------------------------

CONTENT = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (24, 1))  # what the pixels mean


def _tiff(path, array, **options):
    Image.fromarray(array).save(path, **options)
    return path


def _max_sample(value: int) -> dict:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[281] = value  # MaxSampleValue: 12-bit data in a 16-bit file
    return {"tiffinfo": tags}


@pytest.mark.parametrize(
    "name, array, options, expected",
    [
        ("float 0..1", CONTENT, {}, CONTENT),
        ("float 0..255", CONTENT * 255, {}, CONTENT),
        ("float 0..65535", np.rint(CONTENT * 65535), {}, CONTENT),
        # a little over 1 (HDR, resampling ringing) is stretched to fit, no longer divided by 255
        ("float overshooting 1", CONTENT * 1.5, {}, CONTENT / CONTENT.max()),
        ("float of any range", CONTENT * 1e6, {}, CONTENT / CONTENT.max()),
        ("32-bit int of 8-bit data", np.rint(CONTENT * 255).astype(np.int32), {}, CONTENT),
        ("32-bit int of 16-bit data", np.rint(CONTENT * 65535).astype(np.int32), {}, CONTENT),
        ("32-bit int of 32-bit data", np.rint(CONTENT * 2**31).astype(np.int32), {}, CONTENT / CONTENT.max()),
        ("16-bit", np.rint(CONTENT * 65535).astype(np.uint16), {}, CONTENT),
        ("12-bit in 16 with MaxSampleValue", np.rint(CONTENT * 4095).astype(np.uint16), _max_sample(4095), CONTENT),
    ],
)
def test_float_and_integer_tiffs_decode_to_their_content(tmp_path, name, array, options, expected):
    path = _tiff(tmp_path / "image.tif", array, **options)
    assert Image.open(path).mode in ("F", "I", "I;16")
    gray = images.read_image(path).rgb
    assert gray.mean() > 0.3 and gray.max() < 1.0 + 1e-6  # not black, not a white sheet
    np.testing.assert_allclose(gray[..., 0], expected, atol=1 / 255)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_image_with_nan_or_inf_is_refused_with_one_line(tmp_path, bad):
    array = CONTENT.copy()
    array[3, 5] = bad
    path = _tiff(tmp_path / "bad.tif", array)
    with pytest.raises(images.ImageReadError) as caught:
        images.read_image(path)
    message = str(caught.value)
    assert "NaN or infinite" in message and "\n" not in message


# ---- (c, e) colorize outputs: sRGB tag, EXIF, DPI, alpha --------------------------------

EXIF_TEXT = {306: "2001:02:03 04:05:06", 270: "A portrait of grandmother", 33432: "(c) The family"}


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif.update(EXIF_TEXT)
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "1950:06:07 08:09:10"  # DateTimeOriginal, in the Exif sub-IFD
    return exif


@pytest.fixture
def tagged_inputs(tmp_path):
    """Gray portraits with EXIF (rotated a quarter turn), DPI and a gray gamma-1.8 profile,
    plus LA and palette-with-transparency PNGs."""
    root = tmp_path / "in"
    root.mkdir()
    face = Image.fromarray(portrait_array(48, 40, seed=6, gray=True)).convert("L")
    for suffix in (".jpg", ".png", ".tif", ".webp"):
        face.save(root / f"meta{suffix}", exif=_exif(6), dpi=(300, 150), icc_profile=gray_profile(1.8))
    la = Image.fromarray(portrait_array(48, 40, seed=7, gray=True)).convert("LA")
    la.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 40).astype(np.uint8), (48, 1))))
    la.save(root / "la.png")
    palette = face.convert("P")
    palette.save(root / "palette.png", transparency=int(np.asarray(palette)[0, 0]))
    return root


def test_colorize_outputs_carry_srgb_exif_dpi_and_alpha(tagged_inputs, tmp_path, tiny_model_file):
    out = tmp_path / "out"
    run_cli("colorize", str(tagged_inputs), "-O", str(out), "-m", str(tiny_model_file), check=True)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    for suffix in (".jpg", ".png", ".tif", ".webp"):
        result = Image.open(out / f"meta{suffix}")
        assert result.size == (48, 40)  # upright: the quarter turn was applied
        icc = ImageCms.ImageCmsProfile(io.BytesIO(result.info["icc_profile"]))
        assert icc.profile.profile_description == srgb.profile.profile_description
        exif = result.getexif()
        assert {tag: exif.get(tag) for tag in EXIF_TEXT} == EXIF_TEXT, suffix
        assert exif.get(0x0112, 1) == 1  # the pixels are upright; a viewer must not turn them again
        assert exif.get(0x0131).startswith("portraitcolor ")  # Software: a later run knows its results
        if suffix != ".tif":  # Pillow's TIFF writer leaves the Exif sub-IFD out
            assert exif.get_ifd(0x8769).get(0x9003) == "1950:06:07 08:09:10"
        if suffix != ".webp":  # WebP has no resolution
            assert tuple(round(v) for v in result.info["dpi"]) == (150, 300)  # turned with the pixels
        # the output keeps the lightness the profile gave the input (L from the tagged file)
        before = lab.rgb_to_l(images.read_image(tagged_inputs / f"meta{suffix}").rgb)
        after = lab.rgb_to_l(images.read_image(out / f"meta{suffix}").rgb)
        assert np.abs(before - after).mean() < (2.0 if suffix in (".jpg", ".webp") else 0.5)
    la_out = Image.open(out / "la.png")
    assert la_out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(la_out)[..., 3], np.asarray(Image.open(tagged_inputs / "la.png"))[..., 1])
    palette_in = Image.open(tagged_inputs / "palette.png").convert("RGBA")
    palette_out = Image.open(out / "palette.png")
    assert palette_out.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(palette_out)[..., 3], np.asarray(palette_in)[..., 3])
    assert (np.asarray(palette_out)[..., 3] == 0).any()


def test_python_api_result_holds_the_metadata_to_save(tagged_inputs, tiny_model_file):
    from portraitcolor import colorize_image, load_model

    out = colorize_image(tagged_inputs / "meta.jpg", load_model(tiny_model_file))
    assert out.size == (48, 40) and out.info["icc_profile"]
    assert tuple(round(v) for v in out.info["dpi"]) == (150, 300)
    exif = Image.Exif()
    exif.load(out.info["exif"])
    assert exif.get(270) == EXIF_TEXT[270] and exif.get(0x0112) == 1
    assert exif.get(0x0131).startswith("portraitcolor ")  # Software: as colorize's files say
    # a PIL float image (which PNG cannot hold) is colorized too
    floats = colorize_image(Image.fromarray(CONTENT * 1.1), load_model(tiny_model_file))
    assert floats.size == (64, 24) and np.asarray(floats).mean() > 60


def test_metadata_a_format_cannot_hold_does_not_cost_the_photo(tmp_path, tiny_model_file):
    """EXIF over JPEG's 64 KiB segment: the output is written without it."""
    exif = _exif(1)
    exif.get_ifd(0x8769)[0x9286] = b"\0" * 8 + b"x" * 70_000  # a huge UserComment
    source = tmp_path / "big_exif.png"
    Image.fromarray(portrait_array(32, 32, seed=8, gray=True)).save(source, exif=exif)
    result = run_cli("colorize", str(source), "-o", str(tmp_path / "out.jpg"), "-m", str(tiny_model_file), check=True)
    assert result.returncode == 0
    written = Image.open(tmp_path / "out.jpg")
    assert written.size == (32, 32) and written.info.get("icc_profile")
