"""Composites of cut-outs on backgrounds, random crops and per-source repeats, through prepare."""

from __future__ import annotations

import collections
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from portraitcolor import setfile, variants
from portraitcolor.config import PrepareOptions
from portraitcolor.loader import LabBatches
from portraitcolor.prepare import collect_sources, prepare
from portraitcolor.setfile import split_for
from tests.conftest import portrait_array, run_cli, write_portrait

SIZE = 32
# Small synthetic crops can be flat enough to trip a content filter; these tests count images.
NO_FILTERS = {"min_contrast": 0, "min_detail": 0, "min_colorfulness": 0}


def cutout(seed: int, side: int = SIZE) -> np.ndarray:
    """An RGBA portrait: opaque figure, a feathered rim (0 < alpha < 1), transparent around it."""
    rgb = portrait_array(side, side, seed=seed)
    yy, xx = np.mgrid[0:side, 0:side]
    distance = np.hypot((yy - side * 0.55) / (side * 0.4), (xx - side / 2) / (side * 0.32))
    alpha = np.clip((1.15 - distance) / 0.3, 0, 1)  # 1 inside, a ramp, 0 outside
    rgb[alpha == 0] = 0  # what hides under a transparent background is arbitrary, often black
    return np.dstack([rgb, np.rint(alpha * 255).astype(np.uint8)])


