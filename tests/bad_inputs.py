"""A corpus of awkward and broken inputs, generated on the fly, shared by every command's tests.

Each case says whether a colorizer must process it (a valid if unusual image) or refuse it
with a one-line reason that names the file.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from conftest import portrait_array
from PIL import Image


@dataclass(frozen=True)
class BadInput:
    kind: str
    path: Path
    valid: bool  # True: a real image that must be processed; False: must be refused
    reason: str = ""  # a word the refusal must contain


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid-looking PNG header claiming 10 gigapixels, in a few hundred bytes."""
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
    data = _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
    return b"\x89PNG\r\n\x1a\n" + header + data + _png_chunk(b"IEND", b"")


def _encoded(image: Image.Image, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def _animated(file_format: str) -> bytes:
    frames = [Image.fromarray(portrait_array(48, 40, seed=s)) for s in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=file_format, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(Image.fromarray(portrait_array(48, 40)), "JPEG", exif=exif)


def _corrupt_exif() -> bytes:
    good = _encoded(Image.fromarray(portrait_array(48, 40)), "JPEG")
    # An APP1 'Exif' segment whose TIFF header is garbage, right after the SOI marker.
    payload = b"Exif\0\0" + b"XX\x00\x2a" + os.urandom(32)
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return good[:2] + segment + good[2:]


def make_bad_inputs(folder: Path) -> list[BadInput]:
    """Write every case into `folder` (which must exist) and describe it."""
    face = Image.fromarray(portrait_array(48, 40))
    jpeg = _encoded(face, "JPEG")
    png = _encoded(face, "PNG")
    gray16 = Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)
    palette = face.convert("P")
    cases: list[tuple[str, str, bytes | None, bool, str]] = [
        ("zero bytes", "empty.jpg", b"", False, "0 bytes"),
        ("truncated JPEG", "truncated.jpg", jpeg[: len(jpeg) // 2], False, "truncated"),
        ("truncated PNG", "truncated.png", png[: len(png) // 2], False, "truncated"),
        ("wrong extension", "really_png.jpg", png, True, ""),
        ("text named .jpg", "notes.jpg", b"shopping list: milk, eggs\n", False, "not an image"),
        ("HTML error page", "error.jpg", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>", False, "not an image"),
        ("1x1 image", "dot.png", _encoded(Image.new("L", (1, 1), 128), "PNG"), True, ""),
        ("1xN image", "line.png", _encoded(Image.new("L", (1, 300), 90), "PNG"), True, ""),
        ("16-bit TIFF", "deep.tif", _encoded(gray16, "TIFF"), True, ""),
        ("16-bit PNG", "deep.png", _encoded(gray16, "PNG"), True, ""),
        ("float TIFF", "float.tif", _encoded(Image.fromarray(np.asarray(face.convert("L"), np.float32) / 255), "TIFF"), True, ""),
        ("CMYK JPEG", "cmyk.jpg", _encoded(face.convert("CMYK"), "JPEG"), True, ""),
        ("palette with transparency", "palette.png", _encoded(palette, "PNG", transparency=0), True, ""),
        ("LA", "gray_alpha.png", _encoded(face.convert("LA"), "PNG"), True, ""),
        ("animated GIF", "anim.gif", _animated("GIF"), True, ""),
        ("animated WebP", "anim.webp", _animated("WEBP"), True, ""),
        ("EXIF-rotated", "rotated.jpg", _exif_rotated(), True, ""),
        ("decompression bomb", "bomb.png", decompression_bomb_png(), False, "too large"),
        ("corrupt EXIF", "bad_exif.jpg", _corrupt_exif(), True, ""),
        ("BMP", "plain.bmp", _encoded(face, "BMP"), True, ""),
        ("non-UTF-8 name", os.fsdecode(b"caf\xe9.png"), png, True, ""),
        ("very long name", "x" * 200 + ".png", png, True, ""),
    ]
    inputs = []
    for kind, name, data, valid, reason in cases:
        path = folder / name
        path.write_bytes(data)
        inputs.append(BadInput(kind, path, valid, reason))

    directory = folder / "folder_named.jpg"
    directory.mkdir()
    inputs.append(BadInput("directory named like an image", directory, False, "folder holds no images"))
    broken = folder / "broken_link.jpg"
    broken.symlink_to(folder / "does_not_exist.jpg")
    inputs.append(BadInput("broken symlink", broken, False, "no such file"))
    loop = folder / "loop.jpg"
    loop.symlink_to(loop)
    inputs.append(BadInput("symlink loop", loop, False, ""))
    locked = folder / "locked.png"
    locked.write_bytes(png)
    locked.chmod(0)
    # root reads any file whatever its mode: there the file is simply processed.
    inputs.append(BadInput("unreadable permissions", locked, os.geteuid() == 0, "permission denied"))
    return inputs
