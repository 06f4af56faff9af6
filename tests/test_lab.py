import threading

import cv2
import numpy as np
import pytest
from skimage import color

from portraitcolor import lab


@pytest.fixture(scope="module")
def random_rgb():
    rng = np.random.default_rng(0)
    return rng.random((64, 64, 3), dtype=np.float32)


def test_rgb_to_lab_matches_skimage(random_rgb):
    ours = lab.rgb_to_lab(random_rgb)
    reference = color.rgb2lab(random_rgb.astype(np.float64))
    assert ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 0.01


def test_lab_to_rgb_matches_skimage_inside_gamut(random_rgb):
    lab_values = color.rgb2lab(random_rgb.astype(np.float64))
    ours = lab.lab_to_rgb(lab_values.astype(np.float32))
    reference = color.lab2rgb(lab_values)
    assert np.abs(ours - reference).max() < 1e-3


def test_round_trip_rgb_lab_rgb(random_rgb):
    assert np.abs(lab.lab_to_rgb(lab.rgb_to_lab(random_rgb)) - random_rgb).max() < 1e-4


def test_rgb_to_l_equals_first_channel(random_rgb):
    np.testing.assert_allclose(lab.rgb_to_l(random_rgb), lab.rgb_to_lab(random_rgb)[..., 0], atol=1e-3)


def test_storage_error_under_one_unit(random_rgb):
    values = lab.rgb_to_lab(random_rgb)
    stored = lab.encode_lab8(values)
    assert stored.dtype == np.uint8
    assert np.abs(lab.decode_lab8(stored) - values).max() < 1.0


def test_out_of_gamut_keeps_lightness():
    rng = np.random.default_rng(1)
    values = np.stack([rng.uniform(0, 100, 5000), rng.uniform(-128, 127, 5000), rng.uniform(-128, 127, 5000)], 1).astype(np.float32)
    rgb = lab.lab_to_rgb(values)
    assert rgb.min() >= 0 and rgb.max() <= 1
    assert np.abs(lab.rgb_to_lab(rgb)[:, 0] - values[:, 0]).max() < 0.2


def test_network_encoding_is_the_inverse_of_decoding():
    ab = np.array([[-128.0, 0.0], [40.5, 127.0]], np.float32)
    np.testing.assert_allclose(lab.ab_from_net(lab.ab_to_net(ab)), ab, atol=1e-4)
    l_net, ab_net = lab.lab8_to_net(lab.encode_lab8(np.array([[50.0, 10.0, -20.0]], np.float32)))
    assert abs(l_net[0, 0] - 0.5) < 0.005 and abs(lab.ab_from_net(ab_net)[0, 0] - 10) < 0.01


@pytest.mark.parametrize("opencv_tables", [False, True], ids=["numpy path (cold start)", "opencv path"])
def test_lab_to_srgb8_is_lab_to_rgb_within_one_level_and_keeps_lightness(opencv_tables, monkeypatch):
    """The fast 8-bit conversion, over the whole LAB box (most of it outside the gamut), on
    both of its paths: a small picture before OpenCV's tables are built, and with them."""
    monkeypatch.setattr(lab, "_opencv_tables_built", threading.Event())
    if opencv_tables:
        lab.prepare_lab_to_srgb8()
    rng = np.random.default_rng(3)
    values = np.stack([rng.uniform(0, 100, 90_000), rng.uniform(-128, 127, 90_000), rng.uniform(-128, 127, 90_000)], 1)
    values = values.astype(np.float32).reshape(300, 300, 3)
    fast = lab.lab_to_srgb8(values)
    assert lab._opencv_tables_built.is_set() == opencv_tables  # the numpy path did not build them
    exact = np.rint(lab.lab_to_rgb(values) * 255.0)
    assert fast.dtype == np.uint8 and fast.shape == values.shape
    assert np.abs(fast.astype(np.float32) - exact).max() <= 1.0
    lightness = lab.rgb_to_l(fast.astype(np.float32) / 255.0)
    assert np.abs(lightness - values[..., 0]).max() < 0.5  # 8-bit rounding, never a clipped channel


