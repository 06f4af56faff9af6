"""What the user sees in the terminal, and the process plumbing under it.

Progress bars and tables go to stderr through rich; lines of text (errors, colorize's report)
import it only when stderr is a terminal (logs and pipelines never pay for it); stdout carries data and survives a reader
that goes away (`| head -1`); an interrupt that Python would drop is delivered again.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def line_console():
    """stderr for lines of text: rich on a terminal, else PlainStderr (rich stays unloaded)."""
    return stderr_console() if sys.stderr.isatty() else PlainStderr()


class PlainStderr:
    """stderr off a terminal (logs, pipes) for line-by-line reports: rich, whose import is a
    good part of the wait for one photo, is never loaded there."""

    is_terminal = False

    def print(self, text: str, **_options) -> None:
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()

@contextlib.contextmanager
def prepare_progress(console):
    """prepare's progress callback: images/s, kept and dropped on the bar."""
    import time

    columns = lambda rp: (  # noqa: E731 - called only on a terminal, where rich is imported
        rp.TextColumn("prepare"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TextColumn("{task.fields[rate]} img/s"),
        rp.TextColumn("kept {task.fields[kept]}, dropped {task.fields[dropped]}"), rp.TimeRemainingColumn(),
    )
    started = time.monotonic()
    with terminal_progress(console, "prepare", columns=columns, kept=0, dropped=0, rate="-") as update:

        def on_state(state) -> None:
            elapsed = time.monotonic() - started
            rate = f"{state.seen / elapsed:.1f}" if elapsed > 0 else "-"
            update(total=state.total, completed=state.seen, kept=state.kept, dropped=state.dropped, rate=rate)

        yield on_state


def prepare_table(report: dict):
    """Kept and dropped images per reason (the paper's figure 2, as a table)."""
    from rich.table import Table

    seen = max(report["seen"], 1)
    table = Table(title=f"prepare: {report['seen']} images looked at", title_justify="left")
    table.add_column("")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    table.add_row("kept", str(report["kept"]), f"{100 * report['kept'] / seen:.1f}%")
    for reason, count in report["dropped"].items():
        table.add_row(f"dropped: {report['reasons'][reason]}", str(count), f"{100 * count / seen:.1f}%")
    for label, count in {**report["skipped"], **report["notes"]}.items():
        table.add_row(f"({label})", str(count), "")
    splits = ", ".join(f"{name} {count}" for name, count in report["splits"].items())
    table.caption = f"kept by split: {splits}; {report['set_count']} images in {report['output']}"
    return table

def train_progress():
    """Render training events on stderr: a rich bar per epoch on a terminal, else one line per epoch."""
    from .events import EpochDone, EpochStarted, RunStarted, StepDone

    console = stderr_console()
    live = {"progress": None, "task": None}

    def close_bar() -> None:
        if live["progress"] is not None:
            live["progress"].stop()
            live["progress"] = None

    def on_event(event) -> None:
        if isinstance(event, RunStarted):
            where = f"resuming at epoch {event.resumed_epoch + 1}, " if event.resumed_epoch is not None else ""
            console.print(
                f"training in {event.run_dir}: {where}{event.epochs} epoch{'s' if event.epochs != 1 else ''} of {event.steps} steps on {event.device}"
                f" ({event.precision}, {event.world_size} process{'es' if event.world_size > 1 else ''})",
                markup=False, soft_wrap=True,
            )
        elif isinstance(event, EpochStarted) and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            close_bar()
            progress = Progress(
                TextColumn(f"epoch {event.epoch + 1}/{event.epochs} [{event.phase}]"),
                BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeRemainingColumn(),
                console=console, transient=True,
            )
            live["task"] = progress.add_task("train", total=event.steps, completed=event.first_step, status="")
            live["progress"] = progress
            progress.start()
        elif isinstance(event, StepDone) and live["progress"] is not None:
            live["progress"].update(
                live["task"], completed=event.step, status=f"loss {event.loss:.4f}  {event.images_per_s:.1f} img/s"
            )
        elif isinstance(event, EpochDone):
            close_bar()
            console.print(describe_record(event.record), markup=False, soft_wrap=True)

    return on_event


def evaluation_table(evaluation):
    """The metrics table of an evaluation (report.summary_table) for the terminal."""
    from rich.table import Table

    from .report import TABLE_LEGEND, summary_table

    header, rows = summary_table(evaluation)
    title = f"{evaluation.count} images of {evaluation.target}" + (f" ({evaluation.split})" if evaluation.split else "")
    table = Table(title=title, caption=TABLE_LEGEND)
    for i, name in enumerate(header):
        style = "bold" if name in evaluation.model_labels else None
        table.add_column(name, justify="left" if i == 0 else "right", style=style, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


@contextlib.contextmanager
def evaluate_progress(console):
    """evaluate's progress callback: images done of the total."""
    with terminal_progress(console, "evaluating") as update:
        yield lambda done, total: update(completed=done, total=total)

def echo_path(path) -> None:
    """A path on stdout as the file system's bytes: names that are not UTF-8 survive pipes."""
    sys.stdout.buffer.write(os.fsencode(path) + b"\n")
    sys.stdout.buffer.flush()


def report_colorize(results, *, json_output: bool, total: int | None = None) -> int:
    """Print results as they come (data to stdout, problems to stderr); return the failure
    count. total: how many results will come (the bar then shows the time left)."""
    import json

    console = line_console()
    failures = 0
    with terminal_progress(console, "colorizing", total=total) as update:
        for result in results:
            update(advance=1)
            if not result.ok:
                failures += 1
                console.print(f"portraitcolor: {result.job.label}: {result.error}", markup=False, soft_wrap=True)
                continue
            said = result.warning or (f"skipped, {result.output} exists" if result.skipped else None)
            if said:
                console.print(f"portraitcolor: {result.job.label}: {said}", markup=False, soft_wrap=True)
            if result.image_bytes is not None:
                sys.stdout.buffer.write(result.image_bytes)
                sys.stdout.buffer.flush()
                continue
            if json_output:
                record = {"input": result.job.label, "output": result.output, "width": result.width, "height": result.height, "seconds": round(result.seconds, 4), "skipped": result.skipped}
                if result.warning:
                    record["warning"] = result.warning
                print(json.dumps(record), flush=True)
            elif not result.skipped:
                echo_path(result.output)
    return failures


@contextlib.contextmanager
def terminal_progress(console, description: str, *, columns=None, total: int | None = None, **fields):
    """Yield update(**task_changes) for a transient rich progress bar on stderr when it is a
    terminal; elsewhere (logs, pipes) an update that does nothing.

    columns: a function of the rich.progress module giving the bar's columns (rich is
    imported only when a bar is shown, so that pipelines never pay for it). total: the
    count when it is known at the start (the default columns then add the time left).
    """
    if not console.is_terminal:
        yield lambda **changes: None
        return
    from rich import progress as rp

    chosen = columns(rp) if columns else (
        rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn(),
        *((rp.TextColumn("left"), rp.TimeRemainingColumn()) if total is not None else ()),
    )
    with rp.Progress(*chosen, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total, **fields)
        yield lambda **changes: bar.update(task, **changes)


def redeliver_interrupts_lost_in_finalizers() -> None:
    """A Ctrl-C or SIGTERM that lands while Python runs a finalizer (a weakref callback during
    garbage collection) is raised there, where Python prints it as "Exception ignored" with a
    traceback and drops it: the job would go on as if never interrupted. Deliver it again at
    the next point where the job can take it, silently."""
    import _thread
    import threading

    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # From another thread, a moment later: raised in the hook it would be dropped again.
            timer = threading.Timer(0.05, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


class _ClosedPipeTolerantStdout(io.RawIOBase):
    """File descriptor 1 for a reader that may go away (`portraitcolor ... | head -1`).

    When the reader closes the pipe, the rest of stdout goes to /dev/null and the job goes on:
    the files it is writing are finished (colorize's outputs, a trained model), which is what
    the user ran it for; stdout lines were only the report. No BrokenPipeError traceback,
    and the exit status is the job's own.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data) -> int:
        try:
            return os.write(self._fd, data)
        except BrokenPipeError:
            # Later writers to fd 1 (a child process, C code) find a quiet sink as well.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)
            return len(data)


def tolerate_closed_stdout() -> None:
    """Put a sys.stdout over _ClosedPipeTolerantStdout in place: one place for every command,
    typer.echo and sys.stdout.buffer writers alike. A terminal never closes like a pipe."""
    stream = sys.stdout
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # no real stdout (embedded, pythonw): nothing to protect
    if os.isatty(fd):
        return
    stream.flush()
    buffered = io.BufferedWriter(_ClosedPipeTolerantStdout(fd))
    sys.stdout = io.TextIOWrapper(
        buffered, encoding=stream.encoding, errors=stream.errors,
        line_buffering=stream.line_buffering, write_through=getattr(stream, "write_through", False),
    )


def describe_record(record: dict) -> str:
    """One line for the end of an epoch. The validation figures are measured on the a and b
    channels, and the MAE is given in CIELAB units, as evaluate gives it (the record keeps it
    in the network's units, where the loss is)."""
    from .lab import AB_SPAN  # here: --help must not import OpenCV

    return (
        f"epoch {record['epoch']} [{record['phase_name']}] loss train {record['train_loss']:.4f} val {record['val_loss']:.4f}"
        f" | val ab: MAE {record['val_mae'] * AB_SPAN:.2f} SSIM {record['val_ssim']:.3f} PSNR {record['val_psnr']:.2f} dB"
        f" (gray {record['val_gray_mae'] * AB_SPAN:.2f} / {record['val_gray_ssim']:.3f} / {record['val_gray_psnr']:.2f} dB)"
        f" | {record['images_per_s']:.1f} img/s"
    )
