"""Self-test of the fake Bot API server: the real PTB ``Bot``/``Application`` talk to it over loopback."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, RetryAfter, TimedOut
from telegram.ext import Application, ApplicationBuilder, CommandHandler, ContextTypes

from tests.fakes.telegram_server import BOT_USERNAME, FakeTelegramServer, plain_text


def jpeg(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as fake:
        yield fake


@pytest.fixture
async def bot(server: FakeTelegramServer) -> AsyncIterator[Bot]:
    async with Bot(server.token, base_url=server.base_url, base_file_url=server.base_file_url) as real_bot:
        yield real_bot


async def test_get_me_and_send_message_with_html_and_buttons(server: FakeTelegramServer, bot: Bot) -> None:
    assert bot.username == BOT_USERNAME
    user = server.new_user("Ada")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Correct", callback_data="ok:1")]])
    sent = await bot.send_message(
        user.id, "<b>Leg press</b> &amp; friends", parse_mode="HTML", reply_markup=markup
    )
    assert sent.text == "Leg press & friends"
    assert sent.reply_markup is not None
    call = await server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id)
    assert call.text == "Leg press & friends"
    assert call.button_texts() == ["Correct"]


async def test_telegram_checks_are_enforced(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()
    with pytest.raises(BadRequest, match="parse entities"):
        await bot.send_message(user.id, "a <b>bold claim", parse_mode="HTML")
    with pytest.raises(BadRequest, match="parse entities"):
        await bot.send_message(user.id, "tips & tricks", parse_mode="HTML")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="y" * 65)]])
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(user.id, "hi", reply_markup=too_long)
    with pytest.raises(BadRequest, match="Chat not found"):
        await bot.send_message(999_999, "hi")
    sent = await bot.send_message(user.id, "same")
    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text("same", chat_id=user.id, message_id=sent.message_id)
    edited = await bot.edit_message_text("changed", chat_id=user.id, message_id=sent.message_id)
    assert not isinstance(edited, bool)
    assert server.message(user.id, sent.message_id)["text"] == "changed" == edited.text


async def test_photo_sizes_get_file_and_download(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()
    message = server.send_photo(user, jpeg(1600, 1200))
    sizes = message["photo"]
    assert [max(size["width"], size["height"]) for size in sizes] == [90, 320, 800, 1280]
    telegram_file = await bot.get_file(sizes[-1]["file_id"])
    assert telegram_file.file_path is not None and telegram_file.file_path.startswith(server.base_file_url)
    data = await telegram_file.download_as_bytearray()
    with Image.open(io.BytesIO(bytes(data))) as image:
        assert image.size == (1280, 960)


async def test_long_poll_returns_early_and_updates_parse(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()

    async def later() -> None:
        await asyncio.sleep(0.2)
        server.send_text(user, "/start hello")
        server.send_album(user, [jpeg(400, 300), jpeg(300, 400)])

    started = time.monotonic()
    task = asyncio.create_task(later())
    updates = await bot.get_updates(timeout=5)
    await task
    assert time.monotonic() - started < 2
    assert updates[0].message is not None and updates[0].message.text == "/start hello"
    assert updates[0].message.entities[0].type == "bot_command"
    # Not confirmed yet: the same updates come again, then disappear once confirmed by offset.
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again][:1] == [updates[0].update_id]
    assert len(again) == 3
    album = [u.message for u in again[1:]]
    assert all(m is not None and m.media_group_id and m.photo for m in album)
    assert await bot.get_updates(offset=again[-1].update_id + 1, timeout=0) == ()
    assert server.pending_updates() == 0


async def test_callback_query_answered_once(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Wrong", callback_data="no:7")]])
    sent = await bot.send_message(user.id, "Leg press", reply_markup=markup)
    server.press_button(user, sent.to_dict(), "Wrong")
    (update,) = await bot.get_updates(timeout=1)
    query = update.callback_query
    assert query is not None and query.data == "no:7" and query.from_user.id == user.id
    assert query.message is not None and query.message.message_id == sent.message_id
    assert await query.answer("Thanks")
    with pytest.raises(BadRequest, match="too old"):
        await query.answer("again")


async def test_fault_injection(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()
    server.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as retry:
        await bot.send_message(user.id, "hi")
    assert "Retry in 3" in str(retry.value)
    assert (await bot.send_message(user.id, "hi")).text == "hi"

    server.conflict_next_get_updates()
    with pytest.raises(Conflict):
        await bot.get_updates(timeout=0)

    big = server.send_document(
        user, b"x", file_name="huge.jpg", mime_type="image/jpeg", size=25 * 1024 * 1024
    )
    with pytest.raises(BadRequest, match="too big"):
        await bot.get_file(big["document"]["file_id"])

    photo = server.send_photo(user, jpeg(300, 300))
    telegram_file = await bot.get_file(photo["photo"][-1]["file_id"])
    server.stall_downloads(times=1)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        await telegram_file.download_as_bytearray(read_timeout=0.5)
    assert time.monotonic() - started < 3
    assert len(await telegram_file.download_as_bytearray(read_timeout=2)) > 0
    assert len(server.downloads) == 2


async def test_application_polls_replies_and_stops_quickly(server: FakeTelegramServer) -> None:
    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"echo {' '.join(context.args or [])}")

    app: Application = (
        ApplicationBuilder()
        .token(server.token)
        .base_url(server.base_url)
        .base_file_url(server.base_file_url)
        .build()
    )
    app.add_handler(CommandHandler("echo", echo))
    user = server.new_user()
    async with app:
        await app.updater.start_polling(timeout=1, poll_interval=0)  # type: ignore[union-attr]
        await app.start()
        server.send_text(user, "/echo one two")
        call = await server.wait_for_text(user.id, "echo one two")
        assert call.ok and call.params["chat_id"] == user.id
        started = time.monotonic()
        await app.updater.stop()  # type: ignore[union-attr]
        await app.stop()
    assert time.monotonic() - started < 2
    assert server.pending_updates() == 0


async def test_html_becomes_entities_that_ptb_renders_back(server: FakeTelegramServer, bot: Bot) -> None:
    user = server.new_user()
    html_text = '💪 <b>Leg press</b>: <a href="https://www.youtube.com/watch?v=a&amp;t=1">Ana &lt;3</a>'
    sent = await bot.send_message(user.id, html_text, parse_mode="HTML")
    assert sent.text == "💪 Leg press: Ana <3"
    assert [entity.type for entity in sent.entities] == ["bold", "text_link"]
    assert sent.entities[0].offset == 3  # UTF-16: the emoji counts twice, as on Telegram
    assert sent.text_html == html_text.replace("&amp;t=", "&t=")  # PTB leaves "&" in href unescaped


def test_plain_text() -> None:
    assert plain_text('<a href="https://x.y/?a=1&amp;b=2">Video</a> &lt;3', "HTML") == "Video <3"
    assert plain_text(r"*Leg press* \- 93\%", "MarkdownV2") == "Leg press - 93%"
