"""Unit tests of bot.texts and bot.replies: what users read (pure)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from bot import texts
from bot.callback_data import parse_feedback
from bot.data import RecordedPrediction
from bot.handlers.admin import split_addvideo_args
from bot.replies import PhotoOutcome, album_reply, restore_keyboard, single_reply
from bot.views import EquipmentView, TutorialView
from classifier.types import Prediction

LEG_PRESS = EquipmentView("leg_press", "Leg press", "Legs & glutes <quads>.")
BOX = EquipmentView("plyo_box", "Plyo box", "Jumps.")


def tutorial(i: int, title: str = "Leg press 101", channel: str = "Coach Ana") -> TutorialView:
    return TutorialView(i, f"vid{i:08d}", title, channel, f"https://www.youtube.com/watch?v=vid{i:08d}")


class Balanced(HTMLParser):
    """Fails on unbalanced tags, like Telegram's HTML parser."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag


def assert_html(text: str) -> None:
    checker = Balanced()
    checker.feed(text)
    checker.close()
    assert not checker.stack
    assert len(text) <= texts.MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("confidence", "phrase"),
    [(0.999, "very sure"), (0.95, "very sure"), (0.9, "fairly sure"), (0.8, "fairly sure"), (0.5, "I think")],
)
def test_confidence_phrase(confidence: float, phrase: str) -> None:
    assert phrase in texts.confidence_phrase(confidence)


def test_percent_is_clamped() -> None:
    assert texts.percent(0.873) == "87%" and texts.percent(1.2) == "100%" and texts.percent(-1) == "0%"


def test_confident_text_shows_at_most_three_tutorials_escaped() -> None:
    tutorials = [tutorial(1, "Feet <placement> & why"), tutorial(2), tutorial(3), tutorial(4, "FOURTH")]
    text = texts.confident_text(LEG_PRESS, 0.97, tutorials)
    assert_html(text)
    assert "Leg press" in text and "97%" in text and "very sure" in text
    assert "Feet &lt;placement&gt; &amp; why" in text and "&lt;quads&gt;" in text
    assert text.count("▶️") == 3 and "FOURTH" not in text


def test_no_tutorials_gives_a_youtube_search_link() -> None:
    text = texts.confident_text(LEG_PRESS, 0.9, [])
    assert_html(text)
    assert "youtube.com/results?" in text
    url = texts.youtube_search_url("Leg press")
    assert urlsplit(url).netloc == "www.youtube.com"
    assert "Leg press" in parse_qs(urlsplit(url).query)["search_query"][0]


def test_start_text_explains_photos_and_forget() -> None:
    text = texts.start_text("<Mia>")
    assert_html(text)
    assert "&lt;Mia&gt;" in text and "/forget" in text and "photo" in text.lower()


def test_help_shows_admin_commands_only_to_admins() -> None:
    assert "/addvideo" not in texts.help_text(False)
    assert "/addvideo" in texts.help_text(True) and "/model" in texts.help_text(True)
    assert_html(texts.help_text(True))


def test_split_message_respects_the_limit_and_lines() -> None:
    text = "\n".join(f"line {i} " + "x" * 50 for i in range(300))
    chunks = texts.split_message(text, limit=1000)
    assert all(len(c) <= 1000 for c in chunks)
    assert "\n".join(chunks) == text
    assert texts.split_message("y" * 2500, limit=1000) == ["y" * 1000, "y" * 1000, "y" * 500]


def recorded(
    pid: int, equipment: EquipmentView, tutorials: list[TutorialView] | None = None
) -> RecordedPrediction:
    return RecordedPrediction(pid, equipment, tutorials or [], [(equipment, 0.6), (BOX, 0.3)])


