"""End-to-end fault injection: 429 flood limits, 409 Conflict, "file is too big" from getFile, stalled
downloads, and an unexpected error inside a handler (user message + log traceback + rate-limited admin
notice, nothing stored is lost)."""

from __future__ import annotations

import logging
import time

import pytest

from tests.bot.conftest import DOWNLOAD_TIMEOUT, Spotter, image_bytes


async def test_429_too_many_requests_is_retried_after_retry_after(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    server.fail_next("sendMessage", 429, retry_after=1)
    server.send_text(user, "/help")
    reply = await server.wait_for_text(user.id, "/equipment", timeout=8)
    attempts = [c for c in server.calls("sendMessage") if c.params.get("chat_id") == user.id]
    assert [c.status for c in attempts] == [429, 200]
    waited = reply.at - attempts[0].at
    print(f"\n429 retry_after=1 -> answered {waited:.2f} s after the refused attempt")
    assert 1.0 <= waited < 4.0


async def test_409_conflict_is_logged_clearly_and_polling_goes_on(
    spotter: Spotter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = spotter.server
    server.conflict_next_get_updates(times=2)
    user = server.new_user()
    server.send_text(user, "/help")
    await server.wait_for_text(user.id, "/equipment", timeout=10)
    conflicts = [c for c in server.calls("getUpdates") if c.status == 409]
    assert len(conflicts) == 2
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("409" in m and "another instance" in m for m in messages), messages
    assert not any(r.exc_info for r in caplog.records if "409" in r.getMessage())  # no traceback storm


async def test_get_file_file_is_too_big_is_explained(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    server.fail_next("getFile", 400, "Bad Request: file is too big")
    server.send_document(user, image_bytes(), file_name="big.jpg", mime_type="image/jpeg")
    reply = await server.wait_for_text(user.id, "20 MB")
    assert "big" in reply.text.lower()
    assert server.downloads == [] and spotter.predictions(user.id) == []


async def test_stalled_download_times_out_and_the_retry_succeeds(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    server.stall_downloads(times=1)
    sent_at = time.monotonic()
    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, "leg press", timeout=6)
    elapsed = reply.at - sent_at
    assert len(server.downloads) == 2 and server.downloads[0][0] == server.downloads[1][0]
    gap = server.downloads[1][1] - server.downloads[0][1]
    print(f"\nstalled download: retry after {gap:.2f} s, answered after {elapsed:.2f} s")
    assert DOWNLOAD_TIMEOUT * 0.9 <= gap < DOWNLOAD_TIMEOUT + 2
    assert len(spotter.predictions(user.id)) == 1


async def test_download_stalled_twice_tells_the_user(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    server.stall_downloads(times=2)
    sent_at = time.monotonic()
    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, "download", timeout=8)
    assert "try" in reply.text.lower()
    assert len(server.downloads) == 2  # one retry, not more
    assert reply.at - sent_at < 2 * DOWNLOAD_TIMEOUT + 2
    assert spotter.predictions(user.id) == []


async def test_unexpected_error_tells_user_logs_traceback_and_notifies_admins_once(
    spotter: Spotter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server, admin = spotter.server, spotter.admin
    user = server.new_user()
    server.send_photo(user, image_bytes())
    await server.wait_for_text(user.id, "leg press")

    spotter.fake.fail_with = RuntimeError("model exploded")
    server.send_photo(user, image_bytes((10, 10, 200)))
    told = await server.wait_for_text(user.id, "went wrong")
    assert "model exploded" not in told.text and "Traceback" not in told.text
    notice = await server.wait_for_text(admin.id, "RuntimeError")
    assert "model exploded" in notice.text
    assert any(r.exc_info and "model exploded" in str(r.exc_info[1]) for r in caplog.records)

    # A second failure: the user is told again, admins are not notified again (rate limit).
    spotter.fake.fail_with = RuntimeError("model exploded again")
    server.send_photo(user, image_bytes((10, 200, 10)))
    await server.wait_for_text(user.id, "went wrong")
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == admin.id, within=0.5)

    # What was stored before is intact, and the bot still works.
    assert [row.label for row in spotter.predictions(user.id)] == ["leg_press"]
    server.send_photo(user, image_bytes((200, 200, 10)))
    await server.wait_for_text(user.id, "leg press")
    assert len(spotter.predictions(user.id)) == 2


@pytest.mark.parametrize("settings_overrides", [{"classify_timeout_seconds": 0.5}])
async def test_a_hung_classification_times_out_and_the_user_is_told(
    spotter: Spotter, settings_overrides: dict[str, float]
) -> None:
    server = spotter.server
    spotter.fake.delay = 2.0
    user = server.new_user()
    sent_at = time.monotonic()
    server.send_photo(user, image_bytes())
    told = await server.wait_for_text(user.id, "went wrong", timeout=5)
    assert told.at - sent_at < 1.5  # the classify timeout, not the model's 2 s
    await server.wait_for_text(spotter.admin.id, "Timeout")
    assert spotter.predictions(user.id) == []


async def test_model_not_ready_gets_a_clear_message(spotter: Spotter) -> None:
    from classifier.serving import ClassifierNotReadyError

    spotter.fake.fail_with = ClassifierNotReadyError("classifier service not started")
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes())
    told = await spotter.server.wait_for_text(user.id, "model")
    assert "try again" in told.text.lower() and spotter.predictions(user.id) == []
