"""Prediction repositories: one row per classified photo, plus the user's "Correct" feedback. Never commit."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.errors import CorrectionLockedError, NotFoundError, NotYourPredictionError
from db.models import DECISIONS, FEEDBACK_CONFIRMED, Correction, Prediction, User, utcnow

_SHA256 = re.compile(r"^[0-9a-f]{64}\Z")


def record_prediction(
    session: Session,
    user: User,
    *,
    chat_id: int,
    message_id: int,
    image_sha256: str,
    image_path: str,
    model_version: str,
    label: str,
    confidence: float,
    decision: str,
    top_k: Sequence[tuple[str, float]],
    media_group_id: str | None = None,
    now: dt.datetime | None = None,
) -> Prediction:
    """Record one classified photo and return the row (its ``id`` goes into the callback data).

    image_sha256: lowercase hex sha256 of the stored bytes (64 chars); image_path: where the bytes were
    saved (DATA_DIR/photos/<sha256>.<ext>); confidence: top-1 probability in [0, 1]; decision: confident |
    unsure | not_equipment; top_k: (label, probability) pairs best first, stored as JSON lists.
    Raises ValueError for a malformed hash, decision or confidence.
    """
    if not _SHA256.match(image_sha256):
        raise ValueError(f"image_sha256 must be 64 lowercase hex characters, got {image_sha256!r}")
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if not (0.0 <= confidence <= 1.0) or math.isnan(confidence):
        raise ValueError(f"confidence must be in [0, 1], got {confidence}")
    prediction = Prediction(
        user=user,
        chat_id=chat_id,
        message_id=message_id,
        media_group_id=media_group_id,
        image_sha256=image_sha256,
        image_path=str(image_path),
        model_version=model_version,
        label=label,
        confidence=float(confidence),
        decision=decision,
        top_k=[[str(k), float(p)] for k, p in top_k],
        created_at=now or utcnow(),
    )
    session.add(prediction)
    session.flush()
    return prediction


def set_reply_message(session: Session, prediction_id: int, reply_message_id: int) -> None:
    """Remember the bot's reply message for a prediction (to edit it later). Raises NotFoundError."""
    prediction = get_prediction(session, prediction_id)
    if prediction is None:
        raise NotFoundError(f"prediction {prediction_id} does not exist")
    prediction.reply_message_id = reply_message_id
    session.flush()


def get_prediction(session: Session, prediction_id: int) -> Prediction | None:
    """The prediction with this id, or None."""
    return session.get(Prediction, prediction_id)


def get_owned_prediction(session: Session, prediction_id: int, telegram_user_id: int) -> Prediction:
    """The prediction if it belongs to this Telegram user (validating callback data).

    Raises NotFoundError (stale or tampered id, or deleted by /forget) or NotYourPredictionError.
    """
    prediction = session.get(Prediction, prediction_id)
    if prediction is None:
        raise NotFoundError(f"prediction {prediction_id} does not exist")
    if prediction.user.telegram_id != telegram_user_id:
        raise NotYourPredictionError(f"prediction {prediction_id} belongs to another user")
    return prediction


def confirm_prediction(
    session: Session, prediction_id: int, telegram_user_id: int, *, now: dt.datetime | None = None
) -> Prediction:
    """The user tapped "Correct": mark the prediction confirmed (counts toward the agreement rate).

    If she had corrected it before and that correction was not trained on yet, the correction is withdrawn.
    Raises NotFoundError, NotYourPredictionError, or CorrectionLockedError (correction already trained on).
    Idempotent.
    """
    prediction = get_owned_prediction(session, prediction_id, telegram_user_id)
    if prediction.correction is not None:
        if prediction.correction.trained_in_version_id is not None:
            raise CorrectionLockedError(
                f"prediction {prediction_id} has a correction that a model version already trained on"
            )
        session.execute(
            delete(Correction)
            .where(Correction.prediction_id == prediction.id)
            .execution_options(synchronize_session=False)
        )
        session.expire(prediction, ["correction"])
    if prediction.feedback != FEEDBACK_CONFIRMED:
        prediction.feedback = FEEDBACK_CONFIRMED
        prediction.feedback_at = now or utcnow()
    session.flush()
    return prediction


def predictions_for_image(session: Session, image_sha256: str) -> list[Prediction]:
    """Every prediction of this image content (any user), oldest first."""
    query = select(Prediction).where(Prediction.image_sha256 == image_sha256).order_by(Prediction.id)
    return list(session.scalars(query))
