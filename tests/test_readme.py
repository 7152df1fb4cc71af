"""Every command in README.md is checked: its module exists and accepts each flag it uses;
the cheap ones (synthesize, prepare, split, run --help) are run for real in a temp folder.
The expensive ones (train, evaluate, infer, demo) are run by their own tests."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_commands() -> list[str]:
    """Commands in ```bash blocks, continuation lines joined, comments stripped."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def module_of(command: str) -> str | None:
    match = re.search(r"-m (mri_seg\.pipelines\.\w+)", command)
    return match.group(1) if match else None


@lru_cache(maxsize=None)
def help_text(module: str) -> str:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, f"{module} --help failed: {out.stderr}"
    return out.stdout


def test_readme_has_the_two_quick_start_commands_first() -> None:
    commands = readme_commands()
    assert commands[:2] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.M) and re.search(r"^test:", makefile, flags=re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in ci  # CI runs the README's test command


def test_every_readme_stage_command_names_a_real_module_and_real_flags() -> None:
    checked = 0
    for command in readme_commands():
        module = module_of(command)
        if module is None:
            continue
        text = help_text(module)
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", command):
            if flag.startswith("--nproc"):
                continue  # torchrun's own flag
            assert flag in text, f"README command uses {flag}, which {module} does not accept:\n{command}"
        checked += 1
    assert checked >= 10


def test_readme_config_overrides_name_real_keys() -> None:
    from mri_seg.config import load_config

    for command in readme_commands():
        for override in re.findall(r"--set (\S+)", command):
            load_config(None, [override])  # raises ConfigError naming an unknown key


def test_readme_recipes_and_pipelines_exist() -> None:
    text = README.read_text()
    for path in set(re.findall(r"\b((?:configs|pipelines)/[\w.]+\.yaml)", text)):
        assert (REPO / path).is_file(), f"README mentions {path}, which does not exist"


def _rewrite(command: str, tmp: Path) -> list[str]:
    """README paths -> paths inside tmp, so the command runs in isolation."""
    args = shlex.split(command)
    mapping = {"data/synth": tmp / "synth", "lgg-mri-segmentation": tmp / "synth", "runs/lgg": tmp / "run"}
    out = []
    for arg in args:
        out.append(str(mapping.get(arg, arg)))
    if out[0] == "python":
        out[0] = sys.executable
    return out


def test_cheap_readme_commands_run(tmp_path: Path) -> None:
    commands = readme_commands()
    wanted = ["mri_seg.pipelines.synthesize", "mri_seg.pipelines.prepare", "mri_seg.pipelines.split"]
    ran = []
    for module in wanted:
        command = next(c for c in commands if module_of(c) == module)
        argv = _rewrite(command, tmp_path)
        if module.endswith("synthesize"):
            argv += ["--patients", "3", "--size", "64"]  # later flags win: keep it quick
        result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        ran.append(module)
    assert (tmp_path / "run" / "manifest.csv").is_file()
    assert (tmp_path / "run" / "splits.csv").is_file()
    assert ran == wanted


@pytest.mark.parametrize("module", ["mri_seg.pipelines.run", "mri_seg.pipelines.demo"])
def test_entry_points_answer_help(module: str) -> None:
    assert "usage" in help_text(module).lower()
