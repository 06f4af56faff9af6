"""The loss schedule: parsing, epoch splits, plateau switching, early stopping."""

from __future__ import annotations

import pytest

from portraitcolor.schedule import (
    EpochRecord,
    Phase,
    ScheduleError,
    best_epoch,
    parse_schedule,
    phase_at,
    should_stop,
)


def epochs_of(spec, epochs=None):
    return [(phase.name, phase.epochs) for phase in parse_schedule(spec, epochs)]


@pytest.mark.parametrize(
    "spec, epochs, expected",
    [
        ("mae,ssim", 20, [("mae", 10), ("ssim", 10)]),
        ("mae,ssim", 21, [("mae", 11), ("ssim", 10)]),
        ("mae,mse,ssim", 10, [("mae", 4), ("mse", 3), ("ssim", 3)]),
        ("mae:12,ssim:8", None, [("mae", 12), ("ssim", 8)]),
        ("mae:12,ssim:8", 20, [("mae", 12), ("ssim", 8)]),
        ("mae:12,ssim", 20, [("mae", 12), ("ssim", 8)]),
        ("mae", None, [("mae", 20)]),
        ("mae+0.1*ssim", 5, [("mae+0.1*ssim", 5)]),
        (" MAE + 2*MSE :3 , ssim", 4, [("mae+2*mse", 3), ("ssim", 1)]),
        ("mae,gan", 4, [("mae", 2), ("gan+100*mae", 2)]),
        ("gan+10*mae:2", None, [("gan+10*mae", 2)]),
    ],
)
def test_phases_and_their_epochs(spec, epochs, expected):
    assert epochs_of(spec, epochs) == expected


def test_phase_properties():
    mixed, gan = parse_schedule("mae+0.5*ssim,gan", 4)
    assert mixed.terms == (("mae", 1.0), ("ssim", 0.5)) and not mixed.adversarial
    assert gan.adversarial and gan.validation_terms == (("mae", 100.0),)
    assert mixed.to_dict() == {"name": "mae+0.5*ssim", "terms": [["mae", 1.0], ["ssim", 0.5]], "epochs": 2}


@pytest.mark.parametrize(
    "spec, epochs, message",
    [
        ("", 10, "empty"),
        ("mae,,ssim", 10, "empty phase"),
        ("mae,l2", 10, "unknown loss 'l2'"),
        ("mae:0", None, "bad epoch count"),
        ("mae:x", None, "bad epoch count"),
        ("mae:", None, "missing epoch count"),
        ("mae:3,ssim:3", 10, "add up to 6 epochs, but --epochs is 10"),
        ("mae:9,ssim", 9, "leaves 0 epochs"),
        ("mae,ssim", 1, r"--epochs 1 leaves 1 epoch for the 2 phases .* give --epochs 2 or more, or one phase \(e.g. --loss mae\)"),
        ("0*mae", 3, "must be positive"),
        ("mae+mae", 3, "appears twice"),
        ("mae*0.1", 3, "cannot read"),
        ("gan+gan", 3, "appears twice"),
        ("2*gan", 3, "reconstruction term"),
        ("mae", 0, "at least 1"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, epochs, message):
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(spec, epochs)


def run_schedule(phases, losses, switch_on_plateau=None):
    """Feed validation losses epoch by epoch; return the phase index of every epoch."""
    history = []
    for epoch, loss in enumerate(losses):
        phase = phase_at(epoch, phases, history, switch_on_plateau)
        history.append(EpochRecord(val_loss=loss, phase=phase))
    return [record.phase for record in history]


def test_phases_follow_the_plan_without_plateau_switching():
    phases = parse_schedule("mae:3,mse:2,ssim:1")
    assert run_schedule(phases, [1.0] * 6) == [0, 0, 0, 1, 1, 2]


def test_plateau_moves_to_the_next_phase_early_and_the_next_phase_runs_to_its_planned_end():
    phases = parse_schedule("mae,ssim", 10)
    losses = [0.5, 0.4, 0.41, 0.42, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    # best mae at epoch 1, two epochs without improvement -> ssim from epoch 4 on
    assert run_schedule(phases, losses, switch_on_plateau=2) == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert run_schedule(phases, losses) == [0] * 5 + [1] * 5


def test_plateau_is_judged_within_the_phase_only():
    phases = parse_schedule("mae:2,ssim:2,mse:4")
    # ssim's losses are larger than mae's; that must not count as "no improvement"
    assert run_schedule(phases, [0.1, 0.09, 0.5, 0.4, 0.3, 0.3, 0.3, 0.3], switch_on_plateau=1) == [0, 0, 1, 1, 2, 2, 2, 2]


def test_last_phase_never_switches():
    phases = parse_schedule("mae:1,ssim:3")
    assert run_schedule(phases, [0.5, 0.5, 0.6, 0.7], switch_on_plateau=1) == [0, 1, 1, 1]


def test_epoch_outside_the_schedule_is_an_error():
    with pytest.raises(ScheduleError):
        phase_at(4, parse_schedule("mae:4"), [])


def test_early_stopping_waits_for_the_last_phase():
    phases = parse_schedule("mae:5,ssim:5")
    stalled_mae = [EpochRecord(0.3, 0), EpochRecord(0.4, 0), EpochRecord(0.5, 0)]
    assert not should_stop(stalled_mae, phases, patience=2)
    stalled_ssim = stalled_mae + [EpochRecord(0.2, 1), EpochRecord(0.3, 1), EpochRecord(0.25, 1)]
    assert should_stop(stalled_ssim, phases, patience=2)
    assert not should_stop(stalled_ssim, phases, patience=3)
    assert not should_stop(stalled_ssim, phases, patience=None)


def test_best_epoch_is_the_best_of_the_last_phase():
    history = [EpochRecord(0.1, 0), EpochRecord(0.3, 1), EpochRecord(0.2, 1), EpochRecord(0.2, 1)]
    assert best_epoch(history) == 2
    assert best_epoch([]) is None
    assert isinstance(parse_schedule("mae")[0], Phase)


@pytest.mark.parametrize("progress, expected", [(0.0, 1.0), (0.5, 0.525), (1.0, 0.05), (1.5, 0.05)])
def test_cosine_learning_rate(progress, expected):
    from portraitcolor.schedule import learning_rate

    assert learning_rate(0.002, "cosine", progress=progress) == pytest.approx(0.002 * expected)
    assert learning_rate(0.002, "none", progress=progress) == 0.002


def test_unknown_learning_rate_decay():
    from portraitcolor.schedule import ScheduleError, learning_rate

    with pytest.raises(ScheduleError, match="cosine"):
        learning_rate(0.001, "step", progress=0.2)
