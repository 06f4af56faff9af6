"""Starting prepare's worker processes: a signal that reaches a worker before its own handlers
are set (the worst moment of Ctrl-C: just after the fork) must not break the pool with
tracebacks, and OpenCV's thread pool in the parent must not hang the forked workers."""

import subprocess
import sys
import textwrap

from conftest import REPO, write_portrait

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    # Every forked worker is signalled at once, before it has run a line of its own set-up.
    os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGINT))
    from portraitcolor.cli import main
    sys.argv = ["portraitcolor", "prepare", sys.argv[1], "-o", sys.argv[2], "--size", "32",
                "--val", "0.2", "--test", "0.2", "--workers", "2"]
    main()
    """
)


def test_a_signal_at_a_worker_fork_breaks_nothing(tmp_path):
    for i in range(6):
        write_portrait(tmp_path / "photos" / f"p{i}.png", seed=i)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "photos"), str(tmp_path / "set.h5")],
        capture_output=True, cwd=REPO, timeout=300,
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert (tmp_path / "set.h5").is_file()


THREADED_OPENCV_FIRST = textwrap.dedent(
    """
    import sys
    import cv2, numpy as np
    from portraitcolor.config import PrepareOptions
    from portraitcolor.prepare import collect_sources, prepare
    sources = collect_sources([sys.argv[1]])
    for attempt in range(3):
        # Multithreaded OpenCV work in this process first, as colorize through the Python API does.
        cv2.GaussianBlur(np.ones((1500, 1500), np.float32), (31, 31), 5)
        prepare(sources, sys.argv[2], options=PrepareOptions(size=32), workers=2, overwrite=True)
    print("done")
    """
)


def test_prepare_after_multithreaded_opencv_work_in_the_same_process_finishes(tmp_path):
    """OpenCV's thread pool does not survive fork(): workers forked while it ran hung in their
    first OpenCV call, and prepare never returned."""
    for i in range(4):
        write_portrait(tmp_path / "photos" / f"p{i}.png", seed=i)
    result = subprocess.run(
        [sys.executable, "-c", THREADED_OPENCV_FIRST, str(tmp_path / "photos"), str(tmp_path / "set.h5")],
        capture_output=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.strip() == b"done"
