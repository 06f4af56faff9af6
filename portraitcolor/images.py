"""Decoding images, and encoding outputs with the metadata they carry on.

Any image Pillow opens is read upright (EXIF orientation applied) as float32 sRGB with its
alpha, under a pixel limit (pixels.py converts the modes and embedded ICC profiles); a file
that cannot be used as an image gets an ImageReadError with a one-line reason. Outputs are
written tagged sRGB, with the input's EXIF (orientation reset) and resolution where their
format holds them; a 16-bit scan's result keeps 16 bits a channel in PNG and TIFF (encode_deep).
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
import threading
import zlib
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import __version__
from .config import DEFAULT_MAX_PIXELS
from .errors import PortraitcolorError, first_line
from .inputs import HEIF_SUFFIXES
from .lab import lightness_of_8bit, rgb_to_l
from .pixels import alpha_of, eight_bit_pixels, embedded_profile, to_srgb

try:  # Pillow built without LittleCMS: outputs go untagged
    from PIL import ImageCms
except ImportError:  # pragma: no cover - every wheel on PyPI has it
    ImageCms = None



class ImageReadError(PortraitcolorError):
    """An input that cannot be used as an image; the message is the reason, for humans."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Carried:
    """What a decoded input carries besides its pixels (a Picture and a Lightness alike).

    `alpha`: (H, W) in 0..1, or None. `format`: Pillow's name of the file format it came
    from (JPEG, PNG, ...), if known. `exif` (EXIF bytes, orientation already reset to 1 and
    the file layout tags left out) and `dpi` are what an output written from the picture
    should carry on. `frames`: how many frames or pages the file holds (an animated GIF, a
    multi-page TIFF); the picture is the first. `colorized`: the file was written by
    portraitcolor (its EXIF says so: a colorize result, a report's strip), whose colours are
    a model's guess: not a photo to train on or to measure against.
    """

    alpha: np.ndarray | None = None
    format: str | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    frames: int = 1
    colorized: bool = False
    deep: bool = False  # more than 8 bits a sample (a 16-bit scan): its result keeps 16 where it can


@dataclasses.dataclass(frozen=True)
class Picture(_Carried):
    """A decoded image: float32 sRGB in 0..1 of shape (H, W, 3), the pixels always sRGB
    whatever profile the file embedded, with the alpha and metadata of _Carried."""

    rgb: np.ndarray

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


@dataclasses.dataclass(frozen=True)
class Lightness(_Carried):
    """What colorize needs of an input: CIELAB L (H, W) float32 in 0..100 with the alpha and
    metadata of _Carried, without a Picture's float RGB copy (the largest array)."""

    l: np.ndarray


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


def _read(source, *, max_pixels: int, min_side: int | None, convert=None, again: bool = False) -> tuple[Picture | Lightness, tuple[int, int]]:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageReadError("empty input (0 bytes)")
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        _check_path_readable(Path(source))
    try:
        return _decoded(source, max_pixels=max_pixels, min_side=min_side, convert=convert)
    except UnidentifiedImageError:
        heif = _is_heif(source)
        if heif and not again and _heif_reader():  # read once more, with the HEIF reader
            return _read(source, max_pixels=max_pixels, min_side=min_side, convert=convert, again=True)
        if heif and "HEIF" not in Image.OPEN:
            raise ImageReadError("a HEIF/HEIC photo: reading it needs pillow-heif (pip install 'portraitcolor[heif]')") from None
        raise ImageReadError("not an image Pillow can read") from None


