"""SQLAlchemy 2 typed models: the catalog, users, predictions, corrections and model versions.

Portable types only (SQLite by default, PostgreSQL must work too): Integer/BigInteger ids, String/Text, Float,
Boolean, JSON, and ``UTCDateTime`` (timezone-aware UTC datetimes on every backend). Every constraint is
named by ``NAMING_CONVENTION`` so that later Alembic migrations (SQLite batch mode) can alter or drop
them by name.

Telegram ids (users, chats, messages) are ``BigInteger``: user ids exceed 2**31 and chat ids are negative
for groups (Bot API docs: "at most 52 significant bits").
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Closed vocabularies, stored as short strings (portable; checked by named CHECK constraints).
NOT_EQUIPMENT: Final = "not_equipment"
"""The label a user picks for "Something else / not gym equipment" (never an equipment slug)."""

DECISIONS: Final = ("confident", "unsure", "not_equipment")
"""Mirrors classifier.types.DECISIONS (db imports nothing of ours, so it is repeated here)."""

FEEDBACK_CONFIRMED: Final = "confirmed"
FEEDBACK_CORRECTED: Final = "corrected"
FEEDBACK_VALUES: Final = (FEEDBACK_CONFIRMED, FEEDBACK_CORRECTED)

REVIEW_PENDING: Final = "pending"
REVIEW_APPROVED: Final = "approved"
REVIEW_REJECTED: Final = "rejected"
REVIEW_STATES: Final = (REVIEW_PENDING, REVIEW_APPROVED, REVIEW_REJECTED)

APPROVED_BY_ADMIN: Final = "admin"
"""approval_source: the correction was made by an admin (approved at once)."""
APPROVED_BY_REVIEW: Final = "review"
"""approval_source: an admin approved (or relabelled) it in /review."""
APPROVED_BY_AGREEMENT: Final = "agreement"
"""approval_source: enough different users chose the same label for the same image content."""
APPROVAL_SOURCES: Final = (APPROVED_BY_ADMIN, APPROVED_BY_REVIEW, APPROVED_BY_AGREEMENT)

VIDEO_UNVERIFIED: Final = "unverified"
"""Metadata as the curator typed it; never checked with YouTube's videos.list."""
VIDEO_AVAILABLE: Final = "available"
VIDEO_UNAVAILABLE: Final = "unavailable"
"""Deleted, private, or otherwise not playable (``status_detail`` says which)."""
VIDEO_STATUSES: Final = (VIDEO_UNVERIFIED, VIDEO_AVAILABLE, VIDEO_UNAVAILABLE)

SOURCE_SEED: Final = "seed"
SOURCE_ADMIN: Final = "admin"


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def utcnow() -> dt.datetime:
    """The current time as a timezone-aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A DateTime that always stores and returns timezone-aware UTC.

    SQLite has no time zones (it returns naive datetimes); PostgreSQL returns aware ones. Naive input is
    rejected with ValueError so that local times never sneak in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base whose MetaData carries the naming convention used by every migration."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UTCDateTime()}


class Equipment(Base):
    """One equipment type. ``slug`` is the classifier's label (e.g. ``leg_press``) and never changes.

    aliases: list[str] of other names users or admins type ("lat pull-down"); description: two lines (what
    it trains / how to set it up); sort_order: ascending order in menus and pickers.
    seed_hash: sha256 of the seed-managed fields as last written by ``python -m db seed``; None for rows an
    admin created. A row whose current fields no longer hash to it was edited later and is left alone.
    """

    __tablename__ = "equipment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    aliases: Mapped[list[str]] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    seed_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tutorials: Mapped[list[Tutorial]] = relationship(back_populates="equipment")

    __table_args__ = (CheckConstraint(f"slug <> '{NOT_EQUIPMENT}'", name="slug_not_reserved"),)

    def __repr__(self) -> str:
        return f"Equipment(slug={self.slug!r})"


class Tutorial(Base):
    """A curated YouTube video teaching one equipment type.

    youtube_id: the 11-character video id (unique); title may be None when the source did not record it
    (``curator_note`` then says what the video shows); duration_seconds: from YouTube (None until verified);
    status: unverified | available | unavailable, with ``status_detail`` (e.g. "private", "not found") and
    ``last_checked_at`` (None until checked). women_led: set by the curator. added_by_telegram_id: the admin
    who added it (None for the seed); source: "seed" | "admin"; found_in: provenance from the catalog file.
    removed_at: set by /removevideo (soft delete, so a re-seed does not bring a removed video back).
    """

    __tablename__ = "tutorials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    youtube_id: Mapped[str] = mapped_column(String(11), unique=True)
    equipment_id: Mapped[int] = mapped_column(ForeignKey("equipment.id", ondelete="CASCADE"), index=True)
    title: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str | None] = mapped_column(String(200))
    presenter: Mapped[str | None] = mapped_column(String(200))
    curator_note: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    thumbnail_url: Mapped[str | None] = mapped_column(String(500))
    women_led: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=VIDEO_UNVERIFIED)
    status_detail: Mapped[str | None] = mapped_column(String(300))
    last_checked_at: Mapped[dt.datetime | None] = mapped_column()
    source: Mapped[str] = mapped_column(String(16), default=SOURCE_ADMIN)
    added_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    found_in: Mapped[str | None] = mapped_column(Text)
    source_confidence: Mapped[str | None] = mapped_column(String(16))
    seed_hash: Mapped[str | None] = mapped_column(String(64))
    removed_at: Mapped[dt.datetime | None] = mapped_column()
    removed_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    equipment: Mapped[Equipment] = relationship(back_populates="tutorials")

    __table_args__ = (
        CheckConstraint(_in("status", VIDEO_STATUSES), name="status"),
        CheckConstraint(_in("source", (SOURCE_SEED, SOURCE_ADMIN)), name="source"),
    )

    @property
    def url(self) -> str:
        """The canonical watch URL for this video."""
        return f"https://www.youtube.com/watch?v={self.youtube_id}"

    @property
    def display_title(self) -> str:
        """The title, else the curator's note, else the id (for replies when the source recorded no title)."""
        return self.title or self.curator_note or self.youtube_id

    def __repr__(self) -> str:
        return f"Tutorial(youtube_id={self.youtube_id!r}, status={self.status!r})"


