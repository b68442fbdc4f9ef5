"""Re-check stored videos with YouTube and record what it says (``python -m db refresh-videos``, bot job).

An available video gets YouTube's title, channel, duration and thumbnail (the curator's presenter and note
stay); a deleted or private one is marked ``unavailable`` with the reason and is no longer shown to users.
Videos YouTube could not be asked about (quota, network) keep their previous state. Never commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from db.models import VIDEO_AVAILABLE, VIDEO_UNAVAILABLE, Tutorial, utcnow
from db.repositories.catalog import list_tutorials
from db.youtube import VideoMetadata, YouTubeClient


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


def refresh_videos(
    session: Session,
    client: YouTubeClient,
    *,
    checked_before: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> RefreshReport:
    """Check every listed (not removed) tutorial, or only those last checked before ``checked_before`` (and
    never-checked ones), with ``videos.list`` in batches of 50. Returns what happened; never raises for
    YouTube trouble."""
    now = now or utcnow()
    tutorials = [
        t
        for t in list_tutorials(session)
        if checked_before is None or t.last_checked_at is None or t.last_checked_at < checked_before
    ]
    fetched = client.fetch([t.youtube_id for t in tutorials])
    report = RefreshReport(
        errors=list(fetched.errors), api_calls=fetched.api_calls, quota_exceeded=fetched.quota_exceeded
    )
    for tutorial in tutorials:
        metadata = fetched.videos.get(tutorial.youtube_id)
        if metadata is None:
            report.unchecked.append(tutorial.youtube_id)
            continue
        was_shown = tutorial.status != VIDEO_UNAVAILABLE
        apply_metadata(tutorial, metadata, now)
        report.checked += 1
        if tutorial.status == VIDEO_AVAILABLE:
            report.available += 1
        else:
            report.unavailable += 1
            if was_shown:
                report.newly_unavailable.append(tutorial.youtube_id)
    session.flush()
    return report
