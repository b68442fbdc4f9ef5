"""End-to-end: every input that is not a photo gets a short friendly explanation and nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.bot.conftest import Spotter
from tests.fakes.telegram_server import FakeTelegramServer, FakeUser

Send = Callable[[FakeTelegramServer, FakeUser], Any]

INPUTS: dict[str, tuple[Send, str]] = {
    "sticker": (lambda s, u: s.send_sticker(u), "photo"),
    "animation": (lambda s, u: s.send_animation(u), "photo"),
    "video": (lambda s, u: s.send_video(u), "photo"),
    "voice": (lambda s, u: s.send_voice(u), "photo"),
    "pdf": (
        lambda s, u: s.send_document(u, b"%PDF-1.7\n", file_name="plan.pdf", mime_type="application/pdf"),
        "photo",
    ),
    "zip": (
        lambda s, u: s.send_document(u, b"PK\x03\x04", file_name="a.zip", mime_type="application/zip"),
        "photo",
    ),
    "text": (lambda s, u: s.send_text(u, "hello, what is this machine?"), "photo"),
    "location": (lambda s, u: s.send_message(u, location={"latitude": 52.5, "longitude": 13.4}), "photo"),
}


@pytest.mark.parametrize("kind", sorted(INPUTS))
async def test_non_photo_input_gets_a_friendly_explanation(spotter: Spotter, kind: str) -> None:
    send, expected = INPUTS[kind]
    user = spotter.server.new_user()
    send(spotter.server, user)
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id)
    assert expected in reply.text.lower()
    assert "went wrong" not in reply.text.lower() and len(reply.text) < 300
    assert spotter.server.calls("getFile") == [] and spotter.server.downloads == []
    assert spotter.predictions(user.id) == [] and spotter.fake.seen == []
    await spotter.server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=0.2)
