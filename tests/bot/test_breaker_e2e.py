"""Adversarial end-to-end checks (odd admin input, tampered buttons) found by the breaker review."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import EXIT_STARTUP, main
from tests.bot.conftest import Spotter


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("²", "not removed"),  # str.isdigit() is True, int() refuses it
        ("#" + "9" * 25, "there is no tutorial"),  # does not fit a database integer
        ("٣", "not removed"),  # a non-ASCII digit is not a tutorial id
    ],
)
async def test_removevideo_with_odd_numbers_gets_a_clear_answer(
    spotter: Spotter, reference: str, expected: str
) -> None:
    spotter.server.send_text(spotter.admin, f"/removevideo {reference}")
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id)
    assert expected in reply.text.lower()


@pytest.mark.parametrize("database", ["foo://x/y", "notaurl", "mysql://u:hunter2@db.example/x", "garbage"])
def test_python_m_bot_reports_an_unusable_database_in_one_line(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if database == "garbage":
        (tmp_path / "garbage.sqlite3").write_text("not a database" * 100)
        database = f"sqlite:///{tmp_path / 'garbage.sqlite3'}"
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:ABCdef_ghi-jkl")
    monkeypatch.setenv("DATABASE_URL", database)
    assert main([]) == EXIT_STARTUP
    err = capsys.readouterr().err.strip()
    assert err.startswith("spotter: cannot start: ") and len(err.splitlines()) == 1
    assert "hunter2" not in err
