"""Fixtures for the retraining tests: a real SQLite file migrated with the real Alembic migrations, and
helpers that store photos and corrections the way the bot does (DB rows + DATA_DIR/photos/<sha256>.<ext>)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from bot.photo_store import PhotoStore
from db.models import Correction, Equipment
from db.repositories.corrections import record_correction
from db.repositories.predictions import record_prediction
from db.repositories.users import upsert_user
from db.session import make_engine, make_session_factory
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
