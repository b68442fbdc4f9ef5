"""Correction repositories: what users said a photo really shows, its review, and its use in training.

Review rule (issue 6, so that one user cannot poison the model): a correction by an admin is approved at
once; anyone else's stays pending until an admin approves it in /review, or until ``agreement_threshold``
different users have chosen the same label for the same image content (same sha256). The agreement rule
itself lives in ``db.review`` (written with the retraining pipeline); this module stores corrections and
applies it. Never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from db import review
from db.errors import CorrectionLockedError, NotFoundError, UnknownLabelError
from db.models import (
    APPROVED_BY_ADMIN,
    APPROVED_BY_REVIEW,
    FEEDBACK_CORRECTED,
    NOT_EQUIPMENT,
    REVIEW_APPROVED,
    REVIEW_PENDING,
    REVIEW_REJECTED,
    Correction,
    Equipment,
    Prediction,
    User,
    utcnow,
)
from db.repositories.model_versions import register_model_version
from db.repositories.predictions import get_owned_prediction

DEFAULT_AGREEMENT_THRESHOLD = 3
"""Different users needed to agree on an image's label before it trains without an admin (configurable)."""

ReviewAction = Literal["approve", "reject", "relabel"]


def _check_label(session: Session, label: str) -> None:
    if label == NOT_EQUIPMENT:
        return
    if session.scalar(select(Equipment.id).where(Equipment.slug == label)) is None:
        raise UnknownLabelError(f"unknown label {label!r}: not an equipment slug nor {NOT_EQUIPMENT!r}")


def record_correction(
    session: Session,
    prediction_id: int,
    telegram_user_id: int,
    label: str,
    *,
    is_admin: bool,
    agreement_threshold: int = DEFAULT_AGREEMENT_THRESHOLD,
    now: dt.datetime | None = None,
) -> Correction:
    """Store the label a user chose after tapping "Wrong" on her own prediction.

    label: an equipment slug or ``NOT_EQUIPMENT``. Choosing again replaces the earlier choice (until a model
    version trained on it); choosing the same label again changes nothing. Admin corrections are approved at
    once; others are pending, then ``apply_agreement`` may approve them. Marks the prediction "corrected".
    Raises NotFoundError / NotYourPredictionError (tampered or stale callback data), UnknownLabelError,
    CorrectionLockedError (already trained on), ValueError for agreement_threshold < 2.
    """
    if agreement_threshold < 2:
        raise ValueError(f"agreement_threshold must be >= 2, got {agreement_threshold}")
    _check_label(session, label)
    now = now or utcnow()
    prediction = get_owned_prediction(session, prediction_id, telegram_user_id)
    correction = prediction.correction
    if correction is not None:
        if correction.label == label:
            return correction
        if correction.trained_in_version_id is not None:
            raise CorrectionLockedError(
                f"correction {correction.id} was already used to train {correction.trained_in_version!r}"
            )
    else:
        correction = Correction(prediction=prediction, user=prediction.user, created_at=now)
        session.add(correction)
    correction.label = label
    correction.updated_at = now
    if is_admin:
        correction.review_state = REVIEW_APPROVED
        correction.approval_source = APPROVED_BY_ADMIN
        correction.reviewed_by_telegram_id = telegram_user_id
        correction.reviewed_at = now
    else:
        correction.review_state = REVIEW_PENDING
        correction.approval_source = None
        correction.reviewed_by_telegram_id = None
        correction.reviewed_at = None
    prediction.feedback = FEEDBACK_CORRECTED
    prediction.feedback_at = now
    session.flush()
    if not is_admin:
        apply_agreement(session, prediction.image_sha256, agreement_threshold, now=now)
    return correction


def apply_agreement(
    session: Session, image_sha256: str, agreement_threshold: int, *, now: dt.datetime | None = None
) -> list[Correction]:
    """Approve pending corrections of this image content by the agreement rule of ``db.review`` (at least
    ``agreement_threshold`` >= 2 different users chose the label, no admin rejected it for this image, no
    competing label also reached the threshold). Returns the newly approved corrections."""
    approved = review.apply_agreement(session, image_sha256, review.ReviewPolicy(agreement_threshold))
    now = now or utcnow()
    for correction in approved:
        correction.reviewed_at = now
        correction.updated_at = now
    session.flush()
    return approved


