"""prepare: sources, every filter, crops, splits, atomic writes, appends, IMDB metadata, the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from portraitcolor import prepare as prep
from portraitcolor import setfile, variants
from portraitcolor.config import PrepareOptions
from portraitcolor.filters import Dropped
from portraitcolor.lab import decode_lab8, rgb_to_lab
from portraitcolor.prepare import PrepareError, collect_sources, prepare
from portraitcolor.variants import Kept, process_image
from tests.conftest import HEADSHOTS, portrait_array, run_cli, sepia, write_portrait

SIZE = 32


def save(path: Path, array: np.ndarray, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **options)
    return path


def silhouette() -> np.ndarray:
    """A grey head-and-shoulders placeholder on a light background: two flat tones."""
    yy, xx = np.mgrid[0:96, 0:80]
    image = np.full((96, 80, 3), 220, np.uint8)
    head = ((yy - 35) / 18) ** 2 + ((xx - 40) / 14) ** 2 <= 1
    shoulders = (((yy - 96) / 35) ** 2 + ((xx - 40) / 38) ** 2 <= 1)
    image[head | shoulders] = (150, 150, 155)
    return image


def blank() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(rng.normal(0, 0.7, (96, 80, 3)) + [90, 140, 200], 0, 255).astype(np.uint8)


def options(**changes) -> PrepareOptions:
    return PrepareOptions(size=SIZE, **changes)


def run(sources, output, *, workers=1, **changes):
    found = collect_sources([str(s) for s in sources])
    return prepare(found, output, options=options(**changes), workers=workers, append=changes.pop("append", False))


def read_set(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as handle:
        names = [n.decode() if isinstance(n, bytes) else n for n in handle[setfile.SOURCES][...]]
        return names, handle[setfile.IMAGES][...], handle[setfile.SPLITS][...]


# ---- each filter, image by image -----------------------------------------------------


def drop_reason(path: Path, **changes) -> str | None:
    result = process_image(path, options(**changes), SIZE)
    return result.reason if isinstance(result, Dropped) else None


@pytest.fixture
def bad_images(tmp_path) -> dict[str, Path]:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "notes.jpg").write_text("not an image at all")
    buffer = io.BytesIO()
    Image.fromarray(portrait_array(seed=1)).save(buffer, "JPEG")
    (folder / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    return {
        "not-an-image": folder / "notes.jpg",
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.png",
        "tiny": save(folder / "tiny.png", portrait_array(20, 16, seed=2)),
        "one-pixel": save(folder / "dot.png", np.array([[[200, 10, 10]]], np.uint8)),
        "blank": save(folder / "blank.png", blank()),
        "silhouette": save(folder / "silhouette.png", silhouette()),
        "gray": write_portrait(folder / "gray.jpg", seed=3, gray=True),
        "gray-as-rgb": save(folder / "gray_rgb.jpg", portrait_array(seed=4, gray=True)),
        "sepia": save(folder / "sepia.jpg", sepia(5), quality=90),
        "tinted": save(folder / "tinted.png", np.clip(portrait_array(seed=6, gray=True) * [0.8, 0.9, 1.0] + [20, 10, 0], 0, 255).astype(np.uint8)),
    }


@pytest.mark.parametrize(
    "name, reason",
    [
        ("not-an-image", "unreadable"),
        ("truncated", "unreadable"),
        ("empty", "unreadable"),
        ("tiny", "too-small"),
        ("one-pixel", "too-small"),
        ("blank", "blank"),
        ("silhouette", "placeholder"),
        ("gray", "grayscale"),
        ("gray-as-rgb", "grayscale"),
        ("sepia", "grayscale"),
        ("tinted", "grayscale"),
    ],
)
def test_each_bad_image_is_dropped_for_its_reason(bad_images, name, reason):
    assert drop_reason(bad_images[name]) == reason


@pytest.mark.parametrize("seed", range(6))
def test_colour_portraits_pass_every_filter(tmp_path, seed):
    path = write_portrait(tmp_path / f"p{seed}.jpg", seed=seed, quality=85)
    assert drop_reason(path) is None


def test_decompression_bomb_guard(tmp_path):
    path = write_portrait(tmp_path / "p.png")  # 96 x 80 = 7680 pixels
    assert drop_reason(path, max_pixels=5000) == "too-large"
    assert drop_reason(path, max_pixels=0) is None  # 0 turns the guard off


@pytest.mark.parametrize(
    "name, switch_off",
    [("tiny", {"min_size": 0}), ("blank", {"min_contrast": 0, "min_detail": 0, "min_colorfulness": 0}),
     ("silhouette", {"min_detail": 0, "min_colorfulness": 0}), ("gray", {"min_colorfulness": 0}), ("sepia", {"min_colorfulness": 0})],
)
def test_zero_turns_a_filter_off(bad_images, name, switch_off):
    assert drop_reason(bad_images[name], **switch_off) is None


def test_thresholds_are_tunable(tmp_path):
    path = write_portrait(tmp_path / "p.png", seed=1)
    assert drop_reason(path, min_size=200) == "too-small"
    assert drop_reason(path, min_colorfulness=500) == "grayscale"
    assert drop_reason(path, min_contrast=500) == "blank"
    assert drop_reason(path, min_detail=9) == "placeholder"


def test_require_face_drops_images_without_a_face(tmp_path):
    path = write_portrait(tmp_path / "p.png")
    assert drop_reason(path, require_face=True) == "no-face"


def test_require_face_keeps_a_real_face(tmp_path):
    data = pytest.importorskip("skimage.data")
    path = save(tmp_path / "astronaut.png", data.astronaut())
    assert drop_reason(path, require_face=True) is None


def test_transparent_background_becomes_white(tmp_path):
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = portrait_array(64, 64, seed=2)
    rgba[16:48, 16:48, 3] = 255  # opaque centre, transparent (black underneath) border
    result = process_image(save(tmp_path / "cut.png", rgba), options(crop="none", min_detail=0), SIZE)
    assert isinstance(result, Kept)
    corner = decode_lab8(result.lab8[0, 0])
    assert corner[0] > 99 and abs(corner[1]) < 1 and abs(corner[2]) < 1


# ---- crops -------------------------------------------------------------------------------


def halves(height: int, width: int) -> np.ndarray:
    """Left third red, middle a colour portrait, right third blue: which part a crop kept shows."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 3] = (200, 30, 30)
    image[:, width // 3 : 2 * width // 3] = portrait_array(height, 2 * width // 3 - width // 3, seed=1)
    image[:, 2 * width // 3 :] = (30, 30, 200)
    return image


def test_center_crop_takes_the_middle_square(tmp_path):
    path = save(tmp_path / "wide.png", halves(90, 270))
    result = process_image(path, options(crop="center"), SIZE)
    lab = decode_lab8(result.lab8)
    # a 90x90 centre of a 270-wide image is exactly the middle third: no pure red or blue edge
    assert not (lab[:, 0, 1] > 40).all() and not (lab[:, -1, 2] < -40).all()


def test_none_crop_squashes_the_whole_image(tmp_path):
    path = save(tmp_path / "wide.png", halves(90, 270))
    lab = decode_lab8(process_image(path, options(crop="none"), SIZE).lab8)
    assert (lab[:, 0, 1] > 40).all()  # red on the left edge
    assert (lab[:, -1, 2] < -40).all()  # blue on the right edge


def test_face_crop_falls_back_to_center_and_counts_it(tmp_path, portrait_dir):
    center = process_image(next(portrait_dir.glob("*.png")), options(crop="center"), SIZE)
    face = process_image(next(portrait_dir.glob("*.png")), options(crop="face"), SIZE)
    assert face.face_fallback and not center.face_fallback
    assert np.array_equal(face.lab8, center.lab8)
    report = run([portrait_dir], tmp_path / "f.h5", crop="face").report
    # Haar may see a "face" in one or two synthetic drawings; most have none
    assert report["notes"][prep.NOTE_FACE_FALLBACK] >= 10


def test_face_crop_centres_on_a_real_face(tmp_path):
    data = pytest.importorskip("skimage.data")
    from portraitcolor import faces

    rgb = data.astronaut()
    wide = np.concatenate([rgb, np.zeros((512, 512, 3), np.uint8) + 90], axis=1)  # face on the left
    path = save(tmp_path / "wide.png", wide)
    result = process_image(path, options(crop="face"), SIZE)
    assert isinstance(result, Kept) and not result.face_fallback
    box = faces.largest_face((wide @ np.array([0.299, 0.587, 0.114])).astype(np.uint8))
    top, left, side = faces.face_square(box, 512, 1024, margin=0.6)
    assert left + side <= 512 + 40  # the crop is around the face, not the flat right half


# ---- the set file ------------------------------------------------------------------------


def test_set_reads_back_through_dataset_with_lab_values(tmp_path):
    images = {f"p{i}.png": portrait_array(SIZE, SIZE, seed=i) for i in range(5)}
    for name, array in images.items():
        save(tmp_path / "in" / name, array)
    out = tmp_path / "set.h5"
    run([tmp_path / "in"], out, crop="none", val=0.3, test=0.3, min_size=0)
    info = setfile.inspect_set(out)
    assert info.count == 5 and info.size == SIZE
    assert info.attributes["format"] == setfile.FORMAT and info.attributes["color_space"] == setfile.COLOR_SPACE
    assert info.attributes["filter_report"]["kept"] == 5 and info.attributes["options"]["crop"] == "none"
    seen = {}
    for split in setfile.SPLIT_NAMES:
        for names, lab8 in setfile.iter_split(out, split):
            for name, image in zip(names, lab8):
                assert setfile.split_for(name, val=0.3, test=0.3) == split
                seen[name] = image
    assert sorted(seen) == sorted(images)
    for name, array in images.items():
        expected = rgb_to_lab(array / np.float32(255))
        assert np.abs(decode_lab8(seen[name]) - expected).max() < 0.5 + 1e-3


def test_layout_follows_dataset_constants(tmp_path, portrait_dir):
    out = tmp_path / "set.h5"
    run([portrait_dir], out)
    with h5py.File(out, "r") as handle:
        images = handle[setfile.IMAGES]
        assert images.dtype == np.uint8 and images.chunks == (setfile.CHUNK_IMAGES, SIZE, SIZE, 3)
        assert images.compression == setfile.COMPRESSION and images.maxshape[0] is None
        assert h5py.check_string_dtype(handle[setfile.SOURCES].dtype).encoding == "utf-8"
        assert handle[setfile.SPLITS].dtype == np.uint8
        assert json.loads(handle.attrs["options"])["size"] == SIZE
        assert json.loads(handle.attrs["filter_report"])["kept"] == 12
        assert handle.attrs["tool_version"] and handle.attrs["format_version"] == setfile.FORMAT_VERSION


def test_sources_are_relative_utf8_paths(tmp_path):
    write_portrait(tmp_path / "in" / "sub" / "Tidjane_Salaün.png")
    out = tmp_path / "set.h5"
    run([tmp_path / "in"], out)
    assert read_set(out)[0] == ["sub/Tidjane_Salaün.png"]


def test_splits_are_stable_under_rerun_and_follow_the_hash(tmp_path, portrait_dir):
    first, second = tmp_path / "a.h5", tmp_path / "b.h5"
    run([portrait_dir], first, val=0.25, test=0.25)
    run([portrait_dir], second, val=0.25, test=0.25, workers=2)
    names, images, splits = read_set(first)
    names2, images2, splits2 = read_set(second)
    assert names == names2 and np.array_equal(splits, splits2) and np.array_equal(images, images2)
    assert [setfile.SPLIT_NAMES[code] for code in splits] == [setfile.split_for(n, val=0.25, test=0.25) for n in names]


def test_append_adds_only_new_sources_and_keeps_splits(tmp_path):
    folder = tmp_path / "in"
    for i in range(6):
        write_portrait(folder / f"a{i}.png", seed=i)
    out = tmp_path / "set.h5"
    run([folder], out, val=0.3, test=0.3)
    before = dict(zip(*read_set(out)[::2]))
    for i in range(6, 10):
        write_portrait(folder / f"b{i}.png", seed=i)
    report = prepare(collect_sources([folder]), out, options=PrepareOptions(), workers=1, append=True).report
    assert report["kept"] == 4 and report["skipped"] == {prep.SKIPPED_PRESENT: 6}
    names, images, splits = read_set(out)
    assert len(names) == len(set(names)) == 10
    after = dict(zip(names, splits))
    assert all(after[name] == code for name, code in before.items())  # nothing moved
    info = setfile.inspect_set(out)
    assert info.attributes["filter_report"]["kept"] == 10 and info.attributes["options"]["val"] == 0.3
    # appending again finds nothing new and keeps the set as it is
    again = prepare(collect_sources([folder]), out, options=PrepareOptions(), workers=1, append=True).report
    assert again["kept"] == 0 and setfile.inspect_set(out).count == 10


def test_append_refuses_a_different_size_or_split(tmp_path, portrait_dir):
    out = tmp_path / "set.h5"
    run([portrait_dir], out)
    for change in ({"size": 64}, {"size": SIZE, "val": 0.2}):
        with pytest.raises(PrepareError, match="would mix sets"):
            prepare(collect_sources([portrait_dir]), out, options=PrepareOptions(**change), workers=1, append=True)


def test_existing_output_needs_append_or_overwrite(tmp_path, portrait_dir):
    out = tmp_path / "set.h5"
    run([portrait_dir], out)
    with pytest.raises(PrepareError, match="exists"):
        run([portrait_dir], out)
    prepare(collect_sources([portrait_dir]), out, options=options(limit=3), workers=1, overwrite=True)
    assert setfile.inspect_set(out).count == 3


def test_a_set_another_job_is_writing_is_refused_before_any_work(tmp_path, portrait_dir):
    """Two appends at once each copied the set and renamed their copy into place: the later
    one silently dropped the earlier one's images. While a job writes a set (here this test,
    through the same lock prepare takes), the real CLI refuses another with one line and the
    set is untouched; once the writer is done, the append runs."""
    out = tmp_path / "set.h5"
    run([portrait_dir], out, limit=3)
    before = out.read_bytes()
    with setfile.sole_writer(out, PrepareError):
        refused = run_cli("prepare", str(portrait_dir), "-o", str(out), "--append", "--size", "32")
    assert refused.returncode == 1 and refused.stderr.decode().strip().splitlines() == [
        f"portraitcolor: error: {out}: another job is writing this set now: start the next one when it ends"
    ]
    assert out.read_bytes() == before
    appended = run_cli("prepare", str(portrait_dir), "-o", str(out), "--append", "--size", "32")
    assert appended.returncode == 0, appended.stderr
    assert setfile.inspect_set(out).count == 12


def test_limit_and_workers_give_the_same_first_images(tmp_path, portrait_dir):
    run([portrait_dir], tmp_path / "one.h5", limit=5)
    run([portrait_dir], tmp_path / "two.h5", limit=5, workers=2)
    assert read_set(tmp_path / "one.h5")[0] == read_set(tmp_path / "two.h5")[0]
    assert len(read_set(tmp_path / "one.h5")[0]) == 5


def test_chunk_blocks_cover_many_chunks(tmp_path):
    folder = tmp_path / "in"
    array = portrait_array(40, 40, seed=0)
    for i in range(70):  # more than one chunk; same picture with a different pixel each
        image = array.copy()
        image[i % 40, i // 40] = 255
        save(folder / f"{i:03d}.png", image)
    out = tmp_path / "set.h5"
    run([folder], out, min_size=0)
    assert setfile.inspect_set(out).count == 70
    assert sum(len(names) for names, _ in setfile.iter_split(out, None)) == 70


# ---- atomic writes -----------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_failure_mid_write_leaves_no_output(tmp_path, portrait_dir, monkeypatch):
    calls = []
    real = variants.process_source

    def failing(path, name, job):
        calls.append(path)
        if len(calls) == 7:
            raise RuntimeError("disk on fire")
        return real(path, name, job)

    monkeypatch.setattr(variants, "process_source", failing)
    monkeypatch.setattr(setfile, "CHUNK_IMAGES", 2)  # blocks really reach the file before the failure
    out = tmp_path / "set.h5"
    with pytest.raises(RuntimeError):
        run([portrait_dir], out)
    assert not out.exists() and leftovers(tmp_path) == []


def test_interrupt_during_append_keeps_the_finished_set(tmp_path, portrait_dir):
    out = tmp_path / "set.h5"
    run([portrait_dir], out, limit=4)
    before = out.read_bytes()

    def interrupt(state):
        if state.kept >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(collect_sources([portrait_dir]), out, options=PrepareOptions(), workers=2, append=True, progress=interrupt)
    assert out.read_bytes() == before and leftovers(tmp_path) == []
    # and a later --append continues from the finished set
    prepare(collect_sources([portrait_dir]), out, options=PrepareOptions(), workers=1, append=True)
    assert setfile.inspect_set(out).count == 12


def test_nothing_kept_is_an_error_and_writes_nothing(tmp_path, bad_images):
    out = tmp_path / "set.h5"
    with pytest.raises(PrepareError, match="no image could be kept"):
        run([bad_images["gray"].parent], out)
    assert not out.exists() and leftovers(tmp_path) == []


# ---- dedupe and hashing -----------------------------------------------------------------


def test_dedupe_drops_exact_and_near_duplicates(tmp_path):
    folder = tmp_path / "in"
    array = portrait_array(seed=2)
    save(folder / "a.png", array)
    save(folder / "b.jpg", array, quality=70)  # re-compressed copy
    save(folder / "c.png", np.array(Image.fromarray(array).resize((160, 192))))  # resized copy
    write_portrait(folder / "d.png", seed=9)
    report = run([folder], tmp_path / "set.h5", dedupe=True).report
    assert report["kept"] == 2 and report["dropped"] == {"duplicate": 2}
    assert read_set(tmp_path / "set.h5")[0] == ["a.png", "d.png"]
    assert run([folder], tmp_path / "all.h5").report["kept"] == 4  # off by default


def test_dedupe_checks_appended_images_against_the_set(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    save(first / "a.png", portrait_array(seed=3))
    save(second / "copy.jpg", portrait_array(seed=3), quality=80)
    out = tmp_path / "set.h5"
    run([first], out, dedupe=True)
    report = prepare(collect_sources([second]), out, options=PrepareOptions(dedupe=True), workers=1, append=True).report
    assert report["dropped"] == {"duplicate": 1}


# ---- sources and IMDB metadata ---------------------------------------------------------


def test_collect_sources_recurses_and_skips_non_images(tmp_path, portrait_dir):
    (portrait_dir / "notes.txt").write_text("x")
    (portrait_dir / ".hidden.jpg").write_bytes(b"x")
    found = collect_sources([portrait_dir, portrait_dir / "face01.jpg"])
    names = [s.name for s in found]
    assert len(names) == 13 and "sub/face00.png" in names and "notes.txt" not in names
    assert names[-1].endswith("face01.jpg")


@pytest.mark.parametrize("separator", ["\n", "\0", "\r\n"])
def test_read_file_list(separator):
    from portraitcolor.inputs import read_file_list

    assert read_file_list(separator.join(["a b.jpg", "c.png", ""]).encode()) == ["a b.jpg", "c.png"]


def write_imdb(root: Path, rows: list[tuple[str, float, float]], key: str = "imdb") -> Path:
    """An imdb.mat laid out like IMDB-WIKI's: one struct with cell full_path and score rows."""
    from scipy.io import savemat

    paths = np.empty(len(rows), dtype=object)
    paths[:] = [row[0] for row in rows]
    table = {"full_path": paths, "face_score": np.array([[r[1] for r in rows]]), "second_face_score": np.array([[r[2] for r in rows]]),
             "name": paths.copy(), "gender": np.ones((1, len(rows)))}
    savemat(root / f"{key}.mat", {key: table})
    return root / f"{key}.mat"


@pytest.mark.parametrize("key", ["imdb", "wiki"])
def test_imdb_meta_drops_images_without_one_clear_face(tmp_path, key):
    pytest.importorskip("scipy")
    root = tmp_path / f"{key}_crop"
    rows = [("01/one.jpg", 2.5, np.nan), ("01/none.jpg", -np.inf, np.nan), ("02/two.jpg", 3.0, 1.4), ("02/weak.jpg", 0.4, np.nan)]
    for i, (name, _, _) in enumerate(rows):
        write_portrait(root / name, seed=i)
    write_portrait(root / "03" / "unlisted.jpg", seed=7)
    write_imdb(root, rows, key)
    out = tmp_path / "set.h5"
    report = run([root], out, imdb_meta=True).report
    assert report["dropped"] == {"imdb-faces": 3}
    assert sorted(read_set(out)[0]) == ["01/one.jpg", "03/unlisted.jpg"]
    assert run([root], tmp_path / "low.h5", imdb_meta=True, min_face_score=0.3).report["kept"] == 3


def test_imdb_meta_needs_the_mat_file(tmp_path, portrait_dir):
    with pytest.raises(PrepareError, match="no imdb.mat"):
        run([portrait_dir], tmp_path / "set.h5", imdb_meta=True)


# ---- the command line ------------------------------------------------------------------


def test_cli_prepares_a_mixed_folder(tmp_path, portrait_dir, bad_images):
    for path in bad_images.values():
        (portrait_dir / "bad").mkdir(exist_ok=True)
        (portrait_dir / "bad" / path.name).write_bytes(path.read_bytes())
    out, report_path = tmp_path / "set.h5", tmp_path / "report.json"
    result = run_cli("prepare", str(portrait_dir), "-o", str(out), "--size", "32", "--workers", "2", "--report", str(report_path))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == str(out)
    stderr = result.stderr.decode()
    assert "kept" in stderr and "grayscale or tinted monochrome" in stderr and "\x1b[" not in stderr
    report = json.loads(report_path.read_text())
    assert report["kept"] == 12 and report["seen"] == 23
    assert report["dropped"] == {"unreadable": 3, "too-small": 2, "blank": 1, "placeholder": 1, "grayscale": 4}
    assert {item["source"] for item in report["dropped_files"]["unreadable"]} == {"bad/notes.jpg", "bad/truncated.jpg", "bad/empty.png"}
    assert setfile.inspect_set(out).count == 12


def test_cli_files_from_stdin_nul_separated(tmp_path, portrait_dir):
    files = sorted(str(p) for p in portrait_dir.rglob("*.png"))
    out = tmp_path / "set.h5"
    result = run_cli("prepare", "--files-from", "-", "-o", str(out), "--size", "32", "--workers", "1", input="\0".join(files).encode())
    assert result.returncode == 0, result.stderr.decode()
    assert setfile.inspect_set(out).count == len(files)


def test_cli_append_and_exit_codes(tmp_path, portrait_dir, bad_images):
    out = tmp_path / "set.h5"
    args = ("prepare", str(portrait_dir), "-o", str(out), "--size", "32", "--workers", "1")
    assert run_cli(*args, "--limit", "3").returncode == 0
    exists = run_cli(*args)
    assert exists.returncode == 2 and b"--append" in exists.stderr
    assert run_cli(*args, "--append").returncode == 0 and setfile.inspect_set(out).count == 12
    assert run_cli("prepare", "-o", str(tmp_path / "x.h5")).returncode == 2  # no sources
    assert run_cli(*args, "--append", "--overwrite").returncode == 2
    nothing = run_cli("prepare", str(bad_images["gray"].parent), "-o", str(tmp_path / "bad.h5"), "--size", "32")
    assert nothing.returncode == 1 and b"no image could be kept" in nothing.stderr
    assert not (tmp_path / "bad.h5").exists()


@pytest.mark.slow
@pytest.mark.skipif(HEADSHOTS is None or not HEADSHOTS.is_dir(), reason="PORTRAITCOLOR_TEST_HEADSHOTS names no folder of headshots")
def test_headshots_corpus_drops_the_placeholders(tmp_path):
    report = prepare(collect_sources([HEADSHOTS]), tmp_path / "h.h5", options=PrepareOptions(crop="face"), workers=2).report
    dropped = {item["source"] for items in report["dropped_files"].values() for item in items}
    assert "Ace_Bailey.png" in dropped and "Aliou_Diarra.jpg" in dropped  # grey silhouettes (PNG and JPEG)
    assert "AJ_Hoggard.jpg" not in dropped and report["kept"] > 350


def test_large_jpegs_are_decoded_reduced_but_judged_by_their_stored_size(tmp_path):
    from portraitcolor.images import read_image_reduced

    path = save(tmp_path / "big.jpg", np.array(Image.fromarray(portrait_array(seed=1)).resize((600, 720))), quality=90)
    picture, stored = read_image_reduced(path, min_side=64)
    assert stored == (600, 720) and 64 <= min(picture.height, picture.width) < 600
    png = write_portrait(tmp_path / "p.png")
    assert read_image_reduced(png, min_side=8)[0].rgb.shape == (96, 80, 3)  # only JPEG decoders reduce
    assert drop_reason(path, min_size=500) is None  # 600 stored pixels, not the reduced 150
    assert drop_reason(path, min_size=601) == "too-small"
