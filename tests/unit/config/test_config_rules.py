"""The config rules: every key declared with a rule and a doc, bad values refused up front with one line, exit 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mri_seg.config import RULES, Config, ConfigError, config_to_dict, config_violations, load_config
from mri_seg.config.rules import COUNT, declared_keys, leaf_items, sections, setting
from mri_seg.pipelines._cli import run_main

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_every_leaf_key_of_config_has_a_rule_and_a_doc():
    keys = [k for k, _ in leaf_items(config_to_dict(Config()))]
    declared = declared_keys(Config)
    assert [k.name for k in declared] == keys
    missing = [k.name for k in declared if k.rule is None]
    assert not missing, (
        f"config keys declared without setting(default, rule, doc) in mri_seg/config/schema.py: {missing}"
    )
    undocumented = [k.name for k in declared if not k.doc.strip() or "\n" in k.doc]
    assert not undocumented, f"config keys without a one-line doc: {undocumented}"
    assert sorted(RULES) == sorted(keys)
    no_doc = [name for name, cls in sections(Config) if (cls.__doc__ or "").startswith(cls.__name__ + "(")]
    assert not no_doc, f"config sections without a docstring (the reference page's intro): {no_doc}"


def test_declared_defaults_are_the_dataclass_defaults():
    defaults = dict(leaf_items(config_to_dict(Config())))
    assert {k.name: k.default for k in declared_keys(Config)} == defaults


def test_setting_copies_a_list_default_per_instance():
    @dataclasses.dataclass
    class Section:
        sizes: list[int] = setting([1, 2], COUNT, "doc")

    a, b = Section(), Section()
    a.sizes.append(3)
    assert b.sizes == [1, 2] and dataclasses.fields(Section)[0].metadata == {"rule": COUNT, "doc": "doc"}


def test_name_lists_have_one_home_that_the_implementing_modules_use():
    """Each list of names a key may take is declared once (mri_seg.config.names); the modules that
    implement the names use that very object, so the rule and the code cannot disagree."""
    from mri_seg import evaluation, losses, preprocess
    from mri_seg.config import names
    from mri_seg.data import manifest
    from mri_seg.io import sequences
    from mri_seg.models import factory
    from mri_seg.training import checkpoint, optim
    from mri_seg.utils import device

    assert losses.LOSSES is names.LOSSES
    assert factory.ARCHITECTURES is names.ARCHITECTURES
    assert preprocess.NORMALISATIONS is names.NORMALISATION_METHODS
    assert evaluation.INPUT_SEQUENCES is names.INPUT_SEQUENCES
    assert optim.SCHEDULERS is names.SCHEDULERS
    assert checkpoint.SHIP_CHOICES is names.SHIP_CHOICES
    assert manifest.SPLITS is names.SPLITS
    assert device.DEVICES is names.DEVICES
    assert sequences.ALIASES is names.ALIASES and sequences.parse_names is names.parse_names
    assert RULES["model.name"].values == names.ARCHITECTURES
    assert RULES["train.loss"].values == names.LOSSES
    assert RULES["data.normalisation"].values == names.NORMALISATION_METHODS
    assert RULES["train.device"].values == names.DEVICES


def test_config_imports_only_errors_and_utils():
    """The config layer sits below every other part: importing it loads no other part of mri_seg
    (and no torch), so any module may import it without a cycle."""
    code = ("import sys, mri_seg.config, mri_seg.config.reference; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('mri_seg') or m == 'torch')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    loaded = out.stdout.split()
    outside = [m for m in loaded if m.split(".")[:2] not in (["mri_seg"], ["mri_seg", "config"],
                                                              ["mri_seg", "errors"], ["mri_seg", "utils"])]  # fmt: skip
    assert not outside, f"mri_seg.config imports {outside}"


def test_defaults_and_shipped_recipes_are_valid():
    assert config_violations(config_to_dict(Config())) == []
    for recipe in sorted((REPO_ROOT / "configs").glob("*.yaml")):
        load_config(recipe)  # raises ConfigError on any bad value


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epochs=-1", "config key 'train.epochs' is -1; allowed: an integer >= 1"),
        ("train.epochs=0", "config key 'train.epochs' is 0; allowed: an integer >= 1"),
        ("train.lr=-1", "config key 'train.lr' is -1.0; allowed: a number in (0, 10]"),
        ("train.lr=0", "config key 'train.lr' is 0.0; allowed: a number in (0, 10]"),
        ("train.batch_size=0", "config key 'train.batch_size' is 0; allowed: an integer >= 1"),
        ("infer.postprocess.threshold=2", "config key 'infer.postprocess.threshold' is 2.0; allowed: a number in [0, 1]"),
        ("infer.postprocess.min_component_pixels=-1",
         "config key 'infer.postprocess.min_component_pixels' is -1; allowed: an integer >= 0"),
        ("infer.overlap=1.0", "config key 'infer.overlap' is 1.0; allowed: a number in [0, 1)"),
        ("infer.tile_batch=0", "config key 'infer.tile_batch' is 0; allowed: an integer >= 1"),
        ("infer.tile_size=5", "config key 'infer.tile_size' is 5; allowed: one of 0 or an integer >= 8"),
        ("infer.nifti_axis=3", "config key 'infer.nifti_axis' is 3; allowed: one of auto, 0, 1, 2"),
        ("infer.sequences=[flair, flair]", "config key 'infer.sequences' is ['flair', 'flair']; allowed: a non-empty "
         "list of distinct sequence names (sequence 'flair' listed twice (['flair', 'flair']))"),
        ("train.scheduler=step", "config key 'train.scheduler' is 'step'; allowed: one of cosine, plateau"),
        ("data.scale=0", "config key 'data.scale' is 0.0; allowed: a number in (0, 8]"),
        ("data.normalisation=minmax", "config key 'data.normalisation' is 'minmax'; allowed: one of zscore_nonzero"),
        ("eval.split=dev", "config key 'eval.split' is 'dev'; allowed: one of train, val, test"),
        ("augment.affine.scale=[1.2, 0.9]", "config key 'augment.affine.scale' is [1.2, 0.9]; allowed: a list of 2 "
         "items, each a number > 0, in non-decreasing order"),
        ("train.lr=.nan", "config key 'train.lr' is nan; allowed: a number in (0, 10]"),
        ("split.n_folds=1", "config key 'split.n_folds' is 1; allowed: one of 0 or an integer >= 2"),
        ("split.seed=-3", "config key 'split.seed' is -3; allowed: an integer in [0, 4294967295]"),
        ("split.val=0.5", "split.train + split.val + split.test sum to 1.35; allowed: a sum of 1"),
        ("model.channels=[4, 8]", "config key 'model.strides' has 4 entries for 2 model.channels"),
        ("train.bce_topk=0", "config key 'train.bce_topk' is 0.0; allowed: a number in (0, 1]"),
        ("train.boundary_weight=-0.1", "config key 'train.boundary_weight' is -0.1; allowed: a number >= 0"),
        ("eval.postprocess.sweep_thresholds=[0.5, 0.3]", "config key 'eval.postprocess.sweep_thresholds' is [0.5, 0.3]; "
         "allowed: a list of 1 or more items, each a number in (0, 1), in non-decreasing order"),
        ("eval.postprocess.sweep_thresholds=[]", "config key 'eval.postprocess.sweep_thresholds' is []; "
         "allowed: a list of 1 or more items"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_key_value_and_range(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bce_topk_with_the_focal_loss_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="train.bce_topk is 0.1 with train.loss dice_focal; allowed: 1"):
        load_config(None, ["train.loss=dice_focal", "train.bce_topk=0.1"])
    assert load_config(None, ["train.loss=tversky_bce", "train.bce_topk=0.1"]).train.bce_topk == 0.1


def test_patient_balance_without_oversampling_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="train.tumour_patient_balance is 1.0 with train.tumour_oversample 0; allowed: 0"):
        load_config(None, ["train.tumour_oversample=0", "train.tumour_patient_balance=1"])
    cfg = load_config(None, ["train.tumour_oversample=0.7", "train.tumour_patient_balance=1"])
    assert cfg.train.tumour_patient_balance == 1.0


def test_good_edge_values_are_accepted():
    cfg = load_config(None, ["infer.postprocess.threshold=0", "infer.postprocess.threshold=1", "infer.overlap=0",
                             "infer.tile_size=0", "split.n_folds=5", "train.epochs=1", "train.lr=1e-6"])  # fmt: skip
    assert cfg.infer.postprocess.threshold == 1.0 and cfg.split.n_folds == 5


@pytest.mark.parametrize(
    "module, argv, key",
    [
        ("train", ["--run-dir", "{tmp}", "--set", "train.epochs=-1"], "train.epochs"),
        ("train", ["--run-dir", "{tmp}", "--epochs", "0"], "train.epochs"),
        ("train", ["--run-dir", "{tmp}", "--set", "train.lr=-1"], "train.lr"),
        ("train", ["--run-dir", "{tmp}", "--set", "train.batch_size=0"], "train.batch_size"),
        ("infer", ["--checkpoint", "{tmp}/x.pt", "--input", "{tmp}", "--output", "{tmp}/o", "--threshold", "2"],
         "infer.postprocess.threshold"),
        ("infer", ["--checkpoint", "{tmp}/x.pt", "--input", "{tmp}", "--output", "{tmp}/o", "--min-component", "-1"],
         "infer.postprocess.min_component_pixels"),
        ("infer", ["--checkpoint", "{tmp}/x.pt", "--input", "{tmp}", "--output", "{tmp}/o", "--overlap", "1"],
         "infer.overlap"),
        ("infer", ["--checkpoint", "{tmp}/x.pt", "--input", "{tmp}", "--output", "{tmp}/o", "--tile-batch", "0"],
         "infer.tile_batch"),
        ("prepare", ["--data-dir", "{tmp}", "--run-dir", "{tmp}/r", "--workers", "-2"], "prepare.workers"),
        ("split", ["--run-dir", "{tmp}", "--set", "split.test=0.9"], "split.train + split.val + split.test"),
        ("evaluate", ["--run-dir", "{tmp}", "--threshold", "-0.1"], "eval.postprocess.threshold"),
    ],
)  # fmt: skip
def test_stages_refuse_bad_values_before_any_work(tmp_path, capsys, module, argv, key):
    """Exit 2 and one line, before reading data or checkpoints (x.pt does not even exist)."""
    import importlib

    stage = importlib.import_module(f"mri_seg.pipelines.{module}")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as info:
        run_main(stage.main, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2
    assert err.count("\n") == 0 and err.startswith("error: ") and key in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_train_epochs_zero_command_line_exit_2(tmp_path):
    """Issue 11 item 7: `--epochs 0` used to print 'train done: 0 epochs' and exit 0."""
    proc = subprocess.run([sys.executable, "-m", "mri_seg.pipelines.train", "--run-dir", str(tmp_path), "--epochs", "0"],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "error: config key 'train.epochs' is 0; allowed: an integer >= 1"
