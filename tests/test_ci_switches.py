"""The CI switches: a missing resource skips locally and fails where CI requires it (tests/ci_switches.py)."""

from __future__ import annotations

import pytest
from ci_switches import REQUIRE_BROWSER, REQUIRE_ONNX, REQUIRE_REALDATA, required, unavailable


@pytest.mark.parametrize("switch", [REQUIRE_REALDATA, REQUIRE_BROWSER, REQUIRE_ONNX])
def test_absence_skips_without_the_switch_and_fails_with_it(switch, monkeypatch):
    monkeypatch.delenv(switch, raising=False)
    assert not required(switch)
    with pytest.raises(pytest.skip.Exception, match="archive not found"):
        unavailable("archive not found", switch)
    for value in ("0", "", "no"):
        monkeypatch.setenv(switch, value)
        with pytest.raises(pytest.skip.Exception):
            unavailable("archive not found", switch)
    for value in ("1", "true", "YES"):
        monkeypatch.setenv(switch, value)
        assert required(switch)
        with pytest.raises(pytest.fail.Exception, match=f"archive not found .*{switch} is set"):
            unavailable("archive not found", switch)
