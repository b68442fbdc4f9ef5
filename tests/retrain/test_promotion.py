"""The champion/challenger promotion rule, as a table."""

from __future__ import annotations

import pytest

from classifier.promotion import (
    PromotionPolicy,
    Scores,
    decide,
    score_predictions,
    scores_from_mapping,
    sign_test_p,
)


def _scores(per_class_correct: dict[str, tuple[int, int]]) -> Scores:
    y_true: list[str] = []
    y_pred: list[str] = []
    for label, (correct, support) in per_class_correct.items():
        y_true += [label] * support
        y_pred += [label] * correct + ["__wrong__"] * (support - correct)
    return score_predictions(y_true, y_pred)


POLICY = PromotionPolicy(overall_margin=0.01, per_class_margin=0.05, per_class_min_images=1)


@pytest.mark.parametrize(
    ("champion", "challenger", "promote"),
    [
        # identical -> promote (at least as good)
        ({"a": (90, 100), "b": (90, 100)}, {"a": (90, 100), "b": (90, 100)}, True),
        # better everywhere -> promote
        ({"a": (80, 100), "b": (90, 100)}, {"a": (95, 100), "b": (92, 100)}, True),
        # overall 0.5 pp worse, within 1 pp margin; class drops 1 image -> promote
        ({"a": (90, 100), "b": (90, 100)}, {"a": (89, 100), "b": (90, 100)}, True),
        # overall 2 pp worse -> reject
        ({"a": (90, 100), "b": (90, 100)}, {"a": (88, 100), "b": (88, 100)}, False),
        # overall better, but class b 10 pp (10 images) worse -> reject
        ({"a": (50, 100), "b": (90, 100)}, {"a": (80, 100), "b": (80, 100)}, False),
        # thin class loses one of four photos (25 pp, 1 image): noise guard keeps it from blocking
        ({"a": (90, 100), "t": (4, 4)}, {"a": (92, 100), "t": (3, 4)}, True),
        # thin class loses two of four photos: beyond both margins but not significant (McNemar p=0.25)
        ({"a": (90, 100), "t": (4, 4)}, {"a": (95, 100), "t": (2, 4)}, True),
        # a 48-photo class loses 7 (p=0.008): reject even though overall is better
        ({"a": (50, 100), "t": (48, 48)}, {"a": (70, 100), "t": (41, 48)}, False),
    ],
)
def test_promotion_table(champion, challenger, promote):
    decision = decide(_scores(champion), _scores(challenger), POLICY)
    assert decision.promote is promote, decision.reasons
    record = decision.to_dict()
    assert record["champion"]["accuracy"] == round(_scores(champion).accuracy, 4)
    assert record["challenger"]["accuracy"] == round(_scores(challenger).accuracy, 4)
    assert record["policy"]["overall_margin"] == 0.01


def test_margins_are_configurable():
    champ, chall = _scores({"a": (90, 100)}), _scores({"a": (85, 100)})
    assert not decide(champ, chall, POLICY).promote
    assert decide(champ, chall, PromotionPolicy(overall_margin=0.06, per_class_margin=0.06)).promote
    # per-class margin alone can block even when overall margin allows
    assert not decide(champ, chall, PromotionPolicy(overall_margin=0.06, per_class_margin=0.01)).promote


def test_require_improvement():
    same = _scores({"a": (90, 100)})
    assert decide(same, same, POLICY).promote
    assert not decide(same, same, PromotionPolicy(require_improvement=True)).promote


def test_no_champion_promotes():
    decision = decide(None, _scores({"a": (1, 10)}), POLICY)
    assert decision.promote and decision.champion is None


def test_new_class_never_blocks_and_is_reported():
    champ = score_predictions(["a", "a", "n", "n"], ["a", "a", "a", "a"])
    chall = score_predictions(["a", "a", "n", "n"], ["a", "a", "n", "a"])
    decision = decide(champ, chall, POLICY, champion_labels=["a"])
    assert decision.promote
    assert any("new class n" in r for r in decision.reasons)
    new = next(d for d in decision.deltas if d.label == "n")
    assert new.champion is None and not new.blocking


def test_different_evaluation_sets_are_refused():
    with pytest.raises(ValueError, match="different evaluation sets"):
        decide(_scores({"a": (1, 2)}), _scores({"a": (1, 3)}), POLICY)


def test_score_round_trip_and_validation():
    s = _scores({"a": (3, 4), "b": (1, 2)})
    assert s.accuracy == pytest.approx(4 / 6)
    assert scores_from_mapping(s.to_dict()).support == s.support
    with pytest.raises(ValueError):
        score_predictions([], [])
    with pytest.raises(ValueError):
        score_predictions(["a"], [])
    with pytest.raises(ValueError):
        PromotionPolicy(overall_margin=-0.1)


def test_per_class_significance_is_paired_and_configurable():
    champ = _scores({"a": (90, 100), "t": (9, 9)})
    chall = _scores({"a": (92, 100), "t": (6, 9)})  # three of nine lost, none gained
    decision = decide(champ, chall, POLICY)
    assert decision.promote, decision.reasons
    t = next(d for d in decision.deltas if d.label == "t")
    assert (t.lost, t.gained) == (3, 0) and t.p_value == pytest.approx(0.125)
    assert any("within noise" in r for r in decision.reasons)
    strict = PromotionPolicy(per_class_alpha=1.0)  # no significance test: the margins alone decide
    assert not decide(champ, chall, strict).promote
    # read back from a summary (no per-image hits): the margins alone decide
    summary_champ, summary_chall = scores_from_mapping(champ.to_dict()), scores_from_mapping(chall.to_dict())
    assert not decide(summary_champ, summary_chall, POLICY).promote


def test_sign_test():
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(3, 0) == pytest.approx(0.125)
    assert sign_test_p(7, 0) == pytest.approx(1 / 128)
    assert sign_test_p(4, 1) == pytest.approx(6 / 32)
    assert sign_test_p(0, 5) == 1.0
    with pytest.raises(ValueError):
        PromotionPolicy(per_class_alpha=0.0)
