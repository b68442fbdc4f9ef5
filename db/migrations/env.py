"""Alembic environment for Spotter.

The URL comes from, in order: a Connection passed in ``config.attributes["connection"]`` (tests, programmatic
use), ``config.attributes["url"]``, ``-x url=...`` on the command line, then db.settings.DatabaseSettings
(DATABASE_URL / DATA_DIR), so ``DATABASE_URL=... alembic upgrade head`` migrates that database.
SQLite runs in batch mode (render_as_batch) so ALTERs work; the models' MetaData carries the naming
convention.
"""

from __future__ import annotations

import logging.config
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from db.models import Base, UTCDateTime
from db.session import make_engine
from db.settings import DatabaseSettings

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    return str(url) if url else DatabaseSettings().resolved_database_url()


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our UTCDateTime as a plain ``sa.DateTime(timezone=True)`` so migrations never import models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        render_item=_render_item,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) without a database connection."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection (given, or from the configured URL)."""
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _configure(given)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            driver: Any = connection.connection.driver_connection
            if sqlite:
                # Batch mode recreates tables (copy, DROP, rename); with foreign keys ON, dropping a parent
                # table would cascade-delete its children's rows. Off for the migration (outside any
                # transaction, where the pragma takes effect), verified with foreign_key_check after.
                driver.execute("PRAGMA foreign_keys=OFF")
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
            if sqlite:
                problems = driver.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration left rows violating foreign keys: {problems[:10]}")
    finally:
        engine.dispose()  # the connection with foreign keys OFF is never reused


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
