"""Load the catalog seed (db/catalog.toml) into the database, idempotently.

Rules (issue 3: "re-running the seed never duplicates and never overwrites an admin's later edits"):
- a missing equipment type or tutorial is inserted, with ``seed_hash`` = sha256 of its seed-managed fields;
- a row whose current fields still hash to its ``seed_hash`` (nobody touched it since the last seed) is
  updated to the seed file's new content, if that changed;
- a row edited since (an admin, or refresh-videos replacing the curator's title with YouTube's), a row an
  admin created (``seed_hash`` None) and a tutorial an admin removed (``removed_at``) are left alone;
- a seeded tutorial the seed file no longer lists is hidden like /removevideo does (``removed_at`` set,
  ``removed_by_telegram_id`` None) if nobody touched it since seeding, else kept and reported; it comes
  back if the seed lists it again.
Video availability (status, duration, last check) is never managed by the seed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import (
    NOT_EQUIPMENT,
    SOURCE_SEED,
    VIDEO_STATUSES,
    VIDEO_UNVERIFIED,
    Equipment,
    Tutorial,
    utcnow,
)
from db.youtube import VIDEO_ID_RE

DEFAULT_SEED_PATH = Path(__file__).resolve().parent / "catalog.toml"
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}\Z")
"""An equipment slug: 2-40 characters, so that a button's callback data ``pk:<prediction id>:<slug>`` fits
Telegram's 64 bytes (bot.callback_data) and it is a valid class folder for retraining."""


class SeedError(ValueError):
    """The seed file is malformed; the message names the file, the entry and the problem."""


@dataclass(frozen=True)
class EquipmentSeed:
    """One [[equipment]] entry. description = trains + newline + setup (always two lines)."""

    slug: str
    display_name: str
    aliases: tuple[str, ...]
    trains: str
    setup: str
    sort_order: int

    @property
    def description(self) -> str:
        """The two-line text stored in Equipment.description."""
        return f"{self.trains}\n{self.setup}"


@dataclass(frozen=True)
class TutorialSeed:
    """One [[tutorials]] entry, as copied from ../shared/catalog/tutorials.tsv."""

    equipment: str
    youtube_id: str
    title: str | None
    channel: str | None
    presenter: str | None
    curator_note: str | None
    source_confidence: str | None
    found_in: str | None
    women_led: bool
    status: str


@dataclass(frozen=True)
class CatalogSeed:
    """A parsed, validated seed file: equipment types in file order, then tutorials."""

    equipment: tuple[EquipmentSeed, ...]
    tutorials: tuple[TutorialSeed, ...]


