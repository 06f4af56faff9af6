"""Shapes and names at the edges: extreme aspect ratios, names near the file system's limit,
and inputs that are not regular files. Each must cost at most its own file, never the run."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, write_portrait
from PIL import Image

from portraitcolor import images, lab
from portraitcolor.colorize import default_output, fitted_name
from portraitcolor.inference import MAX_RENDER_ASPECT, render_shape

NAME_MAX = 255


# Runs the command given after the report file and writes its peak RSS (kB) there. A child's
# ru_maxrss counts the pages it shared with its parent between fork and exec, so the command
# is started from this small process, never from the test process (whose size depends on the
# tests that ran before: a 1.3 GB pytest made a colorize run "peak" at 1.3 GB).
_PEAK_PROBE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(*args: str, timeout: float = 120.0) -> tuple[int, bytes, bytes, float]:
    """Run `python -m portraitcolor ARGS`; return (exit code, stdout, stderr, peak RSS in MiB).

    The peak is that process's own, measured from a small wrapper (see _PEAK_PROBE). A run
    past `timeout` (a FIFO that blocks) is killed and fails the test.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "peak"
        command = [sys.executable, "-c", _PEAK_PROBE, str(report), sys.executable, "-m", "portraitcolor", *args]
        process = subprocess.Popen(command, stdin=stdin, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the wrapper and the command under it
            process.wait()
            pytest.fail(f"portraitcolor {' '.join(args)} still ran after {timeout} s")
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), int(report.read_text()) / 1024


# ---- extreme aspect ratios ---------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(1, 2000), (2000, 1), (3, 100_000), (1, 1)])
def test_render_shape_long_side_is_bounded(height, width):
    rendered = render_shape(height, width, 128)
    assert max(rendered) <= MAX_RENDER_ASPECT * 128 and min(rendered) >= 1
    # the aspect ratio is kept as far as whole pixels allow
    assert (rendered[0] >= rendered[1]) == (height >= width) or height == width


@pytest.mark.parametrize("height, width", [(4000, 3000), (128, 128), (50, 200), (100, 800), (800, 100)])
def test_render_shape_of_ordinary_photos_is_unchanged(height, width):
    """Up to 8:1 the short side is the render size, as it always was."""
    rendered = render_shape(height, width, 128)
    assert min(rendered) == 128


def test_extreme_strips_colorize_at_full_size_beside_a_normal_photo(tmp_path, tiny_model_file):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 255, (1, 2000), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 255, (2000, 1), dtype=np.uint8)).save(folder / "tall.png")
    write_portrait(folder / "normal.png", 40, 40, gray=True)
    out = tmp_path / "out"
    # At render size 128 the old shape was a 128x256000 network input: gigabytes.
    code, stdout, stderr, peak_mib = run_measured(
        "colorize", str(folder), "-O", str(out), "--render-size", "128", "--device", "cpu", "-m", str(tiny_model_file)
    )
    assert code == 0, stderr.decode(errors="replace")
    assert sorted(Path(line).name for line in stdout.decode().split()) == ["normal.png", "tall.png", "wide.png"]
    assert Image.open(out / "wide.png").size == (2000, 1)
    assert Image.open(out / "tall.png").size == (1, 2000)
    assert Image.open(out / "normal.png").size == (40, 40)
    assert peak_mib < 1024, f"peak memory {peak_mib:.0f} MiB"
    # the strips keep their lightness like any other output
    before, after = lab.rgb_to_l(images.read_image(folder / "wide.png").rgb), lab.rgb_to_l(images.read_image(out / "wide.png").rgb)
    assert np.abs(before - after).mean() < 0.5


# ---- names at the file system's limit ----------------------------------------------------


