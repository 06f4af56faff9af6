"""Bad input, interruptions and full disks across commands: nothing is lost, nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from bad_inputs import make_bad_inputs
from conftest import REPO, run_cli, write_portrait


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
    lines = stderr.strip().splitlines()
    refused = [case for case in cases if not case.valid]
    assert len(lines) == len(refused), stderr
    for case in refused:
        line = next((l for l in lines if os.fsdecode(os.fsencode(str(case.path))) in l or case.path.name in l), None)
        assert line is not None, f"{case.kind}: no line names {case.path.name}"
        assert case.reason in line, f"{case.kind}: {line!r}"
    written = {p.name for p in out.iterdir()}
    for case in cases:
        if case.valid:
            assert case.path.name in written, f"{case.kind} was not processed"
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
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "portraitcolor", "colorize", str(source), "-O", str(out), "--batch-size", "2", "-m", str(tiny_model_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.iterdir())):
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert b"Traceback" not in stderr
    assert not _leftovers(out)
    from PIL import Image

    for path in out.iterdir():  # everything that exists is a complete image
        Image.open(path).load()
    # a rerun with --skip-existing finishes the job
    rerun = run_cli("colorize", str(source), "-O", str(out), "--skip-existing", "-m", str(tiny_model_file), check=True)
    assert rerun.returncode == 0 and len(list(out.iterdir())) == 40
