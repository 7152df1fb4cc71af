"""train --init-from: a training that starts from trained weights (one member, or each fold from its
own), and one-line refusals for members of another input or architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_folds import as_args, folded_copy

from mri_seg.pipelines._cli import run_main
from mri_seg.pipelines.export import main as export_main
from mri_seg.pipelines.train import main as train_main
from mri_seg.training.bundle import bundle_member_files
from mri_seg.training.checkpoint import load_checkpoint
from mri_seg.training.init_from import InitFromError, choose_member


@pytest.fixture(scope="module")
def source(synthetic_run, tmp_path_factory) -> Path:
    """A run with 2 folds trained for one epoch each (the weights to start from)."""
    run = folded_copy(synthetic_run, tmp_path_factory.mktemp("src") / "run", n_folds=2)
    assert train_main(as_args(run, "--all-folds")) == 0
    return run


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_each_fold_starts_from_its_member_of_a_bundle(source, synthetic_run, tmp_path, monkeypatch, capsys):
    bundle = tmp_path / "model"
    assert export_main(["--checkpoint", str(source / "checkpoints"), "--out", str(bundle), "--no-onnx"]) == 0
    started: dict[int | None, dict[str, torch.Tensor]] = {}
    import mri_seg.training.engine as engine

    real = engine.init_weights

    def spy(model, member):
        info = real(model, member)
        started[member[1]["fold"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return info

    monkeypatch.setattr(engine, "init_weights", spy)
    run = folded_copy(synthetic_run, tmp_path / "run", n_folds=2)
    assert train_main(as_args(run, "--all-folds", "--init-from", str(bundle))) == 0
    err = capsys.readouterr().out
    assert err.count("starting from the weights of") == 2
    members = bundle_member_files(bundle)
    for fold, member in zip((0, 1), members):
        assert member.name == f"fold{fold}.pt"
        for key, value in _weights(member).items():  # the model before training == that fold's member
            assert torch.equal(started[fold][key], value), (fold, key)
        trained = _weights(run / "checkpoints" / f"fold{fold}" / "last.pt")
        assert any(not torch.equal(trained[k], v) for k, v in _weights(member).items())  # then it trained


def test_one_member_starts_an_unfolded_training(source, synthetic_run, tmp_path, capsys):
    run = folded_copy(synthetic_run, tmp_path / "run", n_folds=2)
    member = source / "checkpoints" / "fold1" / "last.pt"
    assert train_main(as_args(run, "--init-from", str(member))) == 0
    assert f"starting from the weights of {member}" in capsys.readouterr().out


def test_several_members_without_a_fold_are_refused(source):
    with pytest.raises(InitFromError, match="has 2 members .*train with --fold K"):
        choose_member(source / "checkpoints", None)
    assert choose_member(source / "checkpoints", 1).parent.name == "fold1"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.context_slices=1", "its model.in_channels is 3, this run's config has 9"),
        ("data.normalisation=zscore_volume", "its normalisation is 'zscore_nonzero', this run's config has 'zscore_volume'"),
        ("model.channels=[4,8,32]", "weights do not fit this run's model.* architecture"),
    ],
)
def test_incompatible_members_are_refused_with_one_line(source, synthetic_run, tmp_path, capsys, override, message):
    run = folded_copy(synthetic_run, tmp_path / "run", n_folds=2)
    extra = ["--set", override] + (["--set", "model.in_channels=9"] if "context" in override else [])
    with pytest.raises(SystemExit) as exc:
        run_main(train_main, [*as_args(run, "--fold", "0", "--init-from", str(source / "checkpoints")), *extra])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert exc.value.code == 2 and len(errors) == 1 and message in errors[0], errors
