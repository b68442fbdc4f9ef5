"""The bot's database facade: short synchronous transactions over db.repositories, returning plain views.

Every function opens its own transaction with `db.session.session_scope` and is BLOCKING: handlers call them
through ``asyncio.to_thread`` so the event loop never waits on the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from bot.photo_store import StoredPhoto
from bot.texts import AddVideoResult, EquipmentCount, StatsLine, StatsSummary, VideoLine
from bot.views import EquipmentView, TutorialView, display_name
from classifier.types import Prediction as ClassifierPrediction
from db import repositories as repo
from db import youtube
from db.errors import DuplicateVideoError
from db.models import NOT_EQUIPMENT, Equipment, Tutorial
from db.session import session_scope

SessionFactory = sessionmaker[Session]

MAX_SHOWN_TITLE_CHARS = 200
"""Longest tutorial title or channel shown in a reply (longer ones end in "…"): three tutorials must fit
Telegram's 4096-character message together with the rest of the answer."""


def clip(text: str, limit: int = MAX_SHOWN_TITLE_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when it was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def equipment_view(equipment: Equipment) -> EquipmentView:
    """A catalog row as a plain view."""
    return EquipmentView(equipment.slug, equipment.display_name, equipment.description or "")


def tutorial_view(tutorial: Tutorial) -> TutorialView:
    """A tutorial row as a plain view (title falls back to the curator's note; channel to the presenter)."""
    return TutorialView(
        id=tutorial.id,
        video_id=tutorial.youtube_id,
        title=clip(tutorial.display_title),
        channel=clip(tutorial.channel or tutorial.presenter or "YouTube"),
        url=tutorial.url,
    )


def _view_for(session: Session, slug: str) -> EquipmentView:
    equipment = repo.get_equipment(session, slug)
    return equipment_view(equipment) if equipment else EquipmentView(slug, display_name(slug))


@dataclass(frozen=True)
class RecordedPrediction:
    """What the reply needs after recording a prediction: its id, the top-1 equipment, its tutorials, and
    the likeliest known equipment types with probabilities (for "Is it one of these?")."""

    prediction_id: int
    equipment: EquipmentView
    tutorials: list[TutorialView]
    choices: list[tuple[EquipmentView, float]]


def record_classified_photo(
    factory: SessionFactory,
    *,
    telegram_user_id: int,
    language_code: str | None,
    chat_id: int,
    message_id: int,
    media_group_id: str | None,
    stored: StoredPhoto,
    prediction: ClassifierPrediction,
    max_tutorials: int = 3,
    max_choices: int = 3,
) -> RecordedPrediction:
    """ONE transaction: upsert the user, record the prediction (model version, image hash and path) and
    look up the tutorials of its label and the catalog rows of its top-k. Raises ValueError for a bad
    prediction."""
    with session_scope(factory) as session:
        user = repo.upsert_user(session, telegram_user_id, language_code=language_code)
        row = repo.record_prediction(
            session,
            user,
            chat_id=chat_id,
            message_id=message_id,
            media_group_id=media_group_id,
            image_sha256=stored.sha256,
            image_path=str(stored.path),
            model_version=prediction.model_version or "unknown",
            label=prediction.label,
            confidence=min(1.0, max(0.0, float(prediction.confidence))),
            decision=prediction.decision,
            top_k=prediction.top_k,
        )
        tutorials = [
            tutorial_view(t) for t in repo.tutorials_for(session, prediction.label, limit=max_tutorials)
        ]
        choices: list[tuple[EquipmentView, float]] = []
        for label, probability in prediction.top_k:
            equipment = repo.get_equipment(session, label)
            if equipment is not None and len(choices) < max_choices:
                choices.append((equipment_view(equipment), float(probability)))
        return RecordedPrediction(row.id, _view_for(session, prediction.label), tutorials, choices)


def record_serving_version(factory: SessionFactory, version: str) -> bool:
    """Record in the database that ``version`` is the champion now serving, unless it already is (startup, and
    a champion moved by hand outside the bot). Returns True when a promotion row was added."""
    if not version:
        return False
    with session_scope(factory) as session:
        return repo.ensure_champion_recorded(session, version) is not None


def set_reply_message(factory: SessionFactory, prediction_ids: Sequence[int], reply_message_id: int) -> None:
    """Remember the bot's reply message of these predictions."""
    with session_scope(factory) as session:
        for prediction_id in prediction_ids:
            repo.set_reply_message(session, prediction_id, reply_message_id)


def list_equipment(factory: SessionFactory) -> list[EquipmentView]:
    """Every equipment type in menu order (the closed set offered by the picker)."""
    with session_scope(factory) as session:
        return [equipment_view(e) for e in repo.list_equipment(session)]


def equipment_counts(factory: SessionFactory) -> list[EquipmentCount]:
    """Every equipment type with its number of tutorials shown to users (for /equipment)."""
    with session_scope(factory) as session:
        return [
            EquipmentCount(equipment_view(e), count)
            for e, count in repo.equipment_with_tutorial_counts(session)
        ]


def forget_user(factory: SessionFactory, telegram_user_id: int) -> repo.ForgetResult:
    """Delete the user, her predictions and corrections in one transaction; the caller then deletes the
    photo files listed in ``photo_paths_to_delete`` (only after the commit, so no row points to a lost
    file)."""
    with session_scope(factory) as session:
        return repo.forget_user(session, telegram_user_id)


@dataclass(frozen=True)
class FeedbackTarget:
    """A prediction as the feedback handler needs it: label, decision, feedback so far (None, "confirmed",
    "corrected"), the corrected label if any, and the catalog views of its label and top-k choices."""

    prediction_id: int
    label: str
    decision: str
    feedback: str | None
    corrected_label: str | None
    equipment: EquipmentView
    choices: list[EquipmentView]


def load_feedback_target(
    factory: SessionFactory, prediction_id: int, telegram_user_id: int
) -> FeedbackTarget:
    """The user's own prediction. Raises db.errors.NotFoundError (stale/tampered id) or
    NotYourPredictionError."""
    with session_scope(factory) as session:
        row = repo.get_owned_prediction(session, prediction_id, telegram_user_id)
        choices = []
        for label, _ in row.top_k[:3]:
            equipment = repo.get_equipment(session, str(label))
            if equipment is not None:
                choices.append(equipment_view(equipment))
        return FeedbackTarget(
            prediction_id=row.id,
            label=row.label,
            decision=row.decision,
            feedback=row.feedback,
            corrected_label=row.correction.label if row.correction is not None else None,
            equipment=_view_for(session, row.label),
            choices=choices,
        )


def confirm_prediction(factory: SessionFactory, prediction_id: int, telegram_user_id: int) -> None:
    """ "Correct": mark the user's own prediction confirmed. Raises NotFoundError, NotYourPredictionError,
    CorrectionLockedError."""
    with session_scope(factory) as session:
        repo.confirm_prediction(session, prediction_id, telegram_user_id)


def record_choice(
    factory: SessionFactory,
    prediction_id: int,
    telegram_user_id: int,
    label: str,
    *,
    is_admin: bool,
    agreement_threshold: int,
) -> EquipmentView | None:
    """The user picked ``label`` (a slug or db NOT_EQUIPMENT) for her prediction.

    The predicted label (or "not equipment" for a not_equipment decision) counts as a confirmation; anything
    else is stored as a correction (review rule applied). Returns the chosen equipment's view, None for
    "not equipment". Raises NotFoundError, NotYourPredictionError, UnknownLabelError, CorrectionLockedError.
    """
    with session_scope(factory) as session:
        row = repo.get_owned_prediction(session, prediction_id, telegram_user_id)
        agrees = label == NOT_EQUIPMENT if row.decision == "not_equipment" else label == row.label
        if agrees:
            repo.confirm_prediction(session, prediction_id, telegram_user_id)
        else:
            repo.record_correction(
                session,
                prediction_id,
                telegram_user_id,
                label,
                is_admin=is_admin,
                agreement_threshold=agreement_threshold,
            )
        if label == NOT_EQUIPMENT:
            return None
        return _view_for(session, label)


def stats_summary(factory: SessionFactory, serving_version: str) -> StatsSummary:
    """Totals and per-equipment agreement for /stats."""
    with session_scope(factory) as session:
        stats = repo.collect_stats(session)
    return StatsSummary(
        users=stats.users,
        photos=stats.photos,
        confirmed=stats.confirmed,
        corrections=stats.corrections,
        pending=stats.corrections_by_state.get("pending", 0),
        agreement_rate=stats.agreement_rate,
        champion=stats.champion,
        serving=serving_version,
        tutorials=stats.tutorials,
        lines=[
            StatsLine(row.display_name, row.predictions, row.confirmed, row.corrected, row.agreement_rate)
            for row in stats.per_equipment
        ],
    )


def resolve_equipment(factory: SessionFactory, text: str) -> EquipmentView | None:
    """The equipment an admin typed (slug, name or alias), or None when unknown or ambiguous."""
    with session_scope(factory) as session:
        equipment = repo.resolve_equipment(session, text)
        return equipment_view(equipment) if equipment is not None else None


def list_videos(factory: SessionFactory, slug: str | None) -> list[VideoLine]:
    """Tutorials shown to users (not removed), optionally of one equipment slug, with their database ids."""
    with session_scope(factory) as session:
        return [
            VideoLine(
                id=t.id,
                equipment=t.equipment.display_name,
                title=clip(t.display_title),
                channel=clip(t.channel or t.presenter or "?"),
                url=t.url,
                status=t.status,
                women_led=t.women_led,
            )
            for t in repo.list_tutorials(session, slug)
        ]


def tutorial_youtube_id(factory: SessionFactory, tutorial_id: int) -> str | None:
    """The YouTube id of the tutorial with this database id (None if there is none)."""
    with session_scope(factory) as session:
        tutorial = session.get(Tutorial, tutorial_id)
        return tutorial.youtube_id if tutorial is not None else None


def remove_video(factory: SessionFactory, youtube_id: str, admin_id: int) -> TutorialView:
    """Hide a tutorial from users (soft delete). Raises db.errors.NotFoundError."""
    with session_scope(factory) as session:
        return tutorial_view(repo.remove_tutorial(session, youtube_id, removed_by_telegram_id=admin_id))


def parse_youtube_link(text: str) -> str:
    """The 11-character video id of a YouTube link or bare id. Raises ValueError (InvalidYouTubeLinkError)
    whose ``reason`` says why (playlist, channel, look-alike host, ...)."""
    return youtube.parse_video_id(text)


def lookup_video(client: youtube.YouTubeClient | None, video_id: str) -> youtube.VideoLookup:
    """videos.list for one id (BLOCKING network call; None client = no key = unverified)."""
    return youtube.lookup_video(client, video_id)


def add_video(
    factory: SessionFactory,
    slug: str,
    lookup: youtube.VideoLookup,
    admin_id: int,
    typed_title: str | None,
) -> AddVideoResult:
    """Store a tutorial for /addvideo from a `lookup_video` result; an unavailable video is refused and a
    duplicate reported, neither raises."""
    metadata = lookup.metadata
    if metadata is not None and metadata.status == "unavailable":
        return AddVideoResult("unavailable", None, lookup.message)
    with session_scope(factory) as session:
        try:
            tutorial = repo.add_tutorial(
                session,
                equipment_slug=slug,
                youtube_id=lookup.video_id,
                added_by_telegram_id=admin_id,
                title=(metadata.title if metadata else None) or typed_title,
                channel=metadata.channel if metadata else None,
                duration_seconds=metadata.duration_seconds if metadata else None,
                thumbnail_url=metadata.thumbnail_url if metadata else None,
                status="available" if metadata is not None else "unverified",
                status_detail=None if metadata is not None else lookup.message,
                checked_at=youtube.checked_now() if metadata is not None else None,
            )
        except DuplicateVideoError as error:
            return AddVideoResult("duplicate", None, str(error))
        return AddVideoResult("added", tutorial_view(tutorial), lookup.message)