def scene(seed: int, height: int = 90, width: int = 120) -> np.ndarray:
    """A colourful background photo: smooth gradients of saturated colours plus texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    corners = rng.uniform(0, 255, (4, 3))
    image = (corners[0] * (1 - yy[..., None]) * (1 - xx[..., None]) + corners[1] * yy[..., None] * (1 - xx[..., None])
             + corners[2] * (1 - yy[..., None]) * xx[..., None] + corners[3] * yy[..., None] * xx[..., None])
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def cutouts(tmp_path):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(cutout(i), "RGBA").save(folder / f"player{i:02d}.png")
    return folder


@pytest.fixture
def backgrounds(tmp_path):
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(scene(i)).save(folder / f"scene{i}.jpg", quality=95)
    return folder


def run(sources, output, *, workers=1, append=False, **changes):
    options = PrepareOptions(size=SIZE, **{"min_size": 16, **changes})
    return prepare(collect_sources([str(s) for s in sources]), output, options=options, workers=workers, append=append)


def read(path):
    with h5py.File(path, "r") as handle:
        names = [n.decode() for n in handle[setfile.SOURCES][...]]
        return dict(zip(names, handle[setfile.IMAGES][...])), dict(zip(names, handle[setfile.SPLITS][...]))


def test_composite_is_the_foreground_exactly_where_alpha_is_one():
    rgba = cutout(3).astype(np.float32) / 255.0
    rgb, alpha = rgba[..., :3], rgba[..., 3]
    background = scene(1, SIZE, SIZE).astype(np.float32) / 255.0
    mixed = variants.composite(rgb, alpha, background)
    opaque, clear = alpha == 1.0, alpha == 0.0
    assert opaque.sum() > 100 and clear.sum() > 100 and ((alpha > 0) & (alpha < 1)).sum() > 20
    assert np.array_equal(mixed[opaque], rgb[opaque])
    assert np.array_equal(mixed[clear], background[clear])
    rim = (alpha > 0) & (alpha < 1)  # feathered: strictly between the two
    expected = rgb[rim] * alpha[rim][:, None] + background[rim] * (1 - alpha[rim][:, None])
    assert np.allclose(mixed[rim], expected)


def test_prepare_composites_keep_the_cutout_pixels_and_replace_the_background(tmp_path, cutouts, backgrounds):
    out = tmp_path / "set.h5"
    report = run([cutouts], out, crop="none", backgrounds=str(backgrounds), composites=3, min_detail=0).report
    images, _ = read(out)
    assert report["kept"] == 12 * 4
    alpha = cutout(0)[..., 3]
    on_white = images["player00.png"]
    for k in range(3):
        composite = images[f"player00.png#composite-{k}"]
        # Same set size as the photo: no resampling, so the stored pixels compare exactly.
        assert np.array_equal(composite[alpha == 255], on_white[alpha == 255])
        assert np.abs(composite[alpha == 0].astype(int) - on_white[alpha == 0]).mean() > 5
    assert not np.array_equal(images["player00.png#composite-0"], images["player00.png#composite-1"])


def test_a_photo_and_all_its_variants_share_one_split(tmp_path, cutouts, backgrounds):
    photos = tmp_path / "photos"
    for i in range(10):
        write_portrait(photos / f"wide{i}.jpg", 80, 120, seed=40 + i)
    out = tmp_path / "set.h5"
    run([cutouts], out, val=0.3, test=0.3, crop="center", backgrounds=str(backgrounds), composites=2, min_detail=0)
    run([photos], out, append=True, crop="random", crops_per_image=3, **NO_FILTERS)
    _, splits = read(out)
    groups = collections.defaultdict(set)
    for name, code in splits.items():
        photo = name.split("#")[0]
        groups[photo].add(int(code))
        assert setfile.SPLIT_NAMES[code] == split_for(photo, val=0.3, test=0.3)
    assert len(groups) == 22 and all(len(codes) == 1 for codes in groups.values())
    assert {setfile.SPLIT_NAMES[next(iter(c))] for c in groups.values()} == {"train", "val", "test"}
    assert sum(name.startswith("wide") for name in splits) == 30


def test_random_crops_are_deterministic_for_a_seed(tmp_path):
    photos = tmp_path / "photos"
    for i in range(6):
        write_portrait(photos / f"big{i}.png", 150, 200, seed=i)
    first, again, workers, other = (tmp_path / f"{n}.h5" for n in ("first", "again", "workers", "other"))
    run([photos], first, crop="random", crops_per_image=5, seed=7, **NO_FILTERS)
    run([photos], again, crop="random", crops_per_image=5, seed=7, **NO_FILTERS)
    run([photos], workers, crop="random", crops_per_image=5, seed=7, workers=2, **NO_FILTERS)
    run([photos], other, crop="random", crops_per_image=5, seed=8, **NO_FILTERS)
    a, b, c, d = (read(path)[0] for path in (first, again, workers, other))
    assert sorted(a) == [f"big{i}.png#crop-{k}" for i in range(6) for k in range(5)]
    assert all(np.array_equal(a[name], b[name]) and np.array_equal(a[name], c[name]) for name in a)
    assert sum(not np.array_equal(a[name], d[name]) for name in a) >= 25
    crops = [a[f"big0.png#crop-{k}"] for k in range(5)]
    assert len({crop.tobytes() for crop in crops}) == 5  # different places and scales


def test_random_squares_stay_inside_at_several_scales():
    rng = np.random.default_rng(0)
    squares = variants.random_squares(300, 500, 400, rng, min_side=32)
    sides = np.array([side for _, _, side in squares])
    assert all(0 <= top and top + side <= 300 and 0 <= left and left + side <= 500 for top, left, side in squares)
    assert sides.min() >= 75 and sides.max() <= 300  # a quarter of the shorter side to all of it
    assert (sides < 120).mean() > 0.2 and (sides > 220).mean() > 0.2


def test_a_placeholder_cutout_gives_no_composites(tmp_path, backgrounds):
    folder = tmp_path / "cutouts"
    folder.mkdir()
    flat = np.zeros((SIZE, SIZE, 4), np.uint8)
    flat[..., :3] = 150
    flat[8:, 8:24, 3] = 255  # a grey silhouette, opaque on a transparent background
    Image.fromarray(flat, "RGBA").save(folder / "silhouette.png")
    Image.fromarray(cutout(1), "RGBA").save(folder / "real.png")
    report = run([folder], tmp_path / "set.h5", crop="none", backgrounds=str(backgrounds), composites=3).report
    assert report["dropped"] == {"placeholder": 1} and report["kept"] == 4


def test_repeats_draw_a_source_that_many_times_per_epoch(tmp_path):
    many, few = tmp_path / "many", tmp_path / "few"
    for i in range(8):
        write_portrait(many / f"m{i}.png", seed=i)
    for i in range(3):
        write_portrait(few / f"f{i}.png", seed=20 + i)
    out = tmp_path / "set.h5"
    run([many], out, val=0.0, test=0.0)
    run([few], out, append=True, repeat=3)
    batches = LabBatches(out, "train", batch_size=4, drop_last=False)
    assert len(batches) == (8 + 3 * 3 + 3) // 4
    with h5py.File(out, "r") as handle:
        names = [n.decode() for n in handle[setfile.SOURCES][...]]
    drawn = collections.Counter(names[int(row)] for _, _, rows in batches for row in rows)
    assert drawn == {**{f"m{i}.png": 1 for i in range(8)}, **{f"f{i}.png": 3 for i in range(3)}}
    assert len(LabBatches(out, "val", batch_size=4)) == 0  # validation never repeats (and here is empty)


def test_cli_backgrounds_crops_and_repeat(tmp_path, cutouts, backgrounds):
    (backgrounds / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    out, report = tmp_path / "set.h5", tmp_path / "report.json"
    result = run_cli("prepare", str(cutouts), "-o", str(out), "--size", str(SIZE), "--crop", "random", "--crops-per-image", "2",
                     "--backgrounds", str(backgrounds), "--composites", "1", "--seed", "3", "--repeat", "2",
                     "--min-detail", "0", "--min-size", "16", "--report", str(report))
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(report.read_text())
    assert document["kept"] == 12 * 2 * 2 and document["options"]["repeat"] == 2
    assert [entry["source"].endswith("broken.jpg") for entry in document["unreadable_backgrounds"]] == [True]
    with h5py.File(out, "r") as handle:
        assert set(handle[setfile.REPEATS][...].tolist()) == {2}
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = run_cli("prepare", str(cutouts), "-o", str(tmp_path / "no.h5"), "--backgrounds", str(empty))
    lines = refused.stderr.decode().strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "no readable image" in lines[0] and str(empty) in lines[0]
    assert not (tmp_path / "no.h5").exists()
