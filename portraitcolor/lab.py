"""Image reading and the one sRGB <-> CIELAB conversion used everywhere.

Every part of portraitcolor (prepare, train, evaluate, colorize) goes through these
functions, so the colour maths and the normalisation constants live in one place.
The conversion is float32 numpy (sRGB, D65 white), never OpenCV's 8-bit lookup path,
whose rounding would put an error of several units into the training targets. colorize's
8-bit outputs take OpenCV's float conversion inside the gamut (lab_to_srgb8: the same
colours to within one level) and read lightness through lookup tables (read_lightness).
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import io
import math
import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PortraitcolorError

try:  # Pillow built without LittleCMS: pictures are read as stored, outputs go untagged
    from PIL import ImageCms
except ImportError:  # pragma: no cover - every wheel on PyPI has it
    ImageCms = None

# A photo larger than this is far beyond any camera and is almost certainly a
# decompression bomb (a tiny file that claims gigapixels).
DEFAULT_MAX_PIXELS = 100_000_000

# D65 reference white (the same constants as skimage.color, so that the tests can use
# it as the oracle) and the linear-sRGB -> XYZ matrix.
D65_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
_RGB_TO_XYZ = np.array(
    [
        [0.412453, 0.357580, 0.180423],
        [0.212671, 0.715160, 0.072169],
        [0.019334, 0.119193, 0.950227],
    ],
    dtype=np.float32,
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ.astype(np.float64)).astype(np.float32)
_EPSILON = 216 / 24389  # CIE's (6/29)^3: below it the cube root gets a linear segment
_KAPPA = 24389 / 27

# Conversions run over blocks of this many pixels so that a 24-megapixel photo never
# needs several full-size float temporaries at once (colorize's memory bound).
_BLOCK_PIXELS = 1 << 20

# ---- normalisation: storage (uint8, the paper's "int format") and network ranges ----
L_MAX = 100.0
AB_OFFSET = 128.0
AB_SPAN = 255.0


class ImageReadError(PortraitcolorError):
    """An input that cannot be used as an image; the message is the reason, for humans."""


@dataclasses.dataclass(frozen=True)
class Picture:
    """A decoded image: float32 sRGB in 0..1 of shape (H, W, 3) and optional alpha (H, W).

    `format` is Pillow's name of the file format it came from (JPEG, PNG, ...), if known.
    `exif` (EXIF bytes, orientation already reset to 1 and the file layout tags left out) and
    `dpi` are what an output written from this picture should carry on; the pixels are
    always sRGB, whatever profile the file embedded.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


@dataclasses.dataclass(frozen=True)
class Lightness:
    """What colorize needs of an input: CIELAB L (H, W) float32 in 0..100, the alpha and the
    metadata of a Picture (see there), without the float RGB copy (the largest array)."""

    l: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None


