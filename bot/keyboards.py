"""Inline keyboards built from plain values (pure; uses only PTB's data classes)."""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.callback_data import (
    NOT_EQUIPMENT,
    CallbackDataError,
    FeedbackData,
    ForgetData,
    parse_feedback,
)
from bot.views import EquipmentView

CORRECT = "✅ Correct"
WRONG = "❌ Wrong"
SOMETHING_ELSE = "Something else / not gym equipment"
NONE_OF_THESE = "None of these"
CANCEL = "↩️ Back"


def _button(text: str, data: FeedbackData | ForgetData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=data.encode())


def feedback_keyboard(prediction_id: int) -> InlineKeyboardMarkup:
    """The "Correct" / "Wrong" buttons under a confident answer."""
    return InlineKeyboardMarkup(
        [
            [
                _button(CORRECT, FeedbackData("ok", prediction_id)),
                _button(WRONG, FeedbackData("no", prediction_id)),
            ]
        ]
    )


def choices_keyboard(prediction_id: int, choices: Sequence[EquipmentView]) -> InlineKeyboardMarkup:
    """One button per likely choice (for `unsure`), then "None of these" which opens the full picker."""
    rows = [[_button(choice.name, FeedbackData("pk", prediction_id, choice.slug))] for choice in choices]
    rows.append([_button(NONE_OF_THESE, FeedbackData("no", prediction_id))])
    return InlineKeyboardMarkup(rows)


def not_equipment_keyboard(prediction_id: int) -> InlineKeyboardMarkup:
    """Under a `not_equipment` answer: "It is gym equipment" opens the picker."""
    return InlineKeyboardMarkup([[_button("It is gym equipment", FeedbackData("no", prediction_id))]])


def picker_keyboard(
    prediction_id: int, equipment: Sequence[EquipmentView], columns: int = 2
) -> InlineKeyboardMarkup:
    """The closed set of equipment types, ``columns`` per row, then "Something else" and "Back"."""
    buttons = [_button(item.name, FeedbackData("pk", prediction_id, item.slug)) for item in equipment]
    rows = [buttons[i : i + columns] for i in range(0, len(buttons), columns)]
    rows.append([_button(SOMETHING_ELSE, FeedbackData("pk", prediction_id, NOT_EQUIPMENT))])
    rows.append([_button(CANCEL, FeedbackData("bk", prediction_id))])
    return InlineKeyboardMarkup(rows)


def album_keyboard(numbered: Sequence[tuple[int, int]]) -> InlineKeyboardMarkup:
    """For an album: per (photo number, prediction id) a ✅ and a ❌ button, three photos per row."""
    buttons: list[list[InlineKeyboardButton]] = []
    for index, prediction_id in numbered:
        pair = [
            _button(f"{index} ✅", FeedbackData("ok", prediction_id)),
            _button(f"{index} ❌", FeedbackData("no", prediction_id)),
        ]
        if buttons and len(buttons[-1]) < 6:
            buttons[-1].extend(pair)
        else:
            buttons.append(pair)
    return InlineKeyboardMarkup(buttons)


def forget_keyboard(user_id: int) -> InlineKeyboardMarkup:
    """Confirm / cancel buttons for /forget."""
    return InlineKeyboardMarkup(
        [
            [
                _button("🗑 Yes, delete everything", ForgetData(user_id, True)),
                _button("Cancel", ForgetData(user_id, False)),
            ]
        ]
    )


def _prediction_id(button: InlineKeyboardButton) -> int | None:
    """The prediction id of one of our feedback buttons, None for any other button."""
    try:
        return parse_feedback(button.callback_data).prediction_id
    except CallbackDataError:
        return None


def feedback_prediction_ids(markup: InlineKeyboardMarkup | None) -> list[int]:
    """Distinct prediction ids referenced by our feedback buttons in ``markup``, in order of appearance."""
    ids: list[int] = []
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            prediction_id = _prediction_id(button)
            if prediction_id is not None and prediction_id not in ids:
                ids.append(prediction_id)
    return ids


def without_prediction(markup: InlineKeyboardMarkup, prediction_id: int) -> InlineKeyboardMarkup | None:
    """``markup`` minus every feedback button of ``prediction_id`` (None when nothing is left)."""
    rows = [[b for b in row if _prediction_id(b) != prediction_id] for row in markup.inline_keyboard]
    kept = [row for row in rows if row]
    return InlineKeyboardMarkup(kept) if kept else None


def album_index(markup: InlineKeyboardMarkup | None, prediction_id: int) -> int | None:
    """The 1-based photo number of ``prediction_id`` in an album keyboard (from its button text), if any."""
    for row in markup.inline_keyboard if markup is not None else ():
        for button in row:
            if _prediction_id(button) == prediction_id:
                head = button.text.split(" ", 1)[0]
                return int(head) if head.isdigit() else None
    return None
    for row in markup.inline_keyboard:
        for button in row:
            try:
                data = parse_feedback(button.callback_data)
            except CallbackDataError:
                continue
            if data.prediction_id == prediction_id:
                head = button.text.split(" ", 1)[0]
                return int(head) if head.isdigit() else None
    return None