def _decoded(source, *, max_pixels: int, min_side: int | None, convert) -> tuple[Picture | Lightness, tuple[int, int]]:
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
            _check_finite(image)
            return (convert or _picture_of)(image, tiff_orientation), stored_size
    except (ImageReadError, UnidentifiedImageError):
        raise
    except Image.DecompressionBombError:
        raise ImageReadError("image is too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(f"corrupt or truncated image ({first_line(error)})") from None


# ISO base media files (HEIF, HEIC, AVIF) open with an 'ftyp' box naming their brands.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})


def _is_heif(source) -> bool:
    """Whether the file is a HEIF image (an iPhone's HEIC photo): its first box is 'ftyp' with
    a HEIF brand. A file object is read from the start and left there."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as handle:
                head = handle.read(12)
        else:
            source.seek(0)
            head = source.read(12)
            source.seek(0)
    except (OSError, ValueError, AttributeError):  # a stream that cannot go back
        return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _heif_reader() -> bool:
    """Whether Pillow reads HEIF, teaching it through pillow-heif (the optional extra 'heif')
    the first time a HEIF file is met: importing it costs every other photo nothing. colorize
    decodes in several threads: one registers it, the others find it registered."""
    with _HEIF_LOCK:
        if "HEIF" not in Image.OPEN:
            try:
                import pillow_heif
            except ImportError:
                return False
            pillow_heif.register_heif_opener()
        return "HEIF" in Image.OPEN


_HEIF_LOCK = threading.Lock()


def _picture_of(image: Image.Image, tiff_orientation: int | None) -> Picture:
    """A loaded image -> upright sRGB Picture with the metadata an output carries on.

    Profile, metadata and TIFF tags are read from the image as opened: the upright copy
    keeps only Pillow's info.
    """
    rgb, alpha = to_srgb(_upright(image), embedded_profile(image), declared_peak=_declared_peak(image))
    return Picture(rgb, alpha=alpha, **_carried_metadata(image, tiff_orientation))


def _lightness_of(image: Image.Image, tiff_orientation: int | None) -> Lightness:
    """_picture_of's lightness, through lookup tables where the pixels are 8-bit."""
    upright, profile = _upright(image), embedded_profile(image)
    eight_bit = eight_bit_pixels(upright, profile)
    if eight_bit is None:
        rgb, alpha = to_srgb(upright, profile, declared_peak=_declared_peak(image))
        l = rgb_to_l(rgb)
    else:
        l, alpha = lightness_of_8bit(eight_bit), alpha_of(upright)
    return Lightness(l, alpha=alpha, **_carried_metadata(image, tiff_orientation))


def _carried_metadata(image: Image.Image, tiff_orientation: int | None) -> dict:
    return {
        "format": image.format,
        "exif": _carried_exif(image),
        "dpi": _carried_dpi(image, tiff_orientation or _orientation(image)),
        "frames": _frame_count(image),
        "colorized": _software(image).startswith(SOFTWARE_NAME),
        "deep": image.mode in _DEEP_MODES,
    }


# Pillow's modes of more than 8 bits a sample: 16-bit gray (a scanner's), 32-bit integer and
# float gray. (Pillow reads 16-bit colour files as 8-bit RGB: their extra bits are gone.)
_DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def _frame_count(image: Image.Image) -> int:
    """Frames of an animation or pages of a document (1 for a still image)."""
    if image.format == "MPO":  # a camera JPEG's second picture is its preview or a stereo pair's other eye
        return 1
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - a damaged later frame must not cost the first one
        return 1


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


def _check_finite(image: Image.Image) -> None:
    # NaN or infinity has no colour, and it would spread through the float scaling.
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():
        raise ImageReadError("float image holds NaN or infinite values")


def _reduce_while_decoding(image: Image.Image, min_side: int) -> None:
    # draft() is a no-op for formats without reduced decoding (everything but JPEG).
    width, height = image.size
    scale = min_side / max(1, min(width, height))
    if scale < 1.0:
        image.draft(image.mode, (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999))))


def _upright(image: Image.Image) -> Image.Image:
    # A corrupt EXIF block must not cost the user the photo: keep it as stored.
    # An upright photo comes back as a copy. Returning the image itself saved 7.5 ms of a
    # 12-megapixel photo in colorize, but made prepare's workers 12% slower: their next large
    # arrays then came from fresh memory pages (glibc's allocator), not from reused ones.
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return image


# ---- what the file states beside its pixels -------------------------------------


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


# ---- encoding outputs ---------------------------------------------------------

_FORMATS_WITH_ALPHA = {"PNG", "WEBP", "TIFF", "GIF", "AVIF"}
# Written at quality 95: a result must not lose the input's detail (Pillow's AVIF default is 75).
_LOSSY_FORMATS = {"JPEG", "WEBP", "AVIF"}
# What each output format can carry on from the input (Pillow ignores the rest or fails).
_FORMATS_WITH_ICC = {"JPEG", "PNG", "TIFF", "WEBP", "AVIF"}
_FORMATS_WITH_EXIF = {"JPEG", "PNG", "TIFF", "WEBP", "AVIF"}
_FORMATS_WITH_DPI = {"JPEG", "PNG", "TIFF", "BMP"}


@functools.lru_cache(maxsize=1)
def srgb_icc() -> bytes:
    """The sRGB ICC profile that outputs carry, so that no viewer has to guess their space.

    LittleCMS stamps each profile with the time it was made; this one carries a fixed date,
    so that every result holds the same bytes (the same photo gives the same file)."""
    if ImageCms is None:
        return b""
    made = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return made[:_ICC_DATE.start] + _FIXED_ICC_DATE + made[_ICC_DATE.stop :]


# An ICC header's creation date and time (six big-endian 16-bit numbers at bytes 24-35).
_ICC_DATE = slice(24, 36)
_FIXED_ICC_DATE = struct.pack(">6H", 2025, 1, 1, 0, 0, 0)


