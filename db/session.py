"""Engine and session factory from a SQLAlchemy URL.

SQLite (the default) gets, per connection: foreign keys ON (SQLite leaves them off unless asked), a 30 s busy
timeout, WAL journaling for file databases (the bot reads while a retrain subprocess writes), and real
transactions. The sqlite3 driver's legacy mode emits no BEGIN before SELECT or SAVEPOINT, so a released
SAVEPOINT commits on its own and a later ROLLBACK cannot undo it (SQLAlchemy docs, "Legacy Transaction Mode
with the sqlite3 driver"); following the recipe there, the driver's transaction control is switched off and
SQLAlchemy emits the BEGIN itself. It emits ``BEGIN IMMEDIATE``: every transaction takes SQLite's single
write lock when it starts, so two concurrent read-then-write transactions queue on the busy timeout instead
of failing with "database is locked" when the second upgrades its read lock. Spotter's transactions are
short (no transaction is held while a model trains). The parent directory of the file is created.
Other backends (PostgreSQL) are used as SQLAlchemy configures them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import DatabaseUnavailableError

SQLITE_BUSY_TIMEOUT_S = 30.0


def sqlite_file_path(url: str) -> Path | None:
    """The file path of a SQLite URL, or None for other backends and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an Engine for ``url`` (any SQLAlchemy URL).

    For a SQLite file the parent directory is created (``sqlite:///data/spotter.sqlite3`` -> ``data/``), and
    every connection runs ``PRAGMA foreign_keys=ON`` (and ``journal_mode=WAL`` for files). Raises
    db.errors.DatabaseUnavailableError (one line, password hidden) for a malformed URL, an unknown dialect, a
    missing driver or a SQLite folder that cannot be created.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUnavailableError(f"DATABASE_URL is not a valid SQLAlchemy URL: {exc}") from None
    where = parsed.render_as_string(hide_password=True)
    path = sqlite_file_path(url)
    kwargs: dict[str, Any] = {"echo": echo}
    is_sqlite = parsed.get_backend_name() == "sqlite"
    try:
        if path is not None:
            path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        if is_sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError, OSError) as exc:  # NoSuchModuleError is an ArgumentError
        raise DatabaseUnavailableError(f"Database {where} cannot be used: {exc}") from None
    if is_sqlite:
        use_wal = path is not None

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy, not the driver, emits BEGIN (below)
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA foreign_keys=ON")
                if use_wal:
                    cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A sessionmaker bound to ``engine``; objects stay usable after commit (``expire_on_commit=False``)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: yields a Session, commits when the block succeeds, rolls back and re-raises if not.

    This is the caller's side of "repositories never commit":

        with session_scope(factory) as session:
            record_prediction(session, ...)
    """
    with factory() as session, session.begin():
        yield session
