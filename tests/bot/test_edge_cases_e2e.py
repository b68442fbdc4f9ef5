"""End-to-end edge cases a real deployment meets: user-controlled text in HTML replies, long admin
listings (Telegram's 4096-character limit), shared photos and /forget, failures inside an album, albums of
image files."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.repositories.catalog import add_tutorial
from tests.bot.conftest import Spotter, file_exists, image_bytes


async def test_user_and_curator_text_is_escaped_in_html_replies(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user("<Ana & Bo>")
    server.send_text(user, "/start")
    start = await server.wait_for_text(user.id, "<Ana & Bo>")  # the fake rejects unescaped HTML with a 400
    assert start.ok

    spotter.fake.answer("plyo_box")
    title = "Jumps & <b>landings</b> </a> for 'beginners'"
    server.send_text(spotter.admin, f"/addvideo plyo box https://youtu.be/dQw4w9WgXcQ {title}")
    await server.wait_for_text(spotter.admin.id, "added")
    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, "plyo box")
    assert title in reply.text
    assert [c for c in server.calls() if c.status == 400] == []


async def test_long_video_listing_is_split_under_telegrams_limit(spotter: Spotter) -> None:
    def add_many(session: Session) -> None:
        for index in range(150):
            add_tutorial(
                session,
                equipment_slug="leg_press",
                youtube_id=f"Bulk{index:07d}",
                added_by_telegram_id=spotter.admin.id,
                title=f"Leg press & friends, part {index} – a deliberately long title to fill the message",
                channel="Coach <Ana>",
            )

    spotter.query(add_many)
    server = spotter.server
    server.send_text(spotter.admin, "/videos")
    first = await server.wait_for_text(spotter.admin.id, "part 0 ")
    await server.wait_for_text(spotter.admin.id, "part 149 ")
    listed = [c for c in server.sent_to(spotter.admin.id)]
    assert len(listed) >= 2 and first in listed
    assert all(len(call.text) <= 4096 for call in listed)
    assert [c for c in server.calls("sendMessage") if not c.ok] == []
    shown = "\n".join(call.text for call in listed)
    assert all(f"part {index} " in shown for index in range(150))


async def test_forget_keeps_a_photo_another_user_sent_too(spotter: Spotter) -> None:
    server = spotter.server
    ana, bea = server.new_user("Ana"), server.new_user("Bea")
    same = image_bytes((77, 77, 177))
    for person in (ana, bea):
        server.send_document(person, same, file_name="same.jpg", mime_type="image/jpeg")
        await server.wait_for_text(person.id, "leg press")
    (bea_row,) = spotter.predictions(bea.id)
    server.send_text(ana, "/forget")
    ask = await server.wait_for_text(ana.id, "are you sure")
    server.press_button(ana, ask.result, "Yes")
    await server.wait_for("editMessageText", lambda c: c.params["message_id"] == ask.result["message_id"])
    assert spotter.predictions(ana.id) == []
    assert file_exists(bea_row.image_path)  # Bea's prediction still has its photo (for training)


async def test_a_failure_inside_an_album_still_gets_one_reply_and_is_reported(spotter: Spotter) -> None:
    server, fake = spotter.server, spotter.fake
    colors = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]
    fake.answer_color(colors[0], "leg_press")
    fake.answer_color(colors[2], "plyo_box")
    user = server.new_user()
    album = server.send_album(user, [image_bytes(color) for color in colors])
    # The first photo's download stalls twice (every size of it): it fails after one retry.
    server.stall_downloads(times=2, file_ids=[size["file_id"] for size in album[0]["photo"]])
    reply = await server.wait_for_text(user.id, "3.", timeout=10)
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=0.5)
    lines = [line for line in reply.text.splitlines() if line[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3
    assert "download" in lines[0].lower()
    assert "plyo box" in lines[2].lower()
    assert len(spotter.predictions(user.id)) == 2


async def test_an_unexpected_error_inside_an_album_notifies_admins(spotter: Spotter) -> None:
    server, fake = spotter.server, spotter.fake
    user = server.new_user()
    fake.fail_with = RuntimeError("album model exploded")
    server.send_album(user, [image_bytes((200, 10, 10)), image_bytes((10, 10, 200))])
    reply = await server.wait_for_text(user.id, "2.", timeout=10)
    assert "went wrong" in reply.text.lower()
    notice = await server.wait_for_text(spotter.admin.id, "album model exploded", timeout=5)
    assert notice.ok


async def test_an_album_of_image_files_gets_one_reply(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user()
    group = "9" * 18
    for color in ((10, 10, 10), (90, 90, 90)):
        server.send_message(
            user,
            media_group_id=group,
            document={
                "file_id": (stored := server.add_file(image_bytes(color, fmt="PNG"), ext="png")).file_id,
                "file_unique_id": stored.file_unique_id,
                "file_name": "machine.png",
                "mime_type": "image/png",
                "file_size": stored.declared_size,
            },
        )
    reply = await server.wait_for_text(user.id, "2.", timeout=10)
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=0.5)
    assert "1." in reply.text and len(spotter.predictions(user.id)) == 2
