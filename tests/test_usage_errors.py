"""Usage and environment errors end in one line and the right exit status, never a traceback.

2 for a command line that asks for the impossible (`train --epochs 0`), 1 for a job the
machine could not do (a full or read-only run folder), and a closed stdout (`| head -1`)
is no error at all: the files still get written. Temporaries a SIGKILL left behind are
removed by the next write into their folder.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from typer.testing import CliRunner

from portraitcolor import atomic
from portraitcolor.cli import app
from portraitcolor.store import WeightsStore
from tests.conftest import REPO, portrait_stack, run_cli, write_portrait, write_set

TINY = ("--width", "2", "--batch-size", "3", "--loss", "mae", "--device", "cpu")


def child_env() -> dict:
    """Read at each call: the isolated store's PORTRAITCOLOR_HOME is set per test, after import."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture
def faces(tmp_path):
    """9 train and 3 val images of 16x16."""
    return write_set(tmp_path / "faces.h5", portrait_stack(12, 16), ["val" if i % 4 == 0 else "train" for i in range(12)])


def one_line(stderr) -> str:
    stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("portraitcolor: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def leftovers(folder) -> list:
    return [p.name for p in folder.rglob("*") if ".part" in p.name]


# ---- usage errors: exit 2 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "options, words",
    [
        (["--epochs", "0"], "--epochs"),
        (["--epochs", "-3"], "--epochs"),
        (["--loss", "nonsense"], "nonsense"),
        (["--device", "tpu"], "tpu"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "1e38"], "--lr"),  # overflows inside Adam
        (["--lr-decay", "cosine", "--lr", "-inf"], "--lr"),
    ],
)
def test_impossible_train_options_are_usage_errors(faces, tmp_path, options, words):
    result = CliRunner().invoke(app, ["train", str(faces), "--width", "2", "--run-dir", str(tmp_path / "run"), *options])
    assert result.exit_code == 2, result.stderr
    assert words in one_line(result.stderr)
    assert not (tmp_path / "run").exists() and WeightsStore().names() == []


def test_split_fractions_that_leave_no_training_images_are_usage_errors(tmp_path):
    """Checked by the core's options (config.PrepareOptions), whoever builds them."""
    from portraitcolor.config import PrepareOptions
    from portraitcolor.errors import UsageError

    write_portrait(tmp_path / "photos" / "a.png")
    result = CliRunner().invoke(app, ["prepare", str(tmp_path / "photos"), "-o", str(tmp_path / "s.h5"), "--val", "0.6", "--test", "0.4"])
    assert result.exit_code == 2 and "--val and --test" in one_line(result.stderr)
    assert not (tmp_path / "s.h5").exists()
    with pytest.raises(UsageError):
        PrepareOptions(val=0.5, test=0.5)


def test_a_usage_error_from_the_real_command_is_exit_2(faces, tmp_path):
    result = run_cli("train", str(faces), "--epochs", "0", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert one_line(result.stderr) == "portraitcolor: error: --epochs must be at least 1, got 0"


# ---- a full or read-only run folder: one line naming the file -------------------------------


def limited_file_size(limit: int):
    def apply() -> None:
        # A write past RLIMIT_FSIZE fails as on a full disk (EFBIG instead of ENOSPC), for root too.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("limit, target", [(300, "config.json"), (150_000, "checkpoint.pt")])
def test_a_full_run_folder_names_the_file_that_could_not_be_written(faces, tmp_path, limit, target):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "portraitcolor", "train", str(faces), *TINY, "--epochs", "1", "--run-dir", str(run)],
        capture_output=True, env=child_env(), preexec_fn=limited_file_size(limit), timeout=300,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr, stderr
    # config.json (under 1 kB) fits 300 bytes; best.safetensors (about 90 kB) fits 150 kB, the checkpoint does not
    assert stderr.strip().splitlines()[-1] == f"portraitcolor: error: {run / target}: File too large"
    assert not leftovers(run) and WeightsStore().names() == []