def test_single_reply_per_decision() -> None:
    confident = PhotoOutcome(
        1, prediction=Prediction("leg_press", 0.97, "confident"), recorded=recorded(5, LEG_PRESS)
    )
    text, markup = single_reply(confident)
    assert "Leg press" in text and markup is not None
    assert [parse_feedback(b.callback_data).verb for b in markup.inline_keyboard[0]] == ["ok", "no"]

    unsure = PhotoOutcome(
        1, prediction=Prediction("leg_press", 0.5, "unsure"), recorded=recorded(6, LEG_PRESS)
    )
    text, markup = single_reply(unsure)
    assert "Is it one of these?" in text and markup is not None
    labels = [parse_feedback(row[0].callback_data).label for row in markup.inline_keyboard]
    assert labels == ["leg_press", "plyo_box", None]

    nothing = PhotoOutcome(
        1, prediction=Prediction("leg_press", 0.3, "not_equipment"), recorded=recorded(7, LEG_PRESS)
    )
    text, markup = single_reply(nothing)
    assert "don't think" in text and "Leg press" not in text and markup is not None

    problem = PhotoOutcome(1, problem=texts.TOO_BIG)
    assert single_reply(problem) == (texts.TOO_BIG, None)


def test_restore_keyboard_matches_the_original() -> None:
    assert restore_keyboard("confident", 3, []).inline_keyboard[0][0].text == "✅ Correct"
    unsure = restore_keyboard("unsure", 3, [LEG_PRESS])
    assert parse_feedback(unsure.inline_keyboard[0][0].callback_data).label == "leg_press"


def test_album_reply_has_one_line_per_photo_in_message_order() -> None:
    outcomes = [
        PhotoOutcome(12, prediction=Prediction("plyo_box", 0.9, "unsure"), recorded=recorded(22, BOX)),
        PhotoOutcome(
            10,
            prediction=Prediction("leg_press", 0.97, "confident"),
            recorded=recorded(20, LEG_PRESS, [tutorial(1)]),
        ),
        PhotoOutcome(11, problem=texts.UNREADABLE_IMAGE),
        PhotoOutcome(
            13, prediction=Prediction("leg_press", 0.91, "confident"), recorded=recorded(23, LEG_PRESS)
        ),
    ]
    text, markup = album_reply(outcomes)
    assert_html(text)
    lines = [line for line in text.splitlines() if line[:2] in {"1.", "2.", "3.", "4."}]
    assert len(lines) == 4
    assert "Leg press" in lines[0] and "couldn't read" in lines[1] and "Plyo box" in lines[2]
    assert text.count("Leg press 101") == 1  # one tutorial per recognised equipment type
    assert markup is not None
    texts_ = [b.text for row in markup.inline_keyboard for b in row]
    assert texts_ == ["1 ✅", "1 ❌", "3 ✅", "3 ❌", "4 ✅", "4 ❌"]


def test_stats_and_videos_texts() -> None:
    summary = texts.StatsSummary(
        users=3,
        photos=10,
        confirmed=6,
        corrections=2,
        pending=1,
        agreement_rate=0.75,
        champion="v0001",
        serving="v0001",
        tutorials=5,
        lines=[texts.StatsLine("Leg <press>", 4, 3, 1, 0.75), texts.StatsLine("Treadmill", 0, 0, 0, None)],
    )
    text = texts.stats_text(summary)
    assert_html(text)
    assert "75%" in text and "Leg &lt;press&gt;" in text and "Treadmill" not in text
    videos = [
        texts.VideoLine(
            4, "Leg press", "A <b>", "Ana", "https://www.youtube.com/watch?v=x", "unverified", True
        )
    ]
    text = texts.videos_text(videos, None)
    assert_html(text)
    assert "#4" in text and "[unverified]" in text and "A &lt;b&gt;" in text


def test_model_caption_lists_numeric_metrics() -> None:
    caption = texts.model_caption("v0002", {"top1": 0.934, "images": 120, "notes": "x", "ok": True}, "v0002")
    assert (
        "v0002" in caption and "top1: 93%" in caption and "images: 120" in caption and "notes" not in caption
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["leg_press", "https://youtu.be/dQw4w9WgXcQ"], ("leg_press", "https://youtu.be/dQw4w9WgXcQ", None)),
        (["Leg", "press", "dQw4w9WgXcQ", "My", "title"], ("Leg press", "dQw4w9WgXcQ", "My title")),
        (
            ["plyo_box", "https://youtube.com/playlist?list=PL1"],
            ("plyo_box", "https://youtube.com/playlist?list=PL1", None),
        ),
        (["leg_press"], None),
        (["https://youtu.be/dQw4w9WgXcQ"], None),
        ([], None),
    ],
)
def test_split_addvideo_args(args: list[str], expected: tuple[str, str, str | None] | None) -> None:
    assert split_addvideo_args(args) == expected
