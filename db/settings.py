"""Database settings read from the environment (and an optional ``.env``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class DatabaseSettings(BaseSettings):
    """DATABASE_URL: any SQLAlchemy URL; default a SQLite file ``spotter.sqlite3`` under DATA_DIR.
    YOUTUBE_API_KEY: optional; without it video metadata stays as the curator typed it (unverified)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    youtube_api_key: str | None = None

    def resolved_database_url(self) -> str:
        """The URL to connect to: DATABASE_URL, or ``sqlite:///<DATA_DIR>/spotter.sqlite3``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'spotter.sqlite3'}"
