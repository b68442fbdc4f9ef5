"""End-to-end with real things at the edges: the shipped catalog (db/catalog.toml through `db.seed`), and the
REAL shipped model (models/ champion, VGG16 trunk from ../shared/weights) on real photos from ../shared/data,
through the whole bot. The real-model test skips cleanly when ../shared or the shipped champion is absent."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from classifier.registry import Registry
from db.seed import load_seed
from tests.bot.conftest import ROOT, Spotter, image_bytes, make_settings
from tests.bot.test_photo_e2e import IMAGE_FILES
from tests.fakes.telegram_server import Call, FakeTelegramServer

SHIPPED_MODELS = Path(os.environ.get("SPOTTER_TEST_MODELS_DIR", ROOT / "models"))
"""The shipped registry (models/); SPOTTER_TEST_MODELS_DIR points the real-model tests at another one."""
REAL_CLASSES = ("leg_press", "treadmill", "smith_machine", "lat_pulldown_machine")
"""Well-populated classes; one held-out (``suggested_split == val``) photo of each goes through the bot."""


def text_links(call: Call) -> list[str]:
    return [e["url"] for e in call.result.get("entities", []) if e["type"] == "text_link"]


@pytest.mark.parametrize("catalog", ["shipped"])
async def test_shipped_catalog_is_what_users_see(spotter: Spotter, catalog: str) -> None:
    seed = load_seed()
    server = spotter.server
    user = server.new_user()
    server.send_text(user, "/equipment")
    listing = await server.wait_for_text(user.id, seed.equipment[0].display_name)
    for equipment in seed.equipment:
        assert equipment.display_name in listing.text

    with_videos = next(e for e in seed.equipment if any(t.equipment == e.slug for t in seed.tutorials))
    spotter.fake.answer(with_videos.slug)
    server.send_photo(user, image_bytes())
    reply = await server.wait_for_text(user.id, with_videos.display_name)
    assert with_videos.trains in reply.text
    seeded_ids = {t.youtube_id for t in seed.tutorials if t.equipment == with_videos.slug}
    shown = [url.rsplit("v=", 1)[-1] for url in text_links(reply)]
    assert shown and set(shown) <= seeded_ids and len(shown) <= 3

    without = next(e for e in seed.equipment if not any(t.equipment == e.slug for t in seed.tutorials))
    spotter.fake.answer(without.slug)
    server.send_photo(user, image_bytes((10, 10, 10)))
    reply = await server.wait_for_text(user.id, without.display_name)
    assert [url for url in text_links(reply) if "youtube.com/results" in url]


def held_out_photos(shared_data: Path) -> list[tuple[str, Path]]:
    """One validation photo per class of `REAL_CLASSES` (first by path, so the choice is stable)."""
    chosen: dict[str, Path] = {}
    with (shared_data / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        rows = sorted(csv.DictReader(handle, delimiter="\t"), key=lambda row: row["path"])
    for row in rows:
        label = row["class"]
        if row["kind"] == "real" and row["suggested_split"] == "val" and label in REAL_CLASSES:
            chosen.setdefault(label, shared_data / row["path"])
    return [(label, chosen[label]) for label in REAL_CLASSES if label in chosen]


def not_gym_photos(shared_data: Path, count: int) -> list[Path]:
    """The first ``count`` (by path) everyday photos of ../shared/data/ood/not_gym."""
    return sorted((shared_data / "ood" / "not_gym").iterdir())[:count]


@pytest.fixture
async def real_spotter(
    server: FakeTelegramServer,
    session_factory: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    shared_weights: Path,
) -> AsyncIterator[Spotter]:
    """The bot with its DEFAULT classifier (ClassifierService on the shipped models/ champion)."""
    if Registry(SHIPPED_MODELS).champion() is None:
        pytest.skip("no shipped champion model under models/")
    from classifier.serving import ClassifierService

    admin = server.new_user("Admin")
    settings = make_settings(
        server, tmp_path, db_url, {admin.id}, models_dir=SHIPPED_MODELS, vgg16_weights=str(shared_weights)
    )
    service = ClassifierService(settings.models_dir, settings.vgg16_weights)
    harness = Spotter(server, service, settings, session_factory, admin)
    await harness.start()  # post_init loads and warms up the champion in the worker thread
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("catalog", ["shipped"])
async def test_real_model_names_real_photos_through_the_whole_bot(
    real_spotter: Spotter, shared_data: Path, catalog: str
) -> None:
    spotter, server = real_spotter, real_spotter.server
    champion = Registry(SHIPPED_MODELS).champion()
    names = {e.slug: e.display_name for e in load_seed().equipment}
    photos = held_out_photos(shared_data)
    assert len(photos) == len(REAL_CLASSES)
    print(f"\nreal model {champion}: bot started in {spotter.timings['start1']:.1f} s (load + warm-up)")

    correct = 0
    for index, (truth, path) in enumerate(photos):
        user = server.new_user(f"Real{index}")
        sent_at = time.monotonic()
        server.send_photo(user, path.read_bytes())
        reply = await server.wait_for_text(user.id, "", timeout=60)
        (row,) = spotter.predictions(user.id)
        assert row.model_version == champion
        assert row.decision in ("confident", "unsure", "not_equipment")
        assert row.top_k and row.top_k[0][0] == row.label
        if row.decision == "confident":
            assert names[row.label] in reply.text and reply.button_texts()
        elif row.decision == "unsure":
            assert "one of these" in reply.text.lower() and reply.button_texts()
        correct += row.label == truth
        print(
            f"  {path.name[:60]}: truth {truth}, bot said {row.label} ({row.confidence:.2f}, {row.decision})"
            f" in {reply.at - sent_at:.2f} s"
        )
    # The shipped model is well above 90% on real held-out photos; 2 of 4 is a loose, non-flaky floor.
    assert correct >= 2, f"only {correct} of {len(photos)} held-out photos named correctly"

    # Everyday photos that are not gym equipment: the bot must not claim a machine (the shipped model
    # rejects ~96% of out-of-distribution photos; 2 of 3 is a loose floor).
    claimed = 0
    for index, path in enumerate(not_gym_photos(shared_data, 3)):
        user = server.new_user(f"Ood{index}")
        server.send_photo(user, path.read_bytes())
        reply = await server.wait_for_text(user.id, "", timeout=30)
        (row,) = spotter.predictions(user.id)
        claimed += row.decision == "confident"
        print(f"  {path.name[:60]}: not gym, bot said {row.label} ({row.confidence:.2f}, {row.decision})")
        if row.decision == "not_equipment":
            assert names[row.label] not in reply.text
    assert claimed <= 1, f"{claimed} of 3 non-gym photos were named as equipment"

    # /model shows the shipped champion's metrics and its confusion-matrix PNG.
    server.send_text(spotter.admin, "/model")
    shown = await server.wait_for("sendPhoto", lambda c: c.params["chat_id"] == spotter.admin.id, timeout=10)
    assert champion is not None and champion in shown.text
    assert shown.files["photo"].data.startswith(b"\x89PNG")

    # Every image mode Pillow opens goes through the REAL preprocessing (EXIF, alpha, CMYK, 16-bit, palette,
    # grayscale, WEBP) sent as a file, and gets an answer with buttons, never "couldn't read" or an error.
    user = server.new_user("Modes")
    for kind, (make, file_name, mime_type) in sorted(IMAGE_FILES.items()):
        server.send_document(user, make(), file_name=file_name, mime_type=mime_type)
        reply = await server.wait_for_text(user.id, "", timeout=30)
        assert reply.button_texts(), f"{kind}: {reply.text}"
    assert len(spotter.predictions(user.id)) == len(IMAGE_FILES)
