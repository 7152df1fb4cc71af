"""Exit codes of every stage entry point: 0 ok, 1 some inputs failed (the rest done), 2 could not run."""

from __future__ import annotations

import pytest

from mri_seg.config import ConfigError
from mri_seg.pipelines._cli import StageError, run_main


def _exit_code(main) -> int:
    with pytest.raises(SystemExit) as info:
        run_main(main, [])
    return info.value.code


@pytest.mark.parametrize("returned", [0, 1])
def test_a_stage_s_own_code_is_the_exit_code(returned):
    assert _exit_code(lambda argv: returned) == returned


@pytest.mark.parametrize(
    "error", [StageError("bad run dir"), ConfigError("unknown config key 'x'"), FileNotFoundError("no such file")]
)
def test_expected_errors_exit_2_with_one_line(error, capsys):
    def main(argv):
        raise error

    assert _exit_code(main) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def test_interrupt_exits_130(capsys):
    def main(argv):
        raise KeyboardInterrupt

    assert _exit_code(main) == 130 and capsys.readouterr().err == "interrupted\n"


def test_an_unexpected_error_is_not_turned_into_an_exit_code():
    def main(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_main(main, [])