def test_long_names_get_valid_distinct_outputs_beside_them(tmp_path, tiny_model_file):
    folder = tmp_path / "in"
    folder.mkdir()
    names = [
        "a" * 246 + ".png",  # 250 bytes: NAME_color.png would be 256
        "b" * 240 + "-one.png",  # two names that share all the bytes a shortened name keeps
        "b" * 240 + "-two.png",
        "é" * 123 + ".png",  # 250 bytes of two-byte characters
    ]
    for index, name in enumerate(names):
        write_portrait(folder / name, 24, 20 + index, seed=index, gray=True)
    write_portrait(folder / "short.png", 24, 24, gray=True)
    code, stdout, stderr, _ = run_measured("colorize", str(folder), "--device", "cpu", "-m", str(tiny_model_file))
    assert code == 0, stderr.decode(errors="replace")
    outputs = [Path(os.fsdecode(line)) for line in stdout.split(b"\n") if line]
    assert len(outputs) == 5 and len(set(outputs)) == 5
    assert folder / "short_color.png" in outputs
    for output in outputs:
        encoded = os.fsencode(output.name)
        assert len(encoded) <= NAME_MAX and output.name.endswith("_color.png")
        encoded.decode("utf-8")  # cut on a character boundary
        assert output.exists()
    sizes = sorted(Image.open(output).size[0] for output in outputs)
    assert sizes == [20, 21, 22, 23, 24]  # each input has its own output
    # the names are deterministic: a second run finds every output and skips it
    code, stdout, stderr, _ = run_measured("colorize", str(folder), "--skip-existing", "--device", "cpu", "-m", str(tiny_model_file))
    assert code == 0 and stdout == b"" and stderr.count(b"skipped") == 5


@pytest.mark.parametrize("character", ["a", "é", "中", "😀"])
def test_fitted_name_cuts_on_character_boundaries(tmp_path, character):
    for count in range(200, 260):
        stem = character * (count // len(character.encode()))
        name = fitted_name(stem, "_color", ".png", folder=tmp_path)
        encoded = name.encode("utf-8")  # raises if a character was split
        assert len(encoded) <= NAME_MAX and name.endswith("_color.png")
        if len((stem + "_color.png").encode()) <= NAME_MAX:
            assert name == stem + "_color.png"  # names that fit are left alone


def test_fitted_name_keeps_distinct_names_distinct_and_is_stable(tmp_path):
    first = fitted_name("x" * 300, "_color", ".jpg", folder=tmp_path)
    second = fitted_name("x" * 299 + "y", "_color", ".jpg", folder=tmp_path)
    assert first != second and first == fitted_name("x" * 300, "_color", ".jpg", folder=tmp_path)
    # bytes that are not UTF-8 (surrogate escapes) survive as they are
    odd = os.fsdecode(b"\xe9" * 300)
    assert len(os.fsencode(fitted_name(odd, "_color", ".png", folder=tmp_path))) <= NAME_MAX
    # a folder that does not exist yet (made later for -O) takes its parent's limit
    assert len(os.fsencode(fitted_name("z" * 300, "", ".png", folder=tmp_path / "new" / "sub"))) <= NAME_MAX


def test_default_output_of_a_short_name_is_unchanged(tmp_path):
    assert default_output(tmp_path / "face.jpg") == tmp_path / "face_color.jpg"


# ---- inputs that are not regular files ----------------------------------------------------


def test_fifo_and_device_inputs_are_refused_without_blocking(tmp_path, tiny_model_file):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = write_portrait(tmp_path / "good.png", 32, 32, gray=True)
    out = tmp_path / "out"
    code, stdout, stderr, _ = run_measured(
        "colorize", str(fifo), "/dev/zero", str(good), "-O", str(out), "--device", "cpu", "-m", str(tiny_model_file), timeout=120
    )
    assert code == 1
    assert stdout.decode().split() == [str(out / "good.png")]
    errors = stderr.decode().strip().splitlines()
    assert len(errors) == 2 and b"Traceback" not in stderr
    assert str(fifo) in errors[0] and "not a regular file (a FIFO)" in errors[0]
    assert "/dev/zero" in errors[1] and "not a regular file (a character device)" in errors[1]


def test_read_image_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            images.read_image(fifo)
            outcome.append(None)
        except images.ImageReadError as error:
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)  # daemon: a hang fails, never blocks the suite
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():
        with open(fifo, "wb"):  # release the blocked open so the thread can end
            pass
        pytest.fail("read_image blocked on a FIFO")
    assert outcome and "not a regular file (a FIFO)" in str(outcome[0])