@dataclass
class SeedReport:
    """Counts per table: inserted, updated (untouched rows whose seed content changed), unchanged, and kept
    (rows edited, created or removed by an admin, left alone; ``kept_details`` says which and why)."""

    equipment_inserted: int = 0
    equipment_updated: int = 0
    equipment_unchanged: int = 0
    equipment_kept: int = 0
    tutorials_inserted: int = 0
    tutorials_updated: int = 0
    tutorials_unchanged: int = 0
    tutorials_kept: int = 0
    tutorials_removed: int = 0
    kept_details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line per table for the CLI."""
        return (
            f"equipment: {self.equipment_inserted} inserted, {self.equipment_updated} updated, "
            f"{self.equipment_unchanged} unchanged, {self.equipment_kept} kept (edited by an admin)\n"
            f"tutorials: {self.tutorials_inserted} inserted, {self.tutorials_updated} updated, "
            f"{self.tutorials_unchanged} unchanged, {self.tutorials_kept} kept "
            f"(edited or removed by an admin), {self.tutorials_removed} hidden (no longer in the seed)"
        )


def _text(entry: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = entry.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SeedError(f"{where}: `{key}` is required")
        return None
    if not isinstance(value, str):
        raise SeedError(f"{where}: `{key}` must be a string, got {type(value).__name__}")
    if "\n" in value:
        raise SeedError(f"{where}: `{key}` must be one line")
    return value.strip()


def load_seed(path: Path = DEFAULT_SEED_PATH) -> CatalogSeed:
    """Parse and validate the seed TOML (stdlib tomllib). Raises SeedError naming the entry and problem:
    bad slug, duplicate slug or video id, a tutorial for an unknown equipment slug, a malformed video id,
    missing text, unknown status."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SeedError(f"{path}: {exc}") from exc
    equipment: list[EquipmentSeed] = []
    slugs: set[str] = set()
    for i, entry in enumerate(data.get("equipment", [])):
        where = f"{path.name} [[equipment]] #{i + 1}"
        slug = _text(entry, "slug", where, required=True) or ""
        where = f"{path.name} [[equipment]] {slug!r}"
        if not SLUG_RE.match(slug) or slug == NOT_EQUIPMENT:
            raise SeedError(
                f"{where}: slug must be 2-40 lowercase letters, digits and _ (and not {NOT_EQUIPMENT!r})"
            )
        if slug in slugs:
            raise SeedError(f"{where}: duplicate slug")
        slugs.add(slug)
        aliases = entry.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise SeedError(f"{where}: aliases must be a list of non-empty strings")
        order = entry.get("order", 0)
        if not isinstance(order, int):
            raise SeedError(f"{where}: order must be an integer")
        equipment.append(
            EquipmentSeed(
                slug=slug,
                display_name=_text(entry, "name", where, required=True) or "",
                aliases=tuple(a.strip() for a in aliases),
                trains=_text(entry, "trains", where, required=True) or "",
                setup=_text(entry, "setup", where, required=True) or "",
                sort_order=order,
            )
        )
    tutorials: list[TutorialSeed] = []
    ids: set[str] = set()
    for i, entry in enumerate(data.get("tutorials", [])):
        where = f"{path.name} [[tutorials]] #{i + 1}"
        video_id = _text(entry, "youtube_id", where, required=True) or ""
        where = f"{path.name} [[tutorials]] {video_id!r}"
        if not VIDEO_ID_RE.match(video_id):
            raise SeedError(f"{where}: youtube_id must be an 11-character video id")
        if video_id in ids:
            raise SeedError(f"{where}: duplicate youtube_id")
        ids.add(video_id)
        slug = _text(entry, "equipment", where, required=True) or ""
        if slug not in slugs:
            raise SeedError(f"{where}: equipment {slug!r} is not an [[equipment]] slug in this file")
        status = entry.get("status", VIDEO_UNVERIFIED)
        if status not in VIDEO_STATUSES:
            raise SeedError(f"{where}: status must be one of {VIDEO_STATUSES}")
        women_led = entry.get("women_led", True)
        if not isinstance(women_led, bool):
            raise SeedError(f"{where}: women_led must be true or false")
        title = _text(entry, "title", where, required=False)
        note = _text(entry, "note", where, required=False)
        if title is None and note is None:
            raise SeedError(f"{where}: give a title or a note saying what the video shows")
        tutorials.append(
            TutorialSeed(
                equipment=slug,
                youtube_id=video_id,
                title=title,
                channel=_text(entry, "channel", where, required=False),
                presenter=_text(entry, "presenter", where, required=False),
                curator_note=note,
                source_confidence=_text(entry, "source_confidence", where, required=False),
                found_in=_text(entry, "found_in", where, required=False),
                women_led=women_led,
                status=status,
            )
        )
    return CatalogSeed(tuple(equipment), tuple(tutorials))


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def equipment_fields(
    display_name: str, aliases: list[str] | tuple[str, ...], description: str, order: int
) -> str:
    """seed_hash of an equipment row's seed-managed fields."""
    return _digest(
        {"display_name": display_name, "aliases": list(aliases), "description": description, "order": order}
    )


def _equipment_row_hash(row: Equipment) -> str:
    return equipment_fields(row.display_name, row.aliases or [], row.description, row.sort_order)


def _equipment_seed_hash(entry: EquipmentSeed) -> str:
    return equipment_fields(entry.display_name, entry.aliases, entry.description, entry.sort_order)


def _tutorial_hash(
    slug: str,
    title: str | None,
    channel: str | None,
    presenter: str | None,
    note: str | None,
    women_led: bool,
    found_in: str | None,
    confidence: str | None,
) -> str:
    return _digest(
        {
            "equipment": slug,
            "title": title,
            "channel": channel,
            "presenter": presenter,
            "note": note,
            "women_led": women_led,
            "found_in": found_in,
            "confidence": confidence,
        }
    )


def _tutorial_row_hash(row: Tutorial, slug: str) -> str:
    return _tutorial_hash(
        slug,
        row.title,
        row.channel,
        row.presenter,
        row.curator_note,
        row.women_led,
        row.found_in,
        row.source_confidence,
    )


def _tutorial_seed_hash(entry: TutorialSeed) -> str:
    return _tutorial_hash(
        entry.equipment,
        entry.title,
        entry.channel,
        entry.presenter,
        entry.curator_note,
        entry.women_led,
        entry.found_in,
        entry.source_confidence,
    )