def get_correction(session: Session, correction_id: int) -> Correction | None:
    """The correction with this id (prediction and user loaded), or None."""
    return session.get(
        Correction,
        correction_id,
        options=[selectinload(Correction.prediction), selectinload(Correction.user)],
    )


def pending_corrections(session: Session, *, limit: int = 10, after_id: int = 0) -> list[Correction]:
    """Pending corrections for /review, oldest first, with id > after_id (to page); prediction loaded."""
    query = (
        select(Correction)
        .where(Correction.review_state == REVIEW_PENDING, Correction.id > after_id)
        .options(selectinload(Correction.prediction), selectinload(Correction.user))
        .order_by(Correction.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def count_pending(session: Session) -> int:
    """How many corrections await review."""
    return int(
        session.scalar(select(func.count(Correction.id)).where(Correction.review_state == REVIEW_PENDING))
        or 0
    )


def review_correction(
    session: Session,
    correction_id: int,
    *,
    reviewer_telegram_id: int,
    action: ReviewAction,
    label: str | None = None,
    now: dt.datetime | None = None,
) -> Correction:
    """An admin's /review decision: approve, reject, or relabel (set ``label`` and approve).

    Raises NotFoundError, UnknownLabelError (relabel to an unknown label), ValueError (relabel without a
    label, unknown action), CorrectionLockedError (a model version already trained on it).
    """
    correction = get_correction(session, correction_id)
    if correction is None:
        raise NotFoundError(f"correction {correction_id} does not exist")
    if correction.trained_in_version_id is not None:
        raise CorrectionLockedError(f"correction {correction_id} was already used to train a model version")
    now = now or utcnow()
    if action == "relabel":
        if label is None:
            raise ValueError("relabel needs a label")
        _check_label(session, label)
        correction.label = label
        correction.review_state = REVIEW_APPROVED
    elif action == "approve":
        correction.review_state = REVIEW_APPROVED
    elif action == "reject":
        correction.review_state = REVIEW_REJECTED
    else:
        raise ValueError(f"unknown review action {action!r}")
    correction.approval_source = APPROVED_BY_REVIEW if correction.review_state == REVIEW_APPROVED else None
    correction.reviewed_by_telegram_id = reviewer_telegram_id
    correction.reviewed_at = now
    correction.updated_at = now
    session.flush()
    return correction


@dataclass(frozen=True)
class TrainingExample:
    """An approved correction ready for the feedback training set: its stored image and the chosen label."""

    correction_id: int
    label: str
    image_sha256: str
    image_path: str
    approval_source: str
    user_telegram_id: int


def corrections_for_training(
    session: Session, *, include_not_equipment: bool = False, labels: Iterable[str] | None = None
) -> list[TrainingExample]:
    """Approved corrections no model version has trained on yet, oldest first.

    include_not_equipment: also return corrections labelled ``NOT_EQUIPMENT``; labels: keep only these
    labels (e.g. the classes the model knows). Images are not read here; the caller checks the files.
    """
    query = (
        select(Correction, Prediction, User)
        .join(Correction.prediction)
        .join(Correction.user)
        .where(Correction.review_state == REVIEW_APPROVED, Correction.trained_in_version_id.is_(None))
        .order_by(Correction.id)
    )
    if not include_not_equipment:
        query = query.where(Correction.label != NOT_EQUIPMENT)
    if labels is not None:
        query = query.where(Correction.label.in_(list(labels)))
    return [
        TrainingExample(
            correction_id=correction.id,
            label=correction.label,
            image_sha256=prediction.image_sha256,
            image_path=prediction.image_path,
            approval_source=correction.approval_source or "",
            user_telegram_id=user.telegram_id,
        )
        for correction, prediction, user in session.execute(query)
    ]


def mark_corrections_trained(
    session: Session, correction_ids: Iterable[int], version: str, *, now: dt.datetime | None = None
) -> int:
    """Record that model ``version`` (registered if new) first trained on these corrections.

    Corrections that already name an earlier version keep it. Returns how many rows were marked.
    """
    ids = sorted(set(correction_ids))
    if not ids:
        return 0
    model_version = register_model_version(session, version, now=now)
    result = session.execute(
        update(Correction)
        .where(Correction.id.in_(ids), Correction.trained_in_version_id.is_(None))
        .values(trained_in_version_id=model_version.id, updated_at=now or utcnow())
        .execution_options(synchronize_session="fetch")
    )
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)
