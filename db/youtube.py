"""YouTube adapter: parse video links, and fetch video metadata with the YouTube Data API v3.

Only ``videos.list`` is used (1 quota unit per call, up to 50 ids per call; YouTube Data API docs "Quota
costs" and "Videos: list"); never ``search.list`` (100 units). Everything the API can go wrong with (quota,
bad key, network, deleted or private videos) comes back in the result, never as an exception, so the bot
can tell an admin what happened. HTTP calls block: async callers run them in a thread.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}\Z")
"""A YouTube video id: 11 characters from the URL-safe base64 alphabet."""

MAX_IDS_PER_CALL = 50
"""videos.list accepts at most 50 ids per call (YouTube Data API docs, Videos: list, parameter ``id``)."""

YOUTUBE_HOSTS = frozenset(
    {
        "youtube.com",
        "www.youtube.com",
        "m.youtube.com",
        "music.youtube.com",
        "youtube-nocookie.com",
        "www.youtube-nocookie.com",
    }
)
SHORT_HOSTS = frozenset({"youtu.be", "www.youtu.be"})
_PATH_ID_PREFIXES = ("shorts", "embed", "live", "v", "e")
_CHANNEL_PREFIXES = ("channel", "c", "user")


class InvalidYouTubeLinkError(ValueError):
    """The text is not a link to one YouTube video; ``reason`` is a short explanation for the admin."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r} is not a YouTube video link: {reason}")
        self.text = text
        self.reason = reason


def _clean_id(candidate: str, text: str) -> str:
    if VIDEO_ID_RE.match(candidate):
        return candidate
    raise InvalidYouTubeLinkError(text, f"{candidate!r} is not an 11-character video id")


def parse_video_id(text: str) -> str:
    """The 11-character video id from a link an admin pasted, or a bare id.

    Accepted: ``youtube.com/watch?v=ID`` (any extra query parameters, ``&list=`` included: the video is
    taken), ``youtu.be/ID``, ``/shorts/ID``, ``/embed/ID``, ``/live/ID``, ``/v/ID``, on www., m., music.
    and youtube-nocookie.com hosts, with or without ``https://``; a bare 11-character id.
    Raises InvalidYouTubeLinkError with a reason for: other hosts (look-alikes such as ``youtube.com.evil.io``
    or ``youtube.com@evil.io``), non-http schemes, playlists, channels and handles, search pages, and
    malformed ids.
    """
    original = text
    text = text.strip().strip("<>").strip()
    if not text:
        raise InvalidYouTubeLinkError(original, "it is empty")
    if VIDEO_ID_RE.match(text):
        return text
    if "://" not in text:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", text) and not re.match(r"^[^/]+:\d+(/|$)", text):
            raise InvalidYouTubeLinkError(original, "only http(s) links are accepted")
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower().rstrip(".")
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as exc:
        raise InvalidYouTubeLinkError(original, f"it is not a valid URL ({exc})") from exc
    if parts.scheme.lower() not in {"http", "https"}:
        raise InvalidYouTubeLinkError(original, "only http(s) links are accepted")
    if parts.username is not None or parts.password is not None:
        raise InvalidYouTubeLinkError(original, "links with a user name before the host are not accepted")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    query = parse_qs(parts.query)
    if host in SHORT_HOSTS:
        if not segments:
            raise InvalidYouTubeLinkError(original, "the youtu.be link has no video id")
        return _clean_id(segments[0], original)
    if host not in YOUTUBE_HOSTS:
        raise InvalidYouTubeLinkError(original, f"{host or 'it'} is not a YouTube host")
    first = segments[0].lower() if segments else ""
    if first == "watch":
        ids = query.get("v", [])
        if not ids:
            if "list" in query:
                raise InvalidYouTubeLinkError(original, "it is a playlist, not a single video")
            raise InvalidYouTubeLinkError(original, "the watch link has no v= video id")
        return _clean_id(ids[0], original)
    if first in _PATH_ID_PREFIXES:
        if len(segments) < 2:
            raise InvalidYouTubeLinkError(original, f"the /{first}/ link has no video id")
        if first == "embed" and segments[1].lower() == "videoseries":
            raise InvalidYouTubeLinkError(original, "it is an embedded playlist, not a single video")
        return _clean_id(segments[1], original)
    if first == "playlist" or (not first and "list" in query):
        raise InvalidYouTubeLinkError(original, "it is a playlist, not a single video")
    if first in _CHANNEL_PREFIXES or first.startswith("@"):
        raise InvalidYouTubeLinkError(original, "it is a channel, not a single video")
    if first == "results":
        raise InvalidYouTubeLinkError(original, "it is a search page, not a single video")
    if not first:
        raise InvalidYouTubeLinkError(original, "it is YouTube's home page, not a video")
    raise InvalidYouTubeLinkError(original, f"YouTube pages under /{first} are not single videos")


