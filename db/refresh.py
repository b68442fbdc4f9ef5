"""Re-check stored videos with YouTube and record what it says (``python -m db refresh-videos``, bot job).

An available video gets YouTube's title, channel, duration and thumbnail (the curator's presenter and note
stay); a deleted or private one is marked ``unavailable`` with the reason and is no longer shown to users.
Videos YouTube could not be asked about (quota, network) keep their previous state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from db.models import VIDEO_AVAILABLE, VIDEO_UNAVAILABLE, Tutorial, utcnow
from db.repositories.catalog import get_tutorial, list_tutorials
from db.session import session_scope
from db.youtube import FetchReport, VideoMetadata, YouTubeClient


@dataclass
class RefreshReport:
    """checked: videos YouTube answered about; newly_unavailable: ids that were shown and now are not;
    unchecked: ids not checked (see errors); api_calls: quota units spent."""

    checked: int = 0
    available: int = 0
    unavailable: int = 0
    newly_unavailable: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    api_calls: int = 0
    quota_exceeded: bool = False

    def summary(self) -> str:
        """A few lines for the CLI or an admin message."""
        lines = [
            f"checked {self.checked} video(s) with {self.api_calls} videos.list call(s): "
            f"{self.available} available, {self.unavailable} unavailable"
        ]
        if self.newly_unavailable:
            lines.append("no longer available: " + ", ".join(self.newly_unavailable))
        if self.unchecked:
            lines.append(f"not checked: {len(self.unchecked)} ({', '.join(self.unchecked[:10])})")
        lines.extend(self.errors)
        return "\n".join(lines)


def apply_metadata(tutorial: Tutorial, metadata: VideoMetadata, now: dt.datetime) -> None:
    """Write YouTube's answer about one video onto its row."""
    if metadata.status == "available":
        tutorial.status = VIDEO_AVAILABLE
        tutorial.title = metadata.title or tutorial.title
        tutorial.channel = metadata.channel or tutorial.channel
        tutorial.duration_seconds = metadata.duration_seconds
        tutorial.thumbnail_url = metadata.thumbnail_url or tutorial.thumbnail_url
    else:
        tutorial.status = VIDEO_UNAVAILABLE
    tutorial.status_detail = metadata.detail
    tutorial.last_checked_at = now
    tutorial.updated_at = now


def videos_to_check(session: Session, *, checked_before: dt.datetime | None = None) -> list[str]:
    """Ids of listed (not removed) tutorials, or only those last checked before ``checked_before`` (and
    never-checked ones), in catalog order."""
    return [
        t.youtube_id
        for t in list_tutorials(session)
        if checked_before is None or t.last_checked_at is None or t.last_checked_at < checked_before
    ]


def apply_fetch_report(
    session: Session, video_ids: Sequence[str], fetched: FetchReport, *, now: dt.datetime | None = None
) -> RefreshReport:
    """Record YouTube's answers for ``video_ids`` (ids it did not answer about keep their state). Never
    commits."""
    now = now or utcnow()
    report = RefreshReport(
        errors=list(fetched.errors), api_calls=fetched.api_calls, quota_exceeded=fetched.quota_exceeded
    )
    for video_id in video_ids:
        tutorial = get_tutorial(session, video_id)
        if tutorial is None:  # deleted while YouTube was answering
            continue
        metadata = fetched.videos.get(video_id)
        if metadata is None:
            report.unchecked.append(video_id)
            continue
        was_shown = tutorial.status != VIDEO_UNAVAILABLE
        apply_metadata(tutorial, metadata, now)
        report.checked += 1
        if tutorial.status == VIDEO_AVAILABLE:
            report.available += 1
        else:
            report.unavailable += 1
            if was_shown:
                report.newly_unavailable.append(video_id)
    session.flush()
    return report


def refresh_videos(
    factory: sessionmaker[Session],
    client: YouTubeClient,
    *,
    checked_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> RefreshReport:
    """Check the catalog's videos with ``videos.list`` (batches of 50) and record the answers.

    Two short transactions (list the ids; record the answers) with NO transaction open while YouTube
    answers, so the bot's writes never wait on the network. Blocking: async callers use a thread.
    Never raises for YouTube trouble (see RefreshReport.errors); commits its own transactions.
    """
    with session_scope(factory) as session:
        video_ids = videos_to_check(session, checked_before=checked_before)
    fetched = client.fetch(video_ids)
    with session_scope(factory) as session:
        return apply_fetch_report(session, video_ids, fetched, now=now)