def read_image(
    source: str | os.PathLike | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Picture:
    """Decode any image Pillow opens, upright (EXIF orientation applied), as a Picture.

    Raises ImageReadError with a one-line reason for anything that is not a usable image:
    missing, empty, not an image, truncated, or over max_pixels.
    """
    return _read(source, max_pixels=max_pixels, min_side=None)[0]


def read_lightness(
    source: str | os.PathLike | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Lightness:
    """read_image's lightness alone, equal to rgb_to_l(read_image(source).rgb): 8-bit gray and
    RGB pixels go through lookup tables instead of float RGB, several times faster on
    camera-sized photos; other modes take read_image's path."""
    return _read(source, max_pixels=max_pixels, min_side=None, convert=_lightness_of)[0]


def read_image_reduced(
    source: str | os.PathLike | bytes | BinaryIO, *, min_side: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Picture, tuple[int, int]]:
    """read_image for callers that only need a smaller picture: JPEGs are decoded at
    1/2, 1/4 or 1/8 scale (the decoder's DCT scaling, several times faster than a full
    decode) as long as the shorter side stays at least min_side.

    Returns the picture and the image's stored (width, height) before any reduction.
    """
    return _read(source, max_pixels=max_pixels, min_side=min_side)


def _read(source, *, max_pixels: int, min_side: int | None, convert=None) -> tuple[Picture | Lightness, tuple[int, int]]:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageReadError("empty input (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        _check_path_readable(Path(source))
    try:
        with Image.open(source) as image:
            stored_size = image.size
            _check_size(stored_size, max_pixels)
            if min_side is not None:
                _reduce_while_decoding(image, min_side)
            # Pillow turns TIFFs upright while loading them and drops their orientation tag.
            tiff_orientation = _tiff_orientation(image)
            if tiff_orientation in _QUARTER_TURNS:
                # Pillow memory-maps uncompressed gray TIFFs with the turned size, which
                # scrambles their pixels; without a file name it decodes them instead.
                image.filename = ""
            image.load()
            return (convert or _picture_of)(image, tiff_orientation), stored_size
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageReadError("image is too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(f"corrupt or truncated image ({first_line(error)})") from None


def _picture_of(image: Image.Image, tiff_orientation: int | None) -> Picture:
    """A loaded image -> upright sRGB Picture with the metadata an output carries on.

    Profile, metadata and TIFF tags are read from the image as opened: the upright copy
    keeps only Pillow's info.
    """
    picture = _to_picture(_upright(image), _embedded_profile(image), declared_peak=_declared_peak(image))
    return dataclasses.replace(picture, **_carried_metadata(image, tiff_orientation))


def _lightness_of(image: Image.Image, tiff_orientation: int | None) -> Lightness:
    """_picture_of's lightness, through lookup tables where the pixels are 8-bit."""
    upright, profile = _upright(image), _embedded_profile(image)
    eight_bit = _eight_bit_pixels(upright, profile)
    if eight_bit is None:
        picture = _to_picture(upright, profile, declared_peak=_declared_peak(image))
        l, alpha = rgb_to_l(picture.rgb), picture.alpha
    else:
        l, alpha = lightness_of_8bit(eight_bit), _alpha(upright)
    return Lightness(l, alpha, **_carried_metadata(image, tiff_orientation))


def _carried_metadata(image: Image.Image, tiff_orientation: int | None) -> dict:
    return {
        "format": image.format,
        "exif": _carried_exif(image),
        "dpi": _carried_dpi(image, tiff_orientation or _orientation(image)),
    }


def _check_path_readable(path: Path) -> None:
    if path.is_dir():
        raise ImageReadError("is a directory")
    if not path.exists():
        raise ImageReadError(_missing_reason(path))
    if not os.access(path, os.R_OK):
        raise ImageReadError("permission denied")
    status = path.stat()
    # Checked before opening: opening a FIFO blocks until a writer comes, and /dev/zero
    # or a socket has no size (it used to be reported as an empty file).
    if not stat.S_ISREG(status.st_mode):
        raise ImageReadError(f"not a regular file ({_file_kind(status.st_mode)})")
    if status.st_size == 0:
        raise ImageReadError("empty file (0 bytes)")


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "a special file")


def _missing_reason(path: Path) -> str:
    if not path.is_symlink():
        return "no such file"
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop"
    return "no such file (broken symlink)"


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageReadError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"image is too large: {width}x{height} is over the limit of {max_pixels:,} pixels"
            " (raise it with --max-pixels)"
        )


def _reduce_while_decoding(image: Image.Image, min_side: int) -> None:
    # draft() is a no-op for formats without reduced decoding (everything but JPEG).
    width, height = image.size
    scale = min_side / max(1, min(width, height))
    if scale < 1.0:
        image.draft(image.mode, (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999))))


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (libraries' messages can run to pages)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _upright(image: Image.Image) -> Image.Image:
    # A corrupt EXIF block must not cost the user the photo: keep it as stored.
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return image


# ---- pixels: any Pillow mode -> float32 sRGB --------------------------------------

_HIGH_PRECISION_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})
# Gray images are decoded as one channel, so that a gray profile can be applied at 16 bits.
_GRAY_MODES = _HIGH_PRECISION_MODES | {"L", "LA"}
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}


def _to_picture(image: Image.Image, profile=None, *, declared_peak: float | None = None) -> Picture:
    """Turn any Pillow mode into float32 sRGB (+ alpha), keeping 16-bit and float precision.

    profile: the file's embedded ICC profile (see _embedded_profile), or None for pixels
    that are sRGB already or must be taken as stored. declared_peak: the white level the
    file states for integer gray data (see _declared_peak).
    """
    if image.mode in _PREMULTIPLIED:  # Pillow converts these only to their straight forms
        image = image.convert(_PREMULTIPLIED[image.mode])
    alpha = _alpha(image)
    if image.mode in _GRAY_MODES:
        gray = _gray_values(image, declared_peak)
        if _color_space(profile) == "GRAY":
            gray = _managed_gray(gray, profile)
        return Picture(rgb=np.repeat(gray[..., None], 3, axis=2), alpha=alpha)
    return Picture(rgb=_rgb_values(image, profile), alpha=alpha)


