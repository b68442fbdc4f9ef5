"""End-to-end fixtures for the bot: the fake Bot API server on loopback, a real SQLite file migrated with
the real Alembic migrations and seeded with a small catalog, the fake classifier, and the REAL application
built by `bot.app.build_application`, polling the fake server through PTB's real HTTP stack.

Typical test::

    async def test_help(spotter: Spotter) -> None:
        user = spotter.server.new_user()
        spotter.server.send_text(user, "/help")
        call = await spotter.server.wait_for_text(user.id, "how to use")
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.config import Config
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from telegram.error import TelegramError
from telegram.ext import Application

from bot.__main__ import ALLOWED_UPDATES
from bot.app import build_application
from bot.config import Settings, load_settings
from classifier.types import Classifier
from db.models import Correction, Equipment, Prediction, User
from db.repositories.catalog import add_tutorial
from db.seed import apply_seed, load_seed
from db.session import make_engine, make_session_factory, session_scope
from tests.conftest import ROOT
from tests.fakes.classifier import LABELS, FakeClassifier
from tests.fakes.telegram_server import FakeTelegramServer, FakeUser

T = TypeVar("T")
AnyApplication = Application[Any, Any, Any, Any, Any, Any]
log = logging.getLogger(__name__)

POLL_TIMEOUT = 2
"""Seconds of each getUpdates long poll (short: stopping cancels the poll anyway)."""
DOWNLOAD_TIMEOUT = 1.0
"""DOWNLOAD_TIMEOUT_SECONDS in tests, so a stalled download fails (and is retried once) quickly."""
MEDIA_GROUP_DELAY = 0.4
"""MEDIA_GROUP_DELAY_SECONDS in tests."""

# The test catalog: display names, descriptions and tutorials. One title needs HTML escaping; treadmill has
# no tutorials (the reply must offer a YouTube search link instead).
CATALOG_TUTORIALS: dict[str, list[tuple[str, str, str]]] = {
    "leg_press": [
        ("LegPress001", "Leg press for beginners", "Coach Ana"),
        ("LegPress002", "Feet placement <on the leg press> & why", "Strong & Kind"),
        ("LegPress003", "Leg press: 5 mistakes", "Gym Girl Club"),
        ("LegPress004", "A fourth video (never shown: max 3)", "Coach Ana"),
    ],
    "plyo_box": [("PlyoBox0001", "Box jumps, safely", "Jump With Jo")],
    "bench_press": [("BenchPres01", "Your first bench press", "Coach Ana")],
}


def image_bytes(
    color: tuple[int, int, int] = (120, 60, 200), size: tuple[int, int] = (640, 480), fmt: str = "JPEG"
) -> bytes:
    """A real image made with Pillow: a solid ``color`` with a darker square (not a flat field)."""
    image = Image.new("RGB", size, color)
    w, h = size
    image.paste(tuple(c // 2 for c in color), (w // 4, h // 4, w // 2, h // 2))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def file_exists(path: str | Path) -> bool:
    """Path(path).is_file() (a plain function, so async tests can call it without ASYNC240 noise)."""
    return Path(path).is_file()


def migrate(url: str) -> None:
    """The real ``alembic upgrade head`` on ``url`` with the repository's alembic.ini."""
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    config.attributes["skip_logging_config"] = True
    command.upgrade(config, "head")


def seed_catalog(factory: sessionmaker[Session]) -> None:
    """Every label as an equipment row, and the tutorials of `CATALOG_TUTORIALS`, through the real models and
    repository (``add_tutorial``)."""
    with session_scope(factory) as session:
        for order, slug in enumerate(LABELS):
            session.add(
                Equipment(
                    slug=slug,
                    display_name=slug.replace("_", " ").capitalize(),
                    description=f"What the {slug.replace('_', ' ')} trains, and how to set it up.",
                    sort_order=order,
                )
            )
        session.flush()
        for slug, tutorials in CATALOG_TUTORIALS.items():
            for youtube_id, title, channel in tutorials:
                add_tutorial(
                    session,
                    equipment_slug=slug,
                    youtube_id=youtube_id,
                    added_by_telegram_id=None,
                    title=title,
                    channel=channel,
                )


