"""Admin commands (only user ids in ADMIN_USER_IDS; others are told they are not allowed, nothing changes):
/addvideo, /removevideo, /videos, /stats, /model."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from html import escape
from pathlib import Path
from typing import Any

from telegram import LinkPreviewOptions, Update
from telegram.ext import Application, CommandHandler, ContextTypes

from bot import data, texts
from bot.services import get_services
from classifier.registry import Registry, RegistryError
from db.errors import NotFoundError

log = logging.getLogger(__name__)

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
MAX_DATABASE_ID = 2**63 - 1
"""Largest id a database row can have (SQLite and PostgreSQL BIGINT); larger numbers name no tutorial."""
MAX_TITLE_CHARS = 300
"""Longest title /addvideo stores (the length of db.models.Tutorial.title; YouTube's own limit is 100)."""
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def admin_only(handler: Handler) -> Handler:
    """Run ``handler`` only for ADMIN_USER_IDS; anyone else gets `texts.NOT_ALLOWED` and nothing changes."""

    @functools.wraps(handler)
    async def wrapper(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user, message = update.effective_user, update.effective_message
        if not get_services(context).settings.is_admin(user.id if user else None):
            log.info("Refused admin command from user %s", user.id if user else None)
            if message is not None:
                await message.reply_text(texts.NOT_ALLOWED)
            return
        await handler(update, context)

    return wrapper


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Admin commands (group 0)."""
    application.add_handler(CommandHandler("addvideo", on_addvideo))
    application.add_handler(CommandHandler("removevideo", on_removevideo))
    application.add_handler(CommandHandler("videos", on_videos))
    application.add_handler(CommandHandler("stats", on_stats))
    application.add_handler(CommandHandler("model", on_model))


@admin_only
async def on_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Users, photos, corrections, agreement rate per equipment, model version."""
    services = get_services(context)
    summary = await asyncio.to_thread(
        data.stats_summary, services.session_factory, services.classifier.model_version
    )
    assert update.effective_message is not None
    await update.effective_message.reply_text(texts.stats_text(summary))


@admin_only
async def on_videos(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/videos [equipment]: the tutorials with their ids."""
    services = get_services(context)
    message = update.effective_message
    assert message is not None
    wanted = " ".join(context.args or [])
    equipment = None
    if wanted:
        equipment = await asyncio.to_thread(data.resolve_equipment, services.session_factory, wanted)
        if equipment is None:
            await message.reply_text(f"I don't know the equipment “{escape(wanted)}”. See /equipment.")
            return
    videos = await asyncio.to_thread(
        data.list_videos, services.session_factory, equipment.slug if equipment else None
    )
    text = texts.videos_text(videos, equipment.name if equipment else None)
    for chunk in texts.split_message(text):
        await message.reply_text(chunk, link_preview_options=NO_PREVIEW)


@admin_only
async def on_removevideo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/removevideo <tutorial id or YouTube link or video id>."""
    services = get_services(context)
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    if not context.args or len(context.args) != 1:
        await message.reply_text(texts.REMOVEVIDEO_USAGE)
        return
    reference = context.args[0]
    number = reference.lstrip("#")
    if number.isascii() and number.isdigit():  # str.isdigit() alone accepts "²", which int() refuses
        tutorial_id = int(number)
        youtube_id = (
            await asyncio.to_thread(data.tutorial_youtube_id, services.session_factory, tutorial_id)
            if tutorial_id <= MAX_DATABASE_ID
            else None
        )
        if youtube_id is None:
            await message.reply_text(f"There is no tutorial #{escape(reference.lstrip('#'))}.")
            return
    else:
        try:
            youtube_id = data.parse_youtube_link(reference)
        except ValueError as error:
            await message.reply_text(f"Not removed: {escape(str(error))}")
            return
    try:
        removed = await asyncio.to_thread(data.remove_video, services.session_factory, youtube_id, user.id)
    except NotFoundError:
        await message.reply_text(f"Video {escape(youtube_id)} is not in the catalog.")
        return
    log.info("Admin %s removed video %s", user.id, youtube_id)
    await message.reply_text(
        f"Removed #{removed.id} “{escape(removed.title)}”. Users will no longer see it.",
        link_preview_options=NO_PREVIEW,
    )


def split_addvideo_args(args: list[str]) -> tuple[str, str, str | None] | None:
    """``<equipment words> <link> [title words]`` -> (equipment, link, title or None); None when no argument
    looks like a YouTube link or id, or nothing precedes it. The first word that parses as a video is the
    link, so multi-word equipment names ("leg press") work."""
    for index, word in enumerate(args):
        if index == 0:
            continue
        try:
            data.parse_youtube_link(word)
        except ValueError:
            if "youtu" in word.lower() or "://" in word:
                return " ".join(args[:index]), word, " ".join(args[index + 1 :]) or None
            continue
        return " ".join(args[:index]), word, " ".join(args[index + 1 :]) or None
    return None


@admin_only
async def on_addvideo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/addvideo <equipment> <YouTube link> [title]: metadata from YouTube's videos.list when
    YOUTUBE_API_KEY is set, else stored as typed and marked unverified."""
    services = get_services(context)
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    parsed = split_addvideo_args(list(context.args or []))
    if parsed is None:
        await message.reply_text(texts.ADDVIDEO_USAGE)
        return
    equipment_text, link, title = parsed
    if title is not None and len(title) > MAX_TITLE_CHARS:
        await message.reply_text(f"Not added: the title is longer than {MAX_TITLE_CHARS} characters.")
        return
    equipment = await asyncio.to_thread(data.resolve_equipment, services.session_factory, equipment_text)
    if equipment is None:
        await message.reply_text(
            f"I don't know the equipment “{escape(equipment_text)}”. See /equipment.\n\n"
            + texts.ADDVIDEO_USAGE
        )
        return
    try:
        youtube_id = data.parse_youtube_link(link)
    except ValueError as error:
        await message.reply_text(f"Not added: {escape(str(error))}")
        return
    lookup = await asyncio.to_thread(data.lookup_video, services.youtube_client(), youtube_id)
    result = await asyncio.to_thread(
        data.add_video, services.session_factory, equipment.slug, lookup, user.id, title
    )
    log.info("Admin %s /addvideo %s %s: %s", user.id, equipment.slug, youtube_id, result.outcome)
    await message.reply_text(
        texts.addvideo_result_text(result, equipment.name), link_preview_options=NO_PREVIEW
    )


def _champion_files(models_dir: Path) -> tuple[str, dict[str, Any], Path | None]:
    registry = Registry(models_dir)
    version = registry.champion()
    if version is None:
        raise RegistryError(f"no champion model in {models_dir}")
    folder = registry.version_dir(version)
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    png = folder / "confusion_matrix.png"
    return version, metrics if isinstance(metrics, dict) else {}, png if png.is_file() else None


@admin_only
async def on_model(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/model: champion version, metrics, and its confusion-matrix PNG as a photo."""
    services = get_services(context)
    message = update.effective_message
    assert message is not None
    try:
        version, metrics, png = await asyncio.to_thread(_champion_files, services.settings.models_dir)
    except RegistryError as error:
        await message.reply_text(f"No champion model: {escape(str(error))}")
        return
    caption = texts.model_caption(version, metrics, services.classifier.model_version)
    if png is None:
        await message.reply_text(caption + "\n(no confusion matrix image in this version)")
        return
    image = await asyncio.to_thread(png.read_bytes)
    await message.reply_photo(image, caption=caption, filename="confusion_matrix.png")
