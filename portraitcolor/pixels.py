"""Pixels of any Pillow mode as float32 sRGB: the pixel half of decoding (images.py opens the file).

8- and 16-bit, 32-bit integer and float gray, palettes, premultiplied alpha and CMYK become
sRGB in 0..1 with their alpha, keeping 16-bit and float precision; an embedded ICC profile
(gray, RGB or CMYK) is applied on the way, so the pixels are always sRGB.
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
from PIL import Image

from .lab import linear_to_srgb

try:  # Pillow built without LittleCMS: pictures are read as stored
    from PIL import ImageCms
except ImportError:  # pragma: no cover - every wheel on PyPI has it
    ImageCms = None


# ---- pixels: any Pillow mode -> float32 sRGB --------------------------------------

_HIGH_PRECISION_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Gray images are decoded as one channel, so that a gray profile can be applied at 16 bits.
_GRAY_MODES = _HIGH_PRECISION_MODES | {"L", "LA"}
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}


def to_srgb(image: Image.Image, profile=None, *, declared_peak: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Any Pillow mode -> float32 sRGB (H, W, 3) in 0..1 and alpha (H, W) or None, keeping
    16-bit and float precision. Float pixels must be finite (images.py checks on reading).

    profile: the file's embedded ICC profile (see embedded_profile), or None for pixels
    that are sRGB already or must be taken as stored. declared_peak: the white level the
    file states for integer gray data (images.py reads it from the file's tags).
    """
    if image.mode in _PREMULTIPLIED:  # Pillow converts these only to their straight forms
        image = image.convert(_PREMULTIPLIED[image.mode])
    alpha = alpha_of(image)
    if image.mode in _GRAY_MODES:
        gray = _gray_values(image, declared_peak)
        if _color_space(profile) == "GRAY":
            gray = _managed_gray(gray, profile)
        return np.repeat(gray[..., None], 3, axis=2), alpha
    return _rgb_values(image, profile), alpha


