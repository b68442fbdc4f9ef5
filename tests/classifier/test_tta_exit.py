"""Test-time augmentation with an early exit: the pure combination, its fitting, and the served path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from classifier.dataset import OTHER_LABEL
from classifier.evaluate import fit_tta_exit
from classifier.predictor import DecisionRule, Predictor, combine_views, exits_early
from classifier.preprocess import preprocess

OUTPUTS = ["bench_press", "leg_press", "power_rack", OTHER_LABEL]
RULE = DecisionRule(confident_threshold=0.6, other_threshold=0.5)


def test_exits_early_needs_a_confident_answer_above_the_threshold() -> None:
    assert exits_early(np.array([0.96, 0.02, 0.01, 0.01]), OUTPUTS, RULE, 0.95)
    assert not exits_early(np.array([0.9, 0.05, 0.04, 0.01]), OUTPUTS, RULE, 0.95)  # confident, below t
    assert not exits_early(np.array([0.96, 0.0, 0.0, 0.04]), OUTPUTS, RULE, None)  # no threshold
    # P(other) over the rule's threshold: not_equipment, never an early exit however high the top label
    assert not exits_early(np.array([0.45, 0.0, 0.0, 0.55]), OUTPUTS, RULE, 0.4)


def test_combine_views_keeps_exiting_rows_and_averages_the_rest() -> None:
    orig = np.array([[0.97, 0.01, 0.01, 0.01], [0.5, 0.4, 0.05, 0.05]], np.float32)
    flip = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.8, 0.05, 0.05]], np.float32)
    out = combine_views([orig, flip], OUTPUTS, RULE, 0.95)
    np.testing.assert_allclose(out[0], orig[0])
    np.testing.assert_allclose(out[1], (orig[1] + flip[1]) / 2)
    np.testing.assert_allclose(combine_views([orig, flip], OUTPUTS, RULE, None), (orig + flip) / 2)
    np.testing.assert_allclose(combine_views([orig], OUTPUTS, RULE, 0.5), orig)


def test_fit_tta_exit_picks_the_lowest_threshold_that_loses_nothing() -> None:
    # Photo 0: the original view says bench_press at 0.92, but the truth is leg_press and the mirrored view
    # knows it; an exit at 0.9 would keep the wrong answer. Photo 1 is right and sure in both views.
    orig = np.array([[0.92, 0.06, 0.01, 0.01], [0.02, 0.97, 0.005, 0.005]], np.float32)
    flip = np.array([[0.05, 0.93, 0.01, 0.01], [0.02, 0.96, 0.01, 0.01]], np.float32)
    y = np.array([1, 1])
    ood = [np.zeros((0, 4), np.float32)] * 2
    threshold, report = fit_tta_exit(OUTPUTS, RULE, [orig, flip], y, ood, grid=(0.9, 0.95, 0.99))
    assert threshold == 0.95
    assert report["exit_share"] == 0.5
    assert report["early_exit_top1"] == report["all_views_top1"] == 1.0
    # every threshold loses the photo: no early exit at all
    assert fit_tta_exit(OUTPUTS, RULE, [orig, flip], y, ood, grid=(0.9,))[0] is None
    # one view: nothing to skip
    assert fit_tta_exit(OUTPUTS, RULE, [orig], y, ood[:1])[0] is None


def test_fit_tta_exit_guards_the_ood_rejection() -> None:
    # An OOD photo whose original view is a sure bench_press while the mirror is not: exiting would answer
    # it confident, so the threshold must stay above 0.93.
    real = [np.array([[0.99, 0.0, 0.0, 0.01]], np.float32)] * 2
    ood = [np.array([[0.93, 0.02, 0.0, 0.05]], np.float32), np.array([[0.1, 0.1, 0.1, 0.7]], np.float32)]
    threshold, report = fit_tta_exit(OUTPUTS, RULE, real, np.array([0]), ood, grid=(0.9, 0.95))
    assert threshold == 0.95 and report["early_exit_ood_rejection"] == 1.0


def test_tiny_champion_records_its_exit_and_serves_with_it(tiny_env) -> None:
    """The tiny champion trained in conftest carries a fitted ``tta_exit``; the predictor skips the mirrored
    pass exactly when the original view exits early, and the answer is the same as the pure combination."""
    vdir = tiny_env.models / "v0001"
    cfg = json.loads((vdir / "head.json").read_text())
    metrics = json.loads((vdir / "metrics.json").read_text())
    assert "tta_exit" in cfg and "exit_share" in metrics["tta_exit"]
    predictor = Predictor.load(vdir, str(tiny_env.weights), tta_exit=0.0)  # 0: every confident photo exits
    full = Predictor.load(vdir, str(tiny_env.weights), tta_exit=None)
    assert full.tta == ["orig", "flip"]
    seen = {1: 0, 2: 0}
    for path in sorted(tiny_env.dataset.glob("*/*"))[:12]:
        x = preprocess(path.read_bytes(), predictor.spec)
        served = predictor.probabilities(x)
        seen[predictor.last_views] += 1
        views = [full._forward(v[None]).numpy()[None] for v in full.views(x)]
        assert full.probabilities(x).shape == served.shape and full.last_views == 2
        expected = combine_views(views, predictor.outputs, predictor.rule, 0.0)[0]
        np.testing.assert_allclose(served, expected, atol=1e-6)
        assert (predictor.last_views == 1) == exits_early(views[0][0], predictor.outputs, predictor.rule, 0.0)
    assert seen[1] > 0, "a confident photo must skip the mirrored pass"


@pytest.mark.parametrize("override", [None, 0.5])
def test_version_exit_can_be_overridden(tiny_env, override: float | None) -> None:
    p = Predictor.load(tiny_env.models / "v0001", str(tiny_env.weights), tta_exit=override)
    assert p.tta_exit == override
    default = Predictor.load(tiny_env.models / "v0001", str(tiny_env.weights))
    cfg = json.loads((tiny_env.models / "v0001" / "head.json").read_text())
    assert default.tta_exit == cfg["tta_exit"]


def test_versions_without_the_field_never_exit(tiny_env, tmp_path: Path) -> None:
    """An older version (head.json without ``tta_exit``, like the v0001 shipped before it existed)."""
    import shutil

    vdir = tmp_path / "v0001"
    shutil.copytree(tiny_env.models / "v0001", vdir)
    cfg = json.loads((vdir / "head.json").read_text())
    cfg.pop("tta_exit")
    (vdir / "head.json").write_text(json.dumps(cfg))
    p = Predictor.load(vdir, str(tiny_env.weights))
    assert p.tta_exit is None
    p.probabilities(np.zeros(p.spec.shape, np.float32))
    assert p.last_views == 2


def test_fit_tta_exit_keeps_a_margin_for_bfloat16_serving() -> None:
    # An OOD photo whose original view reads 0.975 (float32): 0.98 alone would be safe, but bfloat16 serving
    # can read it as 0.98 and exit; with the 0.01 margin the fit moves on to 0.99.
    real = [np.array([[0.999, 0.0, 0.0, 0.001]], np.float32)] * 2
    ood = [np.array([[0.975, 0.0, 0.0, 0.025]], np.float32), np.array([[0.2, 0.1, 0.1, 0.6]], np.float32)]
    y = np.array([0])
    assert fit_tta_exit(OUTPUTS, RULE, real, y, ood, grid=(0.98, 0.99), margin=0.0)[0] == 0.98
    assert fit_tta_exit(OUTPUTS, RULE, real, y, ood, grid=(0.98, 0.99))[0] == 0.99


def test_fit_tta_exit_without_evidence_is_none() -> None:
    # No validation photo reaches the grid: every threshold trivially "loses nothing", none is supported.
    real = [np.array([[0.7, 0.2, 0.05, 0.05]], np.float32), np.array([[0.6, 0.3, 0.05, 0.05]], np.float32)]
    threshold, report = fit_tta_exit(OUTPUTS, RULE, real, np.array([0]), [np.zeros((0, 4), np.float32)] * 2)
    assert threshold is None and report["exit_share"] == 0.0


def test_overriding_the_views_drops_the_version_exit(tiny_env) -> None:
    vdir = tiny_env.models / "v0001"
    assert Predictor.load(vdir, str(tiny_env.weights), tta=["flip", "orig"]).tta_exit is None
    assert Predictor.load(vdir, str(tiny_env.weights), tta=["flip", "orig"], tta_exit=0.9).tta_exit == 0.9


def test_retrain_scores_a_head_as_served() -> None:
    """`classifier.retrain.predicted_labels` applies the version's rule and exit like the predictor."""
    import keras

    from classifier.model import HeadSpec, build_head
    from classifier.retrain import predicted_labels

    keras.utils.set_random_seed(3)
    head = build_head(HeadSpec(hidden=8, n_outputs=4), (1, 1, 6))
    rng = np.random.default_rng(0)
    views = [rng.normal(0, 3, (40, 1, 1, 6)).astype(np.float32) for _ in range(2)]
    per_view = [np.asarray(head.predict(v, verbose=0)) for v in views]
    rule = DecisionRule(confident_threshold=0.4, other_threshold=0.9)
    for threshold in (None, 0.5):
        expected = combine_views(per_view, OUTPUTS, rule, threshold)[:, :3].argmax(1)
        got = predicted_labels(head, OUTPUTS, views, rule, threshold)
        assert got == [OUTPUTS[i] for i in expected]
    assert predicted_labels(head, OUTPUTS, views, rule, 0.5) != predicted_labels(head, OUTPUTS, views)


def test_model_card_states_the_exit(tiny_env) -> None:
    card = (tiny_env.models / "v0001" / "model_card.md").read_text()
    cfg = json.loads((tiny_env.models / "v0001" / "head.json").read_text())
    assert ">= None" not in card
    if cfg["tta_exit"] is None:
        assert "no early exit" in card
    else:
        assert f">= {cfg['tta_exit']}" in card


def test_fit_version_without_validation_photos_is_a_clear_error(tmp_path: Path) -> None:
    from classifier.dataset import LabelledImage
    from classifier.model import HeadSpec, load_backbone
    from classifier.train import TrainConfig, fit_version
    from tests.classifier.helpers import make_folder_dataset

    ds = make_folder_dataset(tmp_path / "ds", per_class=3, ood=0)
    train = [LabelledImage(p, p.parent.name) for p in sorted(ds.glob("*_thing/*"))]
    unreadable = tmp_path / "red_thing.png"
    unreadable.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="no readable validation images"):
        fit_version(
            train,
            [LabelledImage(unreadable, "red_thing", "val")],
            [],
            load_backbone(None, 32),
            None,
            TrainConfig(epochs=1, head=HeadSpec(hidden=4)),
            progress=False,
        )