def _alpha(image: Image.Image) -> np.ndarray | None:
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


def _eight_bit_pixels(image: Image.Image, profile) -> np.ndarray | None:
    """The sRGB-encoded uint8 gray (H, W) or RGB (H, W, 3) that _to_picture would scale to
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
    if mode == "F" and not np.isfinite(values).all():
        raise ImageReadError("float image holds NaN or infinite values")
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


def _declared_peak(image: Image.Image) -> float | None:
    """The white level a TIFF states for integer data: MaxSampleValue, else 2**bits - 1 when
    up to 16 bits were read into a 32-bit 'I' image. None when the file says nothing."""
    tags = getattr(image, "tag_v2", None)
    if tags is None or image.mode == "F":
        return None
    try:
        bits = int(_first(tags.get(258, 0)))
        maximum = int(_first(tags.get(281, 0)))
    except (TypeError, ValueError):
        return None
    if 0 < bits <= 32 and 0 < maximum < (1 << bits) - 1:
        return float(maximum)
    return float((1 << bits) - 1) if 0 < bits <= 16 and image.mode == "I" else None


def _first(value):
    return value[0] if isinstance(value, tuple) else value


# ---- colour management: an embedded ICC profile -> sRGB ---------------------------


def _embedded_profile(image: Image.Image):
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
    return _linear_to_srgb(linear)


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


@functools.lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The sRGB ICC profile that outputs carry, so that no viewer has to guess their space."""
    if ImageCms is None:
        return b""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


# ---- metadata that outputs carry on -------------------------------------------------

_ORIENTATION = 0x0112
# Tags that describe the input file itself (strips, tiles, sample layout, its thumbnail,
# its own ICC profile, Photoshop's layer data), its resolution (which travels as dpi) or
# that repeat the orientation (XMP). Copied into an output, and into a TIFF output's own
# structure above all, they would lie.
_NOT_CARRIED_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 296, 317,
     320, 322, 323, 324, 325, 338, 339, 340, 341, 347, 513, 514, 530, 531, 532, 700, 34675, 37724}
)


def _carried_exif(image: Image.Image) -> bytes | None:
    """The input's EXIF (dates, description, copyright, camera, GPS) for its output, with the
    orientation reset to 1 because the pixels are turned upright on reading. None when there
    is none or it cannot be read: bad EXIF must not cost the user the photo."""
    try:
        exif = Image.Exif()
        exif.load(image.getexif().tobytes())  # a copy: _upright still reads the original
        for tag in _NOT_CARRIED_TAGS.intersection(exif):
            del exif[tag]
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        return exif.tobytes() if len(exif) else None
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return None


