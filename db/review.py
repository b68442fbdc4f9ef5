"""Review of users' corrections before they may train the model (so that one user cannot poison it).

The rule (issue 6):
- a correction made by an admin is approved at once (``approval_source = "admin"``);
- any other correction stays ``pending`` until an admin approves, rejects or relabels it in /review
  (`db.repositories.corrections.review_correction`), or until ``agreement_users`` DIFFERENT users chose the
  same label for the same image content (same ``image_sha256``); then all their pending corrections with that
  label are approved (``approval_source = "agreement"``). One user correcting the same photo again and again
  counts once.
- This module adds to `db.repositories.corrections` (which applies the rule when a correction is stored) the
  stricter cases: an admin's decision wins (a label an admin rejected for an image is never approved by
  agreement for that image), two labels over the threshold for one image are conflicting evidence (neither is
  approved by agreement), and `refresh_review_states` re-applies the rule to every pending correction before
  a retrain (so corrections stored before a user became an admin, or before the threshold was lowered, are
  treated by today's rule).

Functions here take a Session and never commit; the caller owns the transaction. Like the rest of ``db`` this
module imports nothing else of ours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from db.models import (
    APPROVED_BY_ADMIN,
    APPROVED_BY_AGREEMENT,
    REVIEW_APPROVED,
    REVIEW_PENDING,
    REVIEW_REJECTED,
    Correction,
    Prediction,
)


@dataclass(frozen=True)
class ReviewPolicy:
    """agreement_users: how many different users must choose the same label for the same image content before
    a non-admin correction may train the model without an admin's approval (default 3; at least 2, because
    one user agreeing with herself proves nothing)."""

    agreement_users: int = 3

    def __post_init__(self) -> None:
        if self.agreement_users < 2:
            raise ValueError("agreement_users must be at least 2")


@dataclass(frozen=True)
class Vote:
    """One correction as seen by the agreement rule: who (a stable user key), which label, its review state
    and, if reviewed by an admin, ``admin_reviewed`` True."""

    user_key: int
    label: str
    state: str
    admin_reviewed: bool


def agreed_labels(votes: Iterable[Vote], agreement_users: int) -> set[str]:
    """Labels of one image that the agreement rule approves (pure).

    A label is approved when at least ``agreement_users`` distinct users chose it (rejected corrections do not
    count), no admin rejected it for this image, and no other label has as many distinct users (a tie or
    conflict is left to an admin). Returns an empty set or a set with one label.
    """
    users: dict[str, set[int]] = defaultdict(set)
    vetoed: set[str] = set()
    for vote in votes:
        if vote.state == REVIEW_REJECTED:
            if vote.admin_reviewed:
                vetoed.add(vote.label)
            continue
        users[vote.label].add(vote.user_key)
    counts = {label: len(u) for label, u in users.items() if label not in vetoed}
    # two labels over the threshold is conflicting evidence: an admin must decide
    winners = [label for label, n in counts.items() if n >= agreement_users]
    return set(winners) if len(winners) == 1 else set()


def _votes_for_image(session: Session, image_sha256: str) -> list[tuple[Correction, Vote]]:
    rows = session.scalars(
        select(Correction)
        .join(Prediction, Correction.prediction_id == Prediction.id)
        .where(Prediction.image_sha256 == image_sha256)
        .order_by(Correction.id)
    ).all()
    return [
        (
            c,
            Vote(c.user_id, c.label, c.review_state, c.reviewed_by_telegram_id is not None),
        )
        for c in rows
    ]


def apply_agreement(session: Session, image_sha256: str, policy: ReviewPolicy) -> list[Correction]:
    """Approve the pending corrections of one image whose label the agreement rule approves.

    Returns the corrections it approved (possibly empty). Flushes nothing itself; does not commit.
    """
    pairs = _votes_for_image(session, image_sha256)
    labels = agreed_labels((v for _, v in pairs), policy.agreement_users)
    approved: list[Correction] = []
    for correction, _vote in pairs:
        if correction.review_state == REVIEW_PENDING and correction.label in labels:
            correction.review_state = REVIEW_APPROVED
            correction.approval_source = APPROVED_BY_AGREEMENT
            approved.append(correction)
    return approved


def refresh_review_states(
    session: Session, admin_telegram_ids: Collection[int], policy: ReviewPolicy
) -> dict[str, int]:
    """Re-apply the rule to every pending correction (the retrain pipeline calls this first, so the rule holds
    even for corrections stored before an admin was added or the threshold was lowered).

    Returns counts ``{"admin": n, "agreement": m}`` of corrections newly approved.
    """
    admin_ids = set(admin_telegram_ids)
    pending = session.scalars(
        select(Correction)
        .options(joinedload(Correction.user), joinedload(Correction.prediction))
        .where(Correction.review_state == REVIEW_PENDING)
    ).all()
    by_admin = 0
    shas: set[str] = set()
    for correction in pending:
        if correction.user.telegram_id in admin_ids:
            correction.review_state = REVIEW_APPROVED
            correction.approval_source = APPROVED_BY_ADMIN
            by_admin += 1
        else:
            shas.add(correction.prediction.image_sha256)
    session.flush()
    agreed = sum(len(apply_agreement(session, sha, policy)) for sha in sorted(shas))
    return {"admin": by_admin, "agreement": agreed}


def agreeing_users(session: Session, correction: Correction) -> int:
    """How many different users chose this correction's label for the same image content (for /review)."""
    pairs = _votes_for_image(session, correction.prediction.image_sha256)
    return len({v.user_key for _, v in pairs if v.label == correction.label and v.state != REVIEW_REJECTED})


def approved_image_labels(session: Session) -> set[tuple[str, str]]:
    """(image_sha256, label) of every approved correction, used or not: what the feedback set may hold."""
    rows = session.execute(
        select(Prediction.image_sha256, Correction.label)
        .join(Prediction, Correction.prediction_id == Prediction.id)
        .where(Correction.review_state == REVIEW_APPROVED)
    ).all()
    return {(sha, label) for sha, label in rows}
