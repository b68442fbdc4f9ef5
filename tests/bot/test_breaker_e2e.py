"""Adversarial end-to-end checks (odd admin input, tampered buttons) found by the breaker review."""

from __future__ import annotations

import pytest

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
