"""Outputs replace earlier results only when asked; distinct photos keep distinct names."""

from __future__ import annotations

import json

import h5py
from PIL import Image

from portraitcolor import images
from tests.conftest import portrait_stack, run_cli, write_portrait, write_set


def _photos(folder, count, *, seed=0):
    for i in range(count):
        write_portrait(folder / f"p{i}.png", seed=seed + i)
    return folder


def test_evaluate_report_and_csv_replace_only_with_overwrite(tmp_path, tiny_model_file):
    photos = _photos(tmp_path / "photos", 8)
    report = tmp_path / "report"
    first = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(report), "--csv", str(tmp_path / "m.csv"))
    assert first.returncode == 0, first.stderr
    page = (report / "index.html").read_bytes()
    csv = (tmp_path / "m.csv").read_bytes()

    again = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(report))
    assert again.returncode != 0 and b"--overwrite" in again.stderr and b"Traceback" not in again.stderr
    assert (report / "index.html").read_bytes() == page
    again = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--csv", str(tmp_path / "m.csv"))
    assert again.returncode != 0 and b"--overwrite" in again.stderr
    assert (tmp_path / "m.csv").read_bytes() == csv


def test_an_overwritten_report_keeps_no_strip_of_the_earlier_one(tmp_path, tiny_model_file):
    report = tmp_path / "report"
    first = run_cli("evaluate", str(_photos(tmp_path / "a", 8)), "-m", str(tiny_model_file), "--report", str(report))
    assert first.returncode == 0, first.stderr
    earlier = {path.name for path in (report / "images").iterdir()}
    (report / "notes.txt").write_text("mine")  # a file of the user's own is not the report's
    second = run_cli("evaluate", str(_photos(tmp_path / "b", 3, seed=50)), "-m", str(tiny_model_file), "--report", str(report), "--overwrite")
    assert second.returncode == 0, second.stderr
    page = (report / "index.html").read_text()
    kept = {path.name for path in (report / "images").iterdir()}
    assert all(name in page for name in kept)  # every image in the folder belongs to the new page
    assert earlier - kept  # and the earlier report's extra strips are gone
    assert (report / "notes.txt").read_text() == "mine"


def test_a_folder_of_the_users_own_is_never_overwritten_by_a_report(tmp_path, tiny_model_file):
    """--report into a folder whose index.html or per_image.csv a report did not write (a web
    page, a table of the user's) is refused even with --overwrite, and the files are kept;
    only a report's own files are replaced."""
    photos = _photos(tmp_path / "photos", 4)
    for name, text in (("index.html", "<html><title>My family tree</title></html>"), ("per_image.csv", "name,born\nAda,1815\n")):
        site = tmp_path / f"site-{name}"
        site.mkdir()
        (site / name).write_text(text)
        result = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(site), "--overwrite")
        assert result.returncode != 0 and b"Traceback" not in result.stderr
        assert result.stderr.decode().strip().endswith(f"{site}: its {name} is not from a portraitcolor report and is kept; give --report a folder of its own")
        assert (site / name).read_text() == text and sorted(p.name for p in site.iterdir()) == [name]


def test_a_report_never_removes_or_replaces_a_picture_it_did_not_write(tmp_path, tiny_model_file):
    """A photo of the user's named like a report's strip, in the report folder's images/, is
    refused with or without --overwrite and kept (it used to be removed as an earlier
    report's strip, or written over); a report whose images/ would be the input folder is
    refused before any work."""
    photos = _photos(tmp_path / "photos", 3)
    site = tmp_path / "site"
    mine = write_portrait(site / "images" / "strip-000001.jpg", seed=9)
    kept = mine.read_bytes()
    for extra in ([], ["--overwrite"]):
        result = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(site), *extra)
        assert result.returncode != 0 and b"Traceback" not in result.stderr
        assert result.stderr.decode().strip().endswith(f"{site}: its images/strip-000001.jpg is not from a portraitcolor report and is kept; give --report a folder of its own")
        assert mine.read_bytes() == kept and sorted(p.name for p in site.rglob("*")) == ["images", "strip-000001.jpg"]

    album = tmp_path / "album"
    _photos(album / "images", 2)
    result = run_cli("evaluate", str(album / "images"), "-m", str(tiny_model_file), "--report", str(album), "--overwrite")
    assert result.returncode == 2 and result.stderr.decode().strip().endswith(f"--report's images {album / 'images'} is the input {album / 'images'}: it would be replaced")
    assert sorted(p.name for p in album.rglob("*")) == ["images", "p0.png", "p1.png"]


