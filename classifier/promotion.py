"""Champion/challenger promotion rule (pure: no TensorFlow, no I/O).

Both models are scored on the SAME evaluation set (the base validation split plus the held-back share of
feedback images). The challenger is promoted only if it is not worse than the champion

- overall, by more than ``overall_margin`` (absolute top-1 accuracy, e.g. 0.01 = one percentage point), and
- on any class the champion knows, by more than ``per_class_margin`` (absolute per-class recall), where a drop
  is only counted when it also amounts to more than ``per_class_min_images`` extra misclassified images. The
  image guard keeps one unlucky photo of a four-photo class (a 25-point swing) from blocking every retrain,
  while a real regression on a large class is still caught by the percentage margin.

Classes only the challenger knows (a new equipment type) are reported but cannot block promotion; images of
such a class count as errors for the champion in the overall score, because it cannot name them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionPolicy:
    """Margins of the promotion rule. All accuracies are fractions in [0, 1].

    overall_margin: the challenger may be at most this much worse in overall top-1 accuracy (default 0.01).
    per_class_margin: ... and at most this much worse in any class's recall (default 0.05) ...
    per_class_min_images: ... unless that class drop is this many images or fewer (default 1).
    require_improvement: if True the challenger must be strictly better overall (default False: "at least as
        good within the margin" is enough, which lets new feedback classes and fresh data in).
    """

    overall_margin: float = 0.01
    per_class_margin: float = 0.05
    per_class_min_images: int = 1
    require_improvement: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.overall_margin <= 1.0 or not 0.0 <= self.per_class_margin <= 1.0:
            raise ValueError("promotion margins must be fractions in [0, 1]")
        if self.per_class_min_images < 0:
            raise ValueError("per_class_min_images must be >= 0")


@dataclass(frozen=True)
class Scores:
    """Top-1 scores of one model on one evaluation set.

    accuracy: overall top-1 accuracy in [0, 1]; per_class: class -> recall in [0, 1] (correct / support);
    support: class -> number of evaluation images of that class (true label); n: total images.
    """

    accuracy: float
    per_class: dict[str, float]
    support: dict[str, int]
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (floats rounded to 4 decimals)."""
        return {
            "accuracy": round(self.accuracy, 4),
            "n": self.n,
            "per_class": {k: round(v, 4) for k, v in sorted(self.per_class.items())},
            "support": dict(sorted(self.support.items())),
        }


def score_predictions(y_true: Sequence[str], y_pred: Sequence[str]) -> Scores:
    """Overall accuracy and per-class recall from true and predicted labels (same length, same order).

    A predicted label the model does not know (or a true label the model cannot produce) simply counts as an
    error. Raises ValueError if the sequences differ in length or are empty.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    if not y_true:
        raise ValueError("cannot score an empty evaluation set")
    support: dict[str, int] = {}
    correct: dict[str, int] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        support[t] = support.get(t, 0) + 1
        correct[t] = correct.get(t, 0) + int(t == p)
    per_class = {c: correct[c] / support[c] for c in support}
    return Scores(sum(correct.values()) / len(y_true), per_class, support, len(y_true))


@dataclass(frozen=True)
class ClassDelta:
    """One class's recall for champion and challenger; ``blocking`` if it violates the per-class margin."""

    label: str
    support: int
    champion: float | None
    challenger: float
    blocking: bool


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict with both scores, per-class deltas and readable reasons (recorded in metrics.json)."""

    promote: bool
    reasons: list[str]
    champion: Scores | None
    challenger: Scores
    policy: PromotionPolicy
    deltas: list[ClassDelta] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the decision, both scores and the policy that produced it."""
        return {
            "promote": self.promote,
            "reasons": list(self.reasons),
            "champion": self.champion.to_dict() if self.champion else None,
            "challenger": self.challenger.to_dict(),
            "policy": asdict(self.policy),
            "deltas": [asdict(d) for d in self.deltas],
        }


def decide(
    champion: Scores | None,
    challenger: Scores,
    policy: PromotionPolicy,
    champion_labels: Sequence[str] | None = None,
) -> PromotionDecision:
    """Apply the promotion rule. ``champion`` None means there is no champion yet: promote.

    champion_labels: the classes the champion can predict; classes outside it are new and never block
    (default: the classes present in the champion's per-class scores). Both Scores must come from the same
    evaluation set; a differing image count raises ValueError.
    """
    if champion is None:
        return PromotionDecision(True, ["no champion yet"], None, challenger, policy)
    if champion.n != challenger.n or champion.support != challenger.support:
        raise ValueError("champion and challenger were scored on different evaluation sets")
    known = set(champion_labels) if champion_labels is not None else set(champion.per_class)
    reasons: list[str] = []
    ok = True
    diff = challenger.accuracy - champion.accuracy
    if diff < -policy.overall_margin - 1e-12:
        ok = False
        reasons.append(
            f"overall accuracy {challenger.accuracy:.1%} is {-diff:.1%} below the champion's "
            f"{champion.accuracy:.1%} (margin {policy.overall_margin:.1%})"
        )
    elif policy.require_improvement and diff <= 0:
        ok = False
        reasons.append(f"overall {challenger.accuracy:.1%} does not improve on {champion.accuracy:.1%}")
    deltas: list[ClassDelta] = []
    for label in sorted(challenger.support):
        n = challenger.support[label]
        ch = challenger.per_class.get(label, 0.0)
        if label not in known:
            deltas.append(ClassDelta(label, n, None, ch, False))
            reasons.append(f"new class {label}: {ch:.1%} of {n} images")
            continue
        cp = champion.per_class.get(label, 0.0)
        drop = cp - ch
        extra_errors = round(drop * n)
        blocking = drop > policy.per_class_margin + 1e-12 and extra_errors > policy.per_class_min_images
        deltas.append(ClassDelta(label, n, cp, ch, blocking))
        if blocking:
            ok = False
            reasons.append(
                f"{label}: {ch:.1%} vs champion {cp:.1%} ({extra_errors} more of {n} images wrong; "
                f"margin {policy.per_class_margin:.1%})"
            )
    if ok:
        reasons.insert(0, f"overall {champion.accuracy:.1%} -> {challenger.accuracy:.1%} within the margins")
    return PromotionDecision(ok, reasons, champion, challenger, policy, deltas)


def scores_from_mapping(data: Mapping[str, Any]) -> Scores:
    """Inverse of ``Scores.to_dict`` (for reading a recorded decision back)."""
    return Scores(
        float(data["accuracy"]),
        {str(k): float(v) for k, v in data["per_class"].items()},
        {str(k): int(v) for k, v in data["support"].items()},
        int(data["n"]),
    )
