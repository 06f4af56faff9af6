"""The loss schedule: which loss trains at a given epoch. Pure functions, no torch.

Grammar of --loss (phases in order, separated by commas):

    schedule := phase ("," phase)*
    phase    := term ("+" term)* [":" EPOCHS]
    term     := [WEIGHT "*"] NAME          NAME: mae | mse | ssim | gan

`mae,ssim` splits the epochs evenly (earlier phases take the remainder), `mae:12,ssim:8`
fixes them, `mae:12,ssim` gives ssim what is left, `mae+0.1*ssim` is one phase with a
weighted sum. `gan` alone is pix2pix's generator loss: the adversarial term plus
100 * L1 (`gan+100*mae`); write `gan+10*mae` to choose another L1 weight.

The paper trained with MAE until it stopped improving, then with SSIM: `mae,ssim
--switch-on-plateau 2`. A plateau switch ends a phase early and the next phase runs
until its own planned end, so the run still lasts --epochs at most.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .config import DEFAULT_EPOCHS
from .errors import UsageError

LOSS_NAMES = ("mae", "mse", "ssim", "rebalanced", "chroma", "gan")
PIX2PIX_L1_WEIGHT = 100.0
_TERM = re.compile(r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z0-9_]+)\s*$")


class ScheduleError(UsageError, ValueError):
    """A --loss spec or schedule request that cannot be honoured, with the reason."""


@dataclass(frozen=True)
class Phase:
    terms: tuple  # ((name, weight), ...)
    epochs: int

    @property
    def name(self) -> str:
        """The phase as the user would write it, e.g. 'mae' or 'mae+0.1*ssim'."""
        return "+".join(name if weight == 1 else f"{weight:g}*{name}" for name, weight in self.terms)

    @property
    def adversarial(self) -> bool:
        return any(name == "gan" for name, _ in self.terms)

    @property
    def validation_terms(self) -> tuple:
        """The terms validation can measure (the adversarial one needs a discriminator)."""
        return tuple((name, weight) for name, weight in self.terms if name != "gan")

    def to_dict(self) -> dict:
        return {"name": self.name, "terms": [list(term) for term in self.terms], "epochs": self.epochs}


@dataclass(frozen=True)
class EpochRecord:
    """What the schedule needs to know about a finished epoch."""

    val_loss: float  # validation value of that epoch's phase loss (lower is better)
    phase: int


def parse_schedule(spec: str, epochs: int | None = None) -> list[Phase]:
    """'mae:12,ssim' -> [Phase(mae, 12), Phase(ssim, epochs - 12)].  epochs=None: 20, or the
    sum of the phases when each gives its own count."""
    if not spec or not spec.strip():
        raise ScheduleError("empty --loss (try 'mae,ssim')")
    parsed = [_parse_phase(text) for text in spec.split(",")]
    fixed = sum(count for _, count in parsed if count is not None)
    open_phases = [i for i, (_, count) in enumerate(parsed) if count is None]
    if epochs is None:
        epochs = fixed if not open_phases else max(DEFAULT_EPOCHS, fixed + len(open_phases))
    if epochs < 1:
        raise ScheduleError(f"--epochs must be at least 1, got {epochs}")
    if not open_phases and fixed != epochs:
        raise ScheduleError(f"the phases of --loss {spec!r} add up to {fixed} epochs, but --epochs is {epochs}")
    left = epochs - fixed
    if open_phases and left < len(open_phases):
        # Say how to get going: a first try with `--epochs 1` meets the two-phase default.
        needed, first = fixed + len(open_phases), spec.split(",")[0].strip()
        raise ScheduleError(
            f"--epochs {epochs} leaves {left} epoch{'' if left == 1 else 's'} for the {len(open_phases)} phases of --loss {spec!r} "
            f"without a count: give --epochs {needed} or more, or one phase (e.g. --loss {first.partition(':')[0]})"
        )
    share, extra = divmod(left, len(open_phases)) if open_phases else (0, 0)
    phases = []
    for terms, count in parsed:
        if count is None:
            count = share + (1 if extra > 0 else 0)
            extra -= 1
        phases.append(Phase(terms=terms, epochs=count))
    return phases


def _parse_phase(text: str) -> tuple[tuple, int | None]:
    body, _, count_text = text.partition(":")
    count = None
    if count_text.strip():
        if not count_text.strip().isdigit() or int(count_text) < 1:
            raise ScheduleError(f"bad epoch count {count_text.strip()!r} in --loss phase {text.strip()!r} (use a positive integer)")
        count = int(count_text)
    elif _:
        raise ScheduleError(f"missing epoch count after ':' in --loss phase {text.strip()!r}")
    if not body.strip():
        raise ScheduleError("empty phase in --loss (two commas in a row?)")
    terms = []
    for term_text in body.split("+"):
        match = _TERM.match(term_text.lower())
        if not match:
            raise ScheduleError(f"cannot read {term_text.strip()!r} in --loss phase {text.strip()!r} (write e.g. mae+0.1*ssim)")
        name, weight = match["name"], float(match["weight"] or 1.0)
        if name not in LOSS_NAMES:
            raise ScheduleError(f"unknown loss {name!r} (use {', '.join(LOSS_NAMES)})")
        if weight <= 0 or not math.isfinite(weight):
            raise ScheduleError(f"the weight of {name!r} must be positive, got {weight:g}")
        if any(name == seen for seen, _ in terms):
            raise ScheduleError(f"{name!r} appears twice in --loss phase {text.strip()!r}")
        terms.append((name, weight))
    if terms == [("gan", 1.0)]:
        terms.append(("mae", PIX2PIX_L1_WEIGHT))
    elif any(name == "gan" for name, _ in terms) and not any(name != "gan" for name, _ in terms):
        raise ScheduleError("a gan phase needs a reconstruction term beside it (e.g. gan+100*mae)")
    return tuple(terms), count


def phase_ends(phases: list[Phase]) -> list[int]:
    """The planned epoch (exclusive) at which each phase ends."""
    ends, total = [], 0
    for phase in phases:
        total += phase.epochs
        ends.append(total)
    return ends


def total_epochs(phases: list[Phase]) -> int:
    return phase_ends(phases)[-1]


def epochs_without_improvement(history: list[EpochRecord], phase: int) -> int:
    """Epochs since the best validation loss of `phase` (losses of other phases are not
    comparable: an SSIM loss and an MAE loss have different scales)."""
    losses = [record.val_loss for record in history if record.phase == phase]
    if not losses:
        return 0
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    return len(losses) - 1 - best


def phase_at(epoch: int, phases: list[Phase], history: list[EpochRecord], switch_on_plateau: int | None = None) -> int:
    """Index of the phase that trains epoch `epoch` (0-based), given the finished epochs.

    history[i] describes epoch i, so len(history) == epoch when called during a run.
    """
    ends = phase_ends(phases)
    if not 0 <= epoch < ends[-1]:
        raise ScheduleError(f"epoch {epoch} is outside the schedule of {ends[-1]} epochs")
    current = history[-1].phase if history else 0
    if epoch >= ends[current]:
        return next(i for i, end in enumerate(ends) if end > epoch)
    if (
        switch_on_plateau
        and current + 1 < len(phases)
        and epochs_without_improvement(history, current) >= switch_on_plateau
    ):
        return current + 1
    return current


def should_stop(history: list[EpochRecord], phases: list[Phase], patience: int | None, switch_on_plateau: int | None = None) -> bool:
    """Early stopping: the last phase has not improved for `patience` epochs. Earlier phases
    end by the plateau switch (or their planned length), not by stopping the run."""
    if not patience or not history:
        return False
    current = history[-1].phase
    if current + 1 < len(phases):
        return False
    return epochs_without_improvement(history, current) >= patience


def best_epoch(history: list[EpochRecord]) -> int | None:
    """The epoch whose weights to keep: the lowest validation loss of the last phase that ran
    (the schedule's goal is the last phase's loss; earlier phases prepare it)."""
    if not history:
        return None
    last = history[-1].phase
    candidates = [i for i, record in enumerate(history) if record.phase == last]
    return min(candidates, key=lambda i: (history[i].val_loss, i))


# ---- learning rate ---------------------------------------------------------------

LR_DECAYS = ("none", "cosine")
# Cosine decay ends at this fraction of the base rate rather than at 0, so the last
# epochs (and the SSIM phase that usually runs then) still move the weights.
COSINE_FLOOR = 0.05


def check_lr_decay(decay: str) -> None:
    if decay not in LR_DECAYS:
        raise ScheduleError(f"unknown learning-rate decay {decay!r} (use {' or '.join(LR_DECAYS)})")


def learning_rate(base: float, decay: str, *, progress: float) -> float:
    """The learning rate at `progress` (0 at the first step, 1 after the last) of a run.

    'none' keeps the base rate (the paper's Adam); 'cosine' falls from it along half a
    cosine to COSINE_FLOOR times it. A pure function of the step, so --resume needs no state.
    """
    check_lr_decay(decay)
    if decay == "none":
        return base
    progress = min(max(progress, 0.0), 1.0)
    return base * (COSINE_FLOOR + (1.0 - COSINE_FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress)))
