"""User commands: /start, /help, /equipment, /forget (with its confirmation buttons)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from bot import data, keyboards, texts
from bot.callback_data import FORGET_PATTERN, CallbackDataError, parse_forget
from bot.services import get_services

log = logging.getLogger(__name__)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """User commands and the /forget confirmation buttons (group 0)."""
    application.add_handler(CommandHandler("start", on_start))
    application.add_handler(CommandHandler("help", on_help))
    application.add_handler(CommandHandler("equipment", on_equipment))
    application.add_handler(CommandHandler("forget", on_forget))
    application.add_handler(CallbackQueryHandler(on_forget_button, pattern=FORGET_PATTERN))


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What Spotter does, how photos are used, kept and deleted."""
    message = update.effective_message
    if message is not None:
        user = update.effective_user
        await message.reply_text(texts.start_text(user.first_name if user else None))


async def on_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """How to use the bot (admins also see their commands)."""
    message = update.effective_message
    if message is not None:
        user = update.effective_user
        is_admin = get_services(context).settings.is_admin(user.id if user else None)
        await message.reply_text(texts.help_text(is_admin))


async def on_equipment(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """What Spotter knows, with tutorial counts."""
    message = update.effective_message
    if message is None:
        return
    items = await asyncio.to_thread(data.equipment_counts, get_services(context).session_factory)
    await message.reply_text(texts.equipment_list_text(items))


async def on_forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Ask for confirmation before deleting the user's photos, predictions and corrections."""
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    await message.reply_text(texts.FORGET_CONFIRM, reply_markup=keyboards.forget_keyboard(user.id))


def forget_feedback_copies(data_dir: Path, photo_paths: list[str]) -> int:
    """Delete the retraining feedback set's copies (DATA_DIR/feedback/<class>/<sha256>.<ext>) of photos that
    /forget removed, so they cannot train a later model (BLOCKING file I/O; no TensorFlow). Stored photo
    files are named by their sha256, which is how the copies are found. Returns the number removed."""
    from classifier.retrain import forget_feedback

    hashes = {Path(path).stem for path in photo_paths}
    return forget_feedback(data_dir, hashes) if hashes else 0


async def on_forget_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The /forget confirmation: only the user who asked can confirm; tampered data changes nothing."""
    query = update.callback_query
    if query is None:
        return
    try:
        choice = parse_forget(query.data)
    except CallbackDataError:
        await query.answer(texts.STALE_BUTTON)
        return
    if choice.user_id != query.from_user.id:
        await query.answer(texts.FORGET_NOT_YOURS, show_alert=True)
        return
    if not choice.confirm:
        await query.answer()
        await query.edit_message_text(texts.FORGET_CANCELLED)
        return
    services = get_services(context)
    result = await asyncio.to_thread(data.forget_user, services.session_factory, query.from_user.id)
    deleted_files = 0
    for path in result.photo_paths_to_delete:
        if await asyncio.to_thread(services.photo_store.delete, path):
            deleted_files += 1
    feedback_copies = await asyncio.to_thread(
        forget_feedback_copies, services.settings.data_dir, result.photo_paths_to_delete
    )
    log.info(
        "Forgot user %s: %d predictions, %d corrections, %d photo files, %d feedback training copies",
        query.from_user.id,
        result.predictions_deleted,
        result.corrections_deleted,
        deleted_files,
        feedback_copies,
    )
    if deleted_files == result.predictions_deleted == result.corrections_deleted == feedback_copies == 0:
        # Also a double tap on "Yes": the first press already deleted everything and edited the message;
        # overwriting it with "deleted 0 photos" would tell her nothing was deleted.
        await query.answer(texts.FORGET_NOTHING_LEFT, show_alert=True)
        try:
            await query.edit_message_reply_markup(None)
        except BadRequest as error:  # "message is not modified": the first press removed the buttons
            log.debug("forget: buttons already gone: %s", error)
        return
    await query.answer()
    await query.edit_message_text(
        texts.forget_done_text(deleted_files, result.predictions_deleted, result.corrections_deleted)
    )
