"""Callback queries of the feedback buttons: Correct, Wrong (opens the picker), a picked label, Back.

State lives in the database (the button carries only a verb and a prediction id), so buttons keep working
after a restart. Each press is checked: well-formed data, an existing prediction, owned by the presser, a
known label; otherwise the user gets a polite answer and nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.error import BadRequest
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot import data, keyboards, replies, texts
from bot.callback_data import FEEDBACK_PATTERN, NOT_EQUIPMENT, CallbackDataError, FeedbackData, parse_feedback
from bot.handlers.photo import NO_PREVIEW
from bot.services import Services, get_services
from db.errors import CorrectionLockedError, NotFoundError, NotYourPredictionError, UnknownLabelError
from db.models import NOT_EQUIPMENT as DB_NOT_EQUIPMENT

log = logging.getLogger(__name__)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Feedback buttons (group 0); other callback data (e.g. admin review) is left to its own handler."""
    application.add_handler(CallbackQueryHandler(on_feedback, pattern=FEEDBACK_PATTERN))


async def on_feedback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Validate the button, load the presser's own prediction, then confirm / open picker / store choice."""
    query = update.callback_query
    if query is None:
        return
    try:
        button = parse_feedback(query.data)
    except CallbackDataError:
        log.info("Rejected malformed callback data from user %s", query.from_user.id)
        await query.answer(texts.STALE_BUTTON)
        return
    services = get_services(context)
    try:
        target = await asyncio.to_thread(
            data.load_feedback_target, services.session_factory, button.prediction_id, query.from_user.id
        )
    except NotFoundError:
        await query.answer(texts.STALE_BUTTON)
        return
    except NotYourPredictionError:
        log.info("User %s pressed a button of prediction %s", query.from_user.id, button.prediction_id)
        await query.answer(texts.NOT_YOUR_PREDICTION, show_alert=True)
        return
    message = query.message if isinstance(query.message, Message) else None
    if button.verb == "ok":
        await _confirm(query, message, services, target)
    elif button.verb == "no":
        await _open_picker(query, message, services, target)
    elif button.verb == "bk":
        await _close_picker(query, message, target)
    else:
        await _store_choice(query, message, services, button, target)


def _is_album(message: Message | None) -> bool:
    return message is not None and len(keyboards.feedback_prediction_ids(message.reply_markup)) > 1


def _is_separate_picker(message: Message | None) -> bool:
    return message is not None and (message.text or "").startswith(texts.PICKER_PREFIX)


async def _edit_append(query: CallbackQuery, message: Message | None, addition: str) -> None:
    """Append a line to the bot's message and drop its buttons (quietly ignore "message is not modified")."""
    if message is None:
        return
    try:
        await query.edit_message_text(
            f"{message.text_html}\n\n{addition}", reply_markup=None, link_preview_options=NO_PREVIEW
        )
    except BadRequest as error:
        log.info("Could not edit message %s: %s", message.message_id, error)


async def _edit_markup(query: CallbackQuery, markup: InlineKeyboardMarkup | None) -> None:
    try:
        await query.edit_message_reply_markup(markup)
    except BadRequest as error:
        log.info("Could not edit buttons: %s", error)


async def _confirm(
    query: CallbackQuery, message: Message | None, services: Services, target: data.FeedbackTarget
) -> None:
    try:
        await asyncio.to_thread(
            data.confirm_prediction, services.session_factory, target.prediction_id, query.from_user.id
        )
    except CorrectionLockedError:
        await query.answer(texts.ALREADY_ANSWERED)
        return
    await query.answer(texts.thanks_confirm_text())
    if _is_album(message):
        assert message is not None and message.reply_markup is not None
        await _edit_markup(query, keyboards.without_prediction(message.reply_markup, target.prediction_id))
    else:
        await _edit_append(query, message, texts.thanks_confirm_text())


async def _open_picker(
    query: CallbackQuery, message: Message | None, services: Services, target: data.FeedbackTarget
) -> None:
    equipment = await asyncio.to_thread(data.list_equipment, services.session_factory)
    picker = keyboards.picker_keyboard(target.prediction_id, equipment)
    await query.answer()
    if message is None:
        return
    if _is_album(message):
        index = keyboards.album_index(message.reply_markup, target.prediction_id)
        await message.reply_text(
            texts.picker_prompt(index),
            reply_markup=picker,
            reply_parameters=ReplyParameters(message.message_id, allow_sending_without_reply=True),
        )
    else:
        await _edit_markup(query, picker)


async def _close_picker(query: CallbackQuery, message: Message | None, target: data.FeedbackTarget) -> None:
    await query.answer()
    if message is None:
        return
    if _is_separate_picker(message):
        try:
            await message.delete()
        except BadRequest as error:
            log.info("Could not delete picker message: %s", error)
        return
    await _edit_markup(query, replies.restore_keyboard(target.decision, target.prediction_id, target.choices))


async def _store_choice(
    query: CallbackQuery,
    message: Message | None,
    services: Services,
    button: FeedbackData,
    target: data.FeedbackTarget,
) -> None:
    label = DB_NOT_EQUIPMENT if button.label == NOT_EQUIPMENT else str(button.label)
    settings = services.settings
    try:
        chosen = await asyncio.to_thread(
            data.record_choice,
            services.session_factory,
            target.prediction_id,
            query.from_user.id,
            label,
            is_admin=settings.is_admin(query.from_user.id),
            agreement_threshold=settings.review_agreement_users,
        )
    except UnknownLabelError:
        log.info("Rejected unknown label %r from user %s", label, query.from_user.id)
        await query.answer(texts.STALE_BUTTON)
        return
    except CorrectionLockedError:
        await query.answer(texts.ALREADY_ANSWERED)
        return
    log.info("Prediction %s: user %s chose %s", target.prediction_id, query.from_user.id, label)
    thanks = texts.thanks_correction_text(chosen.name if chosen else None)
    await query.answer("Thanks!")
    if _is_separate_picker(message):
        try:
            await query.edit_message_text(thanks, reply_markup=None)
        except BadRequest as error:
            log.info("Could not edit picker message: %s", error)
        assert message is not None
        await _drop_from_album(message.reply_to_message, target.prediction_id)
    elif _is_album(message):
        assert message is not None and message.reply_markup is not None
        await _edit_markup(query, keyboards.without_prediction(message.reply_markup, target.prediction_id))
    else:
        await _edit_append(query, message, thanks)


async def _drop_from_album(album: Message | None, prediction_id: int) -> None:
    """Remove the answered photo's buttons from the album reply the picker answered (when Telegram included
    that message; the buttons would otherwise still work, just redundantly)."""
    if album is None or prediction_id not in keyboards.feedback_prediction_ids(album.reply_markup):
        return
    assert album.reply_markup is not None
    try:
        await album.edit_reply_markup(keyboards.without_prediction(album.reply_markup, prediction_id))
    except BadRequest as error:
        log.info("Could not update the album buttons: %s", error)
