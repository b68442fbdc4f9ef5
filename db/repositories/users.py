"""User repositories: who talked to the bot, and /forget. Never commit."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import Correction, Prediction, User, utcnow


def get_user(session: Session, telegram_id: int) -> User | None:
    """The user with this Telegram user id, or None."""
    return session.scalar(select(User).where(User.telegram_id == telegram_id))


def upsert_user(
    session: Session, telegram_id: int, *, language_code: str | None = None, now: dt.datetime | None = None
) -> User:
    """Get or create the user and record that she was seen now (``last_seen_at``; language if given).

    Safe when two updates from the same new user race: a concurrent insert is caught in a SAVEPOINT and the
    existing row is returned.
    """
    now = now or utcnow()
    user = get_user(session, telegram_id)
    if user is None:
        try:
            with session.begin_nested():
                user = User(
                    telegram_id=telegram_id, language_code=language_code, first_seen_at=now, last_seen_at=now
                )
                session.add(user)
        except IntegrityError:
            user = get_user(session, telegram_id)
            if user is None:  # pragma: no cover - the conflicting row vanished again
                raise
    user.last_seen_at = now
    if language_code:
        user.language_code = language_code[:16]
    session.flush()
    return user


@dataclass(frozen=True)
class ForgetResult:
    """What /forget deleted. photo_paths_to_delete: stored image files no remaining prediction refers to
    (another user may have sent the same bytes, so shared files are kept); the caller deletes the files
    AFTER committing. Corrections already used by a trained model version stay inside that model's weights."""

    user_found: bool
    predictions_deleted: int = 0
    corrections_deleted: int = 0
    photo_paths_to_delete: list[str] = field(default_factory=list)


def forget_user(session: Session, telegram_id: int) -> ForgetResult:
    """Delete the user, her predictions and her corrections (the /forget command, after confirmation)."""
    user = get_user(session, telegram_id)
    if user is None:
        return ForgetResult(user_found=False)
    own = select(Prediction.id).where(Prediction.user_id == user.id)
    rows = session.execute(
        select(Prediction.image_sha256, Prediction.image_path).where(Prediction.user_id == user.id)
    )
    images = {(sha, path) for sha, path in rows}
    n_corrections = session.scalar(
        select(func.count(Correction.id)).where(
            (Correction.user_id == user.id) | Correction.prediction_id.in_(own)
        )
    )
    session.execute(
        delete(Correction)
        .where((Correction.user_id == user.id) | Correction.prediction_id.in_(own))
        .execution_options(synchronize_session=False)
    )
    n_predictions = session.scalar(select(func.count(Prediction.id)).where(Prediction.user_id == user.id))
    session.execute(
        delete(Prediction).where(Prediction.user_id == user.id).execution_options(synchronize_session=False)
    )
    session.execute(delete(User).where(User.id == user.id).execution_options(synchronize_session=False))
    session.expunge(user)
    still_used = set(
        session.scalars(
            select(Prediction.image_path).where(Prediction.image_sha256.in_({sha for sha, _ in images}))
        )
    )
    paths = sorted({path for _, path in images if path not in still_used})
    return ForgetResult(
        user_found=True,
        predictions_deleted=int(n_predictions or 0),
        corrections_deleted=int(n_corrections or 0),
        photo_paths_to_delete=paths,
    )
