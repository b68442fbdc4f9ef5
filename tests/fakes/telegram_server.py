"""A fake Telegram Bot API server on loopback, for end-to-end tests of the bot.

The REAL python-telegram-bot HTTP stack (httpx) talks to it when the bot is built with
``base_url(server.base_url)`` and ``base_file_url(server.base_file_url)``. It serves the subset of the Bot API
(https://core.telegram.org/bots/api) that Spotter uses, with the same JSON shapes and the same error
responses, so PTB parses real ``Update``/``Message``/``File`` objects and raises its real exceptions:

- ``getMe``, ``deleteWebhook``/``setWebhook``/``getWebhookInfo``, ``getUpdates`` (long poll with ``timeout``;
  updates stay queued until a later call confirms them with ``offset``, as on Telegram),
  ``setMyCommands``/``getMyCommands``/``deleteMyCommands`` (per scope and language),
  ``sendMessage``, ``sendPhoto``/``sendDocument`` (multipart uploads are kept), ``sendChatAction``,
  ``editMessageText``/``editMessageCaption``/``editMessageReplyMarkup`` (including Telegram's
  "message is not modified" error), ``deleteMessage``, ``answerCallbackQuery`` (a query can be answered once),
  ``getFile`` (with "file is too big" above 20 MB) and file downloads under ``/file/bot<token>/``.
- Checks Telegram makes that catch real bugs: callback data 1-64 bytes, message text 1-4096 characters,
  well-formed HTML when ``parse_mode=HTML``, unknown chats, editing someone else's message, sendPhoto's
  limits (10 MB, width + height <= 10000, aspect ratio <= 20).

The test side (plain methods, run on the same asyncio loop as the bot):

- users and inputs: `new_user`, `send_text` (commands get their ``bot_command`` entity), `send_photo` (several
  `PhotoSize` entries made with Pillow), `send_album`, `send_document`, `send_sticker`, `send_animation`,
  `send_video`, `send_voice`, `press_button`/`send_callback`;
- inspection: `calls`, `wait_for` (awaits the next matching call not yet returned by an earlier `wait_for`),
  `assert_no_call`, `message` (a bot message's current state after edits), `commands`;
- faults: `fail_next` (any error, e.g. 429 with ``retry_after``), `conflict_next_get_updates` (409),
  `stall_downloads` (file downloads that hang until the client gives up).

Everything runs on the loop that called `start`; the test API is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import itertools
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import tornado.httpclient
import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
from PIL import Image, UnidentifiedImageError

LOGGER = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456789:TEST-token-for-the-fake-server"
BOT_USER_ID = 123456789
BOT_USERNAME = "spotter_test_bot"
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
"""getFile refuses files above 20 MB (https://core.telegram.org/bots/api#getfile)."""
MAX_MESSAGE_CHARS = 4096
MAX_CAPTION_CHARS = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_SEND_PHOTO_BYTES = 10 * 1024 * 1024
"""sendPhoto: "The photo must be at most 10 MB in size. The photo's width and height must not exceed 10000 in
total. Width and height ratio must be at most 20." (https://core.telegram.org/bots/api#sendphoto)"""
MAX_SEND_PHOTO_SIDES_SUM = 10000
MAX_SEND_PHOTO_RATIO = 20
TELEGRAM_PHOTO_SIDES = (90, 320, 800, 1280)
"""Longest sides of the PhotoSize entries Telegram makes for a photo (s, m, x, y); the original is capped at
1280 px."""

JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "scope",
        "commands",
        "allowed_updates",
        "media",
        "disable_web_page_preview",
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "cache_time",
        "show_caption_above_media",
        "has_spoiler",
    }
)
INT_FIELDS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "user_id", "message_thread_id"}
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "code",
        "pre",
        "blockquote",
        "tg-emoji",
    }
)
ENTITY_TYPES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")


class ApiError(Exception):
    """An error response of the Bot API: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, error_code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass
class UploadedFile:
    """A file the bot uploaded in a multipart request."""

    filename: str
    content_type: str
    data: bytes


@dataclass
class Call:
    """One Bot API request the bot made: method name, decoded parameters, uploaded files, and the outcome."""

    method: str
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    at: float
    """`time.monotonic()` when the request arrived."""
    status: int = 200
    result: Any = None
    """The ``result`` returned (e.g. the sent Message as a dict), or None on an error."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def text(self) -> str:
        """The plain text the user sees: ``text`` or ``caption``, HTML tags removed, entities decoded."""
        raw = self.params.get("text", self.params.get("caption", ""))
        return plain_text(str(raw), self.params.get("parse_mode"))

    @property
    def buttons(self) -> list[list[dict[str, Any]]]:
        """Rows of inline keyboard buttons sent with this call (empty when none)."""
        return inline_keyboard(self.params.get("reply_markup"))

    def button_texts(self) -> list[str]:
        return [button["text"] for row in self.buttons for button in row]


