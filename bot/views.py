"""Plain read-only views of catalog rows for the pure reply builders (no ORM objects leak into texts)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EquipmentView:
    """One equipment type: ``slug`` (the classifier label), display ``name``, short ``description``."""

    slug: str
    name: str
    description: str = ""


@dataclass(frozen=True)
class TutorialView:
    """One curated tutorial: database ``id``, YouTube ``video_id``, ``title``, ``channel``, watch ``url``."""

    id: int
    video_id: str
    title: str
    channel: str
    url: str


def display_name(slug: str) -> str:
    """Fallback display name for a label without a catalog row: ``leg_press`` -> ``Leg press``."""
    text = slug.replace("_", " ").strip()
    return text[:1].upper() + text[1:]
