"""``python -m bot`` (long polling) or ``python -m bot --webhook``: read settings once, configure logging,
check the database schema and the model, then serve. Startup problems are one line on stderr, exit code 2
(configuration) or 1 (database/model), never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import InvalidToken, NetworkError

from bot.config import Settings, SettingsError, load_settings

log = logging.getLogger("bot")

# Spotter answers messages and button presses only (edits, reactions, member updates are not needed).
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
EXIT_CONFIG = 2
EXIT_STARTUP = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line: ``--webhook`` serves the webhook instead of long polling."""
    parser = argparse.ArgumentParser(prog="python -m bot", description="Run the Spotter Telegram bot.")
    parser.add_argument(
        "--webhook",
        action="store_true",
        help="serve a webhook (WEBHOOK_URL, WEBHOOK_LISTEN, WEBHOOK_PORT, WEBHOOK_PATH, "
        "WEBHOOK_SECRET_TOKEN) instead of long polling",
    )
    return parser.parse_args(argv)


def configure_logging(level: str) -> None:
    """Log to stderr with timestamps. httpx logs every request URL, which contains the bot token, so it is
    kept at WARNING."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class RedactSecret(logging.Filter):
    """Handler filter replacing a secret (the bot token) in log messages and tracebacks with ``<token>``:
    PTB's errors quote the token (InvalidToken: "The token `...` was rejected by the server")."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message and traceback now, with the secret replaced; always keep the record."""
        if self.secret:
            try:
                message = record.getMessage()
            except Exception:  # a malformed log call: leave it to the handler's own error reporting
                return True
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = message.replace(self.secret, "<token>"), None
            if record.exc_text:
                record.exc_text = record.exc_text.replace(self.secret, "<token>")
        return True


def redact_token_in_logs(token: str) -> None:
    """Add `RedactSecret` for ``token`` to every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecret(token))


def webhook_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `Application.run_webhook`. PTB's webhook server answers 403 to any request
    whose X-Telegram-Bot-Api-Secret-Token header differs from ``secret_token``. Raises SettingsError when
    WEBHOOK_URL or WEBHOOK_SECRET_TOKEN is missing."""
    missing = [
        name
        for name, value in (
            ("WEBHOOK_URL", settings.webhook_url),
            ("WEBHOOK_SECRET_TOKEN", settings.webhook_secret_token),
        )
        if not value
    ]
    if missing:
        raise SettingsError(f"{' and '.join(missing)} must be set for --webhook")
    assert settings.webhook_url is not None and settings.webhook_secret_token is not None
    path = settings.webhook_path.strip("/")
    url = settings.webhook_url.rstrip("/")
    if path and not url.endswith("/" + path):
        url = f"{url}/{path}"
    return {
        "listen": settings.webhook_listen,
        "port": settings.webhook_port,
        "url_path": path,
        "webhook_url": url,
        "secret_token": settings.webhook_secret_token.get_secret_value(),
        "allowed_updates": ALLOWED_UPDATES,
    }


def check_database(settings: Settings) -> str:
    """Raise db.errors.DatabaseBehindError unless the schema is at Alembic head (migrates nothing).
    Returns a log-safe description of the database (URL without password, catalog size)."""
    from sqlalchemy.engine import make_url

    from db import repositories as repo
    from db.schema import ensure_schema_current
    from db.session import make_engine, make_session_factory, session_scope

    url = settings.resolved_database_url()
    engine = make_engine(url)
    try:
        ensure_schema_current(engine)
        with session_scope(make_session_factory(engine)) as session:
            counts = repo.equipment_with_tutorial_counts(session)
    finally:
        engine.dispose()
    safe = make_url(url).render_as_string(hide_password=True)
    tutorials = sum(n for _, n in counts)
    return f"{safe} (schema at head; {len(counts)} equipment types, {tutorials} tutorials)"


