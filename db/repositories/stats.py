"""Aggregates for the admins' /stats. Read-only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import (
    FEEDBACK_CONFIRMED,
    FEEDBACK_CORRECTED,
    REVIEW_STATES,
    Correction,
    Equipment,
    Prediction,
    Tutorial,
    User,
)
from db.repositories.model_versions import current_champion


@dataclass(frozen=True)
class EquipmentStats:
    """Per equipment slug. predictions: photos the model named as it; confirmed / corrected: of those, how
    many users said "Correct" / chose another label; agreement_rate = confirmed / (confirmed + corrected) in
    [0, 1], None when nobody gave feedback; corrected_to: corrections whose chosen label is this slug."""

    slug: str
    display_name: str
    predictions: int
    confirmed: int
    corrected: int
    corrected_to: int
    agreement_rate: float | None


@dataclass(frozen=True)
class Stats:
    """Totals for /stats. photos: predictions recorded (one per photo); distinct_images: different image
    contents (sha256); corrections_by_state: pending/approved/rejected counts; untrained_approved: approved
    corrections waiting for the next retrain; agreement_rate: over all feedback, None without feedback."""

    users: int
    photos: int
    distinct_images: int
    confirmed: int
    corrections: int
    corrections_by_state: dict[str, int]
    untrained_approved: int
    agreement_rate: float | None
    champion: str | None
    tutorials: int
    per_equipment: list[EquipmentStats] = field(default_factory=list)


def _rate(confirmed: int, corrected: int) -> float | None:
    total = confirmed + corrected
    return confirmed / total if total else None


def collect_stats(session: Session, *, since: dt.datetime | None = None) -> Stats:
    """Users, photos, corrections, agreement rate per equipment, champion version.

    since: count only predictions/corrections created at or after this aware datetime (users: seen since).
    Per equipment, photos answered ``not_equipment`` do not count (the model named no equipment, whatever
    its top label was). Equipment types with no predictions are listed with zeros; labels predicted that are
    not in the catalog (an older model's classes) are listed after them with their slug as name.
    """
    pred_filter = [Prediction.created_at >= since] if since is not None else []
    corr_filter = [Correction.created_at >= since] if since is not None else []
    user_filter = [User.last_seen_at >= since] if since is not None else []

    users = session.scalar(select(func.count(User.id)).where(*user_filter)) or 0
    photos = session.scalar(select(func.count(Prediction.id)).where(*pred_filter)) or 0
    distinct_images = (
        session.scalar(select(func.count(func.distinct(Prediction.image_sha256))).where(*pred_filter)) or 0
    )
    by_state = dict.fromkeys(REVIEW_STATES, 0)
    for state, n in session.execute(
        select(Correction.review_state, func.count(Correction.id))
        .where(*corr_filter)
        .group_by(Correction.review_state)
    ):
        by_state[state] = int(n)
    untrained = (
        session.scalar(
            select(func.count(Correction.id)).where(
                Correction.review_state == "approved",
                Correction.trained_in_version_id.is_(None),
                *corr_filter,
            )
        )
        or 0
    )

    per_label: dict[str, list[int]] = {}
    for label, feedback, n in session.execute(
        select(Prediction.label, Prediction.feedback, func.count(Prediction.id))
        .where(Prediction.decision != "not_equipment", *pred_filter)  # it named no equipment
        .group_by(Prediction.label, Prediction.feedback)
    ):
        counts = per_label.setdefault(label, [0, 0, 0])
        counts[0] += int(n)
        if feedback == FEEDBACK_CONFIRMED:
            counts[1] += int(n)
        elif feedback == FEEDBACK_CORRECTED:
            counts[2] += int(n)
    corrected_to: dict[str, int] = {
        label: int(n)
        for label, n in session.execute(
            select(Correction.label, func.count(Correction.id)).where(*corr_filter).group_by(Correction.label)
        )
    }

    rows: list[EquipmentStats] = []
    seen: set[str] = set()
    for slug, name in session.execute(
        select(Equipment.slug, Equipment.display_name).order_by(Equipment.sort_order, Equipment.slug)
    ):
        seen.add(slug)
        n, ok, wrong = per_label.get(slug, [0, 0, 0])
        rows.append(
            EquipmentStats(slug, name, n, ok, wrong, int(corrected_to.get(slug, 0)), _rate(ok, wrong))
        )
    for slug in sorted(set(per_label) - seen):
        n, ok, wrong = per_label[slug]
        rows.append(
            EquipmentStats(slug, slug, n, ok, wrong, int(corrected_to.get(slug, 0)), _rate(ok, wrong))
        )

    confirmed = sum(r.confirmed for r in rows)
    corrected = sum(r.corrected for r in rows)
    tutorials = (
        session.scalar(
            select(func.count(Tutorial.id)).where(
                Tutorial.removed_at.is_(None), Tutorial.status != "unavailable"
            )
        )
        or 0
    )
    return Stats(
        users=int(users),
        photos=int(photos),
        distinct_images=int(distinct_images),
        confirmed=confirmed,
        corrections=sum(by_state.values()),
        corrections_by_state=by_state,
        untrained_approved=int(untrained),
        agreement_rate=_rate(confirmed, corrected),
        champion=current_champion(session),
        tutorials=int(tutorials),
        per_equipment=rows,
    )
