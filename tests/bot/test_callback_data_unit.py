"""Unit tests of bot.callback_data: compact, validated callback data (pure, no Telegram)."""

from __future__ import annotations

import re

import pytest

from bot.callback_data import (
    FEEDBACK_PATTERN,
    FORGET_PATTERN,
    MAX_CALLBACK_BYTES,
    NOT_EQUIPMENT,
    CallbackDataError,
    FeedbackData,
    ForgetData,
    parse_feedback,
    parse_forget,
)
from tests.fakes.classifier import LABELS

BIG_ID = 10**18 - 1  # 18 digits: far beyond any SQLite rowid the bot will reach


@pytest.mark.parametrize(
    "data",
    [
        FeedbackData("ok", 1),
        FeedbackData("no", 42),
        FeedbackData("bk", BIG_ID),
        FeedbackData("pk", 7, NOT_EQUIPMENT),
        *[FeedbackData("pk", BIG_ID, label) for label in LABELS],
    ],
)
def test_feedback_round_trip_fits_in_64_bytes(data: FeedbackData) -> None:
    encoded = data.encode()
    assert len(encoded.encode("utf-8")) <= MAX_CALLBACK_BYTES
    assert parse_feedback(encoded) == data
    assert re.match(FEEDBACK_PATTERN, encoded)
    assert not re.match(FORGET_PATTERN, encoded)


def test_longest_possible_label_still_fits() -> None:
    label = "a" * 40
    encoded = FeedbackData("pk", BIG_ID, label).encode()
    assert len(encoded) <= MAX_CALLBACK_BYTES and parse_feedback(encoded).label == label


@pytest.mark.parametrize("confirm", [True, False])
def test_forget_round_trip(confirm: bool) -> None:
    data = ForgetData(987654321, confirm)
    encoded = data.encode()
    assert parse_forget(encoded) == data
    assert re.match(FORGET_PATTERN, encoded) and not re.match(FEEDBACK_PATTERN, encoded)


@pytest.mark.parametrize(
    "tampered",
    [
        "",
        "ok",
        "ok:",
        "ok:0",  # ids start at 1
        "ok:-3",
        "ok:007",  # no leading zeros: one id, one spelling
        "ok:1x",
        "ok:1:leg_press",  # ok takes no label
        "no:1:",
        "pk:1",  # pick needs a label
        "pk:1:",
        "pk:1:Leg_Press",  # labels are lower-case slugs
        "pk:1:../../etc/passwd",
        "pk:1:leg press",
        "pk:1:leg_press:extra",
        "pk:1:" + "a" * 41,
        "ok:1\n",
        " ok:1",
        "OK:1",
        "zz:1",
        "ok:" + "9" * 19,
        "fg:1:y",
        "ok:1" + "\u200b",
    ],
)
def test_tampered_feedback_is_rejected(tampered: str) -> None:
    with pytest.raises(CallbackDataError):
        parse_feedback(tampered)


@pytest.mark.parametrize("tampered", ["fg:1", "fg:1:x", "fg:0:y", "fg:abc:y", "fg:1:y:1", "ok:1", None, 5])
def test_tampered_forget_is_rejected(tampered: object) -> None:
    with pytest.raises(CallbackDataError):
        parse_forget(tampered)


def test_non_string_callback_data_is_rejected() -> None:
    with pytest.raises(CallbackDataError):
        parse_feedback(None)
    with pytest.raises(CallbackDataError):
        parse_feedback(b"ok:1")


@pytest.mark.parametrize(
    "bad",
    [
        FeedbackData("ok", 0),
        FeedbackData("pk", 1, None),
        FeedbackData("pk", 1, "Bad Label"),
        FeedbackData("ok", 1, "x"),
    ],
)
def test_encode_refuses_invalid_fields(bad: FeedbackData) -> None:
    with pytest.raises(CallbackDataError):
        bad.encode()


def test_forget_encode_refuses_non_positive_user() -> None:
    with pytest.raises(CallbackDataError):
        ForgetData(0, True).encode()