def _carried_dpi(image: Image.Image, orientation: int) -> tuple[float, float] | None:
    """The input's resolution as (x, y) dots per inch of the upright picture, if it states one."""
    try:
        x, y = (float(v) for v in image.info["dpi"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (0.0 < x < math.inf and 0.0 < y < math.inf):
        return None
    return (y, x) if orientation in _QUARTER_TURNS else (x, y)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return 1


_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _tiff_orientation(image: Image.Image) -> int | None:
    tags = getattr(image, "tag_v2", None)
    try:
        return None if tags is None else int(_first(tags.get(_ORIENTATION, 1)))
    except (TypeError, ValueError):
        return None


# ---- sRGB <-> CIELAB -------------------------------------------------------------


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..1, shape (..., 3) -> CIELAB float32 (L 0..100, a/b about -128..127)."""
    return _blockwise(rgb, _rgb_to_lab_block)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> sRGB float32 in 0..1, with out-of-gamut colours pulled in.

    Out-of-gamut colours lose chroma (a, b scaled toward 0) rather than being clipped
    per channel, so the result keeps the requested lightness: colorize promises that
    the output's L is the input's L.
    """
    return _blockwise(lab, _lab_to_rgb_in_gamut_block)


def rgb_to_l(rgb: np.ndarray) -> np.ndarray:
    """Only the L channel (..., ) of rgb_to_lab, without computing a and b."""
    flat = np.ascontiguousarray(rgb, dtype=np.float32).reshape(-1, 3)
    out = np.empty(flat.shape[0], dtype=np.float32)
    for start in range(0, flat.shape[0], _BLOCK_PIXELS):
        block = _srgb_to_linear(flat[start : start + _BLOCK_PIXELS])
        y = _luminance(block)
        out[start : start + _BLOCK_PIXELS] = 116.0 * _lab_f(y) - 16.0
    return out.reshape(rgb.shape[:-1])


@functools.lru_cache(maxsize=1)
def _eight_bit_tables() -> tuple[np.ndarray, np.ndarray]:
    """L of each gray level, and the linear value of each sRGB level (float32, 256 each)."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    return rgb_to_l(np.repeat(levels[:, None], 3, axis=1)), _srgb_to_linear(levels)


def lightness_of_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint8 sRGB gray (H, W) or RGB (H, W, 3) -> L (H, W) float32, equal to rgb_to_l of the
    same pixels scaled to 0..1: a gray level is one table lookup; RGB levels are linearised
    by a table, then only Y and its cube root are computed."""
    l_of_gray, linear_of_level = _eight_bit_tables()
    if pixels.ndim == 2:
        return cv2.LUT(pixels, l_of_gray)
    out = np.empty(pixels.shape[:2], np.float32)
    rows = max(1, _BLOCK_PIXELS // max(pixels.shape[1], 1))
    for top in range(0, pixels.shape[0], rows):
        linear = cv2.LUT(pixels[top : top + rows], linear_of_level)
        y = _luminance(linear.reshape(-1, 3)).reshape(linear.shape[:2])
        out[top : top + rows] = 116.0 * _lab_f(y) - 16.0
    return out


# OpenCV's float Lab -> RGB agrees with lab_to_rgb to within one 8-bit level inside the
# gamut, but clips each channel outside it (which changes L); a channel this close to 0 or 1
# may have been clipped, and its pixel is converted again by lab_to_rgb.
_CLIPPED_EDGE = 1e-6


def prepare_lab_to_srgb8() -> None:
    """Build OpenCV's LAB tables now (about 50 ms, once per process), for example in a
    thread while the first photo is decoded, rather than when it is converted."""
    cv2.cvtColor(np.zeros((1, 1, 3), np.float32), cv2.COLOR_Lab2RGB)


def lab_to_srgb8(lab: np.ndarray) -> np.ndarray:
    """CIELAB (H, W, 3) float32 -> sRGB uint8 (H, W, 3), lab_to_rgb's colours to within one
    level, about 8x faster on photos: OpenCV converts the pixels inside the gamut, and only
    those it may have clipped take lab_to_rgb's path, which keeps their L."""
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    inside = cv2.inRange(rgb, (_CLIPPED_EDGE,) * 3, (1.0 - _CLIPPED_EDGE,) * 3)
    suspects = np.flatnonzero(inside.reshape(-1) == 0)
    if suspects.size:
        flat = rgb.reshape(-1, 3)
        flat[suspects] = _lab_to_rgb_in_gamut_block(lab.reshape(-1, 3)[suspects])
    return cv2.convertScaleAbs(rgb, alpha=255.0)


def _blockwise(values: np.ndarray, convert) -> np.ndarray:
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, 3)
    out = np.empty_like(flat)
    for start in range(0, flat.shape[0], _BLOCK_PIXELS):
        out[start : start + _BLOCK_PIXELS] = convert(flat[start : start + _BLOCK_PIXELS])
    return out.reshape(values.shape)


def _times_matrix(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 3) @ matrix.T for a 3x3 (or 1x3) matrix, as (N, rows).

    Not numpy's matmul: for a 3-wide product it goes through multithreaded BLAS, whose
    threads stall each other on a busy machine (100x slower measured with bench/), and
    colorize runs these conversions in worker threads beside inference.
    """
    if values.shape[0] == 0:  # cv2.transform returns None for no pixels
        return np.empty((0, matrix.shape[0]), np.float32)
    return cv2.transform(values.reshape(-1, 1, 3), matrix).reshape(values.shape[0], matrix.shape[0])


def _luminance(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (N, 3) -> relative luminance Y (N,)."""
    return _times_matrix(linear, _RGB_TO_XYZ[1:2])[:, 0]


def _srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    return np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92).astype(np.float32)


def _linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.maximum(linear, 0.0)
    return np.where(
        linear > 0.0031308, 1.055 * linear ** (1 / 2.4) - 0.055, linear * 12.92
    ).astype(np.float32)


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPSILON, np.cbrt(t), (_KAPPA * t + 16.0) / 116.0).astype(np.float32)


def _lab_f_inverse(f: np.ndarray) -> np.ndarray:
    cube = f * f * f  # not f**3: numpy's float32 power is about 70x slower
    return np.where(cube > _EPSILON, cube, (116.0 * f - 16.0) / _KAPPA).astype(np.float32)


