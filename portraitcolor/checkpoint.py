"""The checkpoint's torch side: runs.py names checkpoint.pt and writes it atomically but stays
torch-free (evaluate imports it on its fast path); here torch.save writes it, torch.load reads
it back checked, and the random number generators' state travels in it, so that a resumed run
draws the numbers an unbroken one would have drawn.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import runs
from .errors import first_line
from .runs import TrainingError


def write_checkpoint(run_dir: Path, checkpoint: dict) -> None:
    with runs.checkpoint_output(run_dir) as handle:
        torch.save(checkpoint, handle)


def load_checkpoint(run_dir: Path) -> dict:
    path = run_dir / runs.CHECKPOINT
    try:
        # weights_only: tensors and plain types only, never arbitrary unpickling
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file
        raise TrainingError(f"{path}: unreadable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != runs.CHECKPOINT_FORMAT:
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
