"""Settings of the bot process (pydantic-settings): read once by the entry point and passed down.

Everything comes from environment variables (and an optional ``.env``); see the README section
"Running the bot".
"""

from __future__ import annotations

import re
from datetime import UTC, time
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from classifier.settings import ClassifierSettings
from db.settings import DatabaseSettings

TELEGRAM_API_URL = "https://api.telegram.org/bot"
TELEGRAM_FILE_URL = "https://api.telegram.org/file/bot"

# A Bot API token is "<bot id>:<secret>" (https://core.telegram.org/bots/api#authorizing-your-bot);
# BotFather's secrets are 35 characters of [A-Za-z0-9_-]; we accept 10-128 so test tokens stay short.
TOKEN_PATTERN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{10,128}$")
# The Bot API allows 1-256 characters A-Z, a-z, 0-9, _ and - in a webhook secret token (setWebhook docs).
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class SettingsError(ValueError):
    """A setting is missing or malformed; ``str(error)`` is one line fit for the console."""


class Settings(ClassifierSettings, DatabaseSettings):
    """All settings of ``python -m bot``.

    TELEGRAM_BOT_TOKEN (required): the token from BotFather, ``<digits>:<secret>``.
    TELEGRAM_BASE_URL / TELEGRAM_BASE_FILE_URL: Bot API endpoints (a local Bot API server, or the fake one in
    tests); PTB appends the token. ADMIN_USER_IDS: comma-separated Telegram user ids (``"1, 2"``).
    WEBHOOK_URL / WEBHOOK_LISTEN / WEBHOOK_PORT / WEBHOOK_PATH / WEBHOOK_SECRET_TOKEN: used by ``--webhook``.
    RETRAIN_TIME: daily retraining time of day, ``HH:MM`` (UTC unless an offset is given);
    RETRAIN_TIMEOUT_SECONDS: the retraining subprocess is killed after this. Timeouts are in seconds.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    telegram_bot_token: SecretStr
    telegram_base_url: str = TELEGRAM_API_URL
    telegram_base_file_url: str = TELEGRAM_FILE_URL
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()

    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8443, ge=1, le=65535)
    webhook_path: str = "telegram"
    webhook_secret_token: SecretStr | None = None

    retrain_time: time = time(3, 0, tzinfo=UTC)
    retrain_timeout_seconds: float = Field(default=3600.0, gt=0)

    # Photos: Bot API getFile refuses files over 20 MB (https://core.telegram.org/bots/api#getfile).
    max_download_bytes: int = 20 * 1024 * 1024
    download_timeout_seconds: float = 20.0
    # Classifying one photo takes ~0.1-0.5 s; a request still waiting after this is abandoned (user told).
    classify_timeout_seconds: float = Field(default=60.0, gt=0)
    # Photo sizes: the smallest size whose shorter side is at least this is downloaded. The champion takes
    # 320 px (v0006, v0007); 448 (Telegram's 800 px size) keeps stored photos useful for retraining at higher
    # resolution.
    min_photo_side: int = 448
    # Albums: wait this long after the last photo of a media group before answering once for all of them.
    media_group_delay_seconds: float = 1.0
    # At most one "something went wrong" notice to admins per this many seconds.
    admin_notice_interval_seconds: float = 300.0
    # Review rule (issue 6): different users who must pick the same label for the same image before a
    # non-admin correction may train the model without an admin's approval (>= 2).
    review_agreement_users: int = Field(default=3, ge=2)
    # Tutorials shown per answer.
    max_tutorials: int = 3
    log_level: str = "INFO"

    @field_validator("telegram_bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        if not TOKEN_PATTERN.fullmatch(value.get_secret_value().strip()):
            raise ValueError("malformed")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("webhook_secret_token")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET_PATTERN.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(part) for part in parts if part)
            except ValueError:
                raise ValueError("must be comma-separated numeric Telegram user ids") from None
        return value

    @field_validator("retrain_time")
    @classmethod
    def _utc(cls, value: time) -> time:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def token(self) -> str:
        """The bot token as plain text (for PTB only; never log it)."""
        return self.telegram_bot_token.get_secret_value()

    def is_admin(self, user_id: int | None) -> bool:
        """True when ``user_id`` is listed in ADMIN_USER_IDS."""
        return user_id is not None and user_id in self.admin_user_ids

    @property
    def photos_dir(self) -> Path:
        """Where user photos are stored: DATA_DIR/photos."""
        return self.data_dir / "photos"


def load_settings(**overrides: object) -> Settings:
    """Read the settings from the environment (and ``.env``), with keyword overrides for tests.

    Raises SettingsError with a one-line message naming the variable when one is missing or malformed.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad environment variable and why, e.g. ``TELEGRAM_BOT_TOKEN is missing``."""
    problems: list[str] = []
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc", ())).upper() or "settings"
        if item.get("type") == "missing":
            hint = " (get one from @BotFather)" if name == "TELEGRAM_BOT_TOKEN" else ""
            problems.append(f"{name} is missing{hint}")
        elif name == "TELEGRAM_BOT_TOKEN":
            problems.append(
                f"{name} is malformed: expected '<bot id>:<secret>' as given by @BotFather (digits, a colon, "
                "then 10-128 letters, digits, '_' or '-')"
            )
        else:
            message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{name} is invalid: {message}")
    return "; ".join(problems)
