"""Image reading and the one sRGB <-> CIELAB conversion used everywhere.

Every part of portraitcolor (prepare, train, evaluate, colorize) goes through these
functions, so the colour maths and the normalisation constants live in one place.
The conversion is float32 numpy (sRGB, D65 white), never OpenCV's 8-bit lookup path,
whose rounding would put an error of several units into the training targets.
"""

from __future__ import annotations

import errno
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

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


class ImageReadError(Exception):
    """An input that cannot be used as an image; the message is the reason, for humans."""


@dataclass(frozen=True)
class Picture:
    """A decoded image: float32 sRGB in 0..1 of shape (H, W, 3) and optional alpha (H, W).

    `format` is Pillow's name of the file format it came from (JPEG, PNG, ...), if known.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    format: str | None = None

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


def read_image(
    source: str | os.PathLike | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Picture:
    """Decode any image Pillow opens, upright (EXIF orientation applied), as a Picture.

    Raises ImageReadError with a one-line reason for anything that is not a usable image:
    missing, empty, not an image, truncated, or over max_pixels.
    """
    return _read(source, max_pixels=max_pixels, min_side=None)[0]


def read_image_reduced(
    source: str | os.PathLike | bytes | BinaryIO, *, min_side: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Picture, tuple[int, int]]:
    """read_image for callers that only need a smaller picture: JPEGs are decoded at
    1/2, 1/4 or 1/8 scale (the decoder's DCT scaling, several times faster than a full
    decode) as long as the shorter side stays at least min_side.

    Returns the picture and the image's stored (width, height) before any reduction.
    """
    return _read(source, max_pixels=max_pixels, min_side=min_side)


def _read(source, *, max_pixels: int, min_side: int | None) -> tuple[Picture, tuple[int, int]]:
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
            image.load()
            file_format = image.format
            picture = _to_picture(_upright(image))
            return Picture(rgb=picture.rgb, alpha=picture.alpha, format=file_format), stored_size
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise ImageReadError("image is too large (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(f"corrupt or truncated image ({first_line(error)})") from None


def _check_path_readable(path: Path) -> None:
    if path.is_dir():
        raise ImageReadError("is a directory")
    if not path.exists():
        raise ImageReadError(_missing_reason(path))
    if not os.access(path, os.R_OK):
        raise ImageReadError("permission denied")
    if path.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)")


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


def _to_picture(image: Image.Image) -> Picture:
    """Turn any Pillow mode into float32 RGB (+ alpha), keeping 16-bit and float precision."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = _scale_high_precision(np.asarray(image), mode)
        return Picture(rgb=np.repeat(gray[..., None], 3, axis=2))
    alpha = None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        image = image.convert("RGBA")
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
    # In-place scaling: a 24-megapixel photo must not need two float copies at once.
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    rgb *= 1.0 / 255.0
    return Picture(rgb=rgb, alpha=alpha)


def _scale_high_precision(values: np.ndarray, mode: str) -> np.ndarray:
    values = values.astype(np.float32)
    if mode == "F":
        # Float images come as 0..1 (most TIFF writers) or as 8/16-bit ranges.
        peak = float(np.nanmax(values)) if values.size else 0.0
        scale = 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0
    else:
        scale = 65535.0
    return np.clip(np.nan_to_num(values / scale), 0.0, 1.0)


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
