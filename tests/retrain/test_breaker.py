"""Regression tests from the breaker review: a malformed setting is one line, not a traceback."""

from __future__ import annotations

import pytest

from classifier.retrain import main


@pytest.mark.parametrize(
    ("name", "value"),
    [("ADMIN_USER_IDS", "abc"), ("FEEDBACK_HOLDOUT_PERCENT", "500"), ("NEW_CLASS_MIN_IMAGES", "x")],
)
def test_a_malformed_setting_is_one_line_naming_it(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(name, value)
    assert main(["--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert name in err and len(err.splitlines()) == 1 and "Traceback" not in err
