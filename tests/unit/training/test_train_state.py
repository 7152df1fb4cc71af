"""TrainState: what carries over between epochs round-trips through a checkpoint's keys, old ones included."""

from __future__ import annotations

from mri_seg.training.engine import TrainState
from mri_seg.training.resume import is_finished


def test_state_round_trips_through_a_checkpoint_and_keeps_unknown_extra_keys() -> None:
    extra = {"best_epoch": 3, "best_metrics": {"val_patient_dice_mean": 0.7}, "elapsed_seconds": 12.5,
             "rng": {"torch": [1]}, "stopped": "time_cap", "finished": False, "note": "from a newer version"}  # fmt: skip
    state = TrainState.from_checkpoint({"epoch": 4, "best_metric": 0.7, "extra": extra})
    assert (state.epoch, state.best_metric, state.best_epoch, state.stopped, state.finished) == (4, 0.7, 3, "time_cap",
                                                                                                 False)  # fmt: skip
    assert state.extra() == extra


def test_a_checkpoint_from_before_the_flags_resumes_with_defaults() -> None:
    old = {"epoch": 2, "config": {"train": {"epochs": 5}}, "extra": {"best_epoch": 1, "best_metrics": {}}}
    state = TrainState.from_checkpoint(old)
    assert (state.epoch, state.best_metric, state.best_epoch, state.elapsed_seconds, state.rng) == (2, None, 1, 0.0, None)
    assert not is_finished(old) and is_finished({**old, "epoch": 5})
    assert set(state.extra()) == {"best_epoch", "best_metrics", "elapsed_seconds", "stopped", "finished"}


def test_best_is_the_first_highest_validation() -> None:
    state = TrainState()
    assert state.record_validation(1, {"val_patient_dice_mean": 0.5, "patient_dice": {"a": 0.5}})
    assert not state.record_validation(2, {"val_patient_dice_mean": 0.5})  # a tie keeps the first
    assert state.record_validation(3, {"val_patient_dice_mean": 0.6, "val_loss": 0.1})
    assert (state.best_epoch, state.best_metric, state.best_metrics) == (3, 0.6, {"val_patient_dice_mean": 0.6,
                                                                                  "val_loss": 0.1})  # fmt: skip


def test_resume_compares_training_keys_but_not_how_the_step_runs() -> None:
    """``train.compile`` is run-only: a run trained eager resumes compiled (and on a machine without a
    compiler, eager) without a config difference; a real training key still differs."""
    from mri_seg.config import config_to_dict, load_config
    from mri_seg.training.resume import config_differences

    stored = config_to_dict(load_config(None, []))
    assert config_differences(stored, load_config(None, ["train.compile=true"])) == []
    assert config_differences(stored, load_config(None, ["train.lr=0.01"])) == ["train.lr (0.001 -> 0.01)"]
