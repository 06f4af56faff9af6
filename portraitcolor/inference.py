"""The model on one picture: the network as one function, L in, ab out, on one of two
engines, and the steps around it that colour a photo at its full resolution.

The network sees a small copy of the luminance (the render size, by default the size it
was trained at); its ab prediction is upsampled and joined with the ORIGINAL full-resolution
L, so the output is as sharp as the input and keeps its exact lightness. colorize.py runs
these steps over files in batches; evaluate colours its photos with colorize_picture.

On the CPU a stored model runs in its ONNX form through OpenCV's DNN module: no torch is
imported, which is most of the wait for one photo (importing torch alone takes longer than
decoding, colouring and encoding a 12-megapixel photo). On a GPU, with `--device torch`,
and for a weights file outside the store, the torch network runs (torch_inference.py).
Both engines give the same colours to well within one CIELAB unit (a test holds them to it).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import sys
from collections.abc import Iterator
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from . import images, lab
from .errors import PortraitcolorError, first_line
from .hints import HINT_CHANNELS, HintError, Hints, as_hints, predict_following

# Four halvings between the U-Net's five encoder stages: input sides must divide by this.
SIDE_MULTIPLE = 16
# Pixels converted at a time when building the output: the float temporaries of a strip
# stay in the CPU's caches (a 12-megapixel photo joined 1.1-1.3x faster than in strips of
# 512 rows, bench/) and are bounded whatever the photo's size.
_JOIN_STRIP_PIXELS = 1 << 18
# The network input's long side is at most this many render sizes: a 1x2000 strip would
# otherwise become a 128x256000 input (gigabytes). Beyond it the short side is rendered
# below the render size; the colour is upsampled to full resolution anyway.
MAX_RENDER_ASPECT = 8
# Modes Pillow writes as PNG; others (float, 32-bit, CMYK) go through TIFF in colorize_image.
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I;16"}


class InferenceError(PortraitcolorError):
    pass


class Predictor(Protocol):
    """What colorize and evaluate need of a model."""

    name: str
    render_size: int  # the training size: colorize's default short side for the network
    takes_hints: bool  # trained with hints (train --hints)

    def predict(self, batch: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        """(B, 1, h, w) L in 0..1, sides multiples of 16, and for a hint-aware model optional
        (B, HINT_CHANNELS, h, w) hints (hints.py) -> (B, 2, h, w) a, b in CIELAB units."""
        ...

    def running(self, *, io_threads: int) -> contextlib.AbstractContextManager:
        """Held while batches run beside `io_threads` decoding and encoding threads."""
        ...


class OnnxPredictor:
    """A model's ONNX form run by OpenCV's DNN module on the CPU."""

    def __init__(self, onnx_bytes: bytes, *, name: str, render_size: int, takes_hints: bool = False) -> None:
        self.name, self.render_size, self.takes_hints = name, render_size, takes_hints
        try:
            self._net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx_bytes, np.uint8))
        except cv2.error as error:
            raise InferenceError(f"model {name}: OpenCV cannot read its ONNX form ({first_line(error)})") from None

    def predict(self, batch: np.ndarray, hints: np.ndarray | None = None) -> np.ndarray:
        self._net.setInput(network_inputs(self, batch, hints))
        return lab.ab_from_net(self._net.forward())

    @contextlib.contextmanager
    def running(self, *, io_threads: int) -> Iterator[None]:
        yield  # OpenCV shares one thread pool between the network and the I/O threads' work


def uses_torch(device: str | None) -> bool:
    """Whether `--device` asks for the torch engine; 'auto' does where a GPU is present."""
    spec = (device or "auto").lower()
    if spec == "auto":
        return accelerator_present()
    return spec != "cpu"


def accelerator_present() -> bool:
    """Whether torch would find a GPU here, judged without importing torch: the NVIDIA or
    ROCm device nodes on Linux (and WSL's), Apple silicon's Metal on macOS."""
    if sys.platform == "darwin":
        return platform.machine() == "arm64"
    return any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))


def open_predictor(spec: str | os.PathLike | None = None, *, device: str = "auto") -> Predictor:
    """The model named by `spec` (a store name, a .safetensors path, None: the default) on the
    engine `device` asks for. A stored model on the CPU runs without torch."""
    from .store import WeightsStore, is_path_spec

    on_torch = uses_torch(device)
    if not on_torch and not (spec is not None and is_path_spec(spec)):
        form = WeightsStore().onnx_form(None if spec is None else str(spec))
        if form is not None:
            return OnnxPredictor(form.read_checked(), name=form.name, render_size=form.render_size, takes_hints=form.takes_hints)
    # A weights file outside the store, a GPU, or a packaged model without its ONNX form: torch.
    # Imported only here: it costs a second of start-up that the CPU path never pays.
    from .torch_inference import TorchPredictor

    return TorchPredictor.load(spec, device=device if on_torch else "cpu")


def as_predictor(model) -> Predictor:
    """A Predictor as is; a torch UNet (the Python API's argument) wrapped on its device."""
    if hasattr(model, "predict") and hasattr(model, "render_size"):
        return model
    from .torch_inference import TorchPredictor

    return TorchPredictor(model)


def network_inputs(predictor: Predictor, batch: np.ndarray, hints: np.ndarray | None) -> np.ndarray:
    """The array a model's network takes: L alone, or for a hint-aware model L and the hint
    channels (zeros: no hints)."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if not predictor.takes_hints:
        if hints is not None:
            check_takes_hints(predictor)
        return batch
    if hints is None:
        hints = np.zeros((batch.shape[0], HINT_CHANNELS, *batch.shape[2:]), np.float32)
    return np.concatenate([batch, hints.astype(np.float32)], axis=1)


def check_takes_hints(predictor: Predictor) -> None:
    """A clear refusal before any work when hints are given to a model trained without them."""
    if not predictor.takes_hints:
        raise HintError(
            f"model {predictor.name} takes no hints: it was trained without --hints "
            "(train one with `portraitcolor train SET.h5 --hints --init builtin`, or pick one with -m)"
        )


# ---- the model on one picture ----------------------------------------------------


def render_shape(height: int, width: int, render_size: int) -> tuple[int, int]:
    """The (height, width) the network sees: short side = render_size, aspect kept, and the
    long side at most MAX_RENDER_ASPECT * render_size (extreme strips get a thinner input)."""
    scale = min(render_size / min(height, width), MAX_RENDER_ASPECT * render_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def padded(side: int) -> int:
    """A side rounded up to the next multiple of SIDE_MULTIPLE."""
    return -(-side // SIDE_MULTIPLE) * SIDE_MULTIPLE


def network_input(l_full: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution L (H, W) in 0..100 -> (1, h', w') in 0..1, h', w' padded to x16.

    Padding reflects the border instead of adding flat grey, which the network would
    read as a background and colour as one.
    """
    height, width = shape
    small = _area_resize(l_full, width, height)
    pad_bottom, pad_right = padded(height) - height, padded(width) - width
    if pad_bottom or pad_right:
        small = cv2.copyMakeBorder(small, 0, pad_bottom, 0, pad_right, cv2.BORDER_REFLECT_101)
    return lab.l_to_net(small)[None].astype(np.float32)


def _area_resize(l_full: np.ndarray, width: int, height: int) -> np.ndarray:
    """An area resize of L to (width, height). A photo far larger than that whose sides
    divide by 2 or 4 (a camera's do) is first shrunk by that whole factor, which OpenCV does
    about 5x faster than a fractional one (a 12-megapixel photo: 6 ms instead of 28); the
    two steps differ from one by a few tenths of an L unit at most."""
    factor = _whole_shrink_factor(l_full.shape, (height, width))
    if factor > 1:
        rows, columns = l_full.shape[0] // factor, l_full.shape[1] // factor
        l_full = cv2.resize(l_full, (columns, rows), interpolation=cv2.INTER_AREA)
    return cv2.resize(l_full, (width, height), interpolation=cv2.INTER_AREA)


def _whole_shrink_factor(size: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest power of two that divides both sides of `size` and leaves each at least
    _PRESHRINK_MARGIN times the target's (so that the final resize still averages that many
    pixels into each)."""
    factor = 1
    while all(side % (2 * factor) == 0 and side // (2 * factor) >= _PRESHRINK_MARGIN * goal for side, goal in zip(size, target)):
        factor *= 2
    return factor


_PRESHRINK_MARGIN = 4


def upsample_ab(ab_small: np.ndarray, shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(2, h', w') padded prediction -> (H, W, 2) at full resolution (padding cropped)."""
    height, width = shape
    ab = np.ascontiguousarray(ab_small[:, :height, :width].transpose(1, 2, 0))
    return cv2.resize(ab, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def join_to_rgb(l_full: np.ndarray, ab_full: np.ndarray, *, dtype=np.uint8) -> np.ndarray:
    """Full-res L (H, W) + ab (H, W, 2) -> sRGB (H, W, 3) as uint8, uint16 (for 16-bit
    scans) or float32 in 0..1, converted in strips of rows (on every core OpenCV may use)."""
    height, width = l_full.shape
    out = np.empty((height, width, 3), dtype)

    def convert(rows: slice) -> None:
        strip = cv2.merge([l_full[rows], ab_full[rows]])
        if out.dtype == np.uint8:
            lab.lab_to_srgb8(strip, picture_pixels=height * width, out=out[rows])
        elif out.dtype == np.uint16:
            lab.lab_to_srgb16(strip, out=out[rows])
        else:
            out[rows] = lab.lab_to_rgb(strip)

    lab.for_each_strip(height, lab.strip_rows(width, _JOIN_STRIP_PIXELS), convert)
    return out


def colorize_picture(model, picture: images.Picture, *, render_size: int | None = None, hints=None) -> np.ndarray:
    """A decoded picture -> colour RGB float32 (H, W, 3) in 0..1 at the picture's resolution.

    model: a Predictor, or a torch UNet (run on its own device). hints: a
    hints.Hints, or "X,Y=COLOUR" strings, for a hint-aware model."""
    predictor = as_predictor(model)
    hints = as_hints(hints)
    if hints:
        check_takes_hints(predictor)
        hints.check(picture.width, picture.height)
    l_full = lab.rgb_to_l(picture.rgb)
    shape = render_shape(*l_full.shape, render_size or predictor.render_size)
    ab_small = predict_following(predictor, network_input(l_full, shape)[None], hint_batch([(l_full.shape, shape)], hints))[0]
    return join_to_rgb(l_full, upsample_ab(ab_small, shape, l_full.shape), dtype=np.float32)


def colorize_image(image, model=None, *, render_size: int | None = None, device: str = "cpu", hints=None) -> Image.Image:
    """Colorize a path, bytes, PIL image or RGB array; returns a PIL image (alpha kept).

    model: a torch UNet (load_model), a Predictor (open_predictor), or None for
    the default model on `device` (the CPU: its ONNX form through OpenCV, without torch).
    hints: colours you know, as "X,Y=COLOUR" strings (pixels, or fractions with a decimal
    point: "0.5,0.8=navy") or a hints.Hints, for a hint-aware model.

    Its info holds what a file written from it should carry: "icc_profile" (sRGB, the
    space of its pixels), "exif" (the input's, orientation reset, with portraitcolor as its
    Software, as colorize's files have) and the input's "dpi" if any;
    pass them to save(), e.g. `out.save(p, icc_profile=out.info["icc_profile"])`.
    """
    model = model if model is not None else open_predictor(device=device)
    if isinstance(image, Image.Image):
        image = _as_file_bytes(image)
    if isinstance(image, np.ndarray):
        rgb = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
        picture = images.Picture(rgb=np.repeat(rgb[..., None], 3, 2) if rgb.ndim == 2 else rgb[..., :3])
    else:
        picture = images.read_image(image)
    rgb = colorize_picture(model, picture, render_size=render_size, hints=hints)
    out = images.to_pil(np.rint(rgb * 255.0).astype(np.uint8), picture.alpha)
    carried = {"icc_profile": images.srgb_icc(), "exif": images.signed_exif(picture.exif), "dpi": picture.dpi}
    out.info.update({key: value for key, value in carried.items() if value})
    return out


def _as_file_bytes(image: Image.Image) -> bytes:
    """A PIL image as file bytes for read_image, its ICC profile (in info) kept so that it is
    converted like a file's; PNG loses nothing for its modes, TIFF holds float and 32-bit."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if image.mode in _PNG_MODES else "TIFF")
    return buffer.getvalue()


def hint_batch(items: list[tuple[tuple[int, int], tuple[int, int]]], hints: Hints | None) -> np.ndarray | None:
    """(B, HINT_CHANNELS, h, w) for photos of the given (size, render shape), or None: no hints."""
    if not hints:
        return None
    return np.stack([hints.channels(size, shape, padded_shape(shape)) for size, shape in items])


def padded_shape(shape: tuple[int, int]) -> tuple[int, int]:
    return padded(shape[0]), padded(shape[1])