_DURATION_RE = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_iso8601_duration(text: str) -> int:
    """Seconds in an ISO-8601 duration as YouTube returns it in contentDetails.duration (``PT4M13S`` -> 253,
    ``PT1H`` -> 3600, ``P1DT2S`` -> 86402, ``P0D`` for live streams -> 0). Fractional seconds are rounded.
    Raises ValueError for anything else (``PT``, ``4M13S``, years or months, which YouTube never uses)."""
    match = _DURATION_RE.match(text.strip())
    if not match or text.strip() in {"P", "PT"} or text.strip().endswith("T"):
        raise ValueError(f"not an ISO-8601 duration YouTube uses: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    seconds = (
        parts["weeks"] * 7 * 86400
        + parts["days"] * 86400
        + parts["hours"] * 3600
        + parts["minutes"] * 60
        + parts["seconds"]
    )
    return round(seconds)


VideoState = Literal["available", "unavailable"]


@dataclass(frozen=True)
class VideoMetadata:
    """What YouTube says about one video. status "available" (playable by link: public or unlisted) or
    "unavailable" (private, deleted, rejected, failed, or not returned at all: deleted, private to its owner
    or never existed); detail: why, or notes such as "age-restricted"; duration_seconds: None if unknown."""

    video_id: str
    status: VideoState
    title: str | None = None
    channel: str | None = None
    duration_seconds: int | None = None
    thumbnail_url: str | None = None
    detail: str | None = None


@dataclass
class FetchReport:
    """Result of a metadata fetch: ``videos`` has an entry for every id YouTube answered about; ids missing
    from it could not be checked (see ``errors``); api_calls: videos.list calls made (= quota units used);
    quota_exceeded: YouTube refused for quota, later batches were not attempted."""

    videos: dict[str, VideoMetadata] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    quota_exceeded: bool = False

    def unchecked(self, ids: Iterable[str]) -> list[str]:
        """The ids of ``ids`` that have no answer in this report."""
        return [i for i in ids if i not in self.videos]


def _thumbnail(snippet: dict[str, Any]) -> str | None:
    thumbnails = snippet.get("thumbnails") or {}
    for size in ("high", "medium", "standard", "default", "maxres"):
        url = (thumbnails.get(size) or {}).get("url")
        if url:
            return str(url)
    return None


def metadata_from_item(item: dict[str, Any]) -> VideoMetadata:
    """Interpret one ``videos.list`` item (parts snippet, contentDetails, status) as VideoMetadata."""
    video_id = str(item.get("id", ""))
    snippet = item.get("snippet") or {}
    details = item.get("contentDetails") or {}
    status = item.get("status") or {}
    duration: int | None = None
    if details.get("duration"):
        try:
            duration = parse_iso8601_duration(str(details["duration"]))
        except ValueError:
            log.warning("video %s: unparseable duration %r", video_id, details["duration"])
    privacy = status.get("privacyStatus")
    upload = status.get("uploadStatus")
    notes: list[str] = []
    state: VideoState = "available"
    if privacy == "private":
        state, notes = "unavailable", ["private"]
    elif upload in {"deleted", "failed", "rejected"}:
        reason = status.get("rejectionReason") or status.get("failureReason")
        state, notes = "unavailable", [f"upload {upload}" + (f" ({reason})" if reason else "")]
    else:
        if privacy == "unlisted":
            notes.append("unlisted")
        if (details.get("contentRating") or {}).get("ytRating") == "ytAgeRestricted":
            notes.append("age-restricted")
        blocked = (details.get("regionRestriction") or {}).get("blocked")
        if blocked:
            notes.append(f"blocked in {len(blocked)} countries")
        if snippet.get("liveBroadcastContent") == "upcoming":
            notes.append("upcoming live stream")
    return VideoMetadata(
        video_id=video_id,
        status=state,
        title=snippet.get("title"),
        channel=snippet.get("channelTitle"),
        duration_seconds=duration,
        thumbnail_url=_thumbnail(snippet),
        detail=", ".join(notes) or None,
    )


MISSING_DETAIL = "not found on YouTube (deleted, private to its owner, or never existed)"


