"""End-to-end: ``python -m bot --webhook`` options on PTB's real webhook server. Requests without the right
X-Telegram-Bot-Api-Secret-Token header are refused (403); with it, the update is processed and answered
through the fake Bot API server. (Written by the bot helper: it tests bot/__main__.webhook_options.)"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from bot.__main__ import ALLOWED_UPDATES, webhook_options
from bot.app import build_application
from tests.bot.conftest import make_settings
from tests.fakes.classifier import FakeClassifier
from tests.fakes.telegram_server import FakeTelegramServer

SECRET = "s3cret_Token-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def help_update(user_id: int, update_id: int) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 0,
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Wren"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }


async def test_webhook_refuses_requests_without_the_secret_token(
    server: FakeTelegramServer, session_factory: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = make_settings(
        server,
        tmp_path,
        db_url,
        set(),
        webhook_url="https://spotter.example.org",
        webhook_secret_token=SECRET,
        webhook_listen="127.0.0.1",
        webhook_port=port,
        webhook_path="/telegram/",
    )
    options = webhook_options(settings)
    classifier = FakeClassifier()
    app = build_application(settings, classifier=classifier, session_factory=session_factory)
    await app.initialize()
    assert app.post_init is not None and app.updater is not None
    await app.post_init(app)
    await app.updater.start_webhook(
        listen=options["listen"],
        port=options["port"],
        url_path=options["url_path"],
        webhook_url=options["webhook_url"],
        secret_token=options["secret_token"],
        allowed_updates=options["allowed_updates"],
    )
    await app.start()
    try:
        (registered,) = server.calls("setWebhook")
        assert registered.params["url"] == "https://spotter.example.org/telegram"
        assert registered.params["secret_token"] == SECRET
        assert list(registered.params["allowed_updates"]) == ALLOWED_UPDATES

        user = server.new_user("Wren")
        url = f"http://127.0.0.1:{port}/telegram"
        async with httpx.AsyncClient(timeout=5) as client:
            missing = await client.post(url, json=help_update(user.id, 1))
            wrong = await client.post(
                url, json=help_update(user.id, 2), headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}
            )
            await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=0.3)
            right = await client.post(
                url, json=help_update(user.id, 3), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
        assert (missing.status_code, wrong.status_code, right.status_code) == (403, 403, 200)
        await server.wait_for_text(user.id, "/equipment")
        assert len(server.sent_to(user.id)) == 1  # only the authorised update was processed
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
        await classifier.close()
