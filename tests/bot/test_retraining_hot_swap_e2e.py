"""End-to-end, slow: /retrain through the real bot runs the REAL pipeline subprocess (`python -m
classifier.retrain`) on a tiny model (random-init VGG16 at 32x32 saved as a weights file); the running
ClassifierService hot-swaps the promoted version; /versions shows it; /rollback swaps the previous one back.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from classifier.registry import Registry
from db.models import Equipment
from db.session import session_scope
from tests.bot.conftest import Spotter
from tests.bot.test_retraining_e2e import feed
from tests.classifier.helpers import TINY_LABELS, coloured_image, encode
from tests.retrain.conftest import TinyWorld
from tests.retrain.conftest import tiny_world as tiny_world  # re-exported: the session fixture


@pytest.fixture
def tiny_models(tiny_world: TinyWorld, tmp_path: Path) -> Path:
    models = tmp_path / "models"  # the bot's MODELS_DIR (see tests/bot/conftest.make_settings)
    shutil.copytree(tiny_world.models, models)
    return models


@pytest.fixture
def settings_overrides(tiny_world: TinyWorld, tiny_models: Path) -> dict[str, Any]:
    return {"vgg16_weights": str(tiny_world.weights)}


@pytest.fixture
async def fake_classifier(tiny_world: TinyWorld, tiny_models: Path) -> AsyncIterator[Any]:
    """Not a fake here: the real ClassifierService over the tiny registry (the bot starts and closes it)."""
    from classifier.serving import ClassifierService

    service = ClassifierService(tiny_models, str(tiny_world.weights))
    yield service
    await service.close()


@pytest.mark.slow
async def test_retrain_promotes_hot_swaps_and_rollback_swaps_back(
    spotter: Spotter,
    tiny_world: TinyWorld,
    tiny_models: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRAINING_DATA_DIR", str(tiny_world.dataset))
    monkeypatch.setenv("PROMOTION_OVERALL_MARGIN", "1.0")  # promote whatever the tiny model scores
    monkeypatch.setenv("PROMOTION_PER_CLASS_MARGIN", "1.0")
    server, admin = spotter.server, spotter.admin
    with session_scope(spotter.session_factory) as session:
        for slug in TINY_LABELS:
            session.add(Equipment(slug=slug, display_name=slug.replace("_", " ").capitalize(), sort_order=99))
    assert spotter.classifier.model_version == "v0001"
    for seed in range(6):
        photo = encode(coloured_image("green_thing", 900 + seed), "JPEG")
        feed(spotter, admin, photo, "red_thing", "green_thing", is_admin=True)

    server.send_text(admin, "/retrain")
    await server.wait_for_text(admin.id, "Retraining started")
    final = await server.wait_for(
        "editMessageText", lambda c: "Took" in c.text and c.params["chat_id"] == admin.id, timeout=240
    )
    assert "v0002 promoted" in final.text and "Now serving the new model" in final.text, final.text
    assert spotter.classifier.model_version == "v0002"
    assert Registry(tiny_models).champion() == "v0002"
    assert all(c.trained_in_version_id is not None for c in spotter.corrections())
    # the swapped-in model answers photos
    assert (
        await spotter.classifier.classify(encode(coloured_image("red_thing", 1), "PNG"))
    ).model_version == "v0002"

    server.send_text(admin, "/versions")
    listing = await server.wait_for_text(admin.id, "Model versions")
    assert "★ v0002" in listing.text and "v0001" in listing.text and "Serving now: v0002" in listing.text

    server.send_text(admin, "/rollback")
    rolled = await server.wait_for_text(admin.id, "Rolled back")
    assert "v0002 → v0001" in rolled.text and "Now serving v0001" in rolled.text
    assert spotter.classifier.model_version == "v0001" and Registry(tiny_models).champion() == "v0001"
