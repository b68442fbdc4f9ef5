"""Composition root of the Telegram front end: `build_application` wires settings, services and handlers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, Defaults

from bot import data, jobs
from bot.config import Settings
from bot.handlers import admin, commands, errors, feedback, media, photo, retraining
from bot.photo_store import PhotoStore
from bot.services import Services, get_services, install_services
from classifier.types import Classifier

log = logging.getLogger(__name__)

AnyApplication = Application[Any, Any, Any, Any, Any, Any]

USER_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "What Spotter does and how your photos are kept"),
    ("help", "How to use Spotter"),
    ("equipment", "Equipment I can recognise"),
    ("forget", "Delete your photos, guesses and corrections"),
)
ADMIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("addvideo", "Add a tutorial: /addvideo <equipment> <YouTube link>"),
    ("removevideo", "Remove a tutorial: /removevideo <id or link>"),
    ("videos", "List tutorials: /videos [equipment]"),
    ("stats", "Users, photos, corrections, agreement"),
    ("model", "Champion model, metrics and confusion matrix"),
)

# Bot API timeouts in seconds (PTB adds the long-polling timeout to getUpdates' read timeout itself).
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 20.0
WRITE_TIMEOUT = 20.0
MEDIA_WRITE_TIMEOUT = 60.0
POOL_TIMEOUT = 10.0
# 429 Too Many Requests: AIORateLimiter waits `retry_after` and retries this many times.
RATE_LIMIT_RETRIES = 3


def build_application(
    settings: Settings,
    *,
    classifier: Classifier | None = None,
    session_factory: sessionmaker[Session] | None = None,
) -> AnyApplication:
    """Build (not start) the PTB Application for ``settings``.

    classifier: defaults to `classifier.serving.ClassifierService` on MODELS_DIR / VGG16_WEIGHTS (started in
    post_init, closed in post_shutdown; TensorFlow only loads in its worker). Tests inject a fake; an injected
    object with ``start``/``close`` coroutines gets them called the same way.
    session_factory: defaults to one on ``settings.resolved_database_url()``.
    Bot API URLs come from TELEGRAM_BASE_URL / TELEGRAM_BASE_FILE_URL (a local or fake Bot API server).
    """
    if classifier is None:
        from classifier.serving import ClassifierService

        classifier = ClassifierService(
            settings.models_dir,
            settings.vgg16_weights,
            precision=settings.classifier_precision,
            training_data_dir=settings.training_data_dir,
            cache_dir=settings.data_dir / "cache",
        )
    if session_factory is None:
        from db.session import make_engine, make_session_factory

        session_factory = make_session_factory(make_engine(settings.resolved_database_url()))

    application = (
        ApplicationBuilder()
        .token(settings.token())
        .base_url(settings.telegram_base_url)
        .base_file_url(settings.telegram_base_file_url)
        .defaults(Defaults(parse_mode="HTML"))
        .rate_limiter(AIORateLimiter(max_retries=RATE_LIMIT_RETRIES))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .write_timeout(WRITE_TIMEOUT)
        .media_write_timeout(MEDIA_WRITE_TIMEOUT)
        .pool_timeout(POOL_TIMEOUT)
        .get_updates_connect_timeout(CONNECT_TIMEOUT)
        .get_updates_read_timeout(READ_TIMEOUT)
        .get_updates_pool_timeout(POOL_TIMEOUT)
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .build()
    )
    install_services(
        application,
        Services(
            classifier=classifier,
            session_factory=session_factory,
            settings=settings,
            photo_store=PhotoStore(settings.photos_dir.resolve()),  # absolute paths on prediction rows
        ),
    )
    register_handlers(application)
    jobs.schedule_jobs(application, settings)
    return application


def register_handlers(application: AnyApplication) -> None:
    """Register every handler. Within a group the first matching handler wins; groups run in order."""
    # Group 0: everything a user or admin asks for, one handler per update.
    commands.register(application)  # /start /help /equipment /forget (+ its confirmation buttons)
    admin.register(application)  # /addvideo /removevideo /videos /stats /model (admins only)
    retraining.register(application)  # /retrain /review /rollback /versions (issue 6, admins only)
    feedback.register(application)  # Correct / Wrong / picker callback queries
    photo.register(application)  # photos and image files, single or albums (block=False)
    media.register(application)  # stickers, animations, videos, voice, other files -> "send a photo"
    # Group 100: unknown /commands, after every group-0 command handler had its chance.
    media.register_unknown_command(application, group=100)
    # Errors from any handler or from polling.
    application.add_error_handler(errors.on_error)


def admin_commands(application: AnyApplication) -> list[tuple[str, str]]:
    """The admin menu: user commands, our admin commands, and those of the retraining module."""
    extra: tuple[tuple[str, str], ...] = tuple(getattr(retraining, "ADMIN_COMMANDS", ()))
    return [*USER_COMMANDS, *ADMIN_COMMANDS, *extra]


async def set_command_menus(application: AnyApplication) -> None:
    """Set the default command menu and, per admin, a chat-scoped admin menu (failures are logged)."""
    settings = get_services(application).settings
    bot = application.bot
    await bot.set_my_commands(
        [BotCommand(name, text) for name, text in USER_COMMANDS], scope=BotCommandScopeDefault()
    )
    admin_menu = [BotCommand(name, text) for name, text in admin_commands(application)]
    for admin_id in sorted(settings.admin_user_ids):
        try:
            await bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
        except TelegramError as error:  # e.g. "chat not found" until the admin has opened the bot
            log.warning("Could not set the admin command menu for %s: %s", admin_id, error)


async def _post_init(application: AnyApplication) -> None:
    services = get_services(application)
    start = getattr(services.classifier, "start", None)
    if start is not None:
        await start()
    labels = list(services.classifier.labels)
    log.info("Classifier ready: model version %s, %d labels", services.classifier.model_version, len(labels))
    version = services.classifier.model_version
    if await asyncio.to_thread(data.record_serving_version, services.session_factory, version):
        log.info("Recorded %s as the champion in the database", version)
    known = {
        equipment.slug for equipment in await asyncio.to_thread(data.list_equipment, services.session_factory)
    }
    missing = sorted(set(labels) - known)
    if missing:
        log.warning("Labels without a catalog entry (run `python -m db seed`): %s", ", ".join(missing))
    await set_command_menus(application)


async def _post_shutdown(application: AnyApplication) -> None:
    services = get_services(application)
    close = getattr(services.classifier, "close", None)
    if close is not None:
        await close()
