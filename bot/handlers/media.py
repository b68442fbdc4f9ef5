"""Messages that are not photos (stickers, animations, videos, voice, other files) and unknown commands."""

from __future__ import annotations

from typing import Any

from telegram import Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import texts
from bot.inputs import media_kind

NOT_A_PHOTO = (
    filters.Sticker.ALL
    | filters.ANIMATION
    | filters.VIDEO
    | filters.VIDEO_NOTE
    | filters.VOICE
    | filters.AUDIO
    | (filters.Document.ALL & ~filters.Document.IMAGE)
)


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Explain kindly that only photos are understood (group 0, after the photo handler)."""
    application.add_handler(MessageHandler(NOT_A_PHOTO & ~filters.UpdateType.EDITED, on_other_media))
    # Anything else in a private chat (text, location, contact, poll, dice, ...): say what to send.
    application.add_handler(
        MessageHandler(
            filters.ChatType.PRIVATE
            & ~filters.COMMAND
            & ~filters.StatusUpdate.ALL
            & ~filters.UpdateType.EDITED,
            on_text,
        )
    )


def register_unknown_command(application: Application[Any, Any, Any, Any, Any, Any], group: int) -> None:
    """Answer /commands no CommandHandler in any group knows, and buttons no CallbackQueryHandler matches
    (registered in a late group)."""
    application.add_handler(MessageHandler(filters.COMMAND, on_unknown_command), group=group)
    application.add_handler(CallbackQueryHandler(on_unknown_callback), group=group)


async def on_other_media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Sticker, animation, video, voice or a non-image file: a short friendly explanation."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(texts.PLEASE_SEND_PHOTO[media_kind(message)])


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text or any other non-photo message in a private chat: say what to send."""
    message = update.effective_message
    if message is not None:
        await message.reply_text(texts.PLEASE_SEND_PHOTO["other"])


def known_commands(application: Application[Any, Any, Any, Any, Any, Any]) -> set[str]:
    """Every command any registered CommandHandler answers, lower case."""
    known: set[str] = set()
    for handlers in application.handlers.values():
        for handler in handlers:
            if isinstance(handler, CommandHandler):
                known |= {command.lower() for command in handler.commands}
    return known


async def on_unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A /command that no handler knows gets a pointer to /help (known ones are left to their handlers)."""
    message = update.effective_message
    if message is None or not message.text:
        return
    command, _, addressee = message.text.split()[0][1:].partition("@")
    if addressee and addressee.lower() != (context.bot.username or "").lower():
        return  # addressed to another bot in a group
    if command.lower() not in known_commands(context.application):
        await message.reply_text(texts.UNKNOWN_COMMAND)


async def on_unknown_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button whose data no other CallbackQueryHandler accepts (tampered or from an old bot version): a
    polite answer, nothing changes."""
    query = update.callback_query
    if query is None:
        return
    for handlers in context.application.handlers.values():
        for handler in handlers:
            if (
                isinstance(handler, CallbackQueryHandler)
                and handler.callback is not on_unknown_callback
                and handler.check_update(update) not in (None, False)
            ):
                return  # another handler (in another group) answers it
    await query.answer(texts.STALE_BUTTON)
