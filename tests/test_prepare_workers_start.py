"""A signal that reaches a prepare worker before its own handlers are set (the worst moment of
Ctrl-C: just after the fork) must not break the pool with tracebacks."""

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
