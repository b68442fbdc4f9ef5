"""Model version repositories: which classifier versions exist and when each became champion. Never commit.

The registry folders (classifier/registry.py) hold the files; these rows record service history for /stats,
/versions and corrections' ``trained_in_version``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from db.models import ModelPromotion, ModelVersion, utcnow


def register_model_version(
    session: Session, version: str, *, metrics: dict[str, Any] | None = None, now: dt.datetime | None = None
) -> ModelVersion:
    """Get or create the row for ``version`` ("v0001"); ``metrics`` (JSON-serialisable) replaces the stored
    metrics when given."""
    if not version or len(version) > 32:
        raise ValueError(f"model version must be 1-32 characters, got {version!r}")
    row = session.scalar(select(ModelVersion).where(ModelVersion.version == version))
    if row is None:
        row = ModelVersion(version=version, registered_at=now or utcnow())
        session.add(row)
    if metrics is not None:
        row.metrics = metrics
    session.flush()
    return row


def current_champion(session: Session) -> str | None:
    """The version promoted most recently, or None if no promotion was recorded."""
    return session.scalar(
        select(ModelVersion.version)
        .join(ModelPromotion, ModelPromotion.model_version_id == ModelVersion.id)
        .order_by(ModelPromotion.promoted_at.desc(), ModelPromotion.id.desc())
        .limit(1)
    )


def record_promotion(
    session: Session,
    version: str,
    *,
    reason: str = "retrain",
    promoted_by_telegram_id: int | None = None,
    metrics: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> ModelPromotion:
    """Record that ``version`` became champion (reason: retrain | rollback | initial | manual | observed).

    The replaced champion is stored as ``previous_version``; ``first_promoted_at`` is set the first time.
    """
    now = now or utcnow()
    previous = current_champion(session)
    row = register_model_version(session, version, metrics=metrics, now=now)
    if row.first_promoted_at is None:
        row.first_promoted_at = now
    promotion = ModelPromotion(
        model_version=row,
        promoted_at=now,
        reason=reason[:32],
        promoted_by_telegram_id=promoted_by_telegram_id,
        previous_version=previous,
    )
    session.add(promotion)
    session.flush()
    return promotion


def ensure_champion_recorded(
    session: Session, version: str, *, now: dt.datetime | None = None
) -> ModelPromotion | None:
    """At startup or after a hot swap: if the database's champion is not ``version`` (the registry's
    pointer), record a promotion with reason "observed" and return it; otherwise return None."""
    if current_champion(session) == version:
        return None
    return record_promotion(session, version, reason="observed", now=now)


def list_model_versions(session: Session) -> list[ModelVersion]:
    """Every known version, oldest registration first, promotions loaded."""
    query = (
        select(ModelVersion)
        .options(selectinload(ModelVersion.promotions))
        .order_by(ModelVersion.registered_at, ModelVersion.id)
    )
    return list(session.scalars(query))


def promotion_history(session: Session, *, limit: int = 20) -> list[ModelPromotion]:
    """The most recent promotions, newest first, with their versions loaded."""
    query = (
        select(ModelPromotion)
        .options(selectinload(ModelPromotion.model_version))
        .order_by(ModelPromotion.promoted_at.desc(), ModelPromotion.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
