"""Pure logic: the confident/unsure/not_equipment decision, metrics, calibration error, rule fitting."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.dataset import OTHER_LABEL
from classifier.evaluate import (
    confusion_text,
    decision_report,
    evaluate,
    expected_calibration_error,
    fit_decision_rule,
)
from classifier.predictor import DecisionRule, decide

OUTPUTS = ["bench_press", "leg_press", "power_rack", OTHER_LABEL]
RULE = DecisionRule(confident_threshold=0.6, other_threshold=0.5)


@pytest.mark.parametrize(
    ("probs", "label", "decision"),
    [
        ([0.9, 0.05, 0.03, 0.02], "bench_press", "confident"),
        ([0.4, 0.35, 0.2, 0.05], "bench_press", "unsure"),
        ([0.1, 0.7, 0.1, 0.1], "leg_press", "confident"),
        ([0.2, 0.1, 0.1, 0.6], "bench_press", "not_equipment"),
        ([0.3, 0.3, 0.3, 0.1], "bench_press", "unsure"),  # tie -> label order
    ],
)
def test_decide(probs: list[float], label: str, decision: str) -> None:
    r = decide(np.array(probs), OUTPUTS, RULE)
    assert (r.label, r.decision) == (label, decision)
    assert [lab for lab, _ in r.top_k] == sorted(OUTPUTS[:3], key=lambda lab: -probs[OUTPUTS.index(lab)])
    assert OTHER_LABEL not in [lab for lab, _ in r.top_k]
    assert r.confidence == pytest.approx(max(probs[:3]))
    assert r.other_probability == pytest.approx(probs[3])


def test_reported_other_probability_is_the_one_decided_on() -> None:
    rule = DecisionRule(confident_threshold=0.7, other_threshold=0.15)
    for p_other in (0.1499994, 0.1499996, 0.15, 0.1500004):
        r = decide(np.array([0.8, 0.05, 1 - 0.85 - p_other + 0.0, p_other]), OUTPUTS, rule)
        assert (r.decision == "not_equipment") == (r.other_probability >= rule.other_threshold), p_other


def test_decide_without_other_class_uses_reject_threshold() -> None:
    rule = DecisionRule(confident_threshold=0.8, other_threshold=0.5, reject_threshold=0.3)
    assert decide(np.array([0.25, 0.25, 0.25, 0.25]), ["a", "b", "c", "d"], rule).decision == "not_equipment"
    assert decide(np.array([0.5, 0.3, 0.1, 0.1]), ["a", "b", "c", "d"], rule).decision == "unsure"
    assert decide(np.array([0.5, 0.3, 0.1, 0.1]), ["a", "b", "c", "d"], rule).other_probability == 0.0
    with pytest.raises(ValueError):
        decide(np.array([0.5, 0.5]), ["a", "b", "c"], rule)


def test_evaluate_metrics_by_hand() -> None:
    labels = ["a", "b", "c"]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    y = [0, 1, 1, 2]
    m = evaluate(y, probs, labels, {"ab": ["a", "b"]})
    assert m["top1"] == 0.75 and m["top3"] == 1.0 and m["n"] == 4
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert m["per_class"]["b"]["recall"] == 0.5
    assert m["subset_top1"]["ab"] == pytest.approx(2 / 3, abs=1e-4)
    text = confusion_text(m["confusion_matrix"], labels)
    assert text.splitlines()[2].split() == ["b", "1", "1", "0"]


def test_expected_calibration_error() -> None:
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1, 1])) == 0.0
    # Always 90% confident but right half the time: ECE 0.4.
    assert expected_calibration_error(np.full(10, 0.9), np.array([1, 0] * 5)) == pytest.approx(0.4)


def test_fit_decision_rule_separates_real_from_ood() -> None:
    rng = np.random.default_rng(0)
    real_true = rng.integers(0, 3, 200)
    real = np.full((200, 4), 0.02)
    real[np.arange(200), real_true] = 0.9
    ood = np.tile([0.15, 0.15, 0.1, 0.6], (50, 1))
    rule, rep = fit_decision_rule(OUTPUTS, real, real_true, ood)
    assert rep["accept"] == 1.0 and rep["ood_rejection"] == 1.0 and rep["confident_precision"] == 1.0
    again = decision_report(rule, OUTPUTS, real, real_true, ood)
    assert again == rep


def test_fit_decision_rule_falls_back_to_the_most_precise_rule() -> None:
    # Confident answers are right only above 0.9; no rule reaches the impossible 101 % precision target.
    real = np.array([[0.95, 0.03, 0.02], [0.92, 0.04, 0.04], [0.5, 0.3, 0.2], [0.45, 0.35, 0.2]])
    truth = [0, 0, 1, 2]
    rule, rep = fit_decision_rule(["a", "b", "c"], real, truth, np.zeros((0, 3)), min_precision=1.01)
    assert rep["confident_precision"] == 1.0 and rep["accept"] == 0.5
    assert 0.5 < rule.confident_threshold <= 0.92
