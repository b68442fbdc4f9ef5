"""Review of users' corrections before they may train the model (so that one user cannot poison it).

The rule (issue 6):
- a correction made by an admin is approved at once (``approval_source = "admin"``);
- any other correction stays ``pending`` until an admin approves, rejects or relabels it in /review
  (``approval_source = "review"``), or until ``agreement_users`` DIFFERENT users chose the same label for the
  same image content (same ``image_sha256``), in which case all their corrections with that label are approved
  (``approval_source = "agreement"``). One user correcting the same photo again and again counts once.
- An admin's decision wins: a label an admin rejected for an image is never approved by agreement for it, and
  agreement never touches a correction an admin already reviewed. When two labels both reach the threshold for
  one image, neither is approved by agreement (an admin must decide).

Functions here take a Session and never commit; the caller owns the transaction. Like the rest of ``db`` this
module imports nothing else of ours.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from db.models import (
    APPROVED_BY_ADMIN,
    APPROVED_BY_AGREEMENT,
    APPROVED_BY_REVIEW,
    NOT_EQUIPMENT,
    REVIEW_APPROVED,
    REVIEW_PENDING,
    REVIEW_REJECTED,
    Correction,
    Equipment,
    ModelVersion,
    Prediction,
    User,
    utcnow,
)


class ReviewError(ValueError):
    """A review action that cannot be applied (unknown correction, unknown label); message fit for a chat."""


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


def on_new_correction(
    session: Session, correction: Correction, *, by_admin: bool, policy: ReviewPolicy
) -> str:
    """Apply the review rule to a correction just stored (call it in the same transaction).

    by_admin: whether the correcting user is an admin (ADMIN_USER_IDS). Returns the resulting review state.
    """
    if by_admin:
        correction.review_state = REVIEW_APPROVED
        correction.approval_source = APPROVED_BY_ADMIN
        return REVIEW_APPROVED
    session.flush()
    sha = correction.prediction.image_sha256
    apply_agreement(session, sha, policy)
    return correction.review_state


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


def next_pending(session: Session, after_id: int = 0) -> Correction | None:
    """The oldest pending correction with id > ``after_id`` (its prediction and user loaded), or None."""
    return session.scalars(
        select(Correction)
        .options(joinedload(Correction.prediction), joinedload(Correction.user))
        .where(Correction.review_state == REVIEW_PENDING, Correction.id > after_id)
        .order_by(Correction.id)
        .limit(1)
    ).first()


def count_pending(session: Session) -> int:
    """How many corrections wait for review."""
    return int(
        session.scalar(
            select(func.count()).select_from(Correction).where(Correction.review_state == REVIEW_PENDING)
        )
        or 0
    )


def agreeing_users(session: Session, correction: Correction) -> int:
    """How many different users chose this correction's label for the same image content (for /review)."""
    pairs = _votes_for_image(session, correction.prediction.image_sha256)
    return len({v.user_key for _, v in pairs if v.label == correction.label and v.state != REVIEW_REJECTED})


def known_labels(session: Session) -> set[str]:
    """Every label a correction may carry: the equipment slugs in the catalog plus ``NOT_EQUIPMENT``."""
    return {*session.scalars(select(Equipment.slug)).all(), NOT_EQUIPMENT}


def _get(session: Session, correction_id: int) -> Correction:
    correction = session.get(Correction, correction_id)
    if correction is None:
        raise ReviewError(f"correction {correction_id} does not exist (deleted by its user?)")
    return correction


def approve(session: Session, correction_id: int, admin_telegram_id: int) -> Correction:
    """An admin approves a correction as it is. Raises ReviewError if it does not exist."""
    correction = _get(session, correction_id)
    correction.review_state = REVIEW_APPROVED
    correction.approval_source = APPROVED_BY_REVIEW
    correction.reviewed_by_telegram_id = admin_telegram_id
    correction.reviewed_at = utcnow()
    return correction


def reject(session: Session, correction_id: int, admin_telegram_id: int) -> Correction:
    """An admin rejects a correction: it never trains the model. Raises ReviewError if it does not exist.

    A correction that already trained a version stays recorded as such (``trained_in_version``); its image is
    removed from the feedback set by the next retrain (see classifier.retrain).
    """
    correction = _get(session, correction_id)
    correction.review_state = REVIEW_REJECTED
    correction.approval_source = None
    correction.reviewed_by_telegram_id = admin_telegram_id
    correction.reviewed_at = utcnow()
    return correction


def relabel(session: Session, correction_id: int, label: str, admin_telegram_id: int) -> Correction:
    """An admin replaces the proposed label with ``label`` (an equipment slug or NOT_EQUIPMENT) and approves.

    Raises ReviewError for an unknown correction or a label that is not in the catalog.
    """
    if label not in known_labels(session):
        raise ReviewError(f"unknown label {label!r}")
    correction = approve(session, correction_id, admin_telegram_id)
    correction.label = label
    return correction


def training_candidates(session: Session) -> list[Correction]:
    """Approved corrections no model version has trained on yet, oldest first, predictions loaded."""
    return list(
        session.scalars(
            select(Correction)
            .options(joinedload(Correction.prediction), joinedload(Correction.user))
            .where(Correction.review_state == REVIEW_APPROVED, Correction.trained_in_version_id.is_(None))
            .order_by(Correction.id)
        ).all()
    )


def approved_corrections(session: Session) -> list[Correction]:
    """Every approved correction (used or not), oldest first, predictions loaded."""
    return list(
        session.scalars(
            select(Correction)
            .options(joinedload(Correction.prediction))
            .where(Correction.review_state == REVIEW_APPROVED)
            .order_by(Correction.id)
        ).all()
    )


def rejected_image_hashes(session: Session) -> set[tuple[str, str]]:
    """(image_sha256, label) pairs an admin rejected and that no approved correction still supports."""
    rejected = session.execute(
        select(Prediction.image_sha256, Correction.label)
        .join(Prediction, Correction.prediction_id == Prediction.id)
        .where(Correction.review_state == REVIEW_REJECTED)
    ).all()
    approved = session.execute(
        select(Prediction.image_sha256, Correction.label)
        .join(Prediction, Correction.prediction_id == Prediction.id)
        .where(Correction.review_state == REVIEW_APPROVED)
    ).all()
    keep = {(s, lab) for s, lab in approved}
    return {(s, lab) for s, lab in rejected if (s, lab) not in keep}


def model_version_row(
    session: Session, version: str, metrics: dict[str, object] | None = None
) -> ModelVersion:
    """Get or create the ModelVersion row for registry version ``version`` (e.g. "v0002")."""
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is None:
        row = ModelVersion(version=version, metrics=metrics)
        session.add(row)
        session.flush()
    elif metrics is not None:
        row.metrics = metrics
    return row


def mark_trained(session: Session, corrections: Sequence[Correction], version: str) -> int:
    """Record that ``version`` first trained on these corrections (ones already marked keep their version).

    Returns how many were newly marked.
    """
    row = model_version_row(session, version)
    n = 0
    for correction in corrections:
        if correction.trained_in_version_id is None:
            correction.trained_in_version_id = row.id
            n += 1
    return n


def user_telegram_id(session: Session, user_id: int) -> int | None:
    """The Telegram id of the internal user ``user_id`` (for messages in /review)."""
    return session.scalar(select(User.telegram_id).where(User.id == user_id))
