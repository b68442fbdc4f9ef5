"""Catalog repositories: equipment types and their curated YouTube tutorials. Never commit."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from db.errors import DuplicateVideoError, NotFoundError, UnknownLabelError
from db.models import (
    NOT_EQUIPMENT,
    SOURCE_ADMIN,
    VIDEO_AVAILABLE,
    VIDEO_STATUSES,
    VIDEO_UNAVAILABLE,
    VIDEO_UNVERIFIED,
    Equipment,
    Tutorial,
    utcnow,
)

YOUTUBE_SEARCH_URL = "https://www.youtube.com/results"
"""YouTube's public search page; ``search_query`` is its documented query parameter."""


def youtube_search_url(equipment_name: str) -> str:
    """A YouTube search link for an equipment type that has no curated tutorial yet.

    Built with urllib.parse (never a guessed video id), e.g. ``youtube_search_url("Leg press")`` ->
    ``https://www.youtube.com/results?search_query=how+to+use+Leg+press+machine+tutorial+for+beginners``.
    The words "machine" and "tutorial" are not repeated when the name already contains them.
    """
    name = " ".join(equipment_name.split())
    words = ["how to use", name]
    lowered = name.lower()
    if "machine" not in lowered and lowered not in {"dumbbell", "dumbbells", "plyo box", "plyometric box"}:
        words.append("machine")
    words.append("tutorial for beginners")
    return f"{YOUTUBE_SEARCH_URL}?{urlencode({'search_query': ' '.join(words)})}"


def list_equipment(session: Session) -> list[Equipment]:
    """Every equipment type, in menu order (sort_order, then slug)."""
    return list(session.scalars(select(Equipment).order_by(Equipment.sort_order, Equipment.slug)))


def equipment_slugs(session: Session) -> list[str]:
    """Every equipment slug, in menu order."""
    return list(session.scalars(select(Equipment.slug).order_by(Equipment.sort_order, Equipment.slug)))


def get_equipment(session: Session, slug: str) -> Equipment | None:
    """The equipment type with this exact slug, or None."""
    return session.scalar(select(Equipment).where(Equipment.slug == slug))


_SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}\Z")  # 2-40 chars: fits callback data (see db.seed.SLUG_RE)


def add_equipment(
    session: Session,
    *,
    slug: str,
    display_name: str,
    description: str = "",
    aliases: list[str] | None = None,
    sort_order: int | None = None,
    now: dt.datetime | None = None,
) -> Equipment:
    """Add an equipment type (admin). It is offered in the correction picker at once and becomes a
    classifier class once retraining has enough images of it (issue 6).

    slug: lowercase letters, digits and ``_`` (2-40 chars, not ``not_equipment``); sort_order: default after
    the last one. Raises ValueError for a bad slug, an empty name, or a slug that already exists.
    """
    if not _SLUG_RE.match(slug) or slug == NOT_EQUIPMENT:
        raise ValueError(f"slug must be lowercase letters, digits and _ (2-40 chars), got {slug!r}")
    if not display_name.strip():
        raise ValueError("display name must not be empty")
    if get_equipment(session, slug) is not None:
        raise ValueError(f"equipment {slug!r} already exists")
    if sort_order is None:
        sort_order = (session.scalar(select(func.max(Equipment.sort_order))) or 0) + 10
    now = now or utcnow()
    equipment = Equipment(
        slug=slug,
        display_name=display_name.strip(),
        description=description.strip(),
        aliases=[a.strip() for a in aliases or [] if a.strip()],
        sort_order=sort_order,
        seed_hash=None,
        created_at=now,
        updated_at=now,
    )
    session.add(equipment)
    session.flush()
    return equipment


def update_equipment(
    session: Session,
    slug: str,
    *,
    display_name: str | None = None,
    description: str | None = None,
    aliases: list[str] | None = None,
    sort_order: int | None = None,
    now: dt.datetime | None = None,
) -> Equipment:
    """Edit an equipment type's text (admin); fields left None are unchanged. A later ``python -m db seed``
    keeps the edit. Raises UnknownLabelError for an unknown slug, ValueError for an empty name."""
    equipment = get_equipment(session, slug)
    if equipment is None:
        raise UnknownLabelError(f"unknown equipment {slug!r}")
    if display_name is not None:
        if not display_name.strip():
            raise ValueError("display name must not be empty")
        equipment.display_name = display_name.strip()
    if description is not None:
        equipment.description = description.strip()
    if aliases is not None:
        equipment.aliases = [a.strip() for a in aliases if a.strip()]
    if sort_order is not None:
        equipment.sort_order = sort_order
    equipment.updated_at = now or utcnow()
    session.flush()
    return equipment


def _normalise_name(text: str) -> str:
    return re.sub(r"[\s_\-]+", " ", text.strip().lower())


def resolve_equipment(session: Session, text: str) -> Equipment | None:
    """Find the equipment an admin or user typed: slug, display name or alias, ignoring case, spaces,
    hyphens and underscores (``"Lat pull-down"`` -> lat_pulldown_machine if it is an alias). None if no match
    or if the text is ambiguous (matches aliases of two types)."""
    wanted = _normalise_name(text)
    if not wanted:
        return None
    matches: list[Equipment] = []
    for equipment in list_equipment(session):
        names = [equipment.slug, equipment.display_name, *equipment.aliases]
        if any(_normalise_name(name) == wanted for name in names):
            matches.append(equipment)
    return matches[0] if len(matches) == 1 else None