def check_model(settings: Settings) -> str:
    """Raise classifier.registry.RegistryError when MODELS_DIR has no champion; returns its version."""
    from classifier.registry import Registry, RegistryError

    champion = Registry(settings.models_dir).champion()
    if champion is None:
        raise RegistryError(
            f"no champion model in {settings.models_dir}: set MODELS_DIR to the repository's models/ folder "
            "or train one with `python -m classifier train`"
        )
    return champion


def int8_setting_problem(settings: Settings) -> str | None:
    """One line when CLASSIFIER_PRECISION=int8 is set with a TRAINING_DATA_DIR that is not a directory or
    cannot be read (its photos calibrate the int8 backbone, see classifier.quantize), else None. Unset, or a
    folder without photos, is not a problem: int8 then uses the dynamic-range recipe (logged). ``auto``
    never fails here: it falls back to the dynamic-range recipe, then to the float model."""
    if settings.classifier_precision != "int8" or settings.training_data_dir is None:
        return None
    from classifier.quantize import CalibrationDataError, calibration_photos

    data = settings.training_data_dir
    if not Path(data).is_dir():
        return f"TRAINING_DATA_DIR={data} is not a directory (CLASSIFIER_PRECISION=int8 calibrates on it)"
    try:
        calibration_photos(Path(data))
    except CalibrationDataError as exc:
        return f"TRAINING_DATA_DIR={data} cannot be read ({exc.reason}), needed by CLASSIFIER_PRECISION=int8"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    try:
        settings = load_settings()
        options = webhook_options(settings) if args.webhook else None
    except SettingsError as error:
        print(f"spotter: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    redact_token_in_logs(settings.token())

    weights = settings.vgg16_weights
    if weights != "imagenet" and not Path(weights).is_file():
        print(
            f"spotter: configuration error: VGG16_WEIGHTS must be 'imagenet' or an existing weights file, "
            f"got {weights!r}",
            file=sys.stderr,
        )
        return EXIT_CONFIG

    problem = int8_setting_problem(settings)
    if problem:
        print(f"spotter: configuration error: {problem}", file=sys.stderr)
        return EXIT_CONFIG

    from classifier.quantize import Int8UnavailableError
    from classifier.registry import RegistryError
    from classifier.types import BackboneMismatchError, BackboneUnavailableError
    from db.errors import DatabaseBehindError, DatabaseUnavailableError

    try:
        log.info("Database: %s", check_database(settings))
        log.info(
            "Champion model: %s in %s (VGG16 weights: %s)",
            check_model(settings),
            settings.models_dir,
            settings.vgg16_weights,
        )
    except (DatabaseBehindError, DatabaseUnavailableError, RegistryError) as error:
        print(f"spotter: cannot start: {error}", file=sys.stderr)
        return EXIT_STARTUP

    from bot.app import build_application

    application = build_application(settings)
    log.info(
        "Starting Spotter (%s) with %d admin(s), Bot API %s",
        "webhook" if options else "long polling",
        len(settings.admin_user_ids),
        settings.telegram_base_url,
    )
    try:
        if options is not None:
            application.run_webhook(**options)
        else:
            application.run_polling(allowed_updates=ALLOWED_UPDATES)
    except (RegistryError, BackboneMismatchError, BackboneUnavailableError, Int8UnavailableError) as error:
        print(f"spotter: cannot load the model: {error}", file=sys.stderr)
        return EXIT_STARTUP
    except InvalidToken:  # PTB's message repeats the token: never print it
        print(
            "spotter: configuration error: the Bot API rejected TELEGRAM_BOT_TOKEN (revoked or mistyped? "
            "check it with @BotFather)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    except NetworkError as error:  # TimedOut included: e.g. the Bot API is unreachable at startup
        reason = str(error).replace(settings.token(), "<token>")
        print(
            f"spotter: cannot start: the Bot API at {settings.telegram_base_url} failed: {reason}",
            file=sys.stderr,
        )
        return EXIT_STARTUP
    return 0


if __name__ == "__main__":
    sys.exit(main())
