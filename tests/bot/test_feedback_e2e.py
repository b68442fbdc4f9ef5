"""End-to-end: the Correct / Wrong buttons, the picker, corrections in the database, restarts, and callback
data that is someone else's, tampered with or stale."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from db.models import NOT_EQUIPMENT, Correction, ModelVersion
from tests.bot.conftest import Spotter, image_bytes
from tests.fakes.classifier import LABELS
from tests.fakes.telegram_server import Call, FakeUser


async def answered_photo(spotter: Spotter, user: FakeUser, contains: str = "leg press") -> Call:
    spotter.server.send_photo(user, image_bytes())
    return await spotter.server.wait_for_text(user.id, contains)


async def callback_answer(spotter: Spotter, query_id: str) -> Call:
    return await spotter.server.wait_for(
        "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
    )


def edits_of(spotter: Spotter, message: dict[str, Any]) -> list[Call]:
    return [
        call
        for call in spotter.server.calls()
        if call.method.startswith("editMessage") and call.params.get("message_id") == message["message_id"]
    ]


async def test_correct_confirms_and_edits_the_message(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    reply = await answered_photo(spotter, user)
    query_id = spotter.server.press_button(user, reply.result, "Correct")
    answer = await callback_answer(spotter, query_id)
    assert "thank" in str(answer.params.get("text", "")).lower()
    edited = await spotter.server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    assert "thank" in edited.text.lower() and edited.buttons == []
    assert "leg press" in edited.text.lower()  # the answer itself is kept
    (row,) = spotter.predictions(user.id)
    assert row.feedback == "confirmed" and spotter.corrections() == []


async def test_wrong_opens_the_picker_and_the_choice_is_stored(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    reply = await answered_photo(spotter, user)
    server.press_button(user, reply.result, "Wrong")
    picker = await server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    names = picker.button_texts()
    for slug in LABELS:  # the closed set of known equipment types...
        assert slug.replace("_", " ").capitalize() in names
    assert any("something else" in name.lower() for name in names)  # ...plus "Something else"

    server.press_button(user, reply.result, "Plyo box")
    edited = await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    assert "thank" in edited.text.lower() and "plyo box" in edited.text.lower()
    assert edited.buttons == []
    # The tutorial links of the answer survive the edit (the bot re-sends its formatted text).
    assert any(e["type"] == "text_link" for e in edited.result.get("entities", []))

    (row,) = spotter.predictions(user.id)
    (correction,) = spotter.corrections()
    assert (correction.prediction_id, correction.label) == (row.id, "plyo_box")
    assert row.feedback == "corrected"


async def test_back_closes_the_picker(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    reply = await answered_photo(spotter, user)
    spotter.server.press_button(user, reply.result, "Wrong")
    await spotter.server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    spotter.server.press_button(user, reply.result, "Back")
    restored = await spotter.server.wait_for(
        "editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id
    )
    assert restored.button_texts() == reply.button_texts()
    assert spotter.corrections() == []


async def test_something_else_is_stored_as_not_equipment(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    reply = await answered_photo(spotter, user)
    spotter.server.press_button(user, reply.result, "Wrong")
    await spotter.server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    spotter.server.press_button(user, reply.result, "Something else")
    await spotter.server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    (correction,) = spotter.corrections()
    assert correction.label == NOT_EQUIPMENT


async def test_buttons_work_after_a_restart(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    reply = await answered_photo(spotter, user)
    await spotter.restart()
    server.press_button(user, reply.result, "Wrong")
    await server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    await spotter.restart()
    server.press_button(user, reply.result, "Smith machine")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    (correction,) = spotter.corrections()
    assert correction.label == "smith_machine"
    print(f"\nrestart timings: {spotter.timings}")


async def test_another_users_press_is_refused_and_changes_nothing(spotter: Spotter) -> None:
    server = spotter.server
    owner, stranger = server.new_user("Owner"), server.new_user("Stranger")
    reply = await answered_photo(spotter, owner)
    # A forwarded/shared message: the stranger presses the owner's buttons.
    for button in ("Correct", "Wrong"):
        query_id = server.press_button(stranger, reply.result, button)
        answer = await callback_answer(spotter, query_id)
        assert answer.params.get("text")  # a polite explanation
    data = f"pk:{spotter.predictions(owner.id)[0].id}:bench_press"
    query_id = server.send_callback(stranger, reply.result, data)
    await callback_answer(spotter, query_id)
    await server.assert_no_call("editMessageText", within=0.3)
    assert edits_of(spotter, reply.result) == []
    (row,) = spotter.predictions(owner.id)
    assert row.feedback is None and spotter.corrections() == []


@pytest.mark.parametrize(
    "make_data",
    [
        lambda pid: f"pk:{pid}:../../etc/passwd",  # a label that is a path
        lambda pid: f"pk:{pid}:not_a_label",  # well-formed, but not in the closed set
        lambda pid: f"pk:{pid}:leg_press:extra",
        lambda pid: f"ok:{pid + 1000}",  # a prediction that does not exist
        lambda pid: f"ok:-{pid}",
        lambda pid: "ok:",
        lambda pid: "fg:1:y",  # someone else's /forget confirmation
        lambda pid: "zz:1",  # no handler's pattern
        lambda pid: "x" * 64,
    ],
    ids=[
        "path",
        "unknown-label",
        "extra-field",
        "missing-id",
        "negative",
        "empty-id",
        "forget",
        "unknown",
        "junk",
    ],
)
async def test_tampered_callback_data_gets_a_polite_answer_and_changes_nothing(
    spotter: Spotter, make_data: Any
) -> None:
    server = spotter.server
    user = server.new_user()
    reply = await answered_photo(spotter, user)
    (row,) = spotter.predictions(user.id)
    query_id = server.send_callback(user, reply.result, make_data(row.id))
    answer = await callback_answer(spotter, query_id)
    assert answer.ok
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id, within=0.2)
    assert edits_of(spotter, reply.result) == []
    (after,) = spotter.predictions(user.id)
    assert after.feedback is None and spotter.corrections() == []


async def test_stale_buttons_after_forget_get_a_polite_answer(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    reply = await answered_photo(spotter, user)
    server.send_text(user, "/forget")
    ask = await server.wait_for_text(user.id, "are you sure")
    server.press_button(user, ask.result, "Yes")
    await server.wait_for("editMessageText", lambda c: c.params["message_id"] == ask.result["message_id"])
    query_id = server.press_button(user, reply.result, "Wrong")
    answer = await callback_answer(spotter, query_id)
    assert answer.params.get("text")
    assert edits_of(spotter, reply.result) == [] and spotter.predictions(user.id) == []


async def test_changing_her_mind_replaces_the_choice_until_it_was_trained_on(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    reply = await answered_photo(spotter, user)
    (row,) = spotter.predictions(user.id)
    server.send_callback(user, reply.result, f"pk:{row.id}:power_rack")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    # An old copy of the keyboard (e.g. on another device) sends a different choice: it replaces the
    # pending correction (db.repositories.corrections.record_correction's documented rule), no duplicate row.
    await callback_answer(spotter, server.send_callback(user, reply.result, f"pk:{row.id}:smith_machine"))
    (correction,) = spotter.corrections()
    assert correction.label == "smith_machine"

    # Once a model version was trained on it, the choice is locked: a polite answer, nothing changes.
    def mark_trained(session: Session) -> None:
        version = ModelVersion(version="v0002")
        session.add(version)
        session.flush()
        stored = session.get(Correction, correction.id)
        assert stored is not None
        stored.trained_in_version_id = version.id

    spotter.query(mark_trained)
    query_id = server.send_callback(user, reply.result, f"pk:{row.id}:treadmill")
    answer = await callback_answer(spotter, query_id)
    assert answer.params.get("text")
    (after,) = spotter.corrections()
    assert after.label == "smith_machine"
