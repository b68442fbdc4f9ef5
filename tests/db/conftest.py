"""Fixtures for db/ tests: real SQLite files in tmp_path, migrated with the real Alembic migrations."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from db import repositories as repo
from db.models import Prediction, User
from db.schema import upgrade_to_head
from db.seed import apply_seed, load_seed
from db.session import make_engine, make_session_factory, session_scope

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A brand-new SQLite file URL (not migrated)."""
    return f"sqlite:///{tmp_path / 'db' / 'spotter.sqlite3'}"


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """The SQLite file migrated to head with `alembic upgrade head` (in-process)."""
    upgrade_to_head(db_url)
    return db_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def seeded(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The migrated database with the repository's catalog seed loaded and committed."""
    with session_scope(factory) as session:
        apply_seed(session, load_seed())
    return factory


@pytest.fixture
def session(seeded: sessionmaker[Session]) -> Iterator[Session]:
    """A session on the seeded database inside one transaction (rolled back at the end)."""
    with seeded() as session, session.begin():
        yield session
        session.rollback()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def predict(
    session: Session,
    telegram_id: int,
    image: bytes,
    label: str = "leg_press",
    *,
    decision: str = "confident",
    message_id: int = 1,
) -> Prediction:
    """Record a prediction for ``image`` as the bot does (upsert the user, then the prediction row)."""
    user: User = repo.upsert_user(session, telegram_id, language_code="en")
    digest = sha(image)
    return repo.record_prediction(
        session,
        user,
        chat_id=telegram_id,
        message_id=message_id,
        image_sha256=digest,
        image_path=f"data/photos/{digest}.jpg",
        model_version="v0001",
        label=label,
        confidence=0.8,
        decision=decision,
        top_k=[(label, 0.8), ("bench_press", 0.1)],
    )
