"""End-to-end: user commands and command menus, through the real PTB stack and the fake Bot API server."""

from __future__ import annotations

from db import repositories as repo
from db.session import session_scope
from tests.bot.conftest import CATALOG_TUTORIALS, Spotter, file_exists, image_bytes
from tests.fakes.classifier import LABELS


async def test_command_menus_are_set_at_startup(spotter: Spotter) -> None:
    server = spotter.server
    user_menu = [command["command"] for command in server.commands()]
    assert user_menu[:4] == ["start", "help", "equipment", "forget"]
    admin_menu = [c["command"] for c in server.commands({"type": "chat", "chat_id": spotter.admin.id})]
    assert {"start", "help", "equipment", "forget"} <= set(admin_menu)
    assert {"addvideo", "removevideo", "videos", "stats", "model"} <= set(admin_menu)
    assert not {"addvideo", "stats"} & set(user_menu)


async def test_the_serving_model_is_recorded_as_champion_at_startup(spotter: Spotter) -> None:
    with session_scope(spotter.session_factory) as session:
        assert repo.current_champion(session) == spotter.classifier.model_version == "v-fake"


async def test_start_explains_the_bot_and_how_photos_are_kept(spotter: Spotter) -> None:
    user = spotter.server.new_user("Mia")
    spotter.server.send_text(user, "/start")
    call = await spotter.server.wait_for_text(user.id, "Spotter")
    text = call.text.lower()
    assert "mia" in text and "photo" in text and "/forget" in text and "delete" in text


async def test_help_differs_for_admins(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    server.send_text(user, "/help")
    server.send_text(spotter.admin, "/help")
    for_user = await server.wait_for_text(user.id, "/equipment")
    for_admin = await server.wait_for_text(spotter.admin.id, "/equipment")
    assert "/addvideo" not in for_user.text
    assert "/addvideo" in for_admin.text and "/stats" in for_admin.text


async def test_equipment_lists_every_type_with_tutorial_counts(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    spotter.server.send_text(user, "/equipment")
    call = await spotter.server.wait_for_text(user.id, "leg press")
    lines = call.text.splitlines()
    for slug in LABELS:
        assert any(slug.replace("_", " ") in line.lower() for line in lines), slug
    leg_press = next(line for line in lines if "leg press" in line.lower())
    assert str(len(CATALOG_TUTORIALS["leg_press"])) in leg_press
    treadmill = next(line for line in lines if "treadmill" in line.lower())
    assert "no tutorials" in treadmill.lower() or " 0 " in f" {treadmill} "


async def test_unknown_command_gets_a_hint(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    spotter.server.send_text(user, "/dance")
    await spotter.server.wait_for_text(user.id, "/help")


async def test_forget_asks_first_then_deletes_only_this_users_data(spotter: Spotter) -> None:
    server = spotter.server
    user, other = server.new_user("Ida"), server.new_user("Eve")
    for person, color in ((user, (200, 40, 40)), (other, (40, 200, 40))):
        server.send_photo(person, image_bytes(color))
        await server.wait_for_text(person.id, "leg press")
    assert len(spotter.predictions(user.id)) == 1 and len(spotter.predictions(other.id)) == 1
    stored = spotter.predictions(user.id)[0].image_path
    assert file_exists(stored)

    # Cancel keeps everything.
    server.send_text(user, "/forget")
    ask = await server.wait_for_text(user.id, "are you sure")
    server.press_button(user, ask.result, "Cancel")
    await server.wait_for("editMessageText", lambda c: c.params["message_id"] == ask.result["message_id"])
    assert len(spotter.predictions(user.id)) == 1 and file_exists(stored)

    # Another user cannot press her confirmation button.
    server.send_text(user, "/forget")
    ask = await server.wait_for_text(user.id, "are you sure")
    query_id = server.press_button(other, ask.result, "Yes")
    answer = await server.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    assert answer.params.get("text")
    assert len(spotter.predictions(user.id)) == 1

    # Confirming deletes her photo file, predictions and corrections, and nobody else's.
    server.press_button(user, ask.result, "Yes")
    done = await server.wait_for(
        "editMessageText", lambda c: c.params["message_id"] == ask.result["message_id"]
    )
    assert "deleted 1 photo" in done.text.lower()
    assert spotter.predictions(user.id) == []
    assert not file_exists(stored)
    assert len(spotter.predictions(other.id)) == 1
    assert file_exists(spotter.predictions(other.id)[0].image_path)