def test_lab_to_srgb16_is_lab_to_rgb_to_a_few_16_bit_levels():
    """The 16-bit conversion (results of 16-bit scans) over the whole LAB box: its lightness
    is kept far closer than 8 bits can (0.5 L above)."""
    rng = np.random.default_rng(4)
    values = np.stack([rng.uniform(0, 100, 90_000), rng.uniform(-128, 127, 90_000), rng.uniform(-128, 127, 90_000)], 1)
    values = values.astype(np.float32).reshape(300, 300, 3)
    deep = lab.lab_to_srgb16(values)
    assert deep.dtype == np.uint16 and deep.shape == values.shape
    exact = lab.lab_to_rgb(values) * 65535.0
    assert np.abs(deep - exact).max() <= 40.0 and np.abs(deep - exact).mean() < 2.0  # of 65535
    lightness = lab.rgb_to_l(deep.astype(np.float32) / 65535.0)
    assert np.abs(lightness - values[..., 0]).max() < 0.02


def test_lightness_of_8bit_equals_rgb_to_l():
    """The lookup-table path for 8-bit gray and RGB pixels agrees with the float path."""
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_allclose(lab.lightness_of_8bit(gray), lab.rgb_to_l(np.repeat(gray[..., None], 3, axis=2) / np.float32(255)), atol=1e-3)
    rgb = np.random.default_rng(4).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    np.testing.assert_allclose(lab.lightness_of_8bit(rgb), lab.rgb_to_l(rgb / np.float32(255)), atol=1e-3)


def test_strips_spread_over_threads_give_what_one_thread_gives():
    """lightness_of_8bit and colorize's join run their strips on several threads; the result
    must not depend on how many, and a failing strip must fail the call."""
    rgb = np.random.default_rng(5).integers(0, 256, (700, 1600, 3), dtype=np.uint8)  # several strips
    threaded = lab.lightness_of_8bit(rgb)
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        serial = lab.lightness_of_8bit(rgb)
    finally:
        cv2.setNumThreads(previous)
    np.testing.assert_array_equal(threaded, serial)

    def fail_on_the_third(rows: slice) -> None:
        if rows.start == 2 * 100:
            raise ValueError("strip 3")

    with pytest.raises(ValueError, match="strip 3"):
        lab.for_each_strip(700, 100, fail_on_the_third)

    # colorize over a folder keeps each photo's strips in its own thread, in order.
    seen = []
    with lab.strips_in_order():
        lab.for_each_strip(700, 100, lambda rows: seen.append((rows.start, threading.get_ident())))
        np.testing.assert_array_equal(lab.lightness_of_8bit(rgb), serial)
    assert seen == [(top, threading.get_ident()) for top in range(0, 700, 100)]


def test_the_join_of_a_large_picture_is_lab_to_rgb_in_every_strip():
    """colorize's join converts a large picture in strips written straight into the result:
    every row of every strip (in gamut or not) is lab_to_rgb's colour to within one level,
    on one thread or several."""
    from portraitcolor.inference import join_to_rgb

    rng = np.random.default_rng(6)
    l_full = rng.uniform(0, 100, (700, 1600)).astype(np.float32)
    ab_full = cv2.resize(rng.uniform(-90, 90, (7, 16, 2)).astype(np.float32), (1600, 700), interpolation=cv2.INTER_CUBIC)
    expected = np.rint(lab.lab_to_rgb(np.dstack([l_full, ab_full])) * 255.0)
    threaded = join_to_rgb(l_full, ab_full, )
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        serial = join_to_rgb(l_full, ab_full, )
    finally:
        cv2.setNumThreads(previous)
    np.testing.assert_array_equal(threaded, serial)
    assert np.abs(threaded.astype(np.float32) - expected).max() <= 1
