"""Face detection and square crops."""

from __future__ import annotations

import numpy as np
import pytest

from portraitcolor import faces
from tests.conftest import HEADSHOTS, portrait_array


@pytest.mark.parametrize("height, width, expected", [(100, 60, (20, 0, 60)), (60, 100, (0, 20, 60)), (50, 50, (0, 0, 50)), (7, 8, (0, 0, 7))])
def test_center_square(height, width, expected):
    assert faces.center_square(height, width) == expected


@pytest.mark.parametrize("box", [(40, 50, 30, 30), (0, 0, 30, 30), (170, 90, 30, 30), (10, 10, 190, 140)])
def test_face_square_is_a_square_inside_the_image_around_the_face(box):
    height, width = 150, 200
    top, left, side = faces.face_square(box, height, width, margin=0.6)
    assert 0 <= top and 0 <= left and top + side <= height and left + side <= width
    x, y, w, h = box
    if side >= max(w, h) * 2.2 - 1:  # not shrunk by the image border: the whole face is inside
        assert left <= x and top <= y and x + w <= left + side and y + h <= top + side


def test_face_square_margin_widens_the_crop():
    box = (90, 60, 20, 20)
    tight = faces.face_square(box, 200, 200, margin=0.0)
    wide = faces.face_square(box, 200, 200, margin=1.0)
    assert tight[2] == 20 and wide[2] == 60
    # both centred on the face
    assert tight[0] + tight[2] / 2 == pytest.approx(70) and wide[1] + wide[2] / 2 == pytest.approx(100)


def test_crop_square_shape():
    image = np.zeros((30, 40, 3))
    assert faces.crop_square(image, (5, 10, 20)).shape == (20, 20, 3)


def test_no_face_in_synthetic_or_flat_images():
    gray = portrait_array(120, 100, seed=3).mean(axis=2).astype(np.uint8)
    assert faces.largest_face(gray) is None
    assert faces.largest_face(np.full((64, 64), 128, np.uint8)) is None


def test_cascade_is_loaded_once_per_process():
    faces._cascade.cache_clear()
    faces.largest_face(np.zeros((40, 40), np.uint8))
    faces.largest_face(np.zeros((40, 40), np.uint8))
    assert faces._cascade.cache_info().misses == 1


def test_finds_the_face_in_a_real_photo():
    # skimage ships this portrait (NASA, public domain) inside the package: no network.
    data = pytest.importorskip("skimage.data")
    rgb = data.astronaut()
    gray = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    box = faces.largest_face(gray)
    assert box is not None
    x, y, w, h = box
    # The astronaut's face is in the upper middle of the 512x512 frame.
    assert 150 < x + w / 2 < 300 and 60 < y + h / 2 < 200 and 60 < w < 200


def test_detection_on_a_large_image_returns_full_resolution_boxes():
    data = pytest.importorskip("skimage.data")
    import cv2

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    small = faces.largest_face(gray)
    big = faces.largest_face(cv2.resize(gray, (2048, 2048), interpolation=cv2.INTER_CUBIC))
    assert small is not None and big is not None
    assert np.allclose(np.array(big) / 4, small, atol=12)


@pytest.mark.skipif(HEADSHOTS is None or not HEADSHOTS.is_dir(), reason="PORTRAITCOLOR_TEST_HEADSHOTS names no folder of headshots")
def test_finds_faces_in_real_headshots():
    from portraitcolor.images import read_image

    found = 0
    names = ["AJ_Hoggard.jpg", "Adam_Flagler.png", "Drew_Timme.png", "Kobe_Bufkin.png"]
    for name in names:
        picture = read_image(HEADSHOTS / name)
        gray = (picture.rgb @ np.array([0.299, 0.587, 0.114], np.float32) * 255).astype(np.uint8)
        found += faces.largest_face(gray) is not None
    assert found >= 3
