"""Unit tests of bot.keyboards: buttons carry valid, compact callback data (pure)."""

from __future__ import annotations

from telegram import InlineKeyboardMarkup

from bot import keyboards
from bot.callback_data import MAX_CALLBACK_BYTES, NOT_EQUIPMENT, FeedbackData, parse_feedback, parse_forget
from bot.views import EquipmentView, display_name
from tests.fakes.classifier import LABELS

EQUIPMENT = [EquipmentView(slug, display_name(slug)) for slug in LABELS]


def all_data(markup: InlineKeyboardMarkup) -> list[str]:
    return [str(button.callback_data) for row in markup.inline_keyboard for button in row]


def test_feedback_keyboard_has_correct_and_wrong() -> None:
    markup = keyboards.feedback_keyboard(12)
    assert [b.text for b in markup.inline_keyboard[0]] == [keyboards.CORRECT, keyboards.WRONG]
    assert [parse_feedback(d) for d in all_data(markup)] == [FeedbackData("ok", 12), FeedbackData("no", 12)]


def test_picker_offers_every_equipment_then_something_else_and_back() -> None:
    markup = keyboards.picker_keyboard(5, EQUIPMENT)
    parsed = [parse_feedback(d) for d in all_data(markup)]
    picks = [p.label for p in parsed if p.verb == "pk"]
    assert picks == [*LABELS, NOT_EQUIPMENT]
    assert parsed[-1] == FeedbackData("bk", 5)
    assert all(len(d.encode()) <= MAX_CALLBACK_BYTES for d in all_data(markup))
    assert all(len(row) <= 2 for row in markup.inline_keyboard)
    texts = [b.text for row in markup.inline_keyboard for b in row]
    assert keyboards.SOMETHING_ELSE in texts and "Leg press" in texts


def test_choices_keyboard_lists_choices_and_none_of_these() -> None:
    markup = keyboards.choices_keyboard(9, EQUIPMENT[:3])
    parsed = [parse_feedback(d) for d in all_data(markup)]
    assert [p.label for p in parsed[:3]] == LABELS[:3]
    assert parsed[-1] == FeedbackData("no", 9)


def test_album_keyboard_numbers_photos_and_helpers_find_them() -> None:
    markup = keyboards.album_keyboard([(1, 101), (3, 103), (4, 104), (5, 105)])
    assert keyboards.feedback_prediction_ids(markup) == [101, 103, 104, 105]
    assert keyboards.album_index(markup, 103) == 3
    assert keyboards.album_index(markup, 999) is None
    assert all(len(row) <= 6 for row in markup.inline_keyboard)
    rest = keyboards.without_prediction(markup, 103)
    assert rest is not None and keyboards.feedback_prediction_ids(rest) == [101, 104, 105]
    only = keyboards.album_keyboard([(1, 7)])
    assert keyboards.without_prediction(only, 7) is None


def test_forget_keyboard_is_bound_to_the_user() -> None:
    markup = keyboards.forget_keyboard(42)
    parsed = [parse_forget(d) for d in all_data(markup)]
    assert [(p.user_id, p.confirm) for p in parsed] == [(42, True), (42, False)]
    assert keyboards.feedback_prediction_ids(markup) == []
