"""Photos and image files: download, classify off the loop, store, record, reply (albums get one reply)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from telegram import LinkPreviewOptions, Message, ReplyParameters, Update
from telegram.constants import ChatAction
from telegram.error import BadRequest, NetworkError, TelegramError, TimedOut
from telegram.ext import Application, ContextTypes, Job, MessageHandler, filters

from bot import data, replies, texts
from bot.handlers import errors
from bot.inputs import exceeds_limit, image_source
from bot.replies import PhotoOutcome
from bot.services import Services, get_services
from classifier.serving import ClassifierNotReadyError
from classifier.types import ImageDecodeError

log = logging.getLogger(__name__)

ALBUMS_KEY = "photo.albums"
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
# Seconds an album reply waits at most for its photos to be classified.
ALBUM_RESULT_TIMEOUT = 120.0


class FileTooBigError(Exception):
    """The file is over the Bot API's 20 MB download limit."""


class DownloadError(Exception):
    """The file could not be downloaded, even after one retry."""


def register(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Photos and image documents, without blocking other updates while they are classified."""
    images = (filters.PHOTO | filters.Document.IMAGE) & ~filters.UpdateType.EDITED  # not a caption edit
    application.add_handler(MessageHandler(images, on_photo, block=False))


async def download_image(context: ContextTypes.DEFAULT_TYPE, file_id: str, services: Services) -> bytes:
    """getFile + download with a total timeout (DOWNLOAD_TIMEOUT_SECONDS) and one retry on timeouts and
    network errors. Raises FileTooBigError (size over MAX_DOWNLOAD_BYTES or Telegram's "file is too big")
    or DownloadError."""
    settings = services.settings
    timeout = settings.download_timeout_seconds
    for attempt in (1, 2):
        try:
            async with asyncio.timeout(timeout):
                telegram_file = await context.bot.get_file(file_id, read_timeout=timeout)
                if exceeds_limit(telegram_file.file_size, settings.max_download_bytes):
                    raise FileTooBigError(telegram_file.file_size)
                payload = await telegram_file.download_as_bytearray(read_timeout=timeout)
        except BadRequest as error:  # a NetworkError subclass: never retried
            if "too big" in error.message.lower():
                raise FileTooBigError(error.message) from error
            raise DownloadError(error.message) from error
        except (TimedOut, NetworkError, TimeoutError) as error:
            log.warning("Download of %s failed (attempt %d/2): %r", file_id, attempt, error)
            if attempt == 2:
                raise DownloadError(str(error)) from error
            continue
        if len(payload) > settings.max_download_bytes:
            raise FileTooBigError(len(payload))
        return bytes(payload)
    raise DownloadError("unreachable")  # pragma: no cover


async def classify_message(message: Message, context: ContextTypes.DEFAULT_TYPE) -> PhotoOutcome:
    """Handle one image message up to the database record; problems a user can cause become ``problem``
    texts (too big, download failed, unreadable, model not loaded); other errors propagate (including
    TimeoutError after CLASSIFY_TIMEOUT_SECONDS), so the error handler tells the user and the admins."""
    services = get_services(context)
    settings = services.settings
    source = image_source(message, settings.min_photo_side)
    if source is None:
        return PhotoOutcome(message.message_id, problem=texts.PLEASE_SEND_PHOTO["other"])
    if exceeds_limit(source.file_size, settings.max_download_bytes):
        log.info("Refused a %s-byte file from chat %s before getFile", source.file_size, message.chat_id)
        return PhotoOutcome(message.message_id, problem=texts.TOO_BIG)
    try:
        await message.reply_chat_action(ChatAction.TYPING)
    except TelegramError as error:
        log.debug("Chat action failed: %s", error)
    started = time.monotonic()
    try:
        image = await download_image(context, source.file_id, services)
    except FileTooBigError:
        log.info("Refused a file over the download limit from chat %s", message.chat_id)
        return PhotoOutcome(message.message_id, problem=texts.TOO_BIG)
    except DownloadError as error:
        log.warning("Giving up downloading a photo from chat %s: %s", message.chat_id, error)
        return PhotoOutcome(message.message_id, problem=texts.DOWNLOAD_FAILED)
    downloaded = time.monotonic()
    try:
        async with asyncio.timeout(settings.classify_timeout_seconds):
            prediction = await services.classifier.classify(image)
    except ImageDecodeError as error:
        log.info("Undecodable image from chat %s: %s", message.chat_id, error)
        return PhotoOutcome(message.message_id, problem=texts.UNREADABLE_IMAGE)
    except ClassifierNotReadyError as error:
        log.error("Classifier not ready: %s", error)
        return PhotoOutcome(message.message_id, problem=texts.CLASSIFIER_UNAVAILABLE)
    classified = time.monotonic()
    stored = await asyncio.to_thread(services.photo_store.save, image)
    user = message.from_user
    recorded = await asyncio.to_thread(
        data.record_classified_photo,
        services.session_factory,
        telegram_user_id=user.id if user else message.chat_id,
        language_code=user.language_code if user else None,
        chat_id=message.chat_id,
        message_id=message.message_id,
        media_group_id=message.media_group_id,
        stored=stored,
        prediction=prediction,
        max_tutorials=settings.max_tutorials,
    )
    log.info(
        "Photo %s (%d bytes) from chat %s: %s %.2f %s (model %s, prediction %d); download %.0f ms, "
        "classify %.0f ms, store + record %.0f ms",
        stored.sha256[:12],
        len(image),
        message.chat_id,
        prediction.label,
        prediction.confidence,
        prediction.decision,
        prediction.model_version,
        recorded.prediction_id,
        (downloaded - started) * 1000,
        (classified - downloaded) * 1000,
        (time.monotonic() - classified) * 1000,
    )
    return PhotoOutcome(message.message_id, prediction=prediction, recorded=recorded)


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or image file: answer it, or add it to its album's combined answer."""
    message = update.effective_message
    if message is None:
        return
    if message.media_group_id:
        await _add_to_album(message, context)
        return
    outcome = await classify_message(message, context)
    text, markup = replies.single_reply(outcome, get_services(context).settings.max_tutorials)
    sent = await message.reply_text(text, reply_markup=markup, link_preview_options=NO_PREVIEW)
    if outcome.recorded is not None:
        await _remember_reply(context, [outcome.recorded.prediction_id], sent.message_id)


async def _remember_reply(
    context: ContextTypes.DEFAULT_TYPE, prediction_ids: list[int], message_id: int
) -> None:
    try:
        await asyncio.to_thread(
            data.set_reply_message, get_services(context).session_factory, prediction_ids, message_id
        )
    except Exception:  # the reply went out; only the back-reference is missing
        log.exception("Could not record reply message %s for predictions %s", message_id, prediction_ids)


# --- Albums (media groups) ---------------------------------------------------------------------------
# Telegram delivers an album as separate updates sharing media_group_id. Each photo is classified as it
# arrives; a JobQueue job, re-armed by every new photo, waits MEDIA_GROUP_DELAY_SECONDS after the last one,
# then awaits all results and sends ONE reply.


@dataclass
class Album:
    """Photos of one media group collected so far: the chat, and per message a future PhotoOutcome."""

    chat_id: int
    reply_to: int
    results: list[asyncio.Future[PhotoOutcome]] = field(default_factory=list)
    job: Job[Any] | None = None


def _albums(context: ContextTypes.DEFAULT_TYPE) -> dict[tuple[int, str], Album]:
    state = get_services(context).state
    albums = state.setdefault(ALBUMS_KEY, {})
    assert isinstance(albums, dict)
    return albums


async def _add_to_album(message: Message, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert message.media_group_id is not None
    key = (message.chat_id, message.media_group_id)
    albums = _albums(context)
    album = albums.get(key)
    if album is None:
        album = albums[key] = Album(chat_id=message.chat_id, reply_to=message.message_id)
    album.reply_to = min(album.reply_to, message.message_id)
    result: asyncio.Future[PhotoOutcome] = asyncio.get_running_loop().create_future()
    album.results.append(result)
    if album.job is not None:
        album.job.schedule_removal()
    job_queue = context.job_queue
    if job_queue is None:  # pragma: no cover - the job-queue extra is a requirement
        raise RuntimeError("python-telegram-bot[job-queue] is required for albums")
    album.job = job_queue.run_once(
        _send_album_reply,
        get_services(context).settings.media_group_delay_seconds,
        data=key,
        name=f"album:{key[0]}:{key[1]}",
    )
    try:
        result.set_result(await classify_message(message, context))
    except Exception as error:  # one bad photo must not cost the album its reply
        log.exception("Photo %s of album %s failed", message.message_id, message.media_group_id)
        result.set_result(PhotoOutcome(message.message_id, problem=texts.SOMETHING_WRONG))
        where = f"photo {message.message_id} of an album in chat {message.chat_id}"
        await errors.notify_admins(context, f"{type(error).__name__}: {error} — {where}")
    finally:
        if not result.done():  # cancelled (shutdown): the album reply must not wait for it
            result.set_result(PhotoOutcome(message.message_id, problem=texts.SOMETHING_WRONG))


async def _send_album_reply(context: ContextTypes.DEFAULT_TYPE) -> None:
    job = context.job
    assert job is not None
    key: tuple[int, str] = job.data  # type: ignore[assignment]
    album = _albums(context).get(key)
    if album is None or album.job is not job:  # re-armed by a later photo of the same album
        return
    del _albums(context)[key]
    async with asyncio.timeout(ALBUM_RESULT_TIMEOUT):
        outcomes = list(await asyncio.gather(*album.results))
    text, markup = replies.album_reply(outcomes)
    sent = await context.bot.send_message(
        album.chat_id,
        text,
        reply_markup=markup,
        reply_parameters=ReplyParameters(album.reply_to, allow_sending_without_reply=True),
        link_preview_options=NO_PREVIEW,
    )
    ids = [o.recorded.prediction_id for o in outcomes if o.recorded is not None]
    if ids:
        await _remember_reply(context, ids, sent.message_id)
