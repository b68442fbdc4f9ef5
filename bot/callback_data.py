"""Compact, validated callback data for inline buttons (pure; no Telegram objects).

Telegram limits ``callback_data`` to 1-64 bytes (https://core.telegram.org/bots/api#inlinekeyboardbutton), so
a button carries only a verb and ids: ``ok:42`` (correct), ``no:42`` (wrong -> open the picker),
``pk:42:leg_press`` (picked a label; ``-`` means "something else / not gym equipment"), ``bk:42`` (close the
picker), ``fg:7:y`` / ``fg:7:n`` (confirm or cancel /forget for user 7). All state lives in the database, so
buttons keep working after a restart; the handler still checks that the prediction exists and belongs
to the user who pressed.
Other packages' buttons (e.g. admin review) must use other prefixes; `FEEDBACK_PATTERN` matches only ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

MAX_CALLBACK_BYTES = 64
NOT_EQUIPMENT = "-"
"""Label token for "Something else / not gym equipment" in a pick."""

FeedbackVerb = Literal["ok", "no", "pk", "bk"]
FEEDBACK_VERBS: tuple[FeedbackVerb, ...] = ("ok", "no", "pk", "bk")

_ID = r"[1-9][0-9]{0,17}"
_LABEL = r"[a-z0-9][a-z0-9_]{0,39}"
_FEEDBACK_RE = re.compile(rf"^(ok|no|bk):({_ID})$|^pk:({_ID}):({_LABEL}|-)$")
_FORGET_RE = re.compile(rf"^fg:({_ID}):(y|n)$")

FEEDBACK_PATTERN = r"^(ok|no|pk|bk):"
"""Regex for `CallbackQueryHandler(pattern=...)` selecting feedback buttons."""
FORGET_PATTERN = r"^fg:"
"""Regex for `CallbackQueryHandler(pattern=...)` selecting /forget confirmation buttons."""


class CallbackDataError(ValueError):
    """Callback data that is malformed, too long or tampered with."""


@dataclass(frozen=True)
class FeedbackData:
    """A feedback button: verb, the prediction's database id, and for ``pk`` the chosen label slug or
    `NOT_EQUIPMENT`."""

    verb: FeedbackVerb
    prediction_id: int
    label: str | None = None

    def encode(self) -> str:
        """Serialise to at most 64 bytes. Raises CallbackDataError when the fields are invalid."""
        text = (
            f"pk:{self.prediction_id}:{self.label}"
            if self.verb == "pk"
            else f"{self.verb}:{self.prediction_id}"
        )
        _check_length(text)
        if parse_feedback(text) != self:
            raise CallbackDataError(f"cannot encode {self!r}")
        return text


@dataclass(frozen=True)
class ForgetData:
    """A /forget confirmation button for ``user_id``: ``confirm`` True deletes, False cancels."""

    user_id: int
    confirm: bool

    def encode(self) -> str:
        """Serialise to at most 64 bytes. Raises CallbackDataError for a non-positive user id."""
        text = f"fg:{self.user_id}:{'y' if self.confirm else 'n'}"
        _check_length(text)
        if parse_forget(text) != self:
            raise CallbackDataError(f"cannot encode {self!r}")
        return text


def _check_length(text: str) -> None:
    if not 1 <= len(text.encode("utf-8")) <= MAX_CALLBACK_BYTES:
        raise CallbackDataError(f"callback data must be 1-{MAX_CALLBACK_BYTES} bytes")


def parse_feedback(data: str | object) -> FeedbackData:
    """Parse feedback callback data. Raises CallbackDataError for anything but exactly our format."""
    if not isinstance(data, str) or len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:
        raise CallbackDataError("not feedback callback data")
    match = _FEEDBACK_RE.fullmatch(data)
    if match is None:
        raise CallbackDataError("not feedback callback data")
    if match.group(1):
        verb: FeedbackVerb = match.group(1)  # type: ignore[assignment]
        return FeedbackData(verb, int(match.group(2)))
    return FeedbackData("pk", int(match.group(3)), match.group(4))


def parse_forget(data: str | object) -> ForgetData:
    """Parse /forget callback data. Raises CallbackDataError for anything but exactly our format."""
    if not isinstance(data, str):
        raise CallbackDataError("not forget callback data")
    match = _FORGET_RE.fullmatch(data)
    if match is None:
        raise CallbackDataError("not forget callback data")
    return ForgetData(int(match.group(1)), match.group(2) == "y")
