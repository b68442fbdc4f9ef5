"""Champion/challenger promotion rule (pure: no TensorFlow, no I/O).

Both models are scored on the SAME evaluation set (the base validation split plus the held-back share of
feedback images). The challenger is promoted only if it is not worse than the champion

- overall, by more than ``overall_margin`` (absolute top-1 accuracy, e.g. 0.01 = one percentage point), and
- on any class the champion knows, by more than ``per_class_margin`` (absolute per-class recall), where a drop
  only counts when it also amounts to more than ``per_class_min_images`` extra misclassified images AND is
  unlikely to be training noise: on that class's photos, the photos the champion named right and the
  challenger wrong (b) against the reverse (c) must pass an exact one-sided McNemar (sign) test at
  ``per_class_alpha`` (Dietterich 1998, "Approximate statistical tests for comparing supervised
  classification learning algorithms"; the standard paired test for two classifiers on one test set).
  Measured on real photos (docs/experiments.md): retraining the same recipe on nearly the same data moves a
  nine-photo class by three photos (b=3, c=0, p=0.125) -- noise that would otherwise block every retrain --
  while 40 deliberately wrong labels cost their class 7 of 48 photos (p=0.008) and are still blocked.

Classes only the challenger knows (a new equipment type) are reported but cannot block promotion; images of
such a class count as errors for the champion in the overall score, because it cannot name them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class PromotionPolicy:
    """Margins of the promotion rule. All accuracies are fractions in [0, 1].

    overall_margin: the challenger may be at most this much worse in overall top-1 accuracy (default 0.01).
    per_class_margin: ... and at most this much worse in any class's recall (default 0.05) ...
    per_class_min_images: ... unless that class drop is this many images or fewer (default 1) ...
    per_class_alpha: ... or not significant by the exact one-sided McNemar test at this level (default 0.05;
        1.0 disables the test, so that any drop beyond the two margins blocks).
    require_improvement: if True the challenger must be strictly better overall (default False: "at least as
        good within the margin" is enough, which lets new feedback classes and fresh data in).
    """

    overall_margin: float = 0.01
    per_class_margin: float = 0.05
    per_class_min_images: int = 1
    per_class_alpha: float = 0.05
    require_improvement: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.overall_margin <= 1.0 or not 0.0 <= self.per_class_margin <= 1.0:
            raise ValueError("promotion margins must be fractions in [0, 1]")
        if self.per_class_min_images < 0:
            raise ValueError("per_class_min_images must be >= 0")
        if not 0.0 < self.per_class_alpha <= 1.0:
            raise ValueError("per_class_alpha must be in (0, 1]")


@dataclass(frozen=True)
class Scores:
    """Top-1 scores of one model on one evaluation set.

    accuracy: overall top-1 accuracy in [0, 1]; per_class: class -> recall in [0, 1] (correct / support);
    support: class -> number of evaluation images of that class (true label); n: total images;
    y_true / hits: per image, in evaluation-set order, its true label and whether the model named it right
    (for the paired per-class test; empty when the scores were read back from a summary).
    """

    accuracy: float
    per_class: dict[str, float]
    support: dict[str, int]
    n: int
    y_true: tuple[str, ...] = ()
    hits: tuple[bool, ...] = ()

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
    hits = tuple(t == p for t, p in zip(y_true, y_pred, strict=True))
    return Scores(sum(correct.values()) / len(y_true), per_class, support, len(y_true), tuple(y_true), hits)


def sign_test_p(b: int, c: int) -> float:
    """Exact one-sided McNemar (sign) test: P(X >= b) for X ~ Binomial(b + c, 1/2); 1.0 when b + c == 0.

    b: photos only the champion named right; c: photos only the challenger named right.
    """
    n = b + c
    if n == 0:
        return 1.0
    return sum(math.comb(n, k) for k in range(b, n + 1)) / 2**n


@dataclass(frozen=True)
class ClassDelta:
    """One class's recall for champion and challenger; ``blocking`` if it violates the per-class rule.
    lost / gained: photos of the class only the champion / only the challenger named right (paired scores);
    p_value: the one-sided McNemar test of that difference (None without paired scores)."""

    label: str
    support: int
    champion: float | None
    challenger: float
    blocking: bool
    lost: int = 0
    gained: int = 0
    p_value: float | None = None


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
    paired = (
        bool(champion.hits) and champion.y_true == challenger.y_true and len(challenger.hits) == champion.n
    )
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
        lost = gained = 0
        p_value: float | None = None
        if paired:
            for t, h_old, h_new in zip(champion.y_true, champion.hits, challenger.hits, strict=True):
                if t == label:
                    lost += int(h_old and not h_new)
                    gained += int(h_new and not h_old)
            p_value = sign_test_p(lost, gained)
        significant = p_value is None or p_value <= policy.per_class_alpha
        blocking = drop > policy.per_class_margin + 1e-12 and extra_errors > policy.per_class_min_images
        blocking = blocking and significant
        deltas.append(ClassDelta(label, n, cp, ch, blocking, lost, gained, p_value))
        if blocking:
            ok = False
            reasons.append(
                f"{label}: {ch:.1%} vs champion {cp:.1%} ({extra_errors} more of {n} images wrong; "
                f"margin {policy.per_class_margin:.1%}"
                + (f", McNemar p={p_value:.3f})" if p_value is not None else ")")
            )
        elif drop > policy.per_class_margin + 1e-12 and extra_errors > policy.per_class_min_images:
            reasons.append(
                f"{label}: {ch:.1%} vs champion {cp:.1%} on {n} images, within noise "
                f"(lost {lost}, gained {gained}, McNemar p={p_value:.3f} > {policy.per_class_alpha})"
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