def is_srgb_icc(profile: bytes | None) -> bool:
    """Whether a profile is the one colorize embeds, whenever it was made (results of earlier
    versions carry the time of their run in its header)."""
    ours = srgb_icc()
    return bool(ours and profile) and len(profile) == len(ours) and profile[: _ICC_DATE.start] == ours[: _ICC_DATE.start] and profile[_ICC_DATE.stop :] == ours[_ICC_DATE.stop :]


def to_pil(rgb8: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    """uint8 RGB (H, W, 3) and alpha (H, W) in 0..1 or None -> an RGB or RGBA PIL image."""
    if alpha is None:
        return Image.fromarray(rgb8, "RGB")
    alpha8 = np.rint(alpha * 255.0).astype(np.uint8)
    return Image.fromarray(np.concatenate([rgb8, alpha8[..., None]], axis=2), "RGBA")


def format_of_suffix(suffix: str) -> str | None:
    """Pillow's format for an output suffix. The common formats' plugins are loaded with
    Pillow; all of them (70 ms of start-up) only for a suffix those do not know."""
    Image.preinit()
    return Image.EXTENSION.get(suffix) or Image.registered_extensions().get(suffix)


# The formats a colour result is written in when its input came in them. Any other input's
# result is a PNG: GIF would cut it to 256 colours, and Pillow reads PSD, XPM and a dozen
# more that it cannot write. A photo in a camera's container (MPO, HEIF) becomes a JPEG.
RESULT_FORMATS = frozenset({"JPEG", "PNG", "TIFF", "WEBP", "BMP", "PPM", "JPEG2000", "AVIF"})
_CAMERA_CONTAINERS = frozenset({"MPO", "HEIF"})


def result_format(input_format: str | None) -> str:
    """The format of the result of an input in `input_format` (Pillow's name)."""
    if input_format in RESULT_FORMATS:
        return input_format
    return "JPEG" if input_format in _CAMERA_CONTAINERS else "PNG"


def result_suffix(input_suffix: str) -> str:
    """The suffix of the result of an input named with `input_suffix`: the same where its
    format is kept (see RESULT_FORMATS), else .png, or .jpg for a camera's container. A suffix
    no reader knows is kept: the input's format is then read from its content."""
    lowered = input_suffix.lower()
    input_format = "HEIF" if lowered in HEIF_SUFFIXES else format_of_suffix(lowered)
    if input_format is None or input_format in RESULT_FORMATS:
        return input_suffix
    return ".jpg" if result_format(input_format) == "JPEG" else ".png"


def unwritable_suffix(suffix: str) -> str | None:
    """The format a chosen output name asks for when Pillow cannot write it (PSD, XPM, ...),
    else None."""
    file_format = format_of_suffix(suffix.lower())
    if file_format is None or file_format in Image.SAVE:  # the common formats' writers come with Pillow
        return None
    Image.init()  # every plugin (30-55 ms): only for a format those do not write
    return None if file_format in Image.SAVE else file_format


def encode(image: Image.Image, file_format: str, target, *, exif: bytes | None = None, dpi=None) -> None:
    """Write the image, tagged sRGB and with the input's EXIF and DPI where the format
    holds them. Metadata the format cannot take (EXIF over JPEG's 64 KiB segment, a
    resolution out of range) must not cost the user the photo: it is then left out."""
    if file_format not in _FORMATS_WITH_ALPHA and image.mode == "RGBA":
        image = image.convert("RGB")
    options = {"quality": 95} if file_format in _LOSSY_FORMATS else {}
    metadata = _save_metadata(file_format, exif=exif, dpi=dpi)
    try:
        image.save(target, format=file_format, **options, **metadata)
    except Exception:  # noqa: BLE001 - Pillow's writers fail in many ways on odd metadata
        profile_only = {key: value for key, value in metadata.items() if key == "icc_profile"}
        if profile_only == metadata:  # nothing of the input's to leave out: a real failure
            raise
        _rewind(target)
        image.save(target, format=file_format, **options, **profile_only)


# The result formats that hold 16 bits a channel: a 16-bit scan's result keeps them there.
DEEP_FORMATS = frozenset({"PNG", "TIFF"})


def encode_deep(rgb16: np.ndarray, file_format: str, target, *, exif: bytes | None = None, dpi=None) -> None:
    """Write uint16 sRGB (H, W, 3) as a 16-bit PNG or TIFF, tagged and signed as encode's
    results are. Pillow holds no 16-bit colour image: OpenCV encodes the PNG (its chunks for
    the profile, EXIF and resolution added here) and tifffile the TIFF."""
    if file_format == "TIFF":
        _tiff_16bit(rgb16, target, exif=exif, dpi=dpi)  # a path or a file object
        return
    data = _png_16bit(rgb16, exif=exif, dpi=dpi)
    if hasattr(target, "write"):
        target.write(data)
    else:
        Path(target).write_bytes(data)


def _png_16bit(rgb16: np.ndarray, *, exif: bytes | None, dpi) -> bytes:
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb16[..., ::-1]))  # OpenCV writes BGR
    if not ok:
        raise OSError("OpenCV could not encode the 16-bit PNG")
    chunks = [(b"eXIf", signed_exif(exif).removeprefix(b"Exif\x00\x00"))]
    if srgb_icc():
        chunks.append((b"iCCP", b"sRGB\x00\x00" + zlib.compress(srgb_icc())))
    dots_per_metre = [round(value / 0.0254) for value in dpi or ()]
    if dots_per_metre and all(0 < value < 2**31 for value in dots_per_metre):  # PNG's range
        chunks.append((b"pHYs", struct.pack(">IIB", *dots_per_metre, 1)))
    # Ancillary chunks go after the header (the signature, then IHDR's 25 bytes), before the pixels.
    encoded = encoded.tobytes()
    return encoded[:33] + b"".join(_png_chunk(kind, data) for kind, data in chunks) + encoded[33:]


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _tiff_16bit(rgb16: np.ndarray, target, *, exif: bytes | None, dpi) -> None:
    import tifffile

    resolution = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
    tifffile.imwrite(
        target, rgb16, photometric="rgb", metadata=None,
        iccprofile=srgb_icc() or None, software=f"{SOFTWARE_NAME} {__version__}", extratags=_text_tags(exif), **resolution,
    )


