"""Regression tests from the breaker review: validators must not accept a trailing newline.

Python's ``$`` also matches just before a final ``\\n``, so ``re.match(r"^...$", "x\\n")`` succeeds; a link
ending in ``%0A`` (decoded by the parser) yielded a 12-character "video id".
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from db import repositories as repo
from db.seed import SLUG_RE
from db.youtube import VIDEO_ID_RE, InvalidYouTubeLinkError, parse_video_id
from tests.db.conftest import predict


@pytest.mark.parametrize(
    "link",
    [
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ%0A",
        "https://youtu.be/dQw4w9WgXcQ%0a",
        "https://www.youtube.com/shorts/dQw4w9WgXcQ%0A",
    ],
)
def test_percent_encoded_newline_after_the_id_is_refused(link: str) -> None:
    with pytest.raises(InvalidYouTubeLinkError):
        parse_video_id(link)


def test_validators_refuse_a_trailing_newline() -> None:
    assert VIDEO_ID_RE.match("dQw4w9WgXcQ\n") is None
    assert SLUG_RE.match("leg_press\n") is None


def test_add_equipment_refuses_a_slug_with_a_trailing_newline(session: Session) -> None:
    with pytest.raises(ValueError, match="slug"):
        repo.add_equipment(session, slug="rowing_machine\n", display_name="Rowing machine")


def test_record_prediction_refuses_a_hash_with_a_trailing_newline(session: Session) -> None:
    prediction = predict(session, 5, b"photo")
    with pytest.raises(ValueError, match="sha256"):
        repo.record_prediction(
            session,
            prediction.user,
            chat_id=5,
            message_id=2,
            image_sha256=prediction.image_sha256 + "\n",
            image_path="data/photos/x.jpg",
            model_version="v0001",
            label="leg_press",
            confidence=0.5,
            decision="unsure",
            top_k=[("leg_press", 0.5)],
        )
