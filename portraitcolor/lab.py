"""The one sRGB <-> CIELAB conversion used everywhere, and the storage and network scalings.

Every part of portraitcolor (prepare, train, evaluate, colorize) goes through these
functions, so the colour maths and the normalisation constants live in one place.
The conversion is float32 numpy (sRGB, D65 white), never OpenCV's 8-bit lookup path,
whose rounding would put an error of several units into the training targets. colorize's
8-bit outputs take OpenCV's float conversion inside the gamut (lab_to_srgb8: the same
colours to within one level; lab_to_srgb16 for 16-bit scans) and its lightness of 8-bit
pixels comes from lookup tables (lightness_of_8bit).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

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
# Strips of a photo whose temporaries stay in the CPU's caches: a 12-megapixel photo's
# lightness in strips of this many pixels took 0.55-0.7 of the time in strips of a
# megapixel (bench/, one thread), most of which went to moving the float copies through memory.
_CACHED_STRIP_PIXELS = 1 << 16


def for_each_strip(height: int, rows: int, work: Callable[[slice], None]) -> None:
    """work(rows slice) for each strip of `rows` rows of a `height`-row picture, spread over
    as many threads as OpenCV may use.

    The heavy steps of the strips (OpenCV calls, numpy ufuncs) release the GIL, so one large
    photo uses every core: decoding and encoding are serial, and the conversions between
    them were most of the wait for a camera-sized photo. prepare's worker processes allow
    OpenCV one thread (their parallelism is the processes): there the strips run in order.
    """
    strips = [slice(top, top + rows) for top in range(0, height, rows)]
    if len(strips) < 2 or cv2.getNumThreads() < 2 or getattr(_in_order, "on", False):
        for strip in strips:
            work(strip)
        return
    for _ in _strip_pool().map(work, strips):  # map re-raises a strip's exception here
        pass


_in_order = threading.local()


@contextlib.contextmanager
def strips_in_order() -> Iterator[None]:
    """for_each_strip runs its strips in order in this thread: for a caller whose other
    threads already keep the cores busy with other pictures (colorize over a folder), where
    handing strips to other threads only adds their hand-offs (9% of the I/O work's CPU for
    512x512 photos, BENCHMARKS.md)."""
    before = getattr(_in_order, "on", False)
    _in_order.on = True
    try:
        yield
    finally:
        _in_order.on = before


def strip_rows(width: int, pixels: int) -> int:
    """Rows in a strip of about `pixels` pixels of a picture `width` pixels wide."""
    return max(1, pixels // max(width, 1))


@functools.lru_cache(maxsize=1)
def _strip_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8), thread_name_prefix="portraitcolor-strips")


# A forked child has none of the pool's threads: it starts a pool of its own.
os.register_at_fork(after_in_child=_strip_pool.cache_clear)

# ---- normalisation: storage (uint8, the paper's "int format") and network ranges ----
L_MAX = 100.0
AB_OFFSET = 128.0
AB_SPAN = 255.0


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
        _lightness_of_luminance(_luminance(block), out=out[start : start + _BLOCK_PIXELS])
    return out.reshape(rgb.shape[:-1])


def _lightness_of_luminance(y: np.ndarray, *, out: np.ndarray) -> np.ndarray:
    """CIELAB L of relative luminance Y (any shape, float32), written into `out`.

    116 * f(Y) - 16 with f's cube root taken for every pixel in place, and the linear
    segment (L = kappa * Y) only where Y is dark: np.where over both branches cost 2-3x
    as much for a camera-sized photo.
    """
    dark = y <= _EPSILON
    np.cbrt(y, out=out)
    out *= 116.0
    out -= 16.0
    if dark.any():
        out[dark] = _KAPPA * y[dark]
    return out


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

    def convert(rows: slice) -> None:
        strip = out[rows]
        y = _luminance(cv2.LUT(pixels[rows], linear_of_level).reshape(-1, 3))
        _lightness_of_luminance(y.reshape(strip.shape), out=strip)

    for_each_strip(pixels.shape[0], strip_rows(pixels.shape[1], _CACHED_STRIP_PIXELS), convert)
    return out


# OpenCV's float Lab -> RGB agrees with lab_to_rgb to within one 8-bit level inside the
# gamut, but clips each channel outside it (which changes L); a channel this close to 0 or 1
# may have been clipped, and its pixel is converted again by lab_to_rgb.
_CLIPPED_EDGE = 1e-6
# OpenCV builds its LAB tables on its first LAB conversion in a process: 50-100 ms, more than
# converting a photo of up to about this many pixels without them (lab_to_srgb8's numpy
# path). colorize builds them beside other work (prepare_lab_to_srgb8) once they pay: for
# a large photo or a second one.
COLD_START_PIXELS = 1 << 20
_opencv_tables_built = threading.Event()


def prepare_lab_to_srgb8() -> None:
    """Build OpenCV's LAB tables now, for example in a thread while a photo is decoded,
    rather than when the first photo is converted."""
    cv2.cvtColor(np.zeros((1, 1, 3), np.float32), cv2.COLOR_Lab2RGB)
    _opencv_tables_built.set()


def lab_to_srgb8(lab: np.ndarray, *, picture_pixels: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """CIELAB (H, W, 3) float32 -> sRGB uint8 (H, W, 3), lab_to_rgb's colours to within one
    level, about 8x faster on photos: OpenCV converts the pixels inside the gamut, and only
    those it may have clipped take lab_to_rgb's path, which keeps their L. A small picture
    converted before OpenCV's tables are built takes the numpy path instead (see
    COLD_START_PIXELS); picture_pixels: the whole picture's size when `lab` is a strip of it.
    out: a contiguous uint8 (H, W, 3) array to write into (a strip of the whole result)."""
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    pixels = picture_pixels or lab.shape[0] * lab.shape[1]
    if not _opencv_tables_built.is_set() and pixels <= COLD_START_PIXELS:
        converted = _lab_to_srgb8_numpy(lab)
        if out is None:
            return converted
        out[...] = converted
        return out
    return cv2.convertScaleAbs(_lab_to_rgb_opencv(lab), dst=out, alpha=255.0)


def lab_to_srgb16(lab: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """CIELAB (H, W, 3) float32 -> sRGB uint16 (H, W, 3), for the results of 16-bit scans:
    lab_to_srgb8's conversion kept to 16 bits. OpenCV's float path is within 14 of 65535
    levels of lab_to_rgb (99% within 2): the lightness of the result is the input's to
    0.006 L, where 8 bits give 0.24 (bench: random LAB, 512x512). out: as lab_to_srgb8's."""
    rgb = _lab_to_rgb_opencv(np.ascontiguousarray(lab, dtype=np.float32))
    rgb *= 65535.0
    rgb += 0.5  # rounded by the cast's truncation below: every value is in 0.5..65535.5
    if out is None:
        out = np.empty(rgb.shape, np.uint16)
    np.copyto(out, rgb, casting="unsafe")
    return out


