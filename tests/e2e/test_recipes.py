"""Recipes and pipeline definitions ship inside the package, in one copy: the top-level
``configs/`` and ``pipelines/`` folders are symbolic links to ``mri_seg/recipes/``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mri_seg.pipelines import demo
from mri_seg.pipelines import run as runner
from mri_seg.pipelines._cli import StageError
from mri_seg.recipes import CONFIGS, PIPELINES

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("packaged, documented", [(CONFIGS, REPO / "configs"), (PIPELINES, REPO / "pipelines")])
def test_top_level_folders_are_links_to_the_packaged_recipes(packaged: Path, documented: Path) -> None:
    assert documented.is_symlink(), f"{documented} must be a link to {packaged} (one copy of each recipe)"
    assert os.readlink(documented) == str(packaged.relative_to(REPO))  # relative: works in any clone
    assert documented.resolve() == packaged.resolve()
    assert sorted(p.name for p in packaged.glob("*.yaml")) == sorted(p.name for p in documented.glob("*.yaml"))
    assert any(packaged.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(p.name for p in PIPELINES.glob("*.yaml")))
def test_a_pipeline_names_the_same_configs_through_either_path(name: str) -> None:
    assert runner.load_pipeline(REPO / "pipelines" / name) == runner.load_pipeline(PIPELINES / name)
    for stage in yaml.safe_load((PIPELINES / name).read_text())["stages"]:
        relative = stage["config"]  # e.g. ../configs/lgg_cpu.yaml
        lexical = Path(os.path.normpath(REPO / "pipelines" / relative))  # `..` taken textually: REPO/configs/...
        assert lexical.parent == REPO / "configs" and lexical.is_file(), relative
        assert (PIPELINES / relative).resolve() == (CONFIGS / lexical.name).resolve()


def test_packaged_pipelines_name_packaged_configs_and_load_by_name():
    assert demo.DEFAULT_PIPELINE == PIPELINES / "demo.yaml"
    for path in PIPELINES.glob("*.yaml"):
        specs = runner.load_pipeline(path.stem)  # a bare name: the shipped definition
        assert specs == runner.load_pipeline(path)
        for spec in specs:
            assert spec.config is None or (spec.config.is_file() and spec.config.parent == CONFIGS), spec
    with pytest.raises(StageError, match=r"pipeline file not found: nosuch \(or a shipped pipeline name: demo, "):
        runner.load_pipeline("nosuch")


@pytest.mark.slow
def test_mri_seg_demo_console_script_runs_from_an_installed_wheel(tmp_path):
    wheels, target, work, src = (tmp_path / name for name in ("wheels", "site", "elsewhere", "src"))
    work.mkdir()
    # build from a copy of the sources (the build leaves build/ and *.egg-info where it runs)
    shutil.copytree(REPO / "mri_seg", src / "mri_seg", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
                   check=True, cwd=tmp_path, timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("mri_seg-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "NO_ALBUMENTATIONS_UPDATE": "1"}
    where = subprocess.run([sys.executable, "-c", "import mri_seg; print(mri_seg.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, check=True)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(target)  # the wheel's copy, not the clone's
    small = ["train.epochs=1", "model.channels=[4,8,16]", "model.strides=[2,2]", "eval.bootstrap_samples=20",
             "eval.patient_pages=false", "infer.report=false"]  # fmt: skip
    proc = subprocess.run([str(target / "bin" / "mri-seg-demo"), "--out", "demo", "--patients", "5",
                           *[a for s in small for a in ("--set", s)]],
                          capture_output=True, text=True, cwd=work, env=env, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "demo finished" in proc.stdout
    record = json.loads((work / "demo" / "stages" / "infer.json").read_text())
    assert record["status"] == "ok" and str(target) in record["argv"][record["argv"].index("--config") + 1]
