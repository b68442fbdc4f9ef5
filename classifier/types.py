"""Plain data types shared by the classifier and its callers (no TensorFlow import here).

The bot imports only this module and `classifier.serving` so that its tests can run with a fake classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Decision = Literal["confident", "unsure", "not_equipment"]
DECISIONS: tuple[Decision, ...] = ("confident", "unsure", "not_equipment")


class ImageDecodeError(ValueError):
    """Raised when bytes cannot be decoded as an image Pillow understands (or are empty or too large)."""


class BackboneUnavailableError(FileNotFoundError):
    """Raised when the configured VGG16 weights cannot be had: a VGG16_WEIGHTS path that is not a file, or
    Keras failing to download the ImageNet weights (``VGG16_WEIGHTS=imagenet`` on a machine offline)."""


class BackboneMismatchError(RuntimeError):
    """Raised when a model version was trained on other backbone weights than the ones configured."""


@dataclass(frozen=True)
class Prediction:
    """One classified photo.

    label: the top-1 label (a slug such as ``"leg_press"``); confidence: its probability in [0, 1];
    decision: whether the caller may state the label (``confident``), should offer choices (``unsure``) or
    should say it is not gym equipment (``not_equipment``); top_k: (label, probability) pairs, best first;
    model_version: the registry version that produced it (e.g. ``"v0001"``); other_probability: the
    probability in [0, 1] of the explicit ``__other__`` output (not gym equipment), 0.0 for a version without
    it.
    """

    label: str
    confidence: float
    decision: Decision
    top_k: list[tuple[str, float]] = field(default_factory=list)
    model_version: str = ""
    other_probability: float = 0.0


class Classifier(Protocol):
    """What the bot needs from a classifier service (real: `classifier.serving.ClassifierService`)."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def model_version(self) -> str: ...

    async def classify(self, image: bytes) -> Prediction:
        """Classify encoded image bytes off the event loop. Raises ImageDecodeError for unreadable images."""
        ...