def _lab_to_rgb_opencv(lab: np.ndarray) -> np.ndarray:
    """lab_to_rgb through OpenCV's float conversion: the pixels it may have clipped (and so
    changed in L) are converted again by lab_to_rgb's path."""
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    _opencv_tables_built.set()
    inside = cv2.inRange(rgb, (_CLIPPED_EDGE,) * 3, (1.0 - _CLIPPED_EDGE,) * 3)
    if cv2.countNonZero(inside) < inside.size:  # most photos have no suspect pixel at all
        suspects = np.flatnonzero(inside.reshape(-1) == 0)
        rgb.reshape(-1, 3)[suspects] = _lab_to_rgb_in_gamut_block(lab.reshape(-1, 3)[suspects])
    return rgb


# Linear RGB is looked up in steps of 1/65535 for its 8-bit sRGB level: a step moves sRGB by
# at most 0.05 of a level (where the curve is steepest), so the result is lab_to_rgb's
# rounded level or its neighbour, without a float power per pixel.
_LINEAR_STEPS = 65535


@functools.lru_cache(maxsize=1)
def _srgb8_of_linear_step() -> np.ndarray:
    linear = np.arange(_LINEAR_STEPS + 1, dtype=np.float32) / _LINEAR_STEPS
    return np.rint(np.clip(linear_to_srgb(linear), 0.0, 1.0) * 255.0).astype(np.uint8)


def _lab_to_srgb8_numpy(lab: np.ndarray) -> np.ndarray:
    def convert(block: np.ndarray) -> np.ndarray:
        linear = _lab_to_linear_in_gamut_block(block)
        return _srgb8_of_linear_step()[np.clip(linear * _LINEAR_STEPS + 0.5, 0, _LINEAR_STEPS).astype(np.uint16)]

    return _blockwise(lab, convert, dtype=np.uint8)


def _blockwise(values: np.ndarray, convert, *, dtype=np.float32) -> np.ndarray:
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, 3)
    out = np.empty(flat.shape, dtype)
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


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
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


def _lab_to_linear_in_gamut_block(lab: np.ndarray) -> np.ndarray:  # (N, 3) -> (N, 3) linear RGB in 0..1
    lab = lab.astype(np.float32, copy=True)
    lab[:, 0] = np.clip(lab[:, 0], 0.0, L_MAX)
    return _desaturate_into_gamut(_lab_to_linear_block(lab))


def _lab_to_rgb_in_gamut_block(lab: np.ndarray) -> np.ndarray:
    return np.clip(linear_to_srgb(_lab_to_linear_in_gamut_block(lab)), 0.0, 1.0)


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


def l_from_net(l_net: np.ndarray) -> np.ndarray:
    """The network's input range 0..1 -> L in 0..100."""
    return l_net * L_MAX


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