@dataclass
class FakeUser:
    """A Telegram user who talks to the bot in a private chat (chat id == user id)."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str = "en"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        data["language_code"] = self.language_code
        return data

    def chat_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class StoredFile:
    """A file the server can serve through getFile and the file download URL."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    declared_size: int

    def file_json(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": self.declared_size,
            "file_path": self.file_path,
        }


@dataclass
class _Request:
    params: dict[str, Any]
    files: dict[str, UploadedFile]
    handler: _ApiHandler


@dataclass
class _Fault:
    method: str
    error: ApiError
    remaining: int


@dataclass
class _Stall:
    remaining: int
    seconds: float
    file_ids: frozenset[str] | None = None


@dataclass
class _Waiter:
    method: str
    predicate: Callable[[Call], bool]
    future: asyncio.Future[Call]


@dataclass
class _State:
    calls: list[Call] = field(default_factory=list)
    consumed: set[int] = field(default_factory=set)
    waiters: list[_Waiter] = field(default_factory=list)


def plain_text(text: str, parse_mode: object = None) -> str:
    """What a Telegram client shows for ``text`` sent with ``parse_mode`` (HTML tags removed, entities
    decoded; MarkdownV2/Markdown escapes and markers removed on a best-effort basis)."""
    return formatted(text, parse_mode)[0]


