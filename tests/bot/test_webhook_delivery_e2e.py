"""End-to-end: webhook mode with Telegram's side played by the fake server. The bot serves PTB's webhook
server with the options ``python -m bot --webhook`` uses (`bot.__main__.webhook_options`) and registers it
with setWebhook; the fake server then POSTs every update there with the secret-token header, like Telegram.
(Forged requests without the header are covered in test_webhook_e2e.py.)"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.__main__ import webhook_options
from bot.app import build_application
from tests.bot.conftest import AnyApplication, image_bytes, make_settings
from tests.fakes.classifier import FakeClassifier
from tests.fakes.telegram_server import FakeTelegramServer

SECRET = "s3cret-Token_for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def webhook_bot(
    server: FakeTelegramServer,
    session_factory: sessionmaker[Session],
    fake_classifier: FakeClassifier,
    db_url: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[AnyApplication, dict[str, Any]]]:
    port = free_port()
    admin = server.new_user("Admin")
    settings = make_settings(
        server,
        tmp_path,
        db_url,
        {admin.id},
        webhook_url=f"http://127.0.0.1:{port}",
        webhook_listen="127.0.0.1",
        webhook_port=port,
        webhook_path="telegram",
        webhook_secret_token=SECRET,
    )
    options = webhook_options(settings)
    app = build_application(settings, classifier=fake_classifier, session_factory=session_factory)
    await app.initialize()
    if app.post_init is not None:
        await app.post_init(app)
    assert app.updater is not None
    await app.updater.start_webhook(**options)  # what run_webhook does, without owning the event loop
    await app.start()
    try:
        yield app, options
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
        await fake_classifier.close()


async def test_updates_pushed_by_telegram_are_answered_in_webhook_mode(
    server: FakeTelegramServer, webhook_bot: tuple[AnyApplication, dict[str, Any]]
) -> None:
    _app, options = webhook_bot
    (set_webhook,) = server.calls("setWebhook")
    assert set_webhook.params["url"] == options["webhook_url"]
    assert set_webhook.params["secret_token"] == SECRET
    assert server.webhook_secret == SECRET and server.calls("getUpdates") == []

    user = server.new_user()
    server.send_text(user, "/help")
    await server.wait_for_text(user.id, "/equipment")
    # A photo, its download from the file server, and a button press, all pushed through the webhook.
    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, "leg press")
    server.press_button(user, reply.result, "Correct")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    assert [status for _, status in server.webhook_deliveries] == [200, 200, 200]
