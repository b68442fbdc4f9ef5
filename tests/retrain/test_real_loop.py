"""The learning loop on real photos from ../shared/data (a small subset, so it stays a few minutes at most):
a champion trained without most photos of one class; those photos fed in as corrections through the bot's
code path; the retrained challenger names that class on photos that were never fed in, and is promoted; then
deliberately wrong corrections from one non-admin user promote nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.benchmark_retrain import LoopConfig, run_loop
from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.real_data
def test_corrections_teach_the_model_and_poison_does_not(shared_data: Path, shared_weights: Path, tmp_path):
    cfg = LoopConfig(
        shared_data=shared_data,
        weights=shared_weights,
        work=tmp_path,
        cache=ROOT / "data" / "cache",  # shared with `python -m classifier train`; cold is fine, only slower
        target="smith_machine",
        withhold=0.97,  # one smith photo left: the champion barely knows the class
        classes=["smith_machine", "treadmill", "leg_press"],
        max_train=30,
        max_val=12,
        epochs=15,
        views=("orig",),
        tta=("orig",),
        thin_views=(),  # no extra views: only `orig` features, so a cold cache costs one pass per photo
        ensemble=1,
        poison_from="treadmill",
        poison_to="leg_press",
        poison_count=6,
        include_ood=False,
    )
    report = run_loop(cfg)
    assert report.withheld >= 20 and report.fed_corrections >= 10
    # the class's accuracy on its validation photos (never fed in) rises, and the champion changes
    assert report.target_val_acc_challenger > report.target_val_acc_champion + 0.2, report
    assert report.retrain["status"] == "promoted" and report.champion_after_retrain != report.champion
    assert report.overall_challenger is not None and report.overall_champion is not None
    assert report.overall_challenger >= report.overall_champion
    # one non-admin user's wrong corrections: nothing is trained, nothing promoted
    assert report.poison["status"] == "nothing_to_do" and report.poison["pending"] == cfg.poison_count
    assert report.poison["champion_after"] == report.poison["champion_before"]