def formatted(text: str, parse_mode: object = None) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, MessageEntity dicts) as Telegram derives them from ``text`` and ``parse_mode``. HTML is
    checked like Telegram does (ApiError "can't parse entities"); entity offsets/lengths are in UTF-16 code
    units. MarkdownV2/Markdown give the stripped text without entities (best effort)."""
    if parse_mode == "HTML":
        parser = _HtmlChecker()
        parser.feed(text)
        parser.close()
        entities = sorted(parser.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(parser.text), [entity for entity in entities if entity["length"] > 0]
    if parse_mode in ("MarkdownV2", "Markdown"):
        without_links = re.sub(r"\[([^\]]*)\]\(([^)]*)\)", r"\1", text)
        return re.sub(r"\\(.)", r"\1", re.sub(r"(?<!\\)[*_~`|]", "", without_links)), []
    return text, []


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def inline_keyboard(markup: object) -> list[list[dict[str, Any]]]:
    """The ``inline_keyboard`` rows of a reply_markup dict (empty list for none or another keyboard kind)."""
    if isinstance(markup, dict) and isinstance(markup.get("inline_keyboard"), list):
        return markup["inline_keyboard"]
    return []


class _HtmlChecker(HTMLParser):
    """Checks Telegram's HTML subset (https://core.telegram.org/bots/api#html-style) and collects the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[tuple[str, int, dict[str, Any]]] = []
        self.text: list[str] = []
        self.entities: list[dict[str, Any]] = []
        self.position = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise ApiError(400, f'Bad Request: can\'t parse entities: unsupported start tag "{tag}"')
        attributes = dict(attrs)
        extra: dict[str, Any] = {"type": ENTITY_TYPES[tag]}
        if tag == "a":
            if not attributes.get("href"):
                raise ApiError(400, "Bad Request: can't parse entities: <a> tag without href")
            extra["url"] = attributes["href"]
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise ApiError(400, 'Bad Request: can\'t parse entities: <span> needs class="tg-spoiler"')
        if tag == "blockquote" and "expandable" in attributes:
            extra["type"] = "expandable_blockquote"
        self.stack.append((tag, self.position, extra))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            raise ApiError(400, f'Bad Request: can\'t parse entities: unexpected end tag "{tag}"')
        _tag, start, extra = self.stack.pop()
        self.entities.append({**extra, "offset": start, "length": self.position - start})

    def _add(self, text: str) -> None:
        self.text.append(text)
        self.position += _utf16_len(text)

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise ApiError(400, "Bad Request: can't parse entities: unescaped '<' or '>'")
        if "&" in data:
            raise ApiError(400, "Bad Request: can't parse entities: unescaped '&'")
        self._add(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            raise ApiError(400, f'Bad Request: can\'t parse entities: unsupported entity "&{name};"')
        self._add(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self._add(html.unescape(f"&#{name};"))

    def close(self) -> None:
        super().close()
        if self.rawdata:
            raise ApiError(400, "Bad Request: can't parse entities: unfinished markup")
        if self.stack:
            raise ApiError(
                400, f'Bad Request: can\'t parse entities: unclosed start tag "{self.stack[-1][0]}"'
            )


class _Handler(tornado.web.RequestHandler):
    server: FakeTelegramServer

    def initialize(self, server: FakeTelegramServer) -> None:
        self.server = server
        self.connection_closed = asyncio.Event()

    def on_connection_close(self) -> None:
        self.connection_closed.set()

    def check_xsrf_cookie(self) -> None:
        return None

    async def send_json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        with contextlib.suppress(tornado.iostream.StreamClosedError):
            await self.finish(json.dumps(body))


class _ApiHandler(_Handler):
    async def post(self, token: str, method: str) -> None:
        status, body = await self.server._dispatch(self, token, method)
        await self.send_json(status, body)

    get = post


class _FileHandler(_Handler):
    async def get(self, token: str, file_path: str) -> None:
        await self.server._serve_file(self, token, file_path)


class FakeTelegramServer:
    """The fake Bot API server. ``await start()`` binds 127.0.0.1 on a free port; ``await stop()`` closes it.

    ``base_url``/``base_file_url`` are what PTB's ``ApplicationBuilder().base_url()/.base_file_url()`` (or the
    bot's TELEGRAM_BASE_URL/TELEGRAM_BASE_FILE_URL settings) take; PTB appends the token.
    """

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self.port = 0
        self.bot_user: dict[str, Any] = {
            "id": BOT_USER_ID,
            "is_bot": True,
            "first_name": "Spotter",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.users: dict[int, FakeUser] = {}
        self.files: dict[str, StoredFile] = {}
        self.webhook_url = ""
        """Set by the bot's setWebhook: updates are then POSTed there instead of queued for getUpdates."""
        self.webhook_secret: str | None = None
        self.webhook_deliveries: list[tuple[int, int]] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self._http: tornado.httpserver.HTTPServer | None = None
        self._state = _State()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._callback_queries: dict[str, bool] = {}
        self._callback_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._user_ids = itertools.count(1001)
        self._media_groups = itertools.count(1)
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._faults: list[_Fault] = []
        self._stalls: list[_Stall] = []
        self.downloads: list[tuple[str, float]] = []
        """(file_path, time.monotonic()) of every download request, stalled or not."""
        self._new_update = asyncio.Event()
        self._closing = asyncio.Event()

    # -------------------------------------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    async def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve on the running loop."""
        app = tornado.web.Application(
            [
                (r"/bot([^/]+)/([A-Za-z]+)", _ApiHandler, {"server": self}),
                (r"/file/bot([^/]+)/(.+)", _FileHandler, {"server": self}),
            ],
            log_function=lambda handler: None,
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._http = tornado.httpserver.HTTPServer(app, max_body_size=64 * 1024 * 1024)
        self._http.add_sockets(sockets)

    async def stop(self) -> None:
        """Wake every long poll and stalled download, close all connections and the listening socket."""
        self._closing.set()
        self._new_update.set()
        for task in list(self._deliveries):
            task.cancel()
        for waiter in self._state.waiters:
            if not waiter.future.done():
                waiter.future.cancel()
        if self._http is not None:
            self._http.stop()
            await asyncio.sleep(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.close_all_connections(), timeout=5)
            self._http = None

    async def __aenter__(self) -> FakeTelegramServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---------------------------------------------------------------------------------------- test API: in
    def new_user(
        self, first_name: str = "Dana", username: str | None = None, user_id: int | None = None
    ) -> FakeUser:
        """A new user with a private chat the bot may write to (as if she had pressed Start)."""
        uid = user_id if user_id is not None else next(self._user_ids)
        user = FakeUser(uid, first_name, username or f"{first_name.lower()}{uid}")
        self.users[uid] = user
        return user

    def send_text(self, user: FakeUser, text: str) -> dict[str, Any]:
        """Queue a text message from ``user``; a leading ``/command`` gets its ``bot_command`` entity."""
        fields: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split(maxsplit=1)[0])
            fields["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.send_message(user, **fields)

    def send_message(self, user: FakeUser, **fields: Any) -> dict[str, Any]:
        """Queue a message update from ``user`` with arbitrary Message fields (e.g. ``location=...``)."""
        self.users.setdefault(user.id, user)
        message = {
            "message_id": self._next_message_id(user.id),
            "from": user.as_json(),
            "chat": user.chat_json(),
            "date": int(time.time()),
            **fields,
        }
        self._messages[(user.id, message["message_id"])] = message
        self._push_update({"message": message})
        return message

    def add_file(
        self, data: bytes, file_path_prefix: str = "documents", ext: str = "bin", size: int | None = None
    ) -> StoredFile:
        """Store bytes the bot can fetch with getFile + download. ``size`` overrides the declared file_size
        (e.g. to declare a 25 MB file without allocating it)."""
        number = next(self._file_ids)
        stored = StoredFile(
            file_id=f"FILE{number:06d}-{'x' * 20}",
            file_unique_id=f"U{number:06d}",
            data=data,
            file_path=f"{file_path_prefix}/file_{number}.{ext}",
            declared_size=len(data) if size is None else size,
        )
        self.files[stored.file_id] = stored
        return stored

    def photo_sizes(
        self, image: bytes, sides: Iterable[int] = TELEGRAM_PHOTO_SIDES, size: int | None = None
    ) -> list[dict[str, Any]]:
        """PhotoSize dicts (smallest first, as Telegram sends them) for ``image``, each a JPEG made with
        Pillow whose longest side is one of ``sides`` (only those smaller than the image, plus the image
        itself capped at 1280 px). Undecodable bytes give one 800x600 entry serving the bytes unchanged.
        ``size`` overrides the declared file_size of the largest entry."""
        try:
            with Image.open(io.BytesIO(image)) as opened:
                original = opened.convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError):
            stored = self.add_file(image, "photos", "jpg", size)
            return [self._photo_size_json(stored, 800, 600)]
        longest = max(original.size)
        wanted = sorted({side for side in sides if side < longest} | {min(longest, 1280)})
        entries = []
        for index, side in enumerate(wanted):
            scaled = original.copy()
            scaled.thumbnail((side, side))
            buffer = io.BytesIO()
            scaled.save(buffer, "JPEG", quality=87)
            last = index == len(wanted) - 1
            stored = self.add_file(buffer.getvalue(), "photos", "jpg", size if last else None)
            entries.append(self._photo_size_json(stored, *scaled.size))
        return entries

    def send_photo(
        self,
        user: FakeUser,
        image: bytes,
        *,
        caption: str | None = None,
        media_group_id: str | None = None,
        sides: Iterable[int] = TELEGRAM_PHOTO_SIDES,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Queue a compressed photo (``message.photo`` with several PhotoSize entries)."""
        fields: dict[str, Any] = {"photo": self.photo_sizes(image, sides, size)}
        if caption is not None:
            fields["caption"] = caption
        if media_group_id is not None:
            fields["media_group_id"] = media_group_id
        return self.send_message(user, **fields)

    def send_album(self, user: FakeUser, images: list[bytes]) -> list[dict[str, Any]]:
        """Queue several photos sharing one ``media_group_id`` (an album), one update each like Telegram."""
        group = f"1{next(self._media_groups):017d}"
        return [self.send_photo(user, image, media_group_id=group) for image in images]

    def send_document(
        self,
        user: FakeUser,
        data: bytes,
        *,
        file_name: str = "photo.png",
        mime_type: str = "image/png",
        size: int | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """Queue a file sent "as a document" (uncompressed); ``size`` overrides the declared file_size."""
        ext = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = self.add_file(data, "documents", ext, size)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": stored.declared_size,
        }
        fields: dict[str, Any] = {"document": document}
        if caption is not None:
            fields["caption"] = caption
        return self.send_message(user, **fields)

    def send_sticker(self, user: FakeUser) -> dict[str, Any]:
        stored = self.add_file(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "stickers", "webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "\U0001f4aa",
            "set_name": "GymStickers",
            "file_size": stored.declared_size,
        }
        return self.send_message(user, sticker=sticker)

    def send_animation(self, user: FakeUser) -> dict[str, Any]:
        """A GIF as Telegram delivers it: an mp4 in both ``animation`` and ``document``."""
        stored = self.add_file(b"\x00\x00\x00\x18ftypmp42", "animations", "mp4")
        animation = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 320,
            "height": 240,
            "duration": 2,
            "file_name": "workout.gif.mp4",
            "mime_type": "video/mp4",
            "file_size": stored.declared_size,
        }
        document = {
            key: animation[key]
            for key in ("file_id", "file_unique_id", "file_name", "mime_type", "file_size")
        }
        return self.send_message(user, animation=animation, document=document)

    def send_video(self, user: FakeUser) -> dict[str, Any]:
        stored = self.add_file(b"\x00\x00\x00\x18ftypmp42", "videos", "mp4")
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": 1280,
            "height": 720,
            "duration": 7,
            "mime_type": "video/mp4",
            "file_size": stored.declared_size,
        }
        return self.send_message(user, video=video)

    def send_voice(self, user: FakeUser) -> dict[str, Any]:
        stored = self.add_file(b"OggS\x00\x02", "voice", "oga")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "duration": 3,
            "mime_type": "audio/ogg",
            "file_size": stored.declared_size,
        }
        return self.send_message(user, voice=voice)

    def send_callback(self, user: FakeUser, message: dict[str, Any], data: str) -> str:
        """Queue a callback query from ``user`` on the bot's ``message`` (any data, e.g. tampered).
        Returns the callback query id."""
        query_id = f"{next(self._callback_ids)}{user.id}"
        self._callback_queries[query_id] = False
        current = self._messages.get((message["chat"]["id"], message["message_id"]), message)
        query = {
            "id": query_id,
            "from": user.as_json(),
            "message": current,
            "chat_instance": f"-{abs(hash((message['chat']['id'], BOT_USER_ID))) % 10**18}",
            "data": data,
        }
        self._push_update({"callback_query": query})
        return query_id

    def press_button(self, user: FakeUser, message: dict[str, Any], text: str) -> str:
        """Press the inline button labelled ``text`` (exact, else the only one containing it) on the bot's
        ``message`` as it is now. Raises AssertionError when there is no such button."""
        current = self.message(message["chat"]["id"], message["message_id"])
        buttons = [button for row in inline_keyboard(current.get("reply_markup")) for button in row]
        matches = [button for button in buttons if button["text"] == text] or [
            button for button in buttons if text.lower() in button["text"].lower()
        ]
        if len(matches) != 1 or "callback_data" not in matches[0]:
            raise AssertionError(f"no unique callback button {text!r} in {[b['text'] for b in buttons]}")
        return self.send_callback(user, current, matches[0]["callback_data"])

    # ------------------------------------------------------------------------------------------ test API: out
    def calls(self, method: str | None = None) -> list[Call]:
        """Every request so far (optionally of one method), oldest first, including failed ones."""
        return [call for call in self._state.calls if method is None or call.method == method]

    def sent_to(self, chat_id: int, method: str = "sendMessage") -> list[Call]:
        """Successful ``method`` calls addressed to ``chat_id``."""
        return [call for call in self.calls(method) if call.ok and call.params.get("chat_id") == chat_id]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - the test API reads best with a timeout argument
    ) -> Call:
        """The oldest successful ``method`` call matching ``predicate`` that no earlier `wait_for` returned,
        waiting up to ``timeout`` seconds for it. Raises AssertionError (listing what was sent) on timeout."""
        found = self._take_call(method, predicate)
        if found is not None:
            return found
        future: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(method, predicate or _any_call, future)
        self._state.waiters.append(waiter)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise AssertionError(
                f"no matching {method} within {timeout}s; calls: {self.describe()}"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._state.waiters.remove(waiter)

    async def wait_for_text(
        self,
        chat_id: int,
        contains: str = "",
        timeout: float = 5.0,  # noqa: ASYNC109 - see wait_for
        method: str = "sendMessage",
    ) -> Call:
        """`wait_for` a ``method`` call to ``chat_id`` whose plain text contains ``contains``
        (case-insensitive)."""

        def matches(call: Call) -> bool:
            return call.params.get("chat_id") == chat_id and contains.lower() in call.text.lower()

        return await self.wait_for(method, matches, timeout)

    async def assert_no_call(
        self, method: str, predicate: Callable[[Call], bool] | None = None, within: float = 0.5
    ) -> None:
        """Wait ``within`` seconds; raise AssertionError if a matching successful ``method`` call that no
        `wait_for` returned yet was made (now or meanwhile)."""
        await asyncio.sleep(within)
        found = self._take_call(method, predicate)
        if found is not None:
            raise AssertionError(f"unexpected {method}: {found.params}")

    def describe(self) -> list[str]:
        """One short line per call except getUpdates, for assertion messages."""
        return [
            f"{call.method}({call.status}) {call.params.get('chat_id', '')}: {call.text[:70]!r}"
            for call in self._state.calls
            if call.method != "getUpdates"
        ]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The current state of a message (after the bot's edits). Raises KeyError for unknown messages."""
        return self._messages[(chat_id, message_id)]

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, Any]]:
        """The command menu set with setMyCommands for ``scope`` (default scope when None)."""
        return self._commands.get((_scope_key(scope), language_code), [])

    def pending_updates(self) -> int:
        """Updates queued but not yet confirmed by the bot."""
        return len(self._updates)

    # ------------------------------------------------------------------------------------ test API: faults
    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail like Telegram does. With ``error_code=429`` the
        default description is "Too Many Requests: retry after N" and ``parameters.retry_after`` is set."""
        parameters = None
        if error_code == 429:
            retry_after = 1 if retry_after is None else retry_after
            description = description or f"Too Many Requests: retry after {retry_after}"
            parameters = {"retry_after": retry_after}
        elif retry_after is not None:
            parameters = {"retry_after": retry_after}
        error = ApiError(error_code, description or "Bad Request", parameters)
        self._faults.append(_Fault(method, error, times))

    def conflict_next_get_updates(self, times: int = 1) -> None:
        """The next ``times`` getUpdates calls get Telegram's 409 Conflict (another instance is polling)."""
        self.fail_next(
            "getUpdates",
            409,
            "Conflict: terminated by other getUpdates request; "
            "make sure that only one bot instance is running",
            times=times,
        )

    def stall_downloads(
        self, times: int = 1, seconds: float = 60.0, file_ids: Iterable[str] | None = None
    ) -> None:
        """The next ``times`` file downloads (of these ``file_ids`` only, when given) send nothing for
        ``seconds`` or until the client hangs up."""
        self._stalls.append(_Stall(times, seconds, frozenset(file_ids) if file_ids is not None else None))

    # -------------------------------------------------------------------------------------------- internals
    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _push_update(self, payload: dict[str, Any]) -> None:
        update = {"update_id": next(self._update_ids), **payload}
        if self.webhook_url:
            task = asyncio.get_running_loop().create_task(self._deliver(update))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            return
        self._updates.append(update)
        self._new_update.set()

    async def _deliver(self, update: dict[str, Any]) -> None:
        """POST one update to the webhook like Telegram: JSON body, the secret token header when one was set
        with setWebhook. Records (update_id, HTTP status) in `webhook_deliveries` (599: no connection)."""
        headers = {"Content-Type": "application/json"}
        if self.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        request = tornado.httpclient.HTTPRequest(
            self.webhook_url, method="POST", headers=headers, body=json.dumps(update), request_timeout=10
        )
        response = await tornado.httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        self.webhook_deliveries.append((update["update_id"], response.code))

    def _photo_size_json(self, stored: StoredFile, width: int, height: int) -> dict[str, Any]:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "width": width,
            "height": height,
            "file_size": stored.declared_size,
        }

    def _record(self, call: Call) -> None:
        index = len(self._state.calls)
        self._state.calls.append(call)
        if not call.ok:
            return
        for waiter in list(self._state.waiters):
            if waiter.method == call.method and not waiter.future.done() and waiter.predicate(call):
                self._state.consumed.add(index)
                waiter.future.set_result(call)
                self._state.waiters.remove(waiter)
                return

    def _take_call(self, method: str, predicate: Callable[[Call], bool] | None) -> Call | None:
        check = predicate or _any_call
        for index, call in enumerate(self._state.calls):
            if index not in self._state.consumed and call.method == method and call.ok and check(call):
                self._state.consumed.add(index)
                return call
        return None

    def _take_fault(self, method: str) -> ApiError | None:
        for fault in self._faults:
            if fault.method == method and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault.error
        return None

    async def _dispatch(self, handler: _ApiHandler, token: str, method: str) -> tuple[int, dict[str, Any]]:
        params, files = _decode_request(handler.request)
        call = Call(method, params, files, time.monotonic())
        try:
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            fault = self._take_fault(method)
            if fault is not None:
                raise fault
            implementation = getattr(self, f"_api_{method}", None)
            if implementation is None:
                LOGGER.warning("fake Telegram server: unimplemented method %s", method)
                raise ApiError(404, "Not Found")
            call.result = await implementation(_Request(params, files, handler))
        except ApiError as error:
            call.status, call.error = error.error_code, error.description
            self._record(call)
            return error.error_code, error.payload()
        self._record(call)
        return 200, {"ok": True, "result": call.result}

    async def _serve_file(self, handler: _FileHandler, token: str, file_path: str) -> None:
        self.downloads.append((file_path, time.monotonic()))
        if token != self.token:
            await handler.send_json(401, ApiError(401, "Unauthorized").payload())
            return
        stored = next((f for f in self.files.values() if f.file_path == file_path), None)
        if stored is None:
            await handler.send_json(404, ApiError(404, "Not Found").payload())
            return
        stall = next(
            (
                s
                for s in self._stalls
                if s.remaining > 0 and (s.file_ids is None or stored.file_id in s.file_ids)
            ),
            None,
        )
        if stall is not None:
            stall.remaining -= 1
            if stall.remaining == 0:
                self._stalls.remove(stall)
            waits = [asyncio.ensure_future(e.wait()) for e in (handler.connection_closed, self._closing)]
            _done, _pending = await asyncio.wait(
                waits, timeout=stall.seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for task in waits:
                task.cancel()
            if handler.connection_closed.is_set() or self._closing.is_set():
                return
        handler.set_header("Content-Type", "application/octet-stream")
        with contextlib.suppress(tornado.iostream.StreamClosedError):
            await handler.finish(stored.data)

    def _chat(self, params: dict[str, Any]) -> FakeUser:
        chat_id = params.get("chat_id")
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat_id is empty")
        if not isinstance(chat_id, int) or chat_id not in self.users:
            raise ApiError(400, "Bad Request: chat not found")
        return self.users[chat_id]

    def _bot_message(self, user: FakeUser, **fields: Any) -> dict[str, Any]:
        message = {
            "message_id": self._next_message_id(user.id),
            "from": self.bot_user,
            "chat": user.chat_json(),
            "date": int(time.time()),
            **{key: value for key, value in fields.items() if value is not None},
        }
        self._messages[(user.id, message["message_id"])] = message
        return message

    def _editable(self, params: dict[str, Any]) -> dict[str, Any]:
        if "inline_message_id" in params:
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake server")
        user = self._chat(params)
        message = self._messages.get((user.id, params.get("message_id", -1)))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message.get("from", {}).get("id") != BOT_USER_ID:
            raise ApiError(400, "Bad Request: message can't be edited")
        return message

    # ------------------------------------------------------------------------------------- Bot API methods
    async def _api_getMe(self, req: _Request) -> Any:
        return self.bot_user

    async def _api_logOut(self, req: _Request) -> Any:
        return True

    async def _api_close(self, req: _Request) -> Any:
        return True

    async def _api_deleteWebhook(self, req: _Request) -> Any:
        self.webhook_url = ""
        self.webhook_secret = None
        if req.params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _api_setWebhook(self, req: _Request) -> Any:
        url = str(req.params.get("url", ""))
        secret = req.params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook_url = url
        self.webhook_secret = str(secret) if url and secret else None
        return True

    async def _api_getWebhookInfo(self, req: _Request) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _api_getUpdates(self, req: _Request) -> Any:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = req.params.get("offset")
        if isinstance(offset, int) and offset > 0:
            self._updates = [update for update in self._updates if update["update_id"] >= offset]
        limit = min(max(int(req.params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + float(req.params.get("timeout") or 0)
        while not self._updates and not self._closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._new_update.clear()
            closed = asyncio.ensure_future(req.handler.connection_closed.wait())
            fresh = asyncio.ensure_future(self._new_update.wait())
            await asyncio.wait((closed, fresh), timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            fresh.cancel()
            if req.handler.connection_closed.is_set():
                return []
        allowed = req.params.get("allowed_updates")
        updates = self._updates[:limit]
        if isinstance(allowed, list) and allowed:
            updates = [update for update in updates if any(kind in update for kind in allowed)]
        return updates

    async def _api_setMyCommands(self, req: _Request) -> Any:
        commands = req.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100 BotCommand")
        for command in commands:
            name = command.get("command", "") if isinstance(command, dict) else ""
            description = command.get("description", "") if isinstance(command, dict) else ""
            if not COMMAND_RE.fullmatch(name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: command description must be 1-256 characters")
        self._commands[(_scope_key(req.params.get("scope")), str(req.params.get("language_code", "")))] = (
            commands
        )
        return True

    async def _api_getMyCommands(self, req: _Request) -> Any:
        return self.commands(req.params.get("scope"), str(req.params.get("language_code", "")))

    async def _api_deleteMyCommands(self, req: _Request) -> Any:
        self._commands.pop(
            (_scope_key(req.params.get("scope")), str(req.params.get("language_code", ""))), None
        )
        return True

    async def _api_setMyDescription(self, req: _Request) -> Any:
        return True

    async def _api_setMyShortDescription(self, req: _Request) -> Any:
        return True

    async def _api_setChatMenuButton(self, req: _Request) -> Any:
        return True

    async def _api_sendChatAction(self, req: _Request) -> Any:
        self._chat(req.params)
        if req.params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _api_sendMessage(self, req: _Request) -> Any:
        user = self._chat(req.params)
        text = req.params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        shown, entities = _checked_text(req.params, "text", MAX_MESSAGE_CHARS, "message is too long")
        markup = _checked_markup(req.params.get("reply_markup"))
        return self._bot_message(user, text=shown, entities=entities or None, reply_markup=markup)

    async def _api_sendPhoto(self, req: _Request) -> Any:
        user = self._chat(req.params)
        upload = _upload(req.params, req.files, "photo")
        if upload is None:
            reference = req.params.get("photo")
            stored = self.files.get(str(reference))
            if stored is None:
                raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
            data = stored.data
        else:
            data = upload.data
        try:
            sizes = self.photo_sizes(data)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                image.verify()
        except (UnidentifiedImageError, OSError, ValueError):
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        if len(data) > MAX_SEND_PHOTO_BYTES:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        if width + height > MAX_SEND_PHOTO_SIDES_SUM or max(width, height) > MAX_SEND_PHOTO_RATIO * min(
            width, height
        ):
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        caption, entities = _optional_caption(req.params)
        markup = _checked_markup(req.params.get("reply_markup"))
        return self._bot_message(
            user, photo=sizes, caption=caption, caption_entities=entities or None, reply_markup=markup
        )

    async def _api_sendDocument(self, req: _Request) -> Any:
        user = self._chat(req.params)
        upload = _upload(req.params, req.files, "document")
        if upload is None:
            raise ApiError(400, "Bad Request: there is no document in the request")
        stored = self.add_file(upload.data, "documents", upload.filename.rsplit(".", 1)[-1] or "bin")
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": upload.filename,
            "mime_type": upload.content_type or "application/octet-stream",
            "file_size": stored.declared_size,
        }
        caption, entities = _optional_caption(req.params)
        return self._bot_message(
            user,
            document=document,
            caption=caption,
            caption_entities=entities or None,
            reply_markup=_checked_markup(req.params.get("reply_markup")),
        )

    async def _api_editMessageText(self, req: _Request) -> Any:
        message = self._editable(req.params)
        text = req.params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        shown, entities = _checked_text(req.params, "text", MAX_MESSAGE_CHARS, "MESSAGE_TOO_LONG")
        markup = _checked_markup(req.params.get("reply_markup"))
        same_entities = (entities or None) == message.get("entities")
        if shown == message.get("text") and same_entities and markup == message.get("reply_markup"):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        message["text"] = shown
        _set_optional(message, "entities", entities or None)
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _api_editMessageCaption(self, req: _Request) -> Any:
        message = self._editable(req.params)
        caption, entities = _optional_caption(req.params)
        markup = _checked_markup(req.params.get("reply_markup"))
        if caption == message.get("caption") and markup == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified")
        _set_optional(message, "caption", caption)
        _set_optional(message, "caption_entities", entities or None)
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _api_editMessageReplyMarkup(self, req: _Request) -> Any:
        message = self._editable(req.params)
        markup = _checked_markup(req.params.get("reply_markup"))
        if markup == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified")
        _set_markup(message, markup)
        message["edit_date"] = int(time.time())
        return message

    async def _api_deleteMessage(self, req: _Request) -> Any:
        user = self._chat(req.params)
        if self._messages.pop((user.id, req.params.get("message_id", -1)), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    async def _api_answerCallbackQuery(self, req: _Request) -> Any:
        query_id = str(req.params.get("callback_query_id", ""))
        if self._callback_queries.get(query_id, True):
            raise ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        text = req.params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._callback_queries[query_id] = True
        return True

    async def _api_getFile(self, req: _Request) -> Any:
        stored = self.files.get(str(req.params.get("file_id", "")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if stored.declared_size > MAX_DOWNLOAD_BYTES:
            raise ApiError(400, "Bad Request: file is too big")
        return stored.file_json()


def _any_call(call: Call) -> bool:
    return True


def _upload(params: dict[str, Any], files: dict[str, UploadedFile], name: str) -> UploadedFile | None:
    """The multipart file for parameter ``name``, sent as the field itself or via ``attach://<field>``."""
    reference = params.get(name)
    if isinstance(reference, str) and reference.startswith("attach://"):
        return files.get(reference.removeprefix("attach://"))
    return files.get(name)


def _scope_key(scope: object) -> str:
    return json.dumps(scope if isinstance(scope, dict) else {"type": "default"}, sort_keys=True)


def _checked_text(
    params: dict[str, Any], field_name: str, limit: int, too_long: str
) -> tuple[str, list[dict[str, Any]]]:
    """The shown text and entities of ``params[field_name]`` (with ``parse_mode``, or explicit
    ``entities``/``caption_entities``). Raises ApiError like Telegram for bad markup or length."""
    parse_mode = params.get("parse_mode")
    if parse_mode not in (None, "HTML", "MarkdownV2", "Markdown"):
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
    shown, entities = formatted(str(params.get(field_name, "")), parse_mode)
    explicit = params.get("entities" if field_name == "text" else "caption_entities")
    if parse_mode is None and isinstance(explicit, list):
        entities = explicit
    if len(shown) > limit:
        raise ApiError(400, f"Bad Request: {too_long}")
    return shown, entities


def _optional_caption(params: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    if params.get("caption") is None:
        return None, []
    return _checked_text(params, "caption", MAX_CAPTION_CHARS, "message caption is too long")


def _set_optional(message: dict[str, Any], key: str, value: object) -> None:
    if value is None:
        message.pop(key, None)
    else:
        message[key] = value


def _checked_markup(markup: object) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in inline_keyboard(markup):
        for button in row:
            if not button.get("text"):
                raise ApiError(400, "Bad Request: text buttons are unallowed in the inline keyboard")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode("utf-8"))
                if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
            elif not any(key in button for key in ("url", "switch_inline_query", "copy_text", "web_app")):
                raise ApiError(
                    400, "Bad Request: can't parse inline keyboard button: a button kind is missing"
                )
    return markup


def _set_markup(message: dict[str, Any], markup: dict[str, Any] | None) -> None:
    if markup is None or not inline_keyboard(markup):
        message.pop("reply_markup", None)
    else:
        message["reply_markup"] = markup


def _decode_request(request: Any) -> tuple[dict[str, Any], dict[str, UploadedFile]]:
    """Decode a PTB request: form fields (strings as sent, JSON-encoded fields parsed, ids as ints) and
    multipart files."""
    params: dict[str, Any] = {}
    content_type = request.headers.get("Content-Type", "")
    if content_type.startswith("application/json") and request.body:
        params.update(json.loads(request.body))
    for name, values in request.arguments.items():
        if not values:
            continue
        raw = values[-1].decode("utf-8")
        if name in JSON_FIELDS:
            try:
                params[name] = json.loads(raw)
            except json.JSONDecodeError:
                params[name] = raw
        elif name in INT_FIELDS:
            try:
                params[name] = int(raw)
            except ValueError:
                params[name] = raw
        else:
            params[name] = raw
    files = {
        name: UploadedFile(parts[0].filename, parts[0].content_type, parts[0].body)
        for name, parts in request.files.items()
        if parts
    }
    return params, files
