"""The error handler: the user gets a message, the log gets the traceback, admins get a rate-limited
notice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from telegram import Update
from telegram.error import Conflict, Forbidden, NetworkError, TelegramError
from telegram.ext import ContextTypes

from bot import texts
from bot.services import get_services

log = logging.getLogger(__name__)

NOTICE_LIMITER_KEY = "errors.notice_limiter"


@dataclass
class NoticeLimiter:
    """Allows one notice per ``interval`` seconds and counts the ones it suppressed in between (pure)."""

    interval: float
    clock: Callable[[], float] = time.monotonic
    _last: float | None = None
    _suppressed: int = field(default=0)

    def allow(self) -> tuple[bool, int]:
        """(True, number suppressed since the last allowed notice) when a notice may go out now."""
        now = self.clock()
        if self._last is None or now - self._last >= self.interval:
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
            return True, suppressed
        self._suppressed += 1
        return False, 0


def describe_update(update: object) -> str:
    """A short, log-safe description of an update (ids and kind only, no message text)."""
    if isinstance(update, Update):
        user = update.effective_user.id if update.effective_user else None
        chat = update.effective_chat.id if update.effective_chat else None
        kind = (
            "callback query" if update.callback_query else "message" if update.effective_message else "update"
        )
        return f"{kind} {update.update_id} (user {user}, chat {chat})"
    return "no update (polling, job or startup)"


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """PTB error handler. 409 Conflict (another instance polling) and network hiccups while polling are logged
    without a traceback storm; everything else is logged with its traceback, the user is told, and admins are
    notified at most once per ADMIN_NOTICE_INTERVAL_SECONDS."""
    error = context.error
    if isinstance(error, Conflict):
        log.error(
            "409 Conflict from Telegram: another instance of this bot is polling getUpdates (or a webhook is "
            "set) with the same token. Stop the other instance; this one keeps retrying. (%s)",
            error.message,
        )
        await notify_admins(context, "409 Conflict: another instance is running with this token")
        return
    if update is None and isinstance(error, NetworkError):
        log.warning("Network error while polling Telegram (PTB retries): %s", error)
        return
    if isinstance(error, Forbidden):  # the user blocked the bot or left the chat: nobody to tell
        log.warning("Forbidden while handling %s: %s", describe_update(update), error)
        return
    log.error("Error while handling %s", describe_update(update), exc_info=error)
    if isinstance(update, Update):
        await _tell_user(update)
    summary = f"{type(error).__name__}: {error}" if error else "unknown error"
    await notify_admins(context, f"{summary} — {describe_update(update)}")


async def _tell_user(update: Update) -> None:
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(texts.SOMETHING_WRONG, show_alert=True)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(texts.SOMETHING_WRONG)
    except TelegramError as error:
        log.warning("Could not tell the user about the error: %s", error)


def _limiter(context: ContextTypes.DEFAULT_TYPE) -> NoticeLimiter:
    services = get_services(context)
    limiter = services.state.get(NOTICE_LIMITER_KEY)
    if not isinstance(limiter, NoticeLimiter):
        limiter = NoticeLimiter(services.settings.admin_notice_interval_seconds)
        services.state[NOTICE_LIMITER_KEY] = limiter
    return limiter


async def notify_admins(context: ContextTypes.DEFAULT_TYPE, summary: str) -> None:
    """Send admins a notice about a failure, at most one per ADMIN_NOTICE_INTERVAL_SECONDS (the next one
    says how many were suppressed); failures to deliver are only logged."""
    try:
        services = get_services(context)
    except RuntimeError:
        return
    allowed, suppressed = _limiter(context).allow()
    if not allowed:
        return
    text = texts.admin_error_notice(summary, suppressed)
    for admin_id in sorted(services.settings.admin_user_ids):
        try:
            await context.bot.send_message(admin_id, text)
        except (Forbidden, TelegramError) as error:
            log.warning("Could not notify admin %s: %s", admin_id, error)


__all__: list[Any] = ["NoticeLimiter", "describe_update", "notify_admins", "on_error"]