def test_a_refused_temporary_is_reported_under_the_target_name(faces, tmp_path, monkeypatch):
    """What a read-only folder gives (for root too): mkstemp's PermissionError names the
    hidden temporary; the user is told about the file they asked for."""
    run = tmp_path / "run"
    run.mkdir()

    def read_only(prefix="", suffix="", dir=None):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}k2j3h4g5{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    result = CliRunner().invoke(app, ["train", str(faces), *TINY, "--epochs", "1", "--run-dir", str(run)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"portraitcolor: error: {run / 'config.json'}: Permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_one_line(faces, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        result = run_cli("train", str(faces), *TINY, "--epochs", "1", "--run-dir", str(run))
    finally:
        run.chmod(0o755)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1] == f"portraitcolor: error: {run / 'config.json'}: Permission denied"


# ---- a closed stdout (`| head -1`) ------------------------------------------------------------


def with_closed_stdout(*args: str):
    """Run the real command with a stdout pipe whose reader has already gone."""
    process = subprocess.Popen([sys.executable, "-m", "portraitcolor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=300)
    return process.returncode, stderr.decode()


def test_colorize_into_a_closed_pipe_still_writes_every_file(tmp_path):
    for i in range(3):
        write_portrait(tmp_path / "photos" / f"p{i}.png", 40, 32, seed=i, gray=True)
    code, stderr = with_closed_stdout("colorize", str(tmp_path / "photos"), "-O", str(tmp_path / "out"), "--device", "cpu")
    assert code == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.png", "p1.png", "p2.png"]


def test_models_list_and_train_into_a_closed_pipe_end_quietly(faces, tmp_path):
    code, stderr = with_closed_stdout("models", "list")
    assert code == 0 and stderr == "", stderr
    code, stderr = with_closed_stdout("train", str(faces), *TINY, "--epochs", "1", "--name", "piped", "--run-dir", str(tmp_path / "run"))
    assert code == 0 and "Traceback" not in stderr, stderr
    assert WeightsStore().names() == ["piped"]  # the job's real output is complete


# ---- temporaries left by SIGKILL ------------------------------------------------------------

KILLED_WRITER = """
import sys, time
from portraitcolor.atomic import atomic_output
with atomic_output(sys.argv[1]) as temporary:
    temporary.write_bytes(b"half a file")
    print(temporary, flush=True)
    time.sleep(600)
"""


def writer_in_the_middle(target):
    """A process stopped while it writes `target` -> (process, its temporary)."""
    process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, env=child_env())
    temporary = process.stdout.readline().decode().strip()
    assert os.path.exists(temporary), temporary
    return process, temporary


def test_a_rerun_removes_what_a_killed_run_left_and_keeps_a_live_writers_file(tmp_path):
    photo = write_portrait(tmp_path / "photos" / "p0.png", 40, 32, seed=0, gray=True)
    out = tmp_path / "out"
    out.mkdir()
    killed, orphan = writer_in_the_middle(out / "p0.png")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    live, busy = writer_in_the_middle(out / "p1.png")
    try:
        result = run_cli("colorize", str(photo), "-O", str(out), "--device", "cpu")
        assert result.returncode == 0, result.stderr.decode()
        assert not os.path.exists(orphan)  # the killed writer's temporary is gone
        assert os.path.exists(busy)  # the live writer's is not touched
        assert (out / "p0.png").stat().st_size > 0
    finally:
        live.kill()
        live.wait()


def test_temporaries_of_other_hosts_go_only_when_old(tmp_path):
    old = tmp_path / ".p0.abcdef-12.k2j3h4g5.part.png"  # another host (a shared folder)
    fresh = tmp_path / ".p1.abcdef-12.x9y8z7w6.part.png"
    notes = tmp_path / ".notes.abcdefgh.part.txt"  # a user's hidden file without an owner mark
    for path in (old, fresh, notes):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 2 * 3600
    for path in (old, notes):
        os.utime(path, (two_hours_ago, two_hours_ago))
    if atomic._HOST == "abcdef":
        pytest.skip("this host's name hashes to the test's other host")
    atomic.atomic_write_text(tmp_path / "p0.png", "done")
    assert not old.exists() and fresh.exists() and notes.exists()


def test_a_write_error_names_the_target_not_the_temporary(tmp_path):
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "result.bin"
    with pytest.raises(OSError) as caught:
        with atomic.atomic_output(target) as temporary:
            full_disk(temporary)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert not leftovers(tmp_path) and not target.exists()


def test_a_photo_where_the_command_belongs_gets_the_command_that_colours_it(tmp_path):
    """`portraitcolor photo.jpg` (no command) is a usage error that spells out the command line
    to run; a name that is neither a command nor a file keeps click's plain message."""
    photo = write_portrait(tmp_path / "old photo.jpg", 40, 40, gray=True)
    result = run_cli(str(photo), "-O", str(tmp_path / "out"))
    assert result.returncode == 2 and not (tmp_path / "out").exists()
    assert f"Error: No such command '{photo}'. To colour it: portraitcolor colorize '{photo}' -O {tmp_path / 'out'}" in result.stderr.decode()
    missing = run_cli(str(tmp_path / "missing.jpg"))
    assert missing.returncode == 2 and f"Error: No such command '{tmp_path / 'missing.jpg'}'.\n" in missing.stderr.decode()
