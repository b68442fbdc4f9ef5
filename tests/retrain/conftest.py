"""Fixtures for the retraining tests: a real SQLite file migrated with the real Alembic migrations, and
helpers that store photos and corrections the way the bot does (DB rows + DATA_DIR/photos/<sha256>.<ext>)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from bot.photo_store import PhotoStore
from classifier.retrain import RetrainSettings
from db.models import Correction, Equipment
from db.repositories.corrections import record_correction
from db.repositories.predictions import record_prediction
from db.repositories.users import upsert_user
from db.session import make_engine, make_session_factory, session_scope
from tests.classifier.helpers import (
    TINY_LABELS,
    coloured_image,
    encode,
    make_folder_dataset,
    tiny_weights_file,
)
from tests.conftest import ROOT


def migrate(url: str) -> None:
    """`alembic upgrade head` on ``url`` with the repository's alembic.ini."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["skip_logging_config"] = True
    command.upgrade(config, "head")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'spotter.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture
def session_factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def photo_bytes(color: tuple[int, int, int], size: int = 40, fmt: str = "JPEG") -> bytes:
    """A small real image made with Pillow (solid colour with a darker square so it is not flat)."""
    image = Image.new("RGB", (size, size), color)
    image.paste(tuple(c // 2 for c in color), (size // 4, size // 4, size // 2, size // 2))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def add_equipment(session: Session, slugs: list[str]) -> None:
    for i, slug in enumerate(slugs):
        session.add(Equipment(slug=slug, display_name=slug.replace("_", " ").title(), sort_order=i))
    session.flush()


def store_photo(data_dir: Path, data: bytes) -> tuple[str, Path]:
    """Save bytes the way the bot does: DATA_DIR/photos/<sha256>.<ext> (PhotoStore)."""
    stored = PhotoStore(data_dir / "photos").save(data)
    return stored.sha256, stored.path


def add_correction(
    session: Session,
    *,
    telegram_id: int,
    data: bytes,
    data_dir: Path,
    predicted: str,
    label: str,
    is_admin: bool = False,
    agreement: int = 3,
    message_id: int = 1,
) -> Correction:
    """A prediction with a stored photo and the user's correction, through the same repository functions
    the bot's photo and feedback handlers call (record_prediction, record_correction)."""
    user = upsert_user(session, telegram_id)
    digest, path = store_photo(data_dir, data)
    prediction = record_prediction(
        session,
        user,
        chat_id=telegram_id,
        message_id=message_id,
        image_sha256=digest,
        image_path=str(path),
        model_version="v0001",
        label=predicted,
        confidence=0.5,
        decision="unsure",
        top_k=[(predicted, 0.5)],
    )
    return record_correction(
        session, prediction.id, telegram_id, label, is_admin=is_admin, agreement_threshold=agreement
    )


@dataclass(frozen=True)
class TinyWorld:
    """A tiny trained champion (random-init VGG16 at 32x32 saved as a weights file, three colour classes and
    ``__other__``), trained with the real ``python -m classifier train`` CLI once per session."""

    dataset: Path
    weights: Path
    models: Path


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    from classifier.__main__ import main

    root = tmp_path_factory.mktemp("retrain-tiny")
    world = TinyWorld(
        make_folder_dataset(root / "ds"), tiny_weights_file(root / "tiny.weights.h5"), root / "models"
    )
    argv = [
        "--models-dir",
        str(world.models),
        "--weights",
        str(world.weights),
        "--data-dir",
        str(root / "data"),
    ]
    argv += [
        "-q",
        "train",
        "--data",
        str(world.dataset),
        "--input-size",
        "32",
        "--epochs",
        "15",
        "--hidden",
        "16",
    ]
    argv += ["--learning-rate", "0.01", "--views", "orig", "--tta", "orig", "--promote"]
    argv += ["--ensemble", "1", "--thin-views", ""]  # the lightest recipe, so every retrain in a test is fast
    assert main(argv) == 0
    return world


@dataclass
class RetrainEnv:
    """Per-test copy of the tiny registry, a migrated SQLite database with the catalog, and settings."""

    settings: RetrainSettings
    factory: sessionmaker[Session]
    world: TinyWorld

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def correct(
        self,
        telegram_id: int,
        label: str,
        colour_label: str,
        seed: int,
        predicted: str = "red_thing",
        is_admin: bool = False,
    ) -> int:
        """Store a photo coloured like ``colour_label`` and a correction to ``label`` by ``telegram_id``."""
        data = encode(coloured_image(colour_label, seed), "JPEG")
        with session_scope(self.factory) as session:
            c = add_correction(
                session,
                telegram_id=telegram_id,
                data=data,
                data_dir=self.data_dir,
                predicted=predicted,
                label=label,
                is_admin=is_admin,
                agreement=self.settings.review_agreement_users,
                message_id=seed,
            )
            return c.id


ADMIN_ID = 4242
CATALOG = [*TINY_LABELS, "yellow_thing"]


@pytest.fixture
def retrain_env(tiny_world: TinyWorld, tmp_path: Path, db_url: str, session_factory) -> RetrainEnv:
    models = tmp_path / "models"
    shutil.copytree(tiny_world.models, models)
    with session_scope(session_factory) as session:
        add_equipment(session, CATALOG)
    settings = RetrainSettings(
        models_dir=models,
        data_dir=tmp_path / "data",
        vgg16_weights=str(tiny_world.weights),
        database_url=db_url,
        admin_user_ids=frozenset({ADMIN_ID}),
        training_data_dir=tiny_world.dataset,
        new_class_min_images=4,
        feedback_holdout_percent=20,
        review_agreement_users=3,
    )
    return RetrainEnv(settings, session_factory, tiny_world)
