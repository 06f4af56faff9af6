"""Bad input, interruptions and full disks across commands: nothing is lost, nothing half-written."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_inputs import make_bad_inputs
from conftest import REPO, default_sigint, run_cli, write_portrait
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _leftovers(folder):
    return [p for p in folder.rglob("*") if ".part" in p.name]


def test_colorize_bad_input_corpus(tmp_path, tiny_model_file):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cases = make_bad_inputs(corpus)
    assert len(cases) >= 25
    out = tmp_path / "out"
    result = run_cli("colorize", *[str(case.path) for case in cases], "-O", str(out), "-m", str(tiny_model_file))
    stderr = os.fsdecode(result.stderr)
    assert result.returncode == 1
    assert "Traceback" not in stderr
    warned = [line for line in stderr.strip().splitlines() if "only the first is coloured" in line]
    lines = [line for line in stderr.strip().splitlines() if line not in warned]
    refused = [case for case in cases if not case.valid]
    assert len(lines) == len(refused), stderr
    assert sorted(Path(line.split(": ")[1]).name for line in warned) == ["anim.gif", "anim.webp"]  # coloured, with a warning
    for case in refused:
        line = next((l for l in lines if os.fsdecode(os.fsencode(str(case.path))) in l or case.path.name in l), None)
        assert line is not None, f"{case.kind}: no line names {case.path.name}"
        assert case.reason in line, f"{case.kind}: {line!r}"
    written = {p.name for p in out.iterdir()}
    for case in cases:
        if case.valid:
            result_name = case.path.with_suffix(".png").name if case.path.suffix == ".gif" else case.path.name  # GIF's result: a PNG
            assert result_name in written, f"{case.kind} was not processed"
    assert len(os.fsencode(result.stdout).splitlines()) == sum(case.valid for case in cases)
    assert not _leftovers(out)


def test_colorize_output_that_would_escape_is_refused(tmp_path, tiny_model_file):
    source = tmp_path / "in"
    write_portrait(source / "sub" / "face.png", 32, 32, gray=True)
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)  # a planted link inside the output folder
    result = run_cli("colorize", str(source), "-r", "-O", str(out), "-m", str(tiny_model_file))
    assert result.returncode == 1 and b"escape" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_colorize_disk_full_keeps_previous_output(tmp_path, tiny_model_file):
    """ENOSPC while writing: a clear error, the earlier result under that name stays intact."""
    source = write_portrait(tmp_path / "face.png", 64, 64, gray=True)
    target = tmp_path / "face_color.png"
    target.write_bytes(b"previous result")
    code = (
        "import errno, sys\n"
        "from PIL import Image\n"
        "original = Image.Image.save\n"
        "def full(self, fp, *a, **k):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "Image.Image.save = full\n"
        "from portraitcolor.cli import main\n"
        f"sys.argv = ['portraitcolor', 'colorize', {str(source)!r}, '--overwrite', '-m', {str(tiny_model_file)!r}]\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1
    assert b"No space left on device" in result.stderr and b"Traceback" not in result.stderr
    assert target.read_bytes() == b"previous result"
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_colorize_interrupted_leaves_only_complete_outputs(tmp_path, tiny_model_file, signum):
    source = tmp_path / "many"
    for i in range(40):
        write_portrait(source / f"f{i:02d}.png", 256, 256, seed=i, gray=True)
    # A large render size and batches of one keep the job running for seconds, so the
    # signal lands mid-run even when this test process is slow to notice the first output.
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "portraitcolor", "colorize", str(source), "-O", str(out), "--batch-size", "1", "--render-size", "768", "-m", str(tiny_model_file)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.iterdir())):
        time.sleep(0.05)
    assert process.poll() is None, "the job ended before it could be interrupted"
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert b"Traceback" not in stderr
    assert not _leftovers(out)
    from PIL import Image

    for path in out.iterdir():  # everything that exists is a complete image
        Image.open(path).load()
    # a rerun with --skip-existing finishes the job
    rerun = run_cli("colorize", str(source), "-O", str(out), "--skip-existing", "--batch-size", "8", "-m", str(tiny_model_file), check=True)
    assert rerun.returncode == 0 and len(list(out.iterdir())) == 40


# ---- prepare and evaluate: the same bad-input corpus -----------------------------------

# What prepare does with each case: None means kept, a word is the filter report's reason.
# The tiny 1x1 and 1xN images are uniform (blank); 16-bit, float and LA inputs are gray.
PREPARE_VERDICTS = {
    "zero bytes": "unreadable",
    "truncated JPEG": "unreadable",
    "truncated PNG": "unreadable",
    "wrong extension": None,
    "text named .jpg": "unreadable",
    "HTML error page": "unreadable",
    "1x1 image": "blank",
    "1xN image": "blank",
    "16-bit TIFF": "grayscale",
    "16-bit PNG": "grayscale",
    "float TIFF": "grayscale",
    "CMYK JPEG": None,
    "palette with transparency": None,
    "LA": "grayscale",
    "animated GIF": None,
    "animated WebP": None,
    "EXIF-rotated": None,
    "decompression bomb": "too-large",
    "corrupt EXIF": None,
    "BMP": None,
    "non-UTF-8 name": None,
    "very long name": None,
    "broken symlink": "unreadable",
    "symlink loop": "unreadable",
    "unreadable permissions": None if os.geteuid() == 0 else "unreadable",
}
# A folder is a source to search, not an image: it adds its images (none here) and no entry.
FOLDER_KIND = "directory named like an image"


def _corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    cases = make_bad_inputs(folder)
    assert {case.kind for case in cases} == set(PREPARE_VERDICTS) | {FOLDER_KIND}
    return cases


@pytest.mark.parametrize("given_as", ["folder", "list"])
def test_prepare_bad_input_corpus(tmp_path, given_as):
    from portraitcolor.inputs import utf8_name
    from portraitcolor.setfile import inspect_set, iter_split

    cases = _corpus(tmp_path)
    out, report_path = tmp_path / "set.h5", tmp_path / "report.json"
    # The corpus images are small (48x40): --min-size 0 lets the other filters speak.
    common = ["-o", str(out), "--report", str(report_path), "--min-size", "0", "--workers", "2"]
    if given_as == "folder":
        result = run_cli("prepare", str(tmp_path / "corpus"), *common)
        name_of = {case.kind: utf8_name(case.path.name) for case in cases}
    else:  # NUL-separated, so that every byte of every name survives
        listing = b"\0".join(os.fsencode(case.path) for case in cases) + b"\0"
        result = run_cli("prepare", "--files-from", "-", "-0", *common, input=listing)
        name_of = {case.kind: utf8_name(str(case.path)) for case in cases}
    stderr = os.fsdecode(result.stderr)
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert result.stdout.strip() == os.fsencode(out)

    report = json.loads(report_path.read_text(encoding="utf-8"))
    dropped = {entry["source"]: reason for reason, entries in report["dropped_files"].items() for entry in entries}
    info = inspect_set(out)
    stored = {name for names, _ in iter_split(out, None) for name in names}
    for kind, verdict in PREPARE_VERDICTS.items():
        name = name_of[kind]
        if verdict is None:
            assert name in stored, f"{kind}: not kept"
            assert name not in dropped, f"{kind}: dropped as {dropped.get(name)}"
        else:
            assert dropped.get(name) == verdict, f"{kind}: {dropped.get(name)!r}, expected {verdict}"
            assert name not in stored
    assert name_of[FOLDER_KIND] not in dropped and name_of[FOLDER_KIND] not in stored
    kept = sum(verdict is None for verdict in PREPARE_VERDICTS.values())
    assert info.count == report["kept"] == kept == len(stored)
    assert report["seen"] == len(PREPARE_VERDICTS)
    assert sum(report["dropped"].values()) == len(PREPARE_VERDICTS) - kept
    assert info.attributes["filter_report"]["dropped"] == report["dropped"]
    assert utf8_name(os.fsdecode(b"caf\xe9.png")) in {name.rsplit("/", 1)[-1] for name in stored}
    assert not _leftovers(tmp_path)


def test_evaluate_bad_input_corpus(tmp_path, tiny_model_file):
    import csv

    from portraitcolor.inputs import utf8_name

    cases = _corpus(tmp_path)
    out_csv, report_dir = tmp_path / "metrics.csv", tmp_path / "report"
    result = run_cli("evaluate", str(tmp_path / "corpus"), "-m", str(tiny_model_file), "--json",
                     "--csv", str(out_csv), "--report", str(report_dir))
    stderr = os.fsdecode(result.stderr)
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    refused = [case for case in cases if not case.valid and case.kind != FOLDER_KIND]
    errors = [line for line in stderr.splitlines() if line.startswith("portraitcolor: error:")]
    assert len(errors) == len(refused), stderr
    for case in refused:
        line = next((l for l in errors if utf8_name(str(case.path)) in l), None)
        assert line is not None and case.reason in line, f"{case.kind}: {line!r}"
    document = json.loads(result.stdout)  # valid JSON whatever the names
    valid = [case for case in cases if case.valid]
    assert document["images"] == len(valid)
    assert len(document["failed"]) == len(refused)
    rows = list(csv.DictReader(out_csv.open(encoding="utf-8", newline="")))
    assert {row["source"] for row in rows} == {utf8_name(case.path.name) for case in valid}
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>")
    assert not _leftovers(tmp_path)


def _clash_cases(tmp_path):
    """(arguments, the file that must survive) for outputs that land on an input or on each other."""
    photos = tmp_path / "photos"
    for i in range(3):
        write_portrait(photos / f"p{i}.png", seed=i)
    photo = photos / "p0.png"
    made = run_cli("prepare", str(photos), "-o", str(tmp_path / "s.h5"), "--val", "0", "--test", "0.6", "--min-size", "16", check=True)
    assert made.returncode == 0
    set_file = tmp_path / "s.h5"
    (tmp_path / "link.h5").symlink_to(set_file)
    os.link(set_file, tmp_path / "hard.h5")
    return [
        (["prepare", str(photos), "-o", str(tmp_path / "new.h5"), "--report", str(tmp_path / "new.h5")], None),
        (["prepare", str(photos), "-o", str(set_file), "--append", "--report", str(set_file)], set_file),
        (["prepare", str(photo), "-o", str(photo), "--overwrite"], photo),
        (["evaluate", str(set_file), "--csv", str(set_file)], set_file),
        (["evaluate", str(set_file), "--csv", str(tmp_path / "link.h5")], set_file),
        (["evaluate", str(set_file), "--csv", str(tmp_path / "hard.h5")], set_file),
        (["evaluate", str(photos), "--csv", str(photo)], photo),
    ]


def test_an_output_never_replaces_an_input_or_another_output(tmp_path, tiny_model_file):
    for args, precious in _clash_cases(tmp_path):
        before = precious.read_bytes() if precious else None
        extra = ["-m", str(tiny_model_file)] if args[0] == "evaluate" else []
        result = run_cli(*args, *extra)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.stderr)
        assert "would be replaced" in lines[0] or "give each output its own name" in lines[0], lines
        if precious:
            assert precious.read_bytes() == before, args
        else:
            assert not (tmp_path / "new.h5").exists()


@pytest.mark.parametrize("command", ["prepare", "colorize", "evaluate"])
def test_pixel_limit_applies_to_every_command(tmp_path, tiny_model_file, command):
    """A tiny file claiming 10 gigapixels is refused by name before it is decoded."""
    from bad_inputs import decompression_bomb_png

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(decompression_bomb_png())
    write_portrait(tmp_path / "face.png", 96, 96)
    sources = [str(bomb), str(tmp_path / "face.png")]
    if command == "prepare":
        # and --max-pixels is the limit: a 96x96 photo is over 5000 pixels
        result = run_cli("prepare", *sources, "-o", str(tmp_path / "s.h5"), "--max-pixels", "5000", "--report", str(tmp_path / "r.json"))
        assert result.returncode == 1 and b"too large" in result.stderr
    elif command == "colorize":
        result = run_cli("colorize", *sources, "-O", str(tmp_path / "out"), "--max-pixels", "5000", "-m", str(tiny_model_file))
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 1 and len(lines) == 2 and all("too large" in line for line in lines)
    else:
        result = run_cli("evaluate", *sources, "-m", str(tiny_model_file))
        assert result.returncode == 1 and b"bomb.png: image is too large" in result.stderr
        assert b"1 images" in result.stderr  # the other photo was evaluated
    assert b"Traceback" not in result.stderr


# ---- interruptions and full disks: prepare and evaluate ---------------------------------


def _wait_for(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.01)


def _set_content(path):
    """source -> (split code, image bytes): what a set holds, whatever its order."""
    import h5py

    from portraitcolor import setfile

    with h5py.File(path, "r") as handle:
        names = [n.decode() if isinstance(n, bytes) else n for n in handle[setfile.SOURCES][...]]
        return {name: (int(code), image.tobytes()) for name, code, image in zip(names, handle[setfile.SPLITS][...], handle[setfile.IMAGES][...])}


def _prepare_in_process(sources, output, *, append=False, size=32):
    from portraitcolor.config import PrepareOptions
    from portraitcolor.prepare import collect_sources, prepare

    options = PrepareOptions(size=size, val=0.2, test=0.2)
    return prepare(collect_sources([str(s) for s in sources]), output, options=options, workers=1, append=append)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_prepare_interrupted_then_append_completes(tmp_path, signum):
    """Three runs per signal at seeded random moments; each leaves the old set or a complete
    one and no temporaries, and --append then gives what one uninterrupted run gives."""
    from portraitcolor.setfile import inspect_set

    photos = tmp_path / "photos"
    for i in range(16):
        write_portrait(photos / f"p{i:02d}.png", 320, 320, seed=i)
    reference = _set_content(_prepare_in_process([photos], tmp_path / "reference.h5").path)
    rng = random.Random(int(signum))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for run in range(3):
        target = tmp_path / f"run{run}" / "set.h5"
        target.parent.mkdir()
        before = None
        if run > 0:  # an existing, smaller set that the interrupted run appends to
            first = tmp_path / f"first{run}"  # the same names, relative to their folder
            first.mkdir()
            for photo in sorted(photos.iterdir())[: rng.randint(2, 8)]:
                shutil.copyfile(photo, first / photo.name)
            _prepare_in_process([first], target)
            before = target.read_bytes()
        args = [sys.executable, "-m", "portraitcolor", "prepare", str(photos), "-o", str(target), "--size", "32",
                "--val", "0.2", "--test", "0.2", "--workers", str(1 + run % 2)] + (["--append"] if before else [])
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)
        _wait_for(lambda: any(target.parent.glob(".*.part.h5")) or process.poll() is not None)  # noqa: B023 - called at once
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
        assert b"Traceback" not in stderr, stderr.decode()
        assert process.returncode in (0, 130, -signum), stderr.decode()
        assert not _leftovers(target.parent)
        if target.exists():
            info = inspect_set(target)  # nothing that looks like a set unless it is one
            assert info.count == info.attributes["filter_report"]["kept"]
            # the set from before the run, or the finished one (the signal came after the rename)
            assert target.read_bytes() == before or info.count == len(reference)
        _prepare_in_process([photos], target, append=True)
        assert _set_content(target) == reference, f"run {run}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_evaluate_report_interrupted_leaves_no_half_page(tmp_path, tiny_model_file, signum):
    import numpy as np
    from conftest import portrait_array, write_set

    images = np.stack([portrait_array(32, 32, seed=i) for i in range(24)])
    target = write_set(tmp_path / "set.h5", images, ["test"] * 24)
    report = tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "portraitcolor", "evaluate", str(target), "-m", str(tiny_model_file), "--report", str(report), "--batch-size", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=default_sigint)
    _wait_for(lambda: (report / "images").exists() or process.poll() is not None)
    time.sleep(random.Random(int(signum)).uniform(0.0, 0.2))
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr, stderr.decode()
    assert not _leftovers(tmp_path)
    page = report / "index.html"
    if page.exists():  # only ever the whole page, with every image it shows
        text = page.read_text(encoding="utf-8")
        assert text.rstrip().endswith("</html>")
        for name in re.findall(r'src="([^"]+)"', text):
            assert (report / name).is_file()
    else:
        assert process.returncode != 0


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs when this user may mount one; None where mounting is refused."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    except OSError:  # no mount command
        mounted = False
    yield folder if mounted else None
    if mounted:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("mode", ["--overwrite", "--append"])
def test_prepare_disk_full_keeps_previous_set(tmp_path, small_disk, mode):
    folder = small_disk or tmp_path / "disk"
    folder.mkdir(exist_ok=True)
    previous = folder / "set.h5"
    _prepare_in_process([write_portrait(tmp_path / "few" / "a.png", 96, 96, seed=1)], previous, size=128)
    kept = previous.read_bytes()
    photos = tmp_path / "many"
    for i in range(24):
        write_portrait(photos / f"p{i:02d}.png", 160, 160, seed=i)
    args = ["prepare", str(photos), "-o", str(previous), mode, "--size", "128", "--workers", "1"]
    if small_disk is not None:  # the real thing: 24 images of 128x128 do not fit in 256 KiB
        result = run_cli(*args)
    else:  # no tmpfs: the disk fills up on the first block written
        code = (
            "import errno, sys\n"
            "from portraitcolor import prepare\n"
            "def full(self):\n"
            "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
            "prepare.SetWriter.flush = full\n"
            "from portraitcolor.cli import main\n"
            f"sys.argv = ['portraitcolor', *{args!r}]\n"
            "main()\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert lines == [f"portraitcolor: error: {previous}: cannot write the set: No space left on device"], lines
    assert previous.read_bytes() == kept
    assert not _leftovers(folder)


# ---- untrusted files: sets and weights -----------------------------------------------------


def _replace(handle, name, data):
    del handle[name]
    handle[name] = data


def _bad_set_cases():
    import numpy as np

    def group(name):
        return lambda h: (h.__delitem__(name), h.create_group(name))

    return {
        "images missing": lambda h: h.__delitem__("images"),
        "images is a group": group("images"),
        "sources missing": lambda h: h.__delitem__("sources"),
        "images float32": lambda h: _replace(h, "images", np.zeros((4, 16, 16, 3), np.float32)),
        "images 4 channels": lambda h: _replace(h, "images", np.zeros((4, 16, 16, 4), np.uint8)),
        "images not square": lambda h: _replace(h, "images", np.zeros((4, 16, 8, 3), np.uint8)),
        "size disagrees": lambda h: h.attrs.__setitem__("size", 32),
        "size is text": lambda h: h.attrs.__setitem__("size", "16"),
        "size is an array": lambda h: h.attrs.__setitem__("size", np.array([16, 16])),
        "one split short": lambda h: _replace(h, "splits", np.zeros(3, np.uint8)),
        "sources are numbers": lambda h: _replace(h, "sources", np.arange(4)),
        "sources not UTF-8": lambda h: _replace(h, "sources", np.array([b"\xff\xfe", b"a", b"b", b"c"])),
        "splits float": lambda h: _replace(h, "splits", np.array([0, 0.5, 1, 2], np.float32)),
        "split code out of range": lambda h: h["splits"].__setitem__(1, 7),
        "split code negative": lambda h: _replace(h, "splits", np.array([0, -1, 1, 2], np.int8)),
        "format missing": lambda h: h.attrs.__delitem__("format"),
        "format is an array": lambda h: h.attrs.__setitem__("format", np.array([1, 2])),
        "version missing": lambda h: h.attrs.__delitem__("format_version"),
        "version from the future": lambda h: h.attrs.__setitem__("format_version", 99),
        "size missing": lambda h: h.attrs.__delitem__("size"),
    }


def _small_set(path):
    import numpy as np
    from conftest import portrait_array, write_set

    return write_set(path, np.stack([portrait_array(16, 16, seed=i) for i in range(4)]), ["train", "test", "val", "test"])


def _cli(*args):
    """The CLI in this process (fast: torch is imported once), as a user would call it."""
    from typer.testing import CliRunner

    from portraitcolor.cli import app

    return CliRunner().invoke(app, list(args))


def test_untrusted_set_files_are_refused(tmp_path, tiny_model_file):
    import h5py

    from portraitcolor.setfile import DatasetError, inspect_set, iter_split

    cases = _bad_set_cases()
    for kind, change in cases.items():
        path = _small_set(tmp_path / f"{kind.replace(' ', '_')}.h5")
        with h5py.File(path, "a") as handle:
            change(handle)
        with pytest.raises(DatasetError, match=re.escape(str(path))):
            inspect_set(path)
            list(iter_split(path, None))  # damage that shows only when the data is read
        result = _cli("evaluate", str(path), "-m", str(tiny_model_file), "--split", "all")
        assert result.exit_code == 1, f"{kind}: {result.output}"
        assert isinstance(result.exception, SystemExit), f"{kind}: {result.exception!r}"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"portraitcolor: error: {path}"), f"{kind}: {lines}"
    not_hdf5 = tmp_path / "download.h5"
    not_hdf5.write_bytes(b"<html>404</html>")
    result = _cli("evaluate", str(not_hdf5), "-m", str(tiny_model_file))
    assert result.exit_code == 1 and "not a readable HDF5 file" in result.output


def _tampered_weights(tiny_model_file, tmp_path):
    """name -> (file, a word the refusal must contain)"""
    import pickle
    import struct

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "PWNED"),))

    files = {}
    pt = tmp_path / "model.pt"
    pt.write_bytes(pickle.dumps({"state_dict": Payload()}))
    files["pickle .pt"] = (pt, "pickle")
    data = tiny_model_file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])

    def rewrite(name, change, word):
        changed = json.loads(json.dumps(header))
        change(changed)
        raw = json.dumps(changed).encode()
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])
        files[name] = (path, word)

    first = next(key for key, entry in header.items() if key != "__metadata__" and entry["dtype"] == "F32")
    rewrite("offsets past the end", lambda h: h[first].update(data_offsets=[0, 10**12]), "truncated")
    rewrite("offsets not a pair", lambda h: h[first].update(data_offsets=5), "corrupt")
    rewrite("shape tampered", lambda h: h[first].update(shape=[3, 3, 3, 3, 3]), "shape")
    rewrite("shape not a list", lambda h: h[first].update(shape=7), "shape")
    rewrite("dtype tampered", lambda h: h[first].update(dtype="I64"), "dtype")
    rewrite("config tampered", lambda h: h["__metadata__"].update(portraitcolor=json.dumps({"format": "portraitcolor-weights/1", "config": {"width": "4; rm -rf /"}})), "config")
    huge = tmp_path / "huge_header.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    files["header length tampered"] = (huge, "header")
    return files


@pytest.mark.parametrize("command", ["colorize", "evaluate", "models import"])
def test_untrusted_weights_are_refused_by_every_command(tmp_path, tiny_model_file, command):
    photo = write_portrait(tmp_path / "face.png", 32, 32)
    for kind, (path, word) in _tampered_weights(tiny_model_file, tmp_path).items():
        if command == "colorize":
            result = _cli("colorize", str(photo), "-O", str(tmp_path / "out"), "-m", str(path))
        elif command == "evaluate":
            result = _cli("evaluate", str(photo), "-m", str(path))
        else:
            result = _cli("models", "import", str(path), "--name", "x")
        assert result.exit_code == 1, f"{kind}: {result.output}"
        assert isinstance(result.exception, SystemExit), f"{kind}: {result.exception!r}"
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and word in lines[0], f"{kind}: {lines}"
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ---- fuzzing: the image reader and the set reader ----------------------------------------
#
# Every outcome must be a sane result or the module's own one-line error: never another
# exception, never a hang. A bounded number of examples runs by default; `-m fuzz` runs
# many more (FUZZ_EXAMPLES).


DEFAULT_EXAMPLES = 60
FUZZ_EXAMPLES = 2000
_FUZZ_LIMIT_S = 20  # one example taking longer than this counts as a hang
_PIXEL_LIMIT = 4_000_000  # mutated headers may claim anything: keep decodes small


def _fuzz_settings(examples):
    return settings(max_examples=examples, deadline=None, derandomize=examples == DEFAULT_EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class _Hang(Exception):
    pass


def _within_time_limit(call):
    def expired(signum, frame):
        raise _Hang(f"no answer within {_FUZZ_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(_FUZZ_LIMIT_S)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _seed_images():
    import io

    from conftest import portrait_array
    from PIL import Image

    face = Image.fromarray(portrait_array(24, 20, seed=3))
    seeds = []
    for file_format, image, options in [
        ("PNG", face, {}), ("JPEG", face, {"quality": 80}), ("GIF", face.convert("P"), {}),
        ("TIFF", face, {}), ("WEBP", face, {"quality": 80}), ("PNG", face.convert("LA"), {}),
        ("TIFF", face.convert("I;16"), {}), ("JPEG", face.convert("CMYK"), {}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, format=file_format, **options)
        seeds.append(buffer.getvalue())
    return seeds


_SEEDS = _seed_images()


@st.composite
def _mutated(draw, seeds):
    """A valid file with some bytes changed, runs inserted or deleted, or its tail cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["set", "set", "insert", "delete", "truncate"]))
        if action == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