def _error_reasons(content: bytes) -> list[str]:
    try:
        data = json.loads(content.decode("utf-8"))
        return [str(e.get("reason", "")) for e in data["error"].get("errors", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


class YouTubeClient:
    """videos.list over google-api-python-client. ``http``: an httplib2.Http (production: default with a
    timeout) or googleapiclient.http.HttpMock / HttpMockSequence (tests). The discovery document is the
    library's bundled static copy, so building the client needs no network. num_retries: the library's own
    retries with exponential backoff for 5xx, 429 and rate-limit 403s (quotaExceeded is never retried).
    ``maxResults`` is not sent: the API refuses it together with ``id``."""

    def __init__(
        self, api_key: str, *, http: Any | None = None, timeout_s: float = 15.0, num_retries: int = 2
    ):
        from googleapiclient.discovery import build

        if http is None:
            import httplib2

            http = httplib2.Http(timeout=timeout_s)
        self._num_retries = num_retries
        self._service = build(
            "youtube", "v3", developerKey=api_key, http=http, static_discovery=True, cache_discovery=False
        )

    def fetch(self, video_ids: Sequence[str]) -> FetchReport:
        """Metadata for ``video_ids`` (duplicates and malformed ids skipped), in batches of 50 ids per
        ``videos.list(part="snippet,contentDetails,status")`` call. Never raises for API or network
        trouble: a quota error stops further calls and sets ``quota_exceeded``; other errors are listed in
        ``errors`` and the affected ids stay unchecked."""
        from googleapiclient.errors import HttpError

        report = FetchReport()
        ids = list(dict.fromkeys(i for i in video_ids if VIDEO_ID_RE.match(i)))
        for bad in sorted({i for i in video_ids if not VIDEO_ID_RE.match(i)}):
            report.errors.append(f"{bad!r} is not a video id; skipped")
        for start in range(0, len(ids), MAX_IDS_PER_CALL):
            batch = ids[start : start + MAX_IDS_PER_CALL]
            request = self._service.videos().list(part="snippet,contentDetails,status", id=",".join(batch))
            report.api_calls += 1
            try:
                response = request.execute(num_retries=self._num_retries)
            except HttpError as exc:
                reasons = _error_reasons(exc.content)
                if {"quotaExceeded", "dailyLimitExceeded", "rateLimitExceeded"} & set(reasons):
                    report.quota_exceeded = True
                    report.errors.append(
                        "YouTube API quota exceeded; "
                        f"{len(ids) - start} video(s) not checked "
                        "(the daily quota resets at midnight Pacific time)"
                    )
                    log.warning("YouTube quota exceeded after %d call(s)", report.api_calls)
                    break
                message = f"YouTube API error {exc.status_code}: {exc.reason or 'no reason given'}"
                if reasons:
                    message += f" ({', '.join(reasons)})"
                report.errors.append(message + f"; {len(batch)} video(s) not checked")
                log.warning("%s", message)
                if exc.status_code in {400, 401, 403}:
                    break  # bad key or forbidden: every further call would fail the same way
                continue
            except (OSError, TimeoutError, ValueError) as exc:  # network failures, malformed JSON
                report.errors.append(f"YouTube unreachable ({type(exc).__name__}: {exc}); videos not checked")
                log.warning("YouTube request failed: %r", exc)
                break
            returned = {str(item.get("id")): item for item in response.get("items", [])}
            for video_id in batch:
                item = returned.get(video_id)
                if item is None:
                    report.videos[video_id] = VideoMetadata(video_id, "unavailable", detail=MISSING_DETAIL)
                else:
                    report.videos[video_id] = metadata_from_item(item)
        return report


@dataclass(frozen=True)
class VideoLookup:
    """The outcome of checking one video for /addvideo. verified: YouTube answered; metadata: its answer
    (None when unverified); message: one line for the admin (why unverified, or the error)."""

    video_id: str
    verified: bool
    metadata: VideoMetadata | None
    message: str


def lookup_video(client: YouTubeClient | None, video_id: str) -> VideoLookup:
    """Check one video (None client = no YOUTUBE_API_KEY: keep what the curator typed, unverified)."""
    if client is None:
        return VideoLookup(video_id, False, None, "YOUTUBE_API_KEY is not set: metadata is unverified")
    report = client.fetch([video_id])
    metadata = report.videos.get(video_id)
    if metadata is None:
        reason = "; ".join(report.errors) or "no answer"
        return VideoLookup(video_id, False, None, f"could not check with YouTube ({reason}): unverified")
    if metadata.status == "unavailable":
        return VideoLookup(video_id, True, metadata, f"unavailable on YouTube: {metadata.detail}")
    return VideoLookup(video_id, True, metadata, "checked with YouTube")


def checked_now() -> dt.datetime:
    """The timestamp recorded as a video's ``last_checked_at`` (aware UTC)."""
    return dt.datetime.now(dt.UTC)
