"""End-to-end: admin curation commands, and their refusal for everyone else."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from googleapiclient.http import HttpMockSequence
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.services import get_services
from classifier.registry import Registry
from db.models import Tutorial
from db.youtube import YouTubeClient
from tests.bot.conftest import ROOT, Spotter, image_bytes

VIDEO_ID = "dQw4w9WgXcQ"
YOUTUBE_OK = {"status": "200", "content-type": "application/json; charset=UTF-8"}
VIDEO_ITEM = ROOT / "tests" / "db" / "data" / "video_item_template.json"


def tutorial_rows(spotter: Spotter) -> int:
    return spotter.query(lambda session: session.scalar(select(func.count()).select_from(Tutorial)) or 0)


def live_tutorials(spotter: Spotter) -> list[tuple[str, str | None, str]]:
    def load(session: Session) -> list[tuple[str, str | None, str]]:
        rows = session.scalars(select(Tutorial).where(Tutorial.removed_at.is_(None)).order_by(Tutorial.id))
        return [(row.youtube_id, row.title, row.status) for row in rows]

    return spotter.query(load)


@pytest.mark.parametrize(
    "command",
    [
        f"/addvideo plyo box https://youtu.be/{VIDEO_ID}",
        "/removevideo LegPress001",
        "/videos",
        "/stats",
        "/model",
    ],
)
async def test_non_admins_are_refused_and_nothing_changes(spotter: Spotter, command: str) -> None:
    before = live_tutorials(spotter)
    user = spotter.server.new_user("Curious")
    spotter.server.send_text(user, command)
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id)
    assert "admin" in reply.text.lower() and "only" in reply.text.lower()
    assert live_tutorials(spotter) == before
    assert spotter.server.calls("sendPhoto") == []


async def test_addvideo_videos_removevideo_change_what_users_see(spotter: Spotter) -> None:
    server, admin = spotter.server, spotter.admin
    spotter.fake.answer("plyo_box")
    user = server.new_user()

    server.send_text(
        admin, f"/addvideo plyo box https://www.youtube.com/watch?v={VIDEO_ID}&t=3s Box jump basics"
    )
    added = await server.wait_for_text(admin.id, "added")
    assert "box jump basics" in added.text.lower()
    assert "unverified" in added.text.lower() or "not set" in added.text.lower()
    assert (VIDEO_ID, "Box jump basics", "unverified") in live_tutorials(spotter)

    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, "plyo box")
    assert "Box jump basics" in reply.text and "Box jumps, safely" in reply.text

    server.send_text(admin, "/videos plyo box")
    listing = await server.wait_for_text(admin.id, "box jump basics")
    tutorial_id = next(
        line.split()[0].lstrip("#") for line in listing.text.splitlines() if "Box jump basics" in line
    )
    assert tutorial_id.isdigit()

    server.send_text(admin, f"/removevideo {tutorial_id}")
    await server.wait_for_text(admin.id, "removed")
    assert VIDEO_ID not in [row[0] for row in live_tutorials(spotter)]
    server.send_photo(user, image_bytes((10, 200, 10)))
    reply = await server.wait_for_text(user.id, "plyo box")
    assert "Box jump basics" not in reply.text and "Box jumps, safely" in reply.text

    # Adding it again brings it back; adding a duplicate is refused.
    server.send_text(admin, f"/addvideo plyo_box {VIDEO_ID} Box jump basics")
    await server.wait_for_text(admin.id, "added")
    server.send_text(admin, f"/addvideo leg press https://youtu.be/{VIDEO_ID}")
    duplicate = await server.wait_for_text(admin.id, "not added")
    assert "plyo" in duplicate.text.lower()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/addvideo", "/addvideo"),  # usage
        ("/addvideo leg press", "/addvideo"),
        (f"/addvideo spaceship https://youtu.be/{VIDEO_ID}", "spaceship"),
        ("/addvideo leg press https://vimeo.com/12345", "not added"),
        ("/removevideo", "/removevideo"),
        ("/removevideo 99999", "99999"),
        ("/removevideo https://youtu.be/AAAAAAAAAAA", "not in the catalog"),
        ("/videos spaceship", "spaceship"),
    ],
)
async def test_admin_command_mistakes_get_clear_answers(
    spotter: Spotter, command: str, expected: str
) -> None:
    before = tutorial_rows(spotter)
    spotter.server.send_text(spotter.admin, command)
    reply = await spotter.server.wait_for("sendMessage", lambda c: c.params["chat_id"] == spotter.admin.id)
    assert expected.lower() in reply.text.lower()
    assert tutorial_rows(spotter) == before


async def test_addvideo_uses_youtube_metadata_when_a_key_is_set(spotter: Spotter) -> None:
    assert spotter.app is not None
    item = json.loads(VIDEO_ITEM.read_text(encoding="utf-8"))
    answered = copy.deepcopy(item)
    answered["id"] = VIDEO_ID
    answered["snippet"]["title"] = "Leg press with Coach Kim"
    answered["snippet"]["channelTitle"] = "Kim Lifts"
    http = HttpMockSequence(
        [
            (YOUTUBE_OK, json.dumps({"kind": "youtube#videoListResponse", "items": [answered]})),
            (YOUTUBE_OK, json.dumps({"kind": "youtube#videoListResponse", "items": []})),
        ]
    )
    get_services(spotter.app).youtube = YouTubeClient("test-key", http=http)
    server, admin = spotter.server, spotter.admin
    server.send_text(admin, f"/addvideo leg press https://youtu.be/{VIDEO_ID}")
    added = await server.wait_for_text(admin.id, "added")
    assert "Leg press with Coach Kim" in added.text and "Kim Lifts" in added.text
    assert (VIDEO_ID, "Leg press with Coach Kim", "available") in live_tutorials(spotter)
    # A video YouTube does not know (deleted/private) is not added.
    server.send_text(admin, "/addvideo leg press https://youtu.be/BBBBBBBBBBB")
    refused = await server.wait_for_text(admin.id, "not added")
    assert "BBBBBBBBBBB" not in [row[0] for row in live_tutorials(spotter)], refused.text


async def test_stats_counts_users_photos_corrections_and_agreement(spotter: Spotter) -> None:
    server = spotter.server
    ana, bea = server.new_user("Ana"), server.new_user("Bea")
    replies = []
    for person in (ana, bea):
        server.send_photo(person, image_bytes())
        replies.append(await server.wait_for_text(person.id, "leg press"))
    server.press_button(ana, replies[0].result, "Correct")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == ana.id)
    server.press_button(bea, replies[1].result, "Wrong")
    await server.wait_for("editMessageReplyMarkup", lambda c: c.params["chat_id"] == bea.id)
    server.press_button(bea, replies[1].result, "Smith machine")
    await server.wait_for("editMessageText", lambda c: c.params["chat_id"] == bea.id)

    server.send_text(spotter.admin, "/stats")
    stats = await server.wait_for_text(spotter.admin.id, "v-fake")
    text = stats.text.lower()
    leg_press = next(line for line in text.splitlines() if "leg press" in line)
    assert "2 photos" in leg_press and "50%" in leg_press  # one confirmed, one corrected
    assert "users" in text and "corrections" in text


def write_version(folder: Path) -> None:
    (folder / "labels.json").write_text(json.dumps(["leg_press", "plyo_box"]), encoding="utf-8")
    (folder / "metrics.json").write_text(json.dumps({"val_accuracy": 0.95, "real_holdout_top1": 0.91}))
    (folder / "model_card.md").write_text("# test model\nBackbone: VGG16 (test)\n", encoding="utf-8")
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), (250, 250, 250)).save(buffer, "PNG")
    (folder / "confusion_matrix.png").write_bytes(buffer.getvalue())


async def test_model_sends_champion_metrics_and_confusion_matrix(spotter: Spotter) -> None:
    server, admin = spotter.server, spotter.admin
    server.send_text(admin, "/model")
    none_yet = await server.wait_for("sendMessage", lambda c: c.params["chat_id"] == admin.id)
    assert "no champion" in none_yet.text.lower()

    registry = Registry(spotter.settings.models_dir)
    version = registry.create_version(write_version)
    registry.promote(version, "test")
    server.send_text(admin, "/model")
    photo = await server.wait_for("sendPhoto", lambda c: c.params["chat_id"] == admin.id)
    assert version in photo.text and "95%" in photo.text and "91%" in photo.text
    upload = photo.files["photo"]
    assert upload.data.startswith(b"\x89PNG") and upload.filename.endswith(".png")
