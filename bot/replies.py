"""Turn classified photos into reply text + keyboard (pure: no I/O, no Telegram calls)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardMarkup

from bot import keyboards, texts
from bot.data import RecordedPrediction
from bot.views import EquipmentView, TutorialView
from classifier.types import Prediction


@dataclass(frozen=True)
class PhotoOutcome:
    """The result of handling one photo: either ``problem`` (a text for the user: too big, unreadable, ...) or
    the classifier's ``prediction`` and what was ``recorded`` in the database."""

    message_id: int
    problem: str | None = None
    prediction: Prediction | None = None
    recorded: RecordedPrediction | None = None


def single_reply(outcome: PhotoOutcome, max_tutorials: int = 3) -> tuple[str, InlineKeyboardMarkup | None]:
    """The reply to one photo: confident -> name, phrase, description, tutorials, Correct/Wrong; unsure ->
    "Is it one of these?" with the top choices as buttons; not_equipment -> a kind message."""
    if outcome.problem is not None or outcome.prediction is None or outcome.recorded is None:
        return outcome.problem or texts.SOMETHING_WRONG, None
    prediction, recorded = outcome.prediction, outcome.recorded
    pid = recorded.prediction_id
    if prediction.decision == "confident":
        text = texts.confident_text(
            recorded.equipment, prediction.confidence, recorded.tutorials, max_tutorials
        )
        return text, keyboards.feedback_keyboard(pid)
    if prediction.decision == "unsure" and recorded.choices:
        return texts.unsure_text(recorded.choices), keyboards.choices_keyboard(
            pid, [equipment for equipment, _ in recorded.choices]
        )
    return texts.not_equipment_text(), keyboards.not_equipment_keyboard(pid)


def restore_keyboard(
    decision: str, prediction_id: int, choices: Sequence[EquipmentView]
) -> InlineKeyboardMarkup:
    """The keyboard a single-photo answer had before "Wrong" opened the picker (for the picker's Back)."""
    if decision == "confident":
        return keyboards.feedback_keyboard(prediction_id)
    if decision == "unsure" and choices:
        return keyboards.choices_keyboard(prediction_id, choices)
    return keyboards.not_equipment_keyboard(prediction_id)


def album_reply(outcomes: Sequence[PhotoOutcome]) -> tuple[str, InlineKeyboardMarkup | None]:
    """ONE reply for an album: a numbered line per photo (in message order), the first tutorial per
    recognised equipment type, and ✅/❌ buttons per photo that was classified."""
    lines: list[str] = []
    numbered: list[tuple[int, int]] = []
    tutorials: dict[str, tuple[EquipmentView, TutorialView | None]] = {}
    for index, outcome in enumerate(sorted(outcomes, key=lambda o: o.message_id), start=1):
        prediction, recorded = outcome.prediction, outcome.recorded
        if outcome.problem is not None or prediction is None or recorded is None:
            lines.append(f"{index}. ⚠️ {outcome.problem or texts.SOMETHING_WRONG}")
            continue
        name = recorded.equipment.name
        lines.append(texts.album_line(index, name, prediction.confidence, prediction.decision))
        numbered.append((index, recorded.prediction_id))
        if prediction.decision == "confident" and recorded.equipment.slug not in tutorials:
            first = recorded.tutorials[0] if recorded.tutorials else None
            tutorials[recorded.equipment.slug] = (recorded.equipment, first)
    text = texts.album_text(lines, list(tutorials.values()), with_buttons=bool(numbered))
    return text, keyboards.album_keyboard(numbered) if numbered else None