def test_the_csv_is_never_one_of_the_reports_own_files(tmp_path, tiny_model_file):
    """`--report out --csv out/per_image.csv` wrote the CSV, then refused the report after the
    whole evaluation; now it is one line before any work, and nothing is written."""
    photos = _photos(tmp_path / "photos", 2)
    (tmp_path / "out").mkdir()
    for name in ("per_image.csv", "index.html"):
        result = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(tmp_path / "out"), "--csv", str(tmp_path / "out" / name))
        assert result.returncode == 2 and f"--report's {name}" in result.stderr.decode() and "give each output its own name" in result.stderr.decode()
    assert not any((tmp_path / "out").iterdir())
    # A CSV of its own name in the report folder the run makes is fine.
    fresh = tmp_path / "fresh"
    result = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(fresh), "--csv", str(fresh / "mine.csv"))
    assert result.returncode == 0, result.stderr
    assert (fresh / "mine.csv").read_text() == (fresh / "per_image.csv").read_text()


def test_a_reports_own_pictures_are_replaced_with_overwrite(tmp_path, isolated_store):
    """The real producers and consumer: a model trained by `train` (its run draws a loss
    curve), a report of it, then a second report over the first with --overwrite. Every
    picture the report wrote is signed as portraitcolor's, so the second run replaces them."""
    faces = write_set(tmp_path / "faces.h5", portrait_stack(12, 16), ["val" if i % 4 == 0 else "train" for i in range(12)])
    trained = run_cli("train", str(faces), "--epochs", "1", "--width", "2", "--batch-size", "3", "--loss", "mae", "--device", "cpu", "--name", "tiny", env={"OMP_NUM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    report = tmp_path / "report"
    for photos, extra in ((_photos(tmp_path / "a", 6), []), (_photos(tmp_path / "b", 2, seed=40), ["--overwrite"])):
        result = run_cli("evaluate", str(photos), "-m", "tiny", "--report", str(report), *extra)
        assert result.returncode == 0, result.stderr
        # The second report's curve comes from a run of a version that did not sign its curves.
        curve = isolated_store / "runs" / "tiny" / "loss_curve.png"
        Image.open(curve).save(curve)
        assert not images.written_by_portraitcolor(curve)
    pictures = sorted(p.name for p in (report / "images").iterdir())
    assert "loss-curves-1.png" in pictures and len(pictures) == 3  # the curve and the 2 photos' strips
    assert all(images.written_by_portraitcolor(report / "images" / name) for name in pictures)


def test_an_empty_report_folder_needs_no_overwrite(tmp_path, tiny_model_file):
    (tmp_path / "report").mkdir()
    result = run_cli("evaluate", str(_photos(tmp_path / "a", 4)), "-m", str(tiny_model_file), "--report", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr


def test_prepare_refuses_two_photos_under_one_name_before_any_work(tmp_path):
    a = _photos(tmp_path / "pa", 3)
    b = _photos(tmp_path / "pb", 3, seed=10)  # different photos, same file names
    result = run_cli("prepare", str(a), str(b), "-o", str(tmp_path / "s.h5"), "--size", "32")
    assert result.returncode != 0 and b"Traceback" not in result.stderr
    message = result.stderr.decode()
    assert "p0.png" in message and "common parent folder" in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "s.h5").exists()


def test_the_common_parent_keeps_every_photo(tmp_path):
    _photos(tmp_path / "photos" / "pa", 3)
    _photos(tmp_path / "photos" / "pb", 3, seed=10)
    result = run_cli("prepare", str(tmp_path / "photos"), "-o", str(tmp_path / "s.h5"), "--size", "32", "--crop", "center")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "s.h5") as handle:
        names = sorted(name.decode() if isinstance(name, bytes) else name for name in handle["sources"][:])
    assert names == [f"{folder}/p{i}.png" for folder in ("pa", "pb") for i in range(3)]


def test_the_same_file_given_twice_is_not_a_clash(tmp_path):
    photo = write_portrait(tmp_path / "p.png")
    result = run_cli("prepare", str(photo), str(tmp_path / "." / "p.png"), "-o", str(tmp_path / "s.h5"), "--size", "32", "--crop", "center")
    assert b"would both be named" not in result.stderr


def test_prepare_report_replaces_only_its_own_set_report(tmp_path):
    photos = _photos(tmp_path / "photos", 4)
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": 1}')
    refused = run_cli("prepare", str(photos), "-o", str(tmp_path / "s.h5"), "--size", "32", "--report", str(mine))
    assert refused.returncode == 2 and b"--overwrite" in refused.stderr
    assert mine.read_text() == '{"mine": 1}' and not (tmp_path / "s.h5").exists()
    report = tmp_path / "report.json"
    first = run_cli("prepare", str(photos), "-o", str(tmp_path / "s.h5"), "--size", "32", "--report", str(report))
    assert first.returncode == 0, first.stderr
    more = _photos(tmp_path / "more", 2, seed=30)
    # The set's own report is brought up to date by --append.
    appended = run_cli("prepare", str(more), "-o", str(tmp_path / "s.h5"), "--size", "32", "--append", "--report", str(report))
    assert appended.returncode == 0, appended.stderr


def test_a_report_folder_inside_the_photos_is_not_evaluated_on_the_next_run(tmp_path, tiny_model_file):
    photos = _photos(tmp_path / "photos", 4)
    report = photos / "report"
    counts = []
    for extra in ([], ["--overwrite"]):
        result = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--report", str(report), "--json", *extra)
        assert result.returncode == 0, result.stderr
        counts.append(json.loads(result.stdout)["images"])
    # Without --report too: the report's strips are signed, and left out as portraitcolor's own.
    plain = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--json", check=True)
    counts.append(json.loads(plain.stdout)["images"])
    assert list((report / "images").iterdir()) and counts == [4, 4, 4]


def test_no_command_takes_colorize_results_for_photos(tmp_path, tiny_model_file):
    """The real writer, then the real readers: evaluate and prepare leave colorize's results
    out, whether beside the photos (*_color) or in an -O folder under their own names."""
    photos = _photos(tmp_path / "photos", 3)
    beside = run_cli("colorize", str(photos), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    elsewhere = run_cli("colorize", str(photos), "-O", str(photos / "colour"), "-m", str(tiny_model_file), check=True).stdout.decode().split()
    assert len(beside) == len(elsewhere) == 3
    evaluated = run_cli("evaluate", str(photos), "-m", str(tiny_model_file), "--json", check=True)
    assert json.loads(evaluated.stdout)["images"] == 3
    assert "left out 3 images written by portraitcolor" in evaluated.stderr.decode()
    run_cli("prepare", str(photos), "-o", str(tmp_path / "s.h5"), "--report", str(tmp_path / "r.json"), "--crop", "center", check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["seen"] == 6 and report["dropped"] == {"colorized": 3} and report["kept"] == 3
    only_results = run_cli("evaluate", str(photos / "colour"), "-m", str(tiny_model_file))
    assert only_results.returncode != 0 and b"every image was written by portraitcolor" in only_results.stderr
