"""Pure decisions about incoming messages: which photo size to download, what kind of media arrived."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from telegram import Message, PhotoSize

MediaKind = Literal["sticker", "animation", "video", "voice", "document", "other"]


@dataclass(frozen=True)
class ImageSource:
    """The file to download for an image message: Bot API ``file_id`` and its size in bytes if known."""

    file_id: str
    file_size: int | None


def choose_photo_size(sizes: Sequence[PhotoSize], min_side: int) -> PhotoSize:
    """The smallest size whose shorter side is at least ``min_side`` pixels, else the largest one.

    Telegram sends each photo in several sizes (e.g. 90, 320, 800, 1280 px on the longer side); downloading
    the smallest sufficient one saves time and disk. Raises ValueError for an empty list.
    """
    if not sizes:
        raise ValueError("a photo message has at least one size")
    by_area = sorted(sizes, key=lambda size: (size.width * size.height, size.file_size or 0))
    for size in by_area:
        if min(size.width, size.height) >= min_side:
            return size
    return by_area[-1]


def image_source(message: Message, min_side: int) -> ImageSource | None:
    """The file to download for a photo or an image document, or None when the message has neither."""
    if message.photo:
        size = choose_photo_size(message.photo, min_side)
        return ImageSource(size.file_id, size.file_size)
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        return ImageSource(document.file_id, document.file_size)
    return None


def media_kind(message: Message) -> MediaKind:
    """What a non-photo message carries, for choosing the "please send a photo" explanation."""
    if message.sticker is not None:
        return "sticker"
    if message.animation is not None:  # checked before document: a GIF also sets message.document
        return "animation"
    if message.video is not None or message.video_note is not None:
        return "video"
    if message.voice is not None or message.audio is not None:
        return "voice"
    if message.document is not None:
        return "document"
    return "other"


def exceeds_limit(file_size: int | None, max_bytes: int) -> bool:
    """True when a known file size is over the download limit (unknown sizes are checked after getFile)."""
    return file_size is not None and file_size > max_bytes