class User(Base):
    """A Telegram user who talked to the bot. telegram_id: Telegram's user id; language_code: IETF tag."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    language_code: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    predictions: Mapped[list[Prediction]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"User(telegram_id={self.telegram_id})"


class Prediction(Base):
    """One classified photo and what the user said about it.

    image_sha256: hex sha256 of the stored bytes; image_path: where they are stored (DATA_DIR/photos/
    <sha256>.<ext>, as given by the caller); label/confidence (0..1)/decision/top_k ([[label, prob], ...],
    best first) as returned by the classifier; model_version: registry version (e.g. "v0001").
    feedback: None (no button tapped), "confirmed" (Correct) or "corrected" (a correction row exists).
    """

    __tablename__ = "predictions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)
    reply_message_id: Mapped[int | None] = mapped_column(BigInteger)
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    image_sha256: Mapped[str] = mapped_column(String(64), index=True)
    image_path: Mapped[str] = mapped_column(String(500))
    model_version: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(64), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    decision: Mapped[str] = mapped_column(String(16))
    top_k: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    feedback: Mapped[str | None] = mapped_column(String(16))
    feedback_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    user: Mapped[User] = relationship(back_populates="predictions")
    correction: Mapped[Correction | None] = relationship(
        back_populates="prediction", cascade="all, delete-orphan", passive_deletes=True, uselist=False
    )

    __table_args__ = (
        CheckConstraint(_in("decision", DECISIONS), name="decision"),
        CheckConstraint(f"feedback IS NULL OR {_in('feedback', FEEDBACK_VALUES)}", name="feedback"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence_range"),
    )

    def __repr__(self) -> str:
        return f"Prediction(id={self.id}, label={self.label!r}, decision={self.decision!r})"


class ModelVersion(Base):
    """A classifier version known to the database (mirrors the registry's numbered folders).

    version: registry name ("v0001"); metrics: the version's metrics.json content (optional);
    first_promoted_at: when it first became champion (None if never); promotions: every time it was promoted.
    """

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32), unique=True)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    first_promoted_at: Mapped[dt.datetime | None] = mapped_column()

    promotions: Mapped[list[ModelPromotion]] = relationship(
        back_populates="model_version", order_by="ModelPromotion.promoted_at"
    )

    def __repr__(self) -> str:
        return f"ModelVersion(version={self.version!r})"


class ModelPromotion(Base):
    """One move of the champion pointer: which version, when, why ("retrain", "rollback", "initial",
    "manual"), by whom (admin Telegram id or None for the scheduler) and which version it replaced."""

    __tablename__ = "model_promotions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    promoted_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    reason: Mapped[str] = mapped_column(String(32), default="retrain")
    promoted_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    previous_version: Mapped[str | None] = mapped_column(String(32))

    model_version: Mapped[ModelVersion] = relationship(back_populates="promotions")


class Correction(Base):
    """The label a user chose for a prediction she said was wrong (at most one per prediction).

    label: an equipment slug or ``NOT_EQUIPMENT``; user_id: who corrected (always the prediction's owner);
    review_state: pending | approved | rejected; approval_source: admin | review | agreement;
    reviewed_by_telegram_id / reviewed_at: the admin review, if any; trained_in_version: the model version
    that first trained on it (None until a retrain used it).
    """

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[int] = mapped_column(ForeignKey("predictions.id", ondelete="CASCADE"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    review_state: Mapped[str] = mapped_column(String(16), default=REVIEW_PENDING, index=True)
    approval_source: Mapped[str | None] = mapped_column(String(16))
    reviewed_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column()
    trained_in_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    prediction: Mapped[Prediction] = relationship(back_populates="correction")
    user: Mapped[User] = relationship()
    trained_in_version: Mapped[ModelVersion | None] = relationship()

    __table_args__ = (
        CheckConstraint(_in("review_state", REVIEW_STATES), name="review_state"),
        CheckConstraint(
            f"approval_source IS NULL OR {_in('approval_source', APPROVAL_SOURCES)}", name="approval_source"
        ),
        Index("ix_corrections_label_state", "label", "review_state"),
    )

    def __repr__(self) -> str:
        return f"Correction(id={self.id}, label={self.label!r}, state={self.review_state!r})"


__all__ = [
    "APPROVAL_SOURCES",
    "DECISIONS",
    "NAMING_CONVENTION",
    "NOT_EQUIPMENT",
    "REVIEW_STATES",
    "VIDEO_STATUSES",
    "Base",
    "Correction",
    "Equipment",
    "ModelPromotion",
    "ModelVersion",
    "Prediction",
    "Tutorial",
    "UTCDateTime",
    "User",
    "utcnow",
]