def equipment_with_tutorial_counts(session: Session) -> list[tuple[Equipment, int]]:
    """(equipment, number of tutorials shown to users) in menu order; removed and unavailable videos are
    not counted."""
    count = (
        select(Tutorial.equipment_id, func.count(Tutorial.id).label("n"))
        .where(Tutorial.removed_at.is_(None), Tutorial.status != VIDEO_UNAVAILABLE)
        .group_by(Tutorial.equipment_id)
        .subquery()
    )
    rows = session.execute(
        select(Equipment, func.coalesce(count.c.n, 0))
        .outerjoin(count, count.c.equipment_id == Equipment.id)
        .order_by(Equipment.sort_order, Equipment.slug)
    )
    return [(equipment, int(n)) for equipment, n in rows]


def tutorials_for(session: Session, slug: str, *, limit: int = 3) -> list[Tutorial]:
    """Up to ``limit`` tutorials to show for an equipment slug, best first.

    Shown: not removed and not known to be unavailable (unverified ones are shown; the catalog's seed is
    unverified until YouTube is reachable). Order: verified available first, women-led first, then oldest
    first (curators' earliest picks). Empty list when there are none (show ``youtube_search_url`` instead).
    """
    verified_first = case((Tutorial.status == VIDEO_AVAILABLE, 0), else_=1)
    women_first = case((Tutorial.women_led.is_(True), 0), else_=1)
    query = (
        select(Tutorial)
        .join(Tutorial.equipment)
        .where(Equipment.slug == slug, Tutorial.removed_at.is_(None), Tutorial.status != VIDEO_UNAVAILABLE)
        .order_by(verified_first, women_first, Tutorial.created_at, Tutorial.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_tutorials(
    session: Session, slug: str | None = None, *, include_removed: bool = False
) -> list[Tutorial]:
    """All tutorials (for /videos and refresh-videos), optionally of one equipment slug, in equipment menu
    order then oldest first; removed ones only if ``include_removed``. Equipment is eagerly loaded."""
    query = (
        select(Tutorial)
        .join(Tutorial.equipment)
        .options(selectinload(Tutorial.equipment))
        .order_by(Equipment.sort_order, Equipment.slug, Tutorial.created_at, Tutorial.id)
    )
    if slug is not None:
        query = query.where(Equipment.slug == slug)
    if not include_removed:
        query = query.where(Tutorial.removed_at.is_(None))
    return list(session.scalars(query))


def get_tutorial(session: Session, youtube_id: str) -> Tutorial | None:
    """The tutorial with this 11-character video id (removed or not), or None."""
    return session.scalar(select(Tutorial).where(Tutorial.youtube_id == youtube_id))


def add_tutorial(
    session: Session,
    *,
    equipment_slug: str,
    youtube_id: str,
    added_by_telegram_id: int | None,
    title: str | None = None,
    channel: str | None = None,
    presenter: str | None = None,
    curator_note: str | None = None,
    duration_seconds: int | None = None,
    thumbnail_url: str | None = None,
    women_led: bool = True,
    status: str = VIDEO_UNVERIFIED,
    status_detail: str | None = None,
    checked_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Tutorial:
    """Add a curated video (admin /addvideo). ``youtube_id`` must already be parsed (db.youtube).

    status: unverified (no API key: metadata as the curator typed it) | available | unavailable.
    A video removed earlier is brought back with the new details. Raises UnknownLabelError for an unknown
    slug, DuplicateVideoError if the video is already listed (the message names its equipment), ValueError
    for a bad status or negative duration.
    """
    if status not in VIDEO_STATUSES:
        raise ValueError(f"status must be one of {VIDEO_STATUSES}, got {status!r}")
    if duration_seconds is not None and duration_seconds < 0:
        raise ValueError(f"duration_seconds must be >= 0, got {duration_seconds}")
    equipment = get_equipment(session, equipment_slug)
    if equipment is None:
        raise UnknownLabelError(f"unknown equipment {equipment_slug!r}")
    now = now or utcnow()
    tutorial = get_tutorial(session, youtube_id)
    if tutorial is not None and tutorial.removed_at is None:
        raise DuplicateVideoError(
            f"video {youtube_id} is already in the catalog under {tutorial.equipment.slug}"
        )
    if tutorial is None:
        tutorial = Tutorial(youtube_id=youtube_id, created_at=now)
        session.add(tutorial)
    tutorial.equipment = equipment
    tutorial.title = title
    tutorial.channel = channel
    tutorial.presenter = presenter
    tutorial.curator_note = curator_note
    tutorial.duration_seconds = duration_seconds
    tutorial.thumbnail_url = thumbnail_url
    tutorial.women_led = women_led
    tutorial.status = status
    tutorial.status_detail = status_detail
    tutorial.last_checked_at = checked_at
    tutorial.source = SOURCE_ADMIN
    tutorial.added_by_telegram_id = added_by_telegram_id
    tutorial.removed_at = None
    tutorial.removed_by_telegram_id = None
    tutorial.seed_hash = None
    tutorial.updated_at = now
    session.flush()
    return tutorial


def remove_tutorial(
    session: Session, youtube_id: str, *, removed_by_telegram_id: int | None, now: dt.datetime | None = None
) -> Tutorial:
    """Hide a video from users (admin /removevideo). Soft delete: the row stays so that ``python -m db seed``
    does not bring a removed seed video back. Raises NotFoundError if the video is not listed."""
    tutorial = get_tutorial(session, youtube_id)
    if tutorial is None or tutorial.removed_at is not None:
        raise NotFoundError(f"video {youtube_id} is not in the catalog")
    tutorial.removed_at = now or utcnow()
    tutorial.removed_by_telegram_id = removed_by_telegram_id
    session.flush()
    return tutorial