def alpha_of(image: Image.Image) -> np.ndarray | None:
    """Alpha in 0..1 (H, W), or None: an alpha band, a palette or colour key (tRNS), or the
    one transparent level of a 16-bit gray PNG."""
    if image.mode in _HIGH_PRECISION_MODES:
        key = image.info.get("transparency")
        return (np.asarray(image) != key).astype(np.float32) if isinstance(key, int) else None
    if image.mode in ("RGBA", "LA", "PA"):
        return np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    if "transparency" in image.info:  # a palette entry or colour key marked transparent (tRNS)
        return np.asarray(image.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    return None


def _gray_values(image: Image.Image, declared_peak: float | None) -> np.ndarray:
    if image.mode in _HIGH_PRECISION_MODES:
        return _scale_high_precision(np.asarray(image), image.mode, declared_peak=declared_peak)
    gray = _gray8(image).astype(np.float32)
    gray *= 1.0 / 255.0  # in place: a 24-megapixel photo must not need two float copies
    return gray


def _rgb_values(image: Image.Image, profile) -> np.ndarray:
    # In-place scaling: a 24-megapixel photo must not need two float copies at once.
    rgb = _srgb8(image, profile).astype(np.float32)
    rgb *= 1.0 / 255.0
    return rgb


def _gray8(image: Image.Image) -> np.ndarray:
    """8-bit gray pixels (H, W) of an 8-bit gray (or any low-precision) image."""
    return np.asarray(image if image.mode == "L" else image.convert("L"))


def _srgb8(image: Image.Image, profile) -> np.ndarray:
    """uint8 sRGB (H, W, 3): RGB or CMYK pixels through their embedded profile, if any."""
    color = image if image.mode in ("RGB", "CMYK") else image.convert("RGB")
    if _color_space(profile) == color.mode:
        color = _managed_color(color, profile)
    return np.asarray(color.convert("RGB") if color.mode != "RGB" else color)


def eight_bit_pixels(image: Image.Image, profile) -> np.ndarray | None:
    """The sRGB-encoded uint8 gray (H, W) or RGB (H, W, 3) that to_srgb would scale to
    float, or None where its pixels are not 8-bit (16-bit, float, a gray profile applied at
    16 bits, palettes, CMYK)."""
    if image.mode in ("L", "LA") and _color_space(profile) != "GRAY":
        return _gray8(image)
    if image.mode in ("RGB", "RGBA"):
        return _srgb8(image, profile)
    return None


def _scale_high_precision(values: np.ndarray, mode: str, *, declared_peak: float | None = None) -> np.ndarray:
    """16-bit, 32-bit integer ('I') and float ('F') gray values -> float32 0..1."""
    values = values.astype(np.float32)
    if values.size == 0:
        return values
    black, white = _value_range(values, mode, declared_peak)
    values -= black
    values *= 1.0 / max(white - black, np.finfo(np.float32).tiny)
    return np.clip(values, 0.0, 1.0, out=values)


def _value_range(values: np.ndarray, mode: str, declared_peak: float | None) -> tuple[float, float]:
    """The stored values that mean black and white.

    16-bit images: their bit depth, as every viewer shows them, or the smaller white level
    the file declares (12-bit data in a 16-bit TIFF). 32-bit integers and floats carry no
    range: data within 0..1 (floats), 0..255 or 0..65535 is taken at that scale; anything
    else, such as floats overshooting 1 a little, negative values or 32-bit counts, is
    stretched just enough to fit (scaling it by 255, 65535 or 2**32 turned it black, and
    clipping it at the top turned it white).
    """
    if mode.startswith("I;16"):
        return 0.0, float(declared_peak or 65535)
    if declared_peak:
        return 0.0, float(declared_peak)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0:
        if mode == "F" and high <= _FLOAT_OVERSHOOT:
            return 0.0, max(high, 1.0)
        for peak in (255.0, 65535.0):
            if high <= peak:
                return 0.0, peak
    return min(low, 0.0), max(high, 1.0)


# Floats up to this are 0..1 data that overshoots (HDR, resampling ringing), not 0..255 data.
_FLOAT_OVERSHOOT = 2.0


# ---- colour management: an embedded ICC profile -> sRGB ---------------------------


def embedded_profile(image: Image.Image):
    """The file's ICC profile when its pixels must be converted to sRGB, else None: no
    profile, an sRGB one (nothing to do), or one LittleCMS cannot read. A corrupt profile
    must not cost the user the photo: its pixels are taken as stored (as with bad EXIF).
    """
    data = image.info.get("icc_profile")
    if not data or ImageCms is None:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        description = profile.profile.profile_description or ""
        space = profile.profile.xcolor_space
    except Exception:  # noqa: BLE001 - LittleCMS raises several types on bad bytes
        return None
    if space.strip() == "RGB" and "srgb" in description.lower():
        return None
    return profile


def _color_space(profile) -> str | None:
    """'RGB', 'GRAY', 'CMYK', ... of a profile; a profile whose space does not match the
    pixels (an RGB profile on a gray JPEG) is ignored, as browsers do."""
    return None if profile is None else profile.profile.xcolor_space.strip()


def _managed_color(color: Image.Image, profile) -> Image.Image:
    """RGB or CMYK pixels through their profile to sRGB (perceptual intent: what browsers
    and editors use by default). Kept as stored if LittleCMS cannot build the transform."""
    try:
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return ImageCms.profileToProfile(color, profile, srgb, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB")
    except Exception:  # noqa: BLE001 - a profile that parses but does not transform
        return color


def _managed_gray(gray: np.ndarray, profile) -> np.ndarray:
    """Gray values (0..1) through the file's gray profile to sRGB-encoded gray, at 16 bits."""
    try:
        table = _gray_to_srgb_table(profile)
    except Exception:  # noqa: BLE001 - a profile that parses but does not transform
        return gray
    return table[np.rint(gray * 65535.0).astype(np.uint16)]


def _gray_to_srgb_table(profile) -> np.ndarray:
    """sRGB-encoded gray (float32) for each of the 65536 16-bit levels of a gray profile.

    LittleCMS maps the levels to linear luminance (the target is a linear gray profile:
    Pillow's float transforms return garbage, its 8-bit ones would drop 16-bit precision);
    unoptimised, because its optimised 16-bit curves are off by up to 1.4/255 near black.
    One table lookup then serves every pixel, and the sRGB curve is applied in float.
    """
    linear_gray = ImageCms.ImageCmsProfile(io.BytesIO(_linear_gray_icc()))
    transform = ImageCms.buildTransform(
        profile, linear_gray, "I;16", "I;16",
        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, flags=ImageCms.Flags.NOOPTIMIZE,
    )
    levels = Image.fromarray(np.arange(65536, dtype=np.uint16).reshape(256, 256))
    linear = np.asarray(transform.apply(levels), dtype=np.float32).reshape(-1) / 65535.0
    return linear_to_srgb(linear)


@functools.lru_cache(maxsize=1)
def _linear_gray_icc() -> bytes:
    """A minimal ICC v2 gray profile with an identity tone curve and D50 white.

    Pillow can create sRGB, Lab and XYZ profiles, none of them gray, so it is written here:
    a 128-byte header, a tag table, and the three tags a gray display profile needs.
    """
    def xyz(x: float, y: float, z: float) -> bytes:
        return struct.pack(">3i", *(round(v * 65536) for v in (x, y, z)))  # s15Fixed16

    name = b"portraitcolor linear gray\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(4 + 4 + 2 + 1 + 67)),
        (b"wtpt", b"XYZ " + bytes(4) + xyz(0.9642, 1.0, 0.8249)),
        (b"kTRC", b"curv" + bytes(4) + struct.pack(">I", 0)),  # no entries: the identity
    ]
    table_end = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        table += signature + struct.pack(">II", table_end + len(body), len(data))
        body += data + bytes(-len(data) % 4)  # tags start on 4-byte boundaries
    header = struct.pack(">I4sI4s4s4s", table_end + len(body), b"lcms", 0x02100000, b"mntr", b"GRAY", b"XYZ ")
    header += bytes(12) + b"acsp" + bytes(28) + xyz(0.9642, 1.0, 0.8249) + bytes(48)
    return header + table + body