def _check_read_image(data):
    from portraitcolor.images import ImageReadError, read_image

    try:
        picture = _within_time_limit(lambda: read_image(data, max_pixels=_PIXEL_LIMIT))
    except ImageReadError as error:
        assert str(error) and "\n" not in str(error)
        return
    rgb = picture.rgb
    assert rgb.dtype == "float32" and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.shape[0] >= 1 and rgb.shape[1] >= 1
    assert rgb.shape[0] * rgb.shape[1] <= _PIXEL_LIMIT
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0  # NaN fails these too
    if picture.alpha is not None:
        assert picture.alpha.shape == rgb.shape[:2] and 0.0 <= float(picture.alpha.min()) <= float(picture.alpha.max()) <= 1.0


_image_inputs = st.one_of(st.binary(max_size=512), _mutated(_SEEDS))


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(_image_inputs)
def test_fuzz_read_image(data):
    _check_read_image(data)


@pytest.mark.fuzz
@_fuzz_settings(FUZZ_EXAMPLES)
@given(_image_inputs)
def test_fuzz_read_image_long(data):
    _check_read_image(data)


def _seed_set() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return _small_set(Path(folder) / "seed.h5").read_bytes()


_SET_SEED = _seed_set()


def _check_set_reader(path):
    from portraitcolor.setfile import DatasetError, inspect_set, iter_split

    def read_all():
        info = inspect_set(path)
        seen = 0
        for names, lab8 in iter_split(path, None, batch_size=3):
            assert lab8.dtype == "uint8" and lab8.shape[1:] == (info.size, info.size, 3) and len(names) == len(lab8)
            assert all(isinstance(name, str) for name in names)
            seen += len(lab8)
        assert seen == info.count == sum(info.split_counts.values())

    try:
        _within_time_limit(read_all)
    except DatasetError as error:
        assert str(error) and "\n" not in str(error)


