"""Is the database at the migrations' head? Used by the bot and every CLI before they touch the database.

Startup migrates nothing silently: a database that is behind (including a brand-new empty one), ahead of
this code, or on an unknown revision raises DatabaseBehindError whose message names the fixing command.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db.errors import DatabaseBehindError, DatabaseUnavailableError
from db.session import sqlite_file_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
UPGRADE_COMMAND = "alembic upgrade head"


def alembic_config(url: str | None = None, *, connection: Connection | None = None) -> Config:
    """An Alembic Config for db/migrations; ``url`` / ``connection`` override the settings' DATABASE_URL."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["skip_logging_config"] = True
    if url is not None:
        config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revisions() -> tuple[str, ...]:
    """The head revision id(s) of db/migrations (one unless branches were merged wrongly)."""
    return tuple(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())


def current_revisions(engine: Engine) -> tuple[str, ...]:
    """The revision(s) stamped in the database's alembic_version table; empty for a brand-new database."""
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def _safe_url(engine: Engine) -> str:
    return make_url(engine.url).render_as_string(hide_password=True)


def ensure_schema_current(engine: Engine) -> None:
    """Raise DatabaseBehindError unless the database is exactly at head (DatabaseUnavailableError when it
    cannot be read at all: not a database file, permissions, server down).

    The message says what is wrong and which command fixes it, e.g. "Database sqlite:///data/spotter.sqlite3
    is behind the code (at 0001, code needs 0002). Run `alembic upgrade head` (DATABASE_URL=... if not the
    default) and start again."
    """
    heads = set(head_revisions())
    where = _safe_url(engine)
    fix = f"Run `{UPGRADE_COMMAND}` (with DATABASE_URL={where} if that is not your default) and start again."
    path = sqlite_file_path(where)
    if path is not None and not path.exists():  # do not create an empty file just by checking
        raise DatabaseBehindError(f"Database {where} does not exist yet (it is behind the code). {fix}")
    try:
        current = set(current_revisions(engine))
    except DBAPIError as exc:  # not a database file, permissions, server down, bad credentials
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise DatabaseUnavailableError(f"Database {where} cannot be opened: {reason}") from None
    if current == heads:
        return
    if not current:
        raise DatabaseBehindError(f"Database {where} has no schema yet (it is behind the code). {fix}")
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    known = {rev for rev in current if _known(script, rev)}
    if known != current:
        raise DatabaseBehindError(
            f"Database {where} is at revision {', '.join(sorted(current))}, which this code does not know "
            f"(it is newer than the code, or from another branch). Update the code, or downgrade the "
            f"database with the code that created it; `{UPGRADE_COMMAND}` cannot fix this."
        )
    raise DatabaseBehindError(
        f"Database {where} is behind the code (at {', '.join(sorted(current))}, code needs "
        f"{', '.join(sorted(heads))}). {fix}"
    )


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises ResolutionError/CommandError subclasses for unknown ids
        return False


def upgrade_to_head(url: str) -> None:
    """Run ``alembic upgrade head`` on ``url`` in-process (for `python -m db upgrade` and tests)."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
