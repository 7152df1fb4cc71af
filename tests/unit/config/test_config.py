"""Typed config: defaults, YAML recipes, --set overrides, errors naming the key, resolved configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mri_seg.config import Config, ConfigError, config_from_dict, config_to_dict, load_config, save_resolved_config
from mri_seg.pipelines import prepare as prepare_stage

REPO = Path(__file__).resolve().parents[3]


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert (cfg.split.train, cfg.split.val, cfg.split.test) == (0.70, 0.15, 0.15)
    assert cfg.prepare.workers == 2 and cfg.prepare.strict is False and cfg.model.in_channels == 3


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_repo_recipes_load(name):
    cfg = load_config(REPO / "configs" / name)
    assert isinstance(cfg, Config)


def test_yaml_file_changes_only_its_keys(tmp_path):
    cfg = load_config(write(tmp_path / "c.yaml", {"train": {"epochs": 3}, "augment": {"affine": {"p": 0.1}}}))
    assert cfg.train.epochs == 3 and cfg.augment.affine.p == 0.1
    assert cfg.train.lr == Config().train.lr and cfg.augment.affine.rotate == Config().augment.affine.rotate


def test_empty_yaml_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path / "c.yaml", "")) == Config()


def test_overrides_of_each_type_and_precedence_over_the_file(tmp_path):
    path = write(tmp_path / "c.yaml", {"train": {"epochs": 3, "lr": 0.1}})
    cfg = load_config(path, [
        "train.epochs=5", "train.lr=2e-4", "train.amp=false", "model.channels=[8, 16]", "model.strides=[2]",
        "data.normalisation=zscore_nonzero", "split.train=1", "split.val=0", "split.test=0",
        "eval.postprocess.threshold=0.3",
    ])  # fmt: skip
    assert cfg.train.epochs == 5 and isinstance(cfg.train.epochs, int)
    assert cfg.train.lr == 2e-4
    assert cfg.train.amp is False
    assert cfg.model.channels == [8, 16]
    assert cfg.split.train == 1.0 and isinstance(cfg.split.train, float)  # int accepted for a float
    assert cfg.eval.postprocess.threshold == 0.3


@pytest.mark.parametrize(
    "content, key",
    [({"train": {"epocs": 3}}, "train.epocs"), ({"trian": {}}, "trian"),
     ({"augment": {"affine": {"angle": 3}}}, "augment.affine.angle")],
)  # fmt: skip
def test_unknown_key_in_file_names_it(tmp_path, content, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(write(tmp_path / "c.yaml", content))


@pytest.mark.parametrize("override, key", [("train.epocs=3", "train.epocs"), ("nosuch.x=1", "nosuch"),
                                           ("train.epochs.x=1", "train.epochs")])  # fmt: skip
def test_unknown_key_in_override_names_it(override, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, message",
    [("train.epochs=1.5", "'train.epochs' must be an integer"), ("train.epochs=true", "must be an integer"),
     ("train.lr=fast", "'train.lr' must be a number"), ("train.amp=1", "'train.amp' must be true/false"),
     ("model.channels=8", "'model.channels' must be a list"), ("model.channels=[8, x]", r"model.channels\[1\]"),
     ("train=3", "'train' must be a mapping"), ("data.normalisation=3", "must be a string"),
     ("train.epochs", "must look like key.path=value")],
)  # fmt: skip
def test_wrong_types_are_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_wrong_type_in_file_and_non_mapping_file(tmp_path):
    with pytest.raises(ConfigError, match="'split.seed' must be an integer"):
        load_config(write(tmp_path / "a.yaml", {"split": {"seed": "abc"}}))
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(write(tmp_path / "b.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_dict_round_trip_and_resolved_file_reloads(tmp_path):
    cfg = load_config(None, ["train.epochs=7", "model.channels=[4, 8, 16]", "model.strides=[2, 2]"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    path = save_resolved_config(cfg, tmp_path, "train")
    assert path == tmp_path / "config_train.yaml"
    assert load_config(path) == cfg  # the provenance header is YAML comments


def test_stage_writes_its_resolved_config(synthetic_dir, tmp_path, capsys):
    run = tmp_path / "run"
    recipe = write(tmp_path / "r.yaml", {"prepare": {"workers": 3}, "split": {"seed": 5}})
    code = prepare_stage.main(["--data-dir", str(synthetic_dir), "--run-dir", str(run), "--config", str(recipe),
                               "--set", "split.seed=9", "--workers", "1"])  # fmt: skip
    assert code == 0 and capsys.readouterr().out.startswith("prepare: 8 patients")
    text = (run / "config_prepare.yaml").read_text()
    assert text.startswith("# resolved config of stage 'prepare'")
    resolved = load_config(run / "config_prepare.yaml")
    assert resolved.prepare.workers == 1 and resolved.split.seed == 9  # --workers > --set > file > defaults


def test_stage_rejects_unknown_override_with_one_line(synthetic_dir, tmp_path):
    from mri_seg.pipelines._cli import run_main

    with pytest.raises(SystemExit) as exc:
        run_main(prepare_stage.main, ["--data-dir", str(synthetic_dir), "--run-dir", str(tmp_path),
                                      "--set", "prepare.worker=2"])  # fmt: skip
    assert exc.value.code == 2
    assert not (tmp_path / "manifest.csv").exists()


def test_scientific_notation_without_a_dot_is_a_number(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-3 as a string; the config accepts it for float keys
    recipe = write(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n  weight_decay: 5E-5\n")
    cfg = load_config(recipe, ["eval.postprocess.threshold=5e-1"])
    assert cfg.train.lr == 1e-3 and cfg.train.weight_decay == 5e-5 and cfg.eval.postprocess.threshold == 0.5
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(None, ["train.epochs=1e3"])  # not for integer keys


def test_a_key_of_two_types_takes_either_and_names_both_when_wrong(tmp_path):
    assert Config().infer.nifti_axis == "auto"
    assert load_config(None, ["infer.nifti_axis=1"]).infer.nifti_axis == 1
    assert load_config(None, ["infer.nifti_axis=auto"]).infer.nifti_axis == "auto"
    (tmp_path / "c.yaml").write_text("infer: {nifti_axis: 0, sequences: [pre, flair, post]}\n")
    loaded = load_config(tmp_path / "c.yaml")
    assert loaded.infer.nifti_axis == 0 and loaded.infer.sequences == ["pre", "flair", "post"]
    assert config_from_dict(config_to_dict(loaded)).infer.nifti_axis == 0
    for bad in ("true", "1.5", "[1]"):
        with pytest.raises(ConfigError, match="'infer.nifti_axis' must be an integer or a string, got"):
            load_config(None, [f"infer.nifti_axis={bad}"])
