"""The checkpoint file (runs.CHECKPOINT in the run folder): torch.save writes it atomically,
torch.load reads it back checked, and the random number generators' state travels in it, so
that a resumed run draws the numbers an unbroken one would have drawn. Apart from runs.py,
which evaluate imports on its torch-free path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from . import runs
from .atomic import atomic_output
from .errors import first_line
from .runs import TrainingError

FORMAT = "portraitcolor-checkpoint/1"


def write_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    with _checkpoint_output(run_dir) as handle:
        torch.save({"format": FORMAT, **checkpoint}, handle)


def load_checkpoint(run_dir: Path) -> dict:
    path = run_dir / runs.CHECKPOINT
    try:
        # weights_only: tensors and plain types only, never arbitrary unpickling
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise TrainingError(f"{path}: unreadable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise TrainingError(f"{path}: not a portraitcolor checkpoint")
    return checkpoint


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def _checkpoint_output(run_dir: Path) -> Iterator[_WriteErrors]:
    """The checkpoint file, written atomically, for torch.save. A write that fails
    (a full disk) raises its own OSError rather than torch's report of it."""
    with atomic_output(run_dir / runs.CHECKPOINT) as temporary, open(temporary, "wb") as handle:
        writer = _WriteErrors(handle)
        try:
            yield writer
        except RuntimeError:
            # torch reports a failed write (a full disk) as "enforce fail at inline_container.cc";
            # the OSError underneath says what happened, and atomic_output names the file.
            if writer.error is not None:
                raise writer.error from None
            raise


class _WriteErrors:
    """A file for torch.save that remembers the OSError of a failed write."""

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = self.error or error
            raise

    def flush(self) -> None:
        self.handle.flush()
