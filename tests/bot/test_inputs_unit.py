"""Unit tests of bot.inputs, bot.photo_store and the error-notice limiter (pure or local files only)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image
from telegram import Chat, Document, Message, PhotoSize, Voice

from bot.handlers.commands import forget_feedback_copies
from bot.handlers.errors import NoticeLimiter
from bot.inputs import choose_photo_size, exceeds_limit, image_source, media_kind
from bot.photo_store import PhotoStore, sniff_extension

SIZES = [
    PhotoSize("s", "us", 90, 68, 1_000),
    PhotoSize("m", "um", 320, 240, 10_000),
    PhotoSize("x", "ux", 800, 600, 60_000),
    PhotoSize("y", "uy", 1280, 960, 150_000),
]


@pytest.mark.parametrize(
    ("min_side", "expected"), [(224, "m"), (448, "x"), (600, "x"), (961, "y"), (50, "s")]
)
def test_choose_photo_size(min_side: int, expected: str) -> None:
    assert choose_photo_size(list(reversed(SIZES)), min_side).file_id == expected


def test_choose_photo_size_needs_a_size() -> None:
    with pytest.raises(ValueError):
        choose_photo_size([], 224)


def message(**fields: object) -> Message:
    return Message(1, dt.datetime.now(dt.UTC), Chat(5, Chat.PRIVATE), **fields)  # type: ignore[arg-type]


def test_image_source_and_media_kind() -> None:
    photo = message(photo=tuple(SIZES))
    source = image_source(photo, 224)
    assert source is not None and source.file_id == "m" and source.file_size == 10_000
    image_doc = message(document=Document("d", "ud", file_name="a.png", mime_type="image/png", file_size=99))
    assert image_source(image_doc, 224) == type(source)("d", 99)
    pdf = message(document=Document("p", "up", file_name="a.pdf", mime_type="application/pdf"))
    assert image_source(pdf, 224) is None and media_kind(pdf) == "document"
    voice = message(voice=Voice("v", "uv", 3))
    assert media_kind(voice) == "voice" and media_kind(message(text="hi")) == "other"


def test_exceeds_limit() -> None:
    limit = 20 * 1024 * 1024
    assert (
        exceeds_limit(limit + 1, limit) and not exceeds_limit(limit, limit) and not exceeds_limit(None, limit)
    )


def encoded(fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "ext"),
    [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif")],
)
def test_sniff_extension(fmt: str, ext: str) -> None:
    assert sniff_extension(encoded(fmt)) == ext


def test_sniff_unknown_and_heic() -> None:
    assert sniff_extension(b"not an image") == "img"
    assert sniff_extension(b"\x00\x00\x00\x18ftypheic\x00\x00") == "heic"


def test_photo_store_is_content_addressed_and_deletes_only_its_own_files(tmp_path: Path) -> None:
    store = PhotoStore(tmp_path / "photos")
    data = encoded("PNG")
    first = store.save(data)
    assert first.sha256 == hashlib.sha256(data).hexdigest()
    assert first.path == tmp_path / "photos" / f"{first.sha256}.png" and first.path.read_bytes() == data
    assert store.save(data) == first
    assert [p.name for p in (tmp_path / "photos").iterdir()] == [first.path.name]  # no temp files left
    outside = tmp_path / "keep.txt"
    outside.write_text("x")
    assert store.delete(outside) is False and outside.exists()
    assert store.delete(tmp_path / "photos" / ".." / "keep.txt") is False and outside.exists()
    assert store.delete(first.path) is True and not first.path.exists()
    assert store.delete(first.path) is False


def test_notice_limiter_allows_one_notice_per_interval_and_counts_the_rest() -> None:
    now = [1000.0]
    limiter = NoticeLimiter(300.0, clock=lambda: now[0])
    assert limiter.allow() == (True, 0)
    assert limiter.allow() == (False, 0)
    now[0] += 100
    assert limiter.allow() == (False, 0)
    now[0] += 200
    assert limiter.allow() == (True, 2)
    assert limiter.allow() == (False, 0)


def test_forget_removes_the_feedback_training_copies_of_forgotten_photos(tmp_path: Path) -> None:
    gone, kept = "a" * 64, "b" * 64
    feedback = tmp_path / "feedback" / "leg_press"
    feedback.mkdir(parents=True)
    for sha in (gone, kept):
        (feedback / f"{sha}.jpg").write_bytes(encoded("JPEG"))
    removed = forget_feedback_copies(tmp_path, [str(tmp_path / "photos" / f"{gone}.jpg")])
    assert removed == 1
    assert sorted(p.stem for p in feedback.iterdir()) == [kept]
    assert forget_feedback_copies(tmp_path, []) == 0
