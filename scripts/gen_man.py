"""Write the man pages in man/ from the CLI itself: `python scripts/gen_man.py [--check]`.

One page for `portraitcolor` and one per command (`portraitcolor-colorize.1`,
`portraitcolor-models-list.1`, ...). With --check nothing is written; the exit code is 1
when a page on disk differs from what the CLI would give (the tests run this).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portraitcolor import __version__  # noqa: E402
from portraitcolor.cli import app  # noqa: E402

MAN_DIR = REPO / "man"


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in ".'" else line for line in text.splitlines())


def _paragraphs(text: str) -> str:
    blocks = [" ".join(line.strip() for line in block.splitlines()) for block in (text or "").strip().split("\n\n")]
    return "\n.PP\n".join(_escape(block) for block in blocks if block)


def _option_lines(command: object, context: typer.Context) -> list[str]:
    lines = []
    for param in command.get_params(context):
        record = param.get_help_record(context)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{_escape(names)}\\fR", _escape(help_text or "")]
    return lines


def _is_group(command) -> bool:
    # typer ships its own copy of click; a group is whatever lists subcommands.
    return hasattr(command, "list_commands")


def _walk(command: object, path: list[str], parent: typer.Context = None):
    context = typer.Context(command, info_name=path[-1], parent=parent)
    yield path, command, context
    if _is_group(command):
        for name in sorted(command.list_commands(context)):
            yield from _walk(command.get_command(context, name), path + [name], context)


def render(path: list[str], command: object, context: typer.Context, siblings: list[str]) -> str:
    title = "-".join(path)
    summary = (command.get_short_help_str(limit=200) or "").rstrip(".")
    usage = " ".join(command.collect_usage_pieces(context))
    lines = [
        f'.TH "{title.upper()}" "1" "" "portraitcolor {__version__}" "portraitcolor manual"',
        ".SH NAME",
        f"{_escape(title)} \\- {_escape(summary)}",
        ".SH SYNOPSIS",
        f"\\fB{_escape(' '.join(path))}\\fR {_escape(usage)}",
        ".SH DESCRIPTION",
        _paragraphs(command.help or ""),
    ]
    if _is_group(command):
        lines += [".SH COMMANDS"]
        for name in sorted(command.list_commands(context)):
            sub = command.get_command(context, name)
            lines += [".TP", f"\\fB{_escape(name)}\\fR", _escape(sub.get_short_help_str(limit=200))]
    lines += [".SH OPTIONS", *_option_lines(command, context)]
    others = [name for name in siblings if name != title]
    if others:
        lines += [".SH SEE ALSO", ",\n".join(f"\\fB{_escape(name)}\\fR(1)" for name in others)]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    root = typer.main.get_command(app)
    walked = list(_walk(root, ["portraitcolor"]))
    names = ["-".join(path) for path, _, _ in walked]
    return {f"{'-'.join(path)}.1": render(path, command, context, names) for path, command, context in walked}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = pages()
    stale = sorted(name for name, text in wanted.items() if not (MAN_DIR / name).exists() or (MAN_DIR / name).read_text() != text)
    extra = sorted(p.name for p in MAN_DIR.glob("*.1") if p.name not in wanted)
    if check:
        for name in stale + extra:
            print(f"man/{name} is out of date: run python scripts/gen_man.py", file=sys.stderr)
        return 1 if stale or extra else 0
    MAN_DIR.mkdir(exist_ok=True)
    for name in stale:
        (MAN_DIR / name).write_text(wanted[name])
    for name in extra:
        (MAN_DIR / name).unlink()
    print(f"{len(wanted)} pages, {len(stale)} written, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