def _rgb_to_lab_block(rgb: np.ndarray) -> np.ndarray:  # (N, 3) -> (N, 3)
    xyz = _times_matrix(_srgb_to_linear(rgb), _RGB_TO_XYZ) / D65_WHITE
    fx, fy, fz = (_lab_f(xyz[:, i]) for i in range(3))
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=1)


def _lab_to_linear_block(lab: np.ndarray) -> np.ndarray:  # (N, 3) -> (N, 3) linear RGB
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = fy + lab[:, 1] / 500.0
    fz = fy - lab[:, 2] / 200.0
    xyz = np.stack([_lab_f_inverse(fx), _lab_f_inverse(fy), _lab_f_inverse(fz)], axis=1)
    return _times_matrix(xyz * D65_WHITE, _XYZ_TO_RGB)


def _lab_to_rgb_in_gamut_block(lab: np.ndarray) -> np.ndarray:
    lab = lab.astype(np.float32, copy=True)
    lab[:, 0] = np.clip(lab[:, 0], 0.0, L_MAX)
    linear = _desaturate_into_gamut(_lab_to_linear_block(lab))
    return np.clip(_linear_to_srgb(linear), 0.0, 1.0)


def _desaturate_into_gamut(linear: np.ndarray) -> np.ndarray:
    """Move out-of-gamut linear RGB toward the grey of the same luminance Y, just enough.

    Luminance is linear in linear RGB, so every mix of a colour with its own-Y grey keeps
    Y, hence L, exactly; the mixing factor has a closed form per channel, so this is one
    cheap pass instead of a search.
    """
    # Channels first, (3, N): numpy broadcasting of (N, 3) against (N, 1) runs 3-element
    # inner loops and was the slowest step of colorize (measured with bench/).
    channels = np.ascontiguousarray(linear.T)
    outside = (channels.min(axis=0) < 0.0) | (channels.max(axis=0) > 1.0)
    if not outside.any():
        return linear
    if not outside.all():  # most pixels of a photo are in gamut: map only the others
        channels[:, outside] = _desaturate_into_gamut(channels[:, outside].T).T
        return channels.T
    y = np.clip(_luminance(linear), 0.0, 1.0)  # (N,)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = np.where(channels > 1.0, (1.0 - y) / (channels - y), 1.0)
        under = np.where(channels < 0.0, y / (y - channels), 1.0)
    factor = np.clip(np.minimum(over, under).min(axis=0), 0.0, 1.0)
    factor = np.nan_to_num(factor, nan=0.0)
    return (y + factor * (channels - y)).T


# ---- storage encoding (uint8) and network encoding (0..1) --------------------------


def encode_lab8(lab: np.ndarray) -> np.ndarray:
    """CIELAB float -> the stored uint8 triple (L8, a8, b8) of DESIGN.md."""
    out = np.empty(lab.shape, dtype=np.uint8)
    out[..., 0] = np.clip(np.rint(lab[..., 0] * (255.0 / L_MAX)), 0, 255)
    out[..., 1:] = np.clip(np.rint(lab[..., 1:] + AB_OFFSET), 0, 255)
    return out


def decode_lab8(lab8: np.ndarray) -> np.ndarray:
    """Stored uint8 (L8, a8, b8) -> CIELAB float32."""
    lab8 = np.asarray(lab8, dtype=np.float32)
    out = np.empty(lab8.shape, dtype=np.float32)
    out[..., 0] = lab8[..., 0] * (L_MAX / 255.0)
    out[..., 1:] = lab8[..., 1:] - AB_OFFSET
    return out


def l_to_net(l: np.ndarray) -> np.ndarray:
    """L in 0..100 -> the network's input range 0..1."""
    return l / L_MAX


def ab_to_net(ab: np.ndarray) -> np.ndarray:
    """a, b in CIELAB units -> the sigmoid output range 0..1 (the training target)."""
    return (ab + AB_OFFSET) / AB_SPAN


def ab_from_net(out: np.ndarray) -> np.ndarray:
    """The network's sigmoid output 0..1 -> a, b in CIELAB units."""
    return out * AB_SPAN - AB_OFFSET


def lab8_to_net(lab8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stored uint8 (..., 3) -> (L in 0..1, ab in 0..1), the paper's normalisation on load.

    Both are exact affine maps of the stored bytes: L8/255 equals L/100, and
    (a8)/255 equals (a + 128)/255, the sigmoid target.
    """
    values = np.asarray(lab8, dtype=np.float32) / 255.0
    return values[..., :1], values[..., 1:]
