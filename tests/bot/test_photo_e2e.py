"""End-to-end: photos and image files in, answers out (single photos, image documents in every Pillow mode,
albums, undecodable images, files over the 20 MB download limit)."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.bot.conftest import CATALOG_TUTORIALS, Spotter, file_exists, image_bytes
from tests.fakes.telegram_server import Call

LEG_PRESS_TITLES = [title for _, title, _ in CATALOG_TUTORIALS["leg_press"]]


def read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def links(call: Call) -> list[str]:
    """URLs of the text_link entities of the message the call produced."""
    return [entity["url"] for entity in call.result.get("entities", []) if entity["type"] == "text_link"]


async def test_confident_photo_gets_name_description_tutorials_and_buttons(spotter: Spotter) -> None:
    server = spotter.server
    user = server.new_user("Noor")
    sent_at = time.monotonic()
    photo = server.send_photo(user, image_bytes((180, 40, 40), (1600, 1200)))
    reply = await server.wait_for_text(user.id, "leg press")
    latency = reply.at - sent_at

    # The chat action came first, while working.
    action = await server.wait_for("sendChatAction", lambda c: c.params["chat_id"] == user.id)
    assert action.params["action"] in ("typing", "upload_photo") and action.at <= reply.at

    text = reply.text
    assert "93%" in text  # the confidence, as a phrase with its percentage
    assert "What the leg press trains" in text  # the short description
    for title in LEG_PRESS_TITLES[:3]:
        assert title in text  # "<on the leg press> & why" arrives unmangled: the bot escaped it
    assert LEG_PRESS_TITLES[3] not in text  # at most three tutorials
    assert "Coach Ana" in text and "Strong & Kind" in text  # channels
    assert [url.rsplit("=", 1)[-1] for url in links(reply)] == ["LegPress001", "LegPress002", "LegPress003"]
    assert any("correct" in b.lower() for b in reply.button_texts())
    assert any("wrong" in b.lower() for b in reply.button_texts())
    print(f"\nphoto -> answer latency through the fake Bot API: {latency * 1000:.0f} ms")
    assert latency < 3.0

    # One prediction, with model version, label, decision and the stored photo's content hash and path.
    (row,) = spotter.predictions(user.id)
    assert (row.label, row.decision, row.model_version) == ("leg_press", "confident", "v-fake")
    assert row.message_id == photo["message_id"] and row.chat_id == user.id
    assert row.image_path.startswith(str(spotter.settings.data_dir / "photos"))
    stored = read_bytes(row.image_path)
    assert hashlib.sha256(stored).hexdigest() == row.image_sha256
    # The downloaded size is big enough for the model (shorter side >= 224) but not the full 1280 px one.
    (seen,) = spotter.fake.seen
    assert min(seen.size) >= 224 and max(seen.size) < 1280
    assert len(server.calls("getFile")) == 1


async def test_equipment_without_tutorials_gets_a_youtube_search_link(spotter: Spotter) -> None:
    spotter.fake.answer("treadmill")
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes())
    reply = await spotter.server.wait_for_text(user.id, "treadmill")
    (url,) = links(reply)
    assert url.startswith("https://www.youtube.com/results?search_query=") and "treadmill" in url.lower()


async def test_unsure_asks_is_it_one_of_these_with_choices(spotter: Spotter) -> None:
    spotter.fake.answer("leg_press", "unsure", runners_up=("smith_machine", "power_rack"))
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes())
    reply = await spotter.server.wait_for_text(user.id, "one of these")
    assert "I think this is" not in reply.text
    buttons = reply.button_texts()
    assert {"Leg press", "Smith machine", "Power rack"} <= set(buttons)
    # Choosing one is stored as the user's answer and the message thanks her.
    spotter.server.press_button(user, reply.result, "Smith machine")
    edited = await spotter.server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    assert "smith machine" in edited.text.lower()
    (correction,) = spotter.corrections()
    assert correction.label == "smith_machine"


async def test_not_equipment_is_said_kindly(spotter: Spotter) -> None:
    spotter.fake.answer("leg_press", "not_equipment")
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes((90, 160, 90)))
    reply = await spotter.server.wait_for_text(user.id, "photo")
    assert "leg press" not in reply.text.lower()  # never states a name it does not believe
    assert "equipment" in reply.text.lower()
    (row,) = spotter.predictions(user.id)
    assert row.decision == "not_equipment"


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def rgba_png() -> bytes:
    image = Image.new("RGBA", (300, 260), (200, 30, 30, 0))
    image.paste((200, 30, 30, 255), (50, 50, 250, 210))
    return encode(image, "PNG")


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return encode(Image.new("RGB", (400, 300), (30, 30, 200)), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (300, 240), 40000), "PNG")


IMAGE_FILES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "rgb-jpeg": (lambda: image_bytes(), "gym.jpg", "image/jpeg"),
    "rgba-png": (rgba_png, "transparent.png", "image/png"),
    "palette-png": (
        lambda: encode(Image.new("RGB", (300, 240), (10, 120, 10)).convert("P"), "PNG"),
        "p.png",
        "image/png",
    ),
    "la-png": (lambda: encode(Image.new("LA", (300, 240), (120, 200)), "PNG"), "la.png", "image/png"),
    "grayscale-jpeg": (lambda: encode(Image.new("L", (300, 240), 99), "JPEG"), "gray.jpg", "image/jpeg"),
    "cmyk-jpeg": (
        lambda: encode(Image.new("CMYK", (300, 240), (0, 80, 80, 10)), "JPEG"),
        "cmyk.jpg",
        "image/jpeg",
    ),
    "16bit-png": (sixteen_bit_png, "sixteen.png", "image/png"),
    "webp": (lambda: encode(Image.new("RGB", (300, 240), (200, 200, 10)), "WEBP"), "gym.webp", "image/webp"),
    "exif-rotated-jpeg": (exif_rotated_jpeg, "rotated.jpg", "image/jpeg"),
}


@pytest.mark.parametrize("kind", sorted(IMAGE_FILES))
async def test_image_sent_as_a_file_is_answered(spotter: Spotter, kind: str) -> None:
    make, file_name, mime_type = IMAGE_FILES[kind]
    data = make()
    user = spotter.server.new_user()
    spotter.server.send_document(user, data, file_name=file_name, mime_type=mime_type)
    reply = await spotter.server.wait_for_text(user.id, "leg press")
    assert reply.button_texts()
    # The original file reached the classifier unchanged (EXIF orientation and mode intact).
    (row,) = spotter.predictions(user.id)
    assert row.image_sha256 == hashlib.sha256(data).hexdigest()
    if kind == "exif-rotated-jpeg":
        assert spotter.fake.seen[0].size == (300, 400)


@pytest.mark.parametrize(
    ("data", "file_name", "mime_type"),
    [
        (b"\x00\x00\x00\x18ftypheic" + bytes(200), "IMG_0001.HEIC", "image/heic"),
        (image_bytes()[:300], "truncated.jpg", "image/jpeg"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "logo.svg", "image/svg+xml"),
    ],
    ids=["heic", "truncated-jpeg", "svg"],
)
async def test_undecodable_image_gets_a_friendly_message(
    spotter: Spotter, data: bytes, file_name: str, mime_type: str
) -> None:
    user = spotter.server.new_user()
    spotter.server.send_document(user, data, file_name=file_name, mime_type=mime_type)
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id)
    assert "read" in reply.text.lower() or "photo" in reply.text.lower()
    assert "went wrong" not in reply.text.lower()  # a user problem, not an error
    assert spotter.predictions(user.id) == []
    assert not any(
        spotter.server.calls("sendMessage")[i].params["chat_id"] == spotter.admin.id for i in range(0)
    )
    await spotter.server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id, 0.2)


async def test_file_over_20_mb_is_refused_without_get_file(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    size = 25 * 1024 * 1024
    spotter.server.send_document(user, image_bytes(), file_name="huge.jpg", mime_type="image/jpeg", size=size)
    reply = await spotter.server.wait_for_text(user.id, "20 MB")
    assert "big" in reply.text.lower()
    assert spotter.server.calls("getFile") == [] and spotter.server.downloads == []
    assert spotter.predictions(user.id) == [] and spotter.fake.seen == []


async def test_album_gets_one_combined_reply_with_a_line_per_photo(spotter: Spotter) -> None:
    fake, server = spotter.fake, spotter.server
    colors = [(220, 20, 20), (20, 220, 20), (20, 20, 220)]
    fake.answer_color(colors[0], "leg_press")
    fake.answer_color(colors[1], "plyo_box")
    fake.answer_color(colors[2], "treadmill", "unsure")
    user = server.new_user()
    album = server.send_album(user, [image_bytes(color) for color in colors])

    reply = await server.wait_for_text(user.id, "1.", timeout=8)
    await server.assert_no_call("sendMessage", lambda c: c.params["chat_id"] == user.id, within=0.8)
    lines = reply.text.splitlines()
    numbered = [line for line in lines if line[:2] in ("1.", "2.", "3.")]
    assert len(numbered) == 3
    assert "leg press" in numbered[0].lower()
    assert "plyo box" in numbered[1].lower()
    assert "treadmill" in numbered[2].lower() and "not sure" in numbered[2].lower()
    rows = spotter.predictions(user.id)
    assert sorted(row.message_id for row in rows) == [m["message_id"] for m in album]
    assert {row.media_group_id for row in rows} == {album[0]["media_group_id"]}
    assert {row.label for row in rows} == {"leg_press", "plyo_box", "treadmill"}
    assert len(reply.button_texts()) >= 3

    # Feedback on photo 2 of the album: "2 ❌" opens a picker, the choice is stored for that photo only.
    server.press_button(user, reply.result, "2 ❌")
    picker = await server.wait_for_text(user.id, "which one")
    server.press_button(user, picker.result, "Bench press")
    await server.wait_for("editMessageText", lambda c: c.params["message_id"] == picker.result["message_id"])
    (correction,) = spotter.corrections()
    plyo = next(row for row in rows if row.label == "plyo_box")
    assert (correction.prediction_id, correction.label) == (plyo.id, "bench_press")


async def test_stored_photo_is_kept_after_a_correction(spotter: Spotter) -> None:
    user = spotter.server.new_user()
    spotter.server.send_photo(user, image_bytes())
    reply = await spotter.server.wait_for_text(user.id, "leg press")
    spotter.server.press_button(user, reply.result, "Wrong")
    await spotter.server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == user.id)
    spotter.server.press_button(user, reply.result, "Power rack")
    await spotter.server.wait_for("editMessageText", lambda c: c.params["chat_id"] == user.id)
    (row,) = spotter.predictions(user.id)
    assert file_exists(row.image_path)
