"""Admin commands (only user ids in ADMIN_USER_IDS): catalog curation, statistics, the model."""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bot import texts
from bot.services import get_services

log = logging.getLogger(__name__)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Admin commands (group 0)."""
    for command in ("addvideo", "removevideo", "videos", "stats", "model"):
        application.add_handler(CommandHandler(command, on_admin_command))


async def on_admin_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Refuse non-admins; the commands themselves follow in the next commit."""
    message, user = update.effective_message, update.effective_user
    if message is None:
        return
    if not get_services(context).settings.is_admin(user.id if user else None):
        await message.reply_text(texts.NOT_ALLOWED)
        return
    await message.reply_text("Not implemented yet.")
