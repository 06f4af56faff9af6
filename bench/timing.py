"""Timing on a shared, noisy machine: best-of-N, and interleaved comparisons.

The minimum of several runs is the figure least disturbed by other processes; variants
that are compared against each other are run round-robin so that a burst of outside load
hurts all of them alike instead of one.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_seconds(work: Callable[[], object], *, repeats: int, warmup: int = 1) -> float:
    """The fastest of `repeats` timed calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        work()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def interleaved_best(variants: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1) -> dict[str, float]:
    """Best seconds per variant, the variants taking turns within every round."""
    for work in variants.values():
        for _ in range(warmup):
            work()
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, work in variants.items():
            started = time.perf_counter()
            work()
            best[name] = min(best[name], time.perf_counter() - started)
    return best