@dataclass
class Spotter:
    """One running bot under test and everything around it."""

    server: FakeTelegramServer
    classifier: Classifier
    settings: Settings
    session_factory: sessionmaker[Session]
    admin: FakeUser
    app: AnyApplication | None = None
    starts: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fake(self) -> FakeClassifier:
        """The fake classifier (AssertionError when the test runs the real model)."""
        assert isinstance(self.classifier, FakeClassifier)
        return self.classifier

    async def start(self) -> None:
        """Build the real application and run it with long polling, as ``Application.run_polling`` does."""
        started = time.monotonic()
        app = build_application(
            self.settings, classifier=self.classifier, session_factory=self.session_factory
        )
        await app.initialize()
        if app.post_init is not None:
            await app.post_init(app)
        assert app.updater is not None

        def error_callback(error: TelegramError) -> None:  # what run_polling passes to start_polling
            app.create_task(app.process_error(error=error, update=None))

        await app.updater.start_polling(
            poll_interval=0,
            timeout=POLL_TIMEOUT,
            allowed_updates=ALLOWED_UPDATES,  # what python -m bot polls for
            drop_pending_updates=False,
            error_callback=error_callback,
        )
        await app.start()
        self.app = app
        self.starts += 1
        self.timings[f"start{self.starts}"] = time.monotonic() - started

    async def stop(self) -> None:
        """Stop polling and the application and run its shutdown hooks, as ``run_polling`` does on exit."""
        app, self.app = self.app, None
        if app is None:
            return
        started = time.monotonic()
        assert app.updater is not None
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        if app.post_stop is not None:
            await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown is not None:
            await app.post_shutdown(app)
        self.timings[f"stop{self.starts}"] = time.monotonic() - started

    async def restart(self) -> None:
        """Stop the bot and start a new application on the same database, model and server."""
        await self.stop()
        await self.start()

    def query(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in a fresh read transaction of the bot's database."""
        with session_scope(self.session_factory) as session:
            return fn(session)

    def predictions(self, telegram_id: int | None = None) -> list[Prediction]:
        """Prediction rows (of one user when ``telegram_id`` is given), oldest first."""

        def load(session: Session) -> list[Prediction]:
            statement = select(Prediction).order_by(Prediction.id)
            if telegram_id is not None:
                statement = statement.join(User).where(User.telegram_id == telegram_id)
            return list(session.scalars(statement))

        return self.query(load)

    def corrections(self) -> list[Correction]:
        return self.query(lambda session: list(session.scalars(select(Correction).order_by(Correction.id))))


def make_settings(
    server: FakeTelegramServer, tmp_path: Path, db_url: str, admin_ids: set[int], **extra: Any
) -> Settings:
    """Settings as the environment would give them, pointed at the fake server and the test directories."""
    values: dict[str, Any] = {
        "telegram_bot_token": server.token,
        "telegram_base_url": server.base_url,
        "telegram_base_file_url": server.base_file_url,
        "admin_user_ids": ",".join(str(admin) for admin in sorted(admin_ids)),
        "database_url": db_url,
        "data_dir": tmp_path / "data",
        "models_dir": tmp_path / "models",
        "download_timeout_seconds": DOWNLOAD_TIMEOUT,
        "media_group_delay_seconds": MEDIA_GROUP_DELAY,
        "admin_notice_interval_seconds": 60.0,
        **extra,
    }
    return load_settings(**values)


@pytest.fixture
async def server() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as fake:
        yield fake


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'spotter.sqlite3'}"
    migrate(url)
    return url


@pytest.fixture
def catalog() -> str:
    """Which catalog the database gets: "test" (`seed_catalog`, small and predictable) or "shipped" (the
    repository's db/catalog.toml through `db.seed`, as ``python -m db seed`` loads it). Override per test."""
    return "test"


@pytest.fixture
def session_factory(db_url: str, catalog: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    if catalog == "shipped":
        with session_scope(factory) as session:
            apply_seed(session, load_seed())
    else:
        seed_catalog(factory)
    yield factory
    engine.dispose()


@pytest.fixture
def fake_classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra settings for one test (override this fixture in a test module, or parametrize it)."""
    return {}


@pytest.fixture
async def spotter(
    server: FakeTelegramServer,
    session_factory: sessionmaker[Session],
    fake_classifier: FakeClassifier,
    db_url: str,
    tmp_path: Path,
    settings_overrides: dict[str, Any],
) -> AsyncIterator[Spotter]:
    """The bot running against the fake server (admin: a user named "Admin" who has opened the bot)."""
    admin = server.new_user("Admin")
    settings = make_settings(server, tmp_path, db_url, {admin.id}, **settings_overrides)
    harness = Spotter(server, fake_classifier, settings, session_factory, admin)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
        await fake_classifier.close()
