"""The same migrations, seed and repositories on a real PostgreSQL server.

Runs when SPOTTER_TEST_POSTGRES_URL names a server we may create databases on (e.g.
``postgresql+psycopg://postgres@127.0.0.1:55432/postgres``); `.ci/run` starts a throwaway one when the machine
has PostgreSQL. Each test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from db import repositories as repo
from db.errors import DatabaseBehindError, NotYourPredictionError
from db.schema import alembic_config, ensure_schema_current
from db.seed import apply_seed, load_seed
from db.session import make_engine, make_session_factory, session_scope
from tests.db.conftest import predict
from tests.db.test_migrations import TABLES

ADMIN_URL = os.environ.get("SPOTTER_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not ADMIN_URL, reason="SPOTTER_TEST_POSTGRES_URL is not set")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database URL (dropped after the test)."""
    name = f"spotter_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_check_downgrade_upgrade_on_postgresql(pg_url: str) -> None:
    config = alembic_config(pg_url)
    engine = make_engine(pg_url)
    try:
        with pytest.raises(DatabaseBehindError, match="alembic upgrade head"):
            ensure_schema_current(engine)
        command.upgrade(config, "head")
        assert set(inspect(engine).get_table_names()) >= TABLES
        command.check(config)
        ensure_schema_current(engine)
        command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
        ensure_schema_current(engine)
    finally:
        engine.dispose()


def test_seed_and_feedback_round_trip_on_postgresql(pg_url: str) -> None:
    command.upgrade(alembic_config(pg_url), "head")
    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    try:
        with session_scope(factory) as session:
            first = apply_seed(session, load_seed())
        with session_scope(factory) as session:
            again = apply_seed(session, load_seed())
        assert first.equipment_inserted == len(load_seed().equipment) and first.tutorials_inserted > 0
        assert again.equipment_inserted == 0 and again.tutorials_inserted == 0
        with session_scope(factory) as session:
            assert len(repo.list_equipment(session)) == len(load_seed().equipment)
            telegram_id = 5_000_000_001  # above 2**32: BIGINT column
            prediction = predict(session, telegram_id, b"pg-photo", label="leg_press")
            correction = repo.record_correction(
                session, prediction.id, telegram_id, "smith_machine", is_admin=False, agreement_threshold=3
            )
            assert correction.review_state == "pending"
            with pytest.raises(NotYourPredictionError):
                repo.record_correction(session, prediction.id, 42, "dumbbell", is_admin=False)
        with session_scope(factory) as session:
            stats = repo.collect_stats(session)
            assert stats.users == 1 and stats.photos == 1 and stats.corrections == 1
            forgotten = repo.forget_user(session, telegram_id)
            assert forgotten.user_found
        with session_scope(factory) as session:
            assert repo.collect_stats(session).photos == 0
    finally:
        engine.dispose()