def _write_equipment(row: Equipment, entry: EquipmentSeed, now: dt.datetime) -> None:
    row.display_name = entry.display_name
    row.aliases = list(entry.aliases)
    row.description = entry.description
    row.sort_order = entry.sort_order
    row.seed_hash = _equipment_seed_hash(entry)
    row.updated_at = now


def _write_tutorial(row: Tutorial, entry: TutorialSeed, equipment: Equipment, now: dt.datetime) -> None:
    row.equipment = equipment
    row.title = entry.title
    row.channel = entry.channel
    row.presenter = entry.presenter
    row.curator_note = entry.curator_note
    row.women_led = entry.women_led
    row.found_in = entry.found_in
    row.source_confidence = entry.source_confidence
    row.seed_hash = _tutorial_seed_hash(entry)
    row.updated_at = now


def apply_seed(session: Session, seed: CatalogSeed, *, now: dt.datetime | None = None) -> SeedReport:
    """Insert or update catalog rows from ``seed`` by the rules in this module's docstring. Never commits;
    running it twice in a row changes nothing the second time."""
    now = now or utcnow()
    report = SeedReport()
    by_slug = {row.slug: row for row in session.scalars(select(Equipment))}
    for entry in seed.equipment:
        row = by_slug.get(entry.slug)
        if row is None:
            row = Equipment(slug=entry.slug, created_at=now)
            _write_equipment(row, entry, now)
            session.add(row)
            by_slug[entry.slug] = row
            report.equipment_inserted += 1
        elif row.seed_hash is None or _equipment_row_hash(row) != row.seed_hash:
            report.equipment_kept += 1
            report.kept_details.append(f"equipment {entry.slug}: edited since seeding")
        elif row.seed_hash == _equipment_seed_hash(entry):
            report.equipment_unchanged += 1
        else:
            _write_equipment(row, entry, now)
            report.equipment_updated += 1
    session.flush()
    slug_of = {row.id: slug for slug, row in by_slug.items()}
    by_video = {row.youtube_id: row for row in session.scalars(select(Tutorial))}
    for tutorial in seed.tutorials:
        equipment = by_slug[tutorial.equipment]
        row_t = by_video.get(tutorial.youtube_id)
        if row_t is None:
            row_t = Tutorial(
                youtube_id=tutorial.youtube_id,
                status=tutorial.status,
                source=SOURCE_SEED,
                added_by_telegram_id=None,
                created_at=now,
            )
            _write_tutorial(row_t, tutorial, equipment, now)
            session.add(row_t)
            report.tutorials_inserted += 1
        elif row_t.removed_at is not None and _hidden_by_seed(row_t):
            row_t.removed_at = None  # listed in the seed again
            _write_tutorial(row_t, tutorial, equipment, now)
            report.tutorials_updated += 1
        elif row_t.removed_at is not None:
            report.tutorials_kept += 1
            report.kept_details.append(f"tutorial {tutorial.youtube_id}: removed by an admin")
        elif (
            row_t.seed_hash is None
            or _tutorial_row_hash(row_t, slug_of[row_t.equipment_id]) != row_t.seed_hash
        ):
            report.tutorials_kept += 1
            report.kept_details.append(f"tutorial {tutorial.youtube_id}: edited since seeding")
        elif row_t.seed_hash == _tutorial_seed_hash(tutorial):
            report.tutorials_unchanged += 1
        else:
            _write_tutorial(row_t, tutorial, equipment, now)
            report.tutorials_updated += 1
    listed = {t.youtube_id for t in seed.tutorials}
    for youtube_id, row_t in sorted(by_video.items()):
        if youtube_id in listed or row_t.source != SOURCE_SEED or row_t.removed_at is not None:
            continue
        if row_t.seed_hash is not None and (
            _tutorial_row_hash(row_t, slug_of[row_t.equipment_id]) == row_t.seed_hash
        ):
            row_t.removed_at = now  # like /removevideo, by nobody: the seed file dropped it
            row_t.removed_by_telegram_id = None
            row_t.updated_at = now
            report.tutorials_removed += 1
        else:
            report.tutorials_kept += 1
            report.kept_details.append(
                f"tutorial {youtube_id}: no longer in the seed, but edited since seeding"
            )
    session.flush()
    return report


def _hidden_by_seed(row: Tutorial) -> bool:
    """A seeded tutorial hidden because the seed file dropped it (not by an admin's /removevideo)."""
    return row.source == SOURCE_SEED and row.removed_by_telegram_id is None and row.seed_hash is not None
