import subprocess
import sys

from conftest import REPO, run_cli

from portraitcolor import __version__


def test_version():
    result = run_cli("--version", check=True)
    assert result.stdout.decode().strip() == f"portraitcolor {__version__}"


def test_help_does_not_import_torch():
    # --help must answer at once: torch (seconds to import) stays out of it.
    code = "import sys; from portraitcolor.cli import app; import typer\n" \
           "try:\n    app(['colorize', '--help'], prog_name='portraitcolor')\nexcept SystemExit:\n    pass\n" \
           "assert 'torch' not in sys.modules, 'torch imported by --help'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)


def test_every_command_has_help():
    for command in ([], ["colorize"], ["models"], ["models", "list"]):
        result = run_cli(*command, "--help", check=True)
        assert b"Usage: portraitcolor" in result.stdout


def test_man_pages_are_in_sync():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_man.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_unknown_option_is_a_usage_error():
    assert run_cli("colorize", "--no-such-option").returncode == 2