def _text_tags(exif: bytes | None) -> list[tuple]:
    """The input's text tags (description, date, camera, artist, copyright) as tifffile's
    extratags, for a 16-bit TIFF result (its other EXIF is not carried)."""
    if not exif:
        return []
    loaded = Image.Exif()
    try:
        loaded.load(exif)
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return []
    return [(tag, "s", 0, value, True) for tag, value in sorted(loaded.items()) if isinstance(value, str) and tag != _SOFTWARE and value.isascii()]


def _save_metadata(file_format: str, *, exif: bytes | None, dpi) -> dict:
    """Pillow save() options for the metadata that the format can carry."""
    metadata = {}
    if srgb_icc() and file_format in _FORMATS_WITH_ICC:
        metadata["icc_profile"] = srgb_icc()
    if file_format in _FORMATS_WITH_EXIF:
        metadata["exif"] = signed_exif(exif)
    if dpi and file_format in _FORMATS_WITH_DPI:
        metadata["dpi"] = dpi
    return metadata


# EXIF's Software tag: the program that wrote the file. colorize's results name it, so that a
# later run over their folder knows them from photos that only share their name (see
# written_by_portraitcolor).
_SOFTWARE = 0x0131
SOFTWARE_NAME = "portraitcolor"


def signed_exif(exif: bytes | None) -> bytes:
    """The EXIF an output carries (the input's, or none) with portraitcolor as its Software."""
    signed = Image.Exif()
    if exif:
        signed.load(exif)
    signed[_SOFTWARE] = f"{SOFTWARE_NAME} {__version__}"
    return signed.tobytes()


def written_by_portraitcolor(path: str | os.PathLike) -> bool:
    """Whether an image file is a result colorize wrote: its EXIF names portraitcolor as the
    Software. Without any Software tag, the sRGB profile colorize embeds also tells (results of
    versions before the tag, or whose EXIF had to be left out). A format that holds no EXIF
    cannot tell, and counts as one (its name decides); a file that cannot be read does not."""
    try:
        with Image.open(path) as image:
            if image.format not in _FORMATS_WITH_EXIF:
                return True
            software = _software(image)
            if software:
                return software.startswith(SOFTWARE_NAME)
            return is_srgb_icc(image.info.get("icc_profile"))
    except Exception:  # noqa: BLE001 - any unreadable file is a photo of the user's, never ours
        return False


def _software(image: Image.Image) -> str:
    """The EXIF Software tag of an opened image ("" when it has none or its EXIF is unreadable)."""
    try:
        return str(image.getexif().get(_SOFTWARE) or "")
    except Exception:  # noqa: BLE001 - Pillow raises many types on bad EXIF
        return ""


def _rewind(target) -> None:
    # A path is opened afresh (and truncated) by the next save; a buffer must be emptied.
    if hasattr(target, "truncate"):
        target.seek(0)
        target.truncate()