def _check_set_bytes(data):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.h5"
        path.write_bytes(data)
        _check_set_reader(path)


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(_mutated([_SET_SEED]))
def test_fuzz_set_file_bytes(data):
    _check_set_bytes(data)


@pytest.mark.fuzz
@_fuzz_settings(FUZZ_EXAMPLES)
@given(_mutated([_SET_SEED]))
def test_fuzz_set_file_bytes_long(data):
    _check_set_bytes(data)


_DTYPES = ["uint8", "int8", "uint16", "int64", "float32", "float64", "bool", "S4", "str"]


@st.composite
def _set_layouts(draw):
    """Random objects under the set's names, and random attributes, written with h5py."""
    import numpy as np

    from portraitcolor import setfile

    count = draw(st.integers(0, 5))
    size = draw(st.sampled_from([1, 4, 8]))
    objects = {}
    for name, shape in ((setfile.IMAGES, (count, size, size, 3)), (setfile.SOURCES, (count,)), (setfile.SPLITS, (count,))):
        kind = draw(st.sampled_from(["right", "right", "dtype", "shape", "group", "absent"]))
        dtype = {"images": "uint8", "sources": "str", "splits": "uint8"}[name] if kind != "dtype" else draw(st.sampled_from(_DTYPES))
        if kind == "shape":
            shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
        objects[name] = kind if kind in ("group", "absent") else (dtype, shape)
    attributes = {}
    text = st.text(st.characters(blacklist_characters="\x00"), max_size=8)  # HDF5 strings end at NUL
    values = st.one_of(st.integers(-5, 300), text, st.just(setfile.FORMAT), st.just(setfile.FORMAT_VERSION),
                       st.just(size), st.lists(st.integers(0, 9), min_size=1, max_size=3).map(np.array), st.floats(allow_nan=True))
    for key in ("format", "format_version", "size", "options", "filter_report"):
        right = {"format": setfile.FORMAT, "format_version": setfile.FORMAT_VERSION, "size": size, "options": "{}", "filter_report": "{}"}[key]
        choice = draw(st.sampled_from(["right", "right", "random", "absent"]))
        if choice == "right":
            attributes[key] = right
        elif choice == "random":
            attributes[key] = draw(values)
    fill = draw(st.integers(0, 255))
    return objects, attributes, fill


def _write_layout(path, layout):
    import h5py
    import numpy as np

    objects, attributes, fill = layout
    with h5py.File(path, "w") as handle:
        for name, spec in objects.items():
            if spec == "group":
                handle.create_group(name)
            elif spec != "absent":
                dtype, shape = spec
                if dtype == "str":
                    data = np.array([f"s{fill}{i}" for i in range(int(np.prod(shape)))], dtype=object).reshape(shape)
                    handle.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8"))
                else:
                    handle.create_dataset(name, data=np.full(shape, fill % 4 if name == "splits" else fill).astype(dtype))
        for key, value in attributes.items():
            handle.attrs[key] = value


def _check_layout(layout):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.h5"
        _write_layout(path, layout)
        _check_set_reader(path)


@_fuzz_settings(DEFAULT_EXAMPLES)
@given(_set_layouts())
def test_fuzz_set_layouts(layout):
    _check_layout(layout)


@pytest.mark.fuzz
@_fuzz_settings(FUZZ_EXAMPLES)
@given(_set_layouts())
def test_fuzz_set_layouts_long(layout):
    _check_layout(layout)
