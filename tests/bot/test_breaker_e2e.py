"""Adversarial end-to-end checks (odd admin input, tampered buttons) found by the breaker review."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.__main__ import EXIT_CONFIG, EXIT_STARTUP, main
from db.models import Tutorial
from db.repositories.catalog import add_tutorial
from tests.bot.conftest import ROOT, Spotter, image_bytes
from tests.fakes.telegram_server import Call, FakeTelegramServer


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


async def test_addvideo_refuses_a_title_longer_than_the_catalog_stores(spotter: Spotter) -> None:
    title = "Box jump " + "very " * 780  # 4000 characters fit in one Telegram message
    spotter.server.send_text(spotter.admin, f"/addvideo plyo box https://youtu.be/AAAAAAAAAAA {title}")
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id)
    assert "not added" in reply.text.lower() and "300" in reply.text
    assert (
        spotter.query(lambda s: s.scalar(select(Tutorial).where(Tutorial.youtube_id == "AAAAAAAAAAA")))
        is None
    )


async def test_very_long_titles_in_the_catalog_do_not_break_replies(spotter: Spotter) -> None:
    """Rows edited in the database (or a long curator note) must not push the answer past 4096 characters."""
    long = "Box jump " + "very " * 780

    def add(session: Session) -> None:
        for video in ("AAAAAAAAAAA", "BBBBBBBBBBB"):
            add_tutorial(
                session,
                equipment_slug="plyo_box",
                youtube_id=video,
                added_by_telegram_id=None,
                title=long,
                channel=long,
            )

    spotter.query(add)
    spotter.fake.answer("plyo_box")
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes())
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id)
    assert "plyo box" in reply.text.lower() and "Box jumps, safely" in reply.text
    assert "Box jump very" in reply.text and "…" in reply.text
    spotter.server.send_text(spotter.admin, "/videos plyo box")
    listing = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id)
    assert "Box jumps, safely" in listing.text and "went wrong" not in listing.text.lower()


@pytest.mark.parametrize("button", ["Cancel", "Yes"])
async def test_a_double_tap_on_a_forget_button_is_harmless(spotter: Spotter, button: str) -> None:
    server = spotter.server
    user = server.new_user("Ida")
    server.send_photo(user, image_bytes())
    await server.wait_for_text(user.id, "leg press")
    server.send_text(user, "/forget")
    ask = await server.wait_for_text(user.id, "are you sure")
    server.press_button(user, ask.result, button)  # both presses arrive before the first edit
    server.press_button(user, ask.result, button)
    first = await server.wait_for(
        "editMessageText", lambda c: c.params["message_id"] == ask.result["message_id"]
    )
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=1.0)
    final = server.message(user.id, ask.result["message_id"])
    assert final["text"] == first.text  # the second press must not say "deleted 0 photos"
    assert not final.get("reply_markup")
    if button == "Yes":
        assert "deleted 1 photo" in final["text"]


async def test_forget_with_nothing_stored_says_so_and_removes_the_buttons(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user("New")
    server.send_text(user, "/forget")
    ask = await server.wait_for_text(user.id, "are you sure")
    query_id = server.press_button(user, ask.result, "Yes")
    answer = await server.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    assert "nothing" in answer.params["text"].lower()
    await server.wait_for(
        "editMessageReplyMarkup", lambda c: c.params["message_id"] == ask.result["message_id"]
    )
    assert not server.message(user.id, ask.result["message_id"]).get("reply_markup")


def _startup_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, base_url: str, token: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("TELEGRAM_BASE_URL", base_url)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MODELS_DIR", str(ROOT / "models"))


def test_python_m_bot_with_the_bot_api_unreachable_stops_in_one_line(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "123456:ABCdef_ghi-jkl"
    _startup_env(monkeypatch, tmp_path, db_url, "http://127.0.0.1:1/bot", token)
    assert main([]) == EXIT_STARTUP
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("spotter: cannot start: the Bot API at http://127.0.0.1:1/bot failed")


async def test_python_m_bot_with_a_rejected_token_stops_in_one_line_without_printing_it(
    tmp_path: Path, db_url: str, server: FakeTelegramServer
) -> None:
    token = "123456:REVOKEDrevoked_token"
    assert token != server.token
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": token,
        "TELEGRAM_BASE_URL": server.base_url,
        "DATABASE_URL": db_url,
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(ROOT / "models"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    err = stderr.decode(errors="replace")
    assert process.returncode == EXIT_CONFIG, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("spotter: configuration error: the Bot API rejected")
    assert "REVOKED" not in err  # neither our message nor PTB's logged traceback shows the token


def _panorama_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2100, 100), (90, 90, 90)).save(buffer, "PNG")  # aspect ratio 21 > sendPhoto's 20
    return buffer.getvalue()


async def test_review_shows_a_correction_whose_photo_telegram_refuses_as_a_photo(spotter: Spotter) -> None:
    """A panorama sent as a file is classified and corrected; /review must still show it (with its buttons)
    although sendPhoto refuses it, or every later /review would fail on this oldest pending correction."""
    server, admin = spotter.server, spotter.admin
    user = server.new_user("Pano")
    spotter.fake.answer("leg_press")
    server.send_document(user, _panorama_png(), file_name="pano.png")
    reply = await server.wait_for_text(user.id, "leg press")
    server.press_button(user, reply.result, "Wrong")
    await server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    server.press_button(user, reply.result, "Plyo box")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    server.send_text(admin, "/review")

    async def review_item() -> Call:
        for _ in range(100):
            for call in server.calls():
                if (
                    call.error is None
                    and call.method in ("sendPhoto", "sendDocument", "sendMessage")
                    and call.params.get("chat_id") == admin.id
                    and "Approve" in " ".join(call.button_texts())
                ):
                    return call
            await asyncio.sleep(0.05)
        raise AssertionError(f"no review item shown; calls: {server.describe()}")

    shown = await review_item()
    assert "Plyo box" in shown.text
    server.press_button(admin, shown.result, "Approve")
    edited = await server.wait_for("editMessageCaption", lambda c: c.params["chat_id"] == admin.id)
    assert "Approved" in edited.text and edited.buttons == []
    await server.wait_for_text(admin.id, "No corrections are waiting")
