"""The retraining pipeline end to end on a tiny real model (random-init VGG16 at 32x32, Pillow images),
a migrated SQLite database and corrections stored through the bot's repository functions."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select

from classifier import retrain
from classifier.registry import Registry
from classifier.retrain import RetrainBusyError, RetrainSettings, retrain_lock, run_pipeline
from db.models import Correction, ModelPromotion
from db.session import session_scope
from tests.retrain.conftest import ADMIN_ID, RetrainEnv

if TYPE_CHECKING:
    from classifier.serving import ClassifierService

pytestmark = pytest.mark.slow


def _corrections(env: RetrainEnv) -> list[Correction]:
    with session_scope(env.factory) as s:
        return list(s.scalars(select(Correction).order_by(Correction.id)))


def test_no_corrections_nothing_to_do(retrain_env: RetrainEnv):
    before = Registry(retrain_env.settings.models_dir).versions()
    result = run_pipeline(retrain_env.settings)
    assert result.status == "nothing_to_do" and result.version is None
    assert Registry(retrain_env.settings.models_dir).versions() == before


def test_dry_run_trains_and_scores_but_writes_nothing(retrain_env: RetrainEnv):
    retrain_env.correct(ADMIN_ID, "blue_thing", "blue_thing", seed=950, is_admin=True)
    result = run_pipeline(retrain_env.settings, force=True, dry_run=True)
    assert result.status == "dry_run" and result.version is None and result.eval_images > 0
    assert result.champion_accuracy is not None and result.challenger_accuracy is not None
    assert Registry(retrain_env.settings.models_dir).versions() == ["v0001"]
    assert all(c.trained_in_version_id is None for c in _corrections(retrain_env))
    assert not (retrain_env.data_dir / "feedback").exists()
    # the new correction took part: its photo was exported into the scratch set (train or holdout)
    assert result.exported == 1 and result.feedback_train_images + result.feedback_holdout_images == 1


def test_one_non_admin_user_cannot_train_the_model(retrain_env: RetrainEnv):
    # one user says, again and again, that red things are green: nothing is approved, nothing trains
    for seed in range(6):
        retrain_env.correct(7, "green_thing", "red_thing", seed=100 + seed)
    result = run_pipeline(retrain_env.settings)
    assert result.status == "nothing_to_do" and result.corrections_pending == 6
    assert Registry(retrain_env.settings.models_dir).versions() == ["v0001"]
    assert not (retrain_env.data_dir / "feedback").exists()


def test_admin_corrections_train_a_challenger_marked_and_scored(retrain_env: RetrainEnv):
    ids = [
        retrain_env.correct(ADMIN_ID, "blue_thing", "blue_thing", seed=s, is_admin=True)
        for s in range(200, 212)
    ]
    ids.append(retrain_env.correct(ADMIN_ID, "not_equipment", "red_thing", seed=300, is_admin=True))
    events: list[tuple[str, str]] = []
    result = run_pipeline(retrain_env.settings, lambda stage, msg: events.append((stage, msg)))
    assert result.status in ("promoted", "kept") and result.version == "v0002"
    assert [stage for stage, _ in events][:2] == ["collect", "export"] and ("save", "saved v0002") in events
    registry = Registry(retrain_env.settings.models_dir)
    assert registry.champion() == ("v0002" if result.promoted else "v0001")
    # both scores on the same evaluation set are recorded in the version
    info = registry.read_json("v0002", "metrics.json")["retrain"]
    assert info["decision"]["champion"]["n"] == info["decision"]["challenger"]["n"] == result.eval_images
    assert info["champion_version"] == "v0001" and info["corrections_used"] == len(ids)
    # held-out feedback images evaluate, never train
    train_counts = registry.read_json("v0002", "metrics.json")["train_counts"]
    feedback = retrain_env.data_dir / "feedback" / "blue_thing"
    held = [p for p in feedback.iterdir() if retrain.is_holdout(p.stem, 20)]
    base_blue = len(list((retrain_env.world.dataset / "blue_thing").iterdir()))
    assert train_counts["blue_thing"] <= base_blue + 12 - len(held)
    assert info["eval_set"]["feedback_holdout"] == len(held)
    # every used correction names the version that first trained on it
    rows = _corrections(retrain_env)
    assert {c.id for c in rows if c.trained_in_version_id is not None} == set(ids)
    # a second run has nothing new to learn from
    again = run_pipeline(retrain_env.settings)
    assert again.status == "nothing_to_do"
    if result.promoted:
        with session_scope(retrain_env.factory) as s:
            assert [p.reason for p in s.scalars(select(ModelPromotion))] == ["retrain"]


def test_new_equipment_type_becomes_a_class_only_with_enough_images(retrain_env: RetrainEnv):
    for s in range(3):
        retrain_env.correct(ADMIN_ID, "yellow_thing", "red_thing", seed=400 + s, is_admin=True)
    first = run_pipeline(retrain_env.settings)
    assert first.status == "nothing_to_do" and "yellow_thing" in first.waiting_classes
    for s in range(3, 9):
        retrain_env.correct(ADMIN_ID, "yellow_thing", "red_thing", seed=400 + s, is_admin=True)
    second = run_pipeline(retrain_env.settings)
    assert second.version is not None and second.new_classes == ["yellow_thing"]
    assert "yellow_thing" in Registry(retrain_env.settings.models_dir).labels(second.version)
    assert "yellow_thing" not in Registry(retrain_env.settings.models_dir).labels("v0001")


def test_crash_while_writing_leaves_champion_and_registry_intact(retrain_env: RetrainEnv, monkeypatch):
    for s in range(6):
        retrain_env.correct(ADMIN_ID, "green_thing", "green_thing", seed=500 + s, is_admin=True)
    import classifier.train

    def crash(*args, **kwargs):
        raise OSError("disk full while writing the confusion matrix")

    monkeypatch.setattr(classifier.train, "plot_confusion", crash)
    with pytest.raises(OSError, match="disk full"):
        run_pipeline(retrain_env.settings)
    registry = Registry(retrain_env.settings.models_dir)
    assert registry.versions() == ["v0001"] and registry.champion() == "v0001"
    assert not [p for p in registry.models_dir.iterdir() if p.name.startswith(".incoming")]
    assert all(c.trained_in_version_id is None for c in _corrections(retrain_env))
    # a folder left half-written by a killed process is ignored; the next run succeeds
    (registry.models_dir / ".incoming-killed").mkdir()
    (registry.models_dir / ".incoming-killed" / "labels.json").write_text("[")
    monkeypatch.undo()
    result = run_pipeline(retrain_env.settings)
    assert result.version == "v0002" and registry.versions() == ["v0001", "v0002"]


def test_lock_refuses_a_second_run(retrain_env: RetrainEnv, capsys):
    with retrain_lock(retrain_env.settings.models_dir):
        with pytest.raises(RetrainBusyError):
            run_pipeline(retrain_env.settings)
        assert retrain.main(["--progress-json", "--models-dir", str(retrain_env.settings.models_dir)]) == 75
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "busy"


def test_cli_progress_json_protocol(retrain_env: RetrainEnv, monkeypatch, capsys):
    s = retrain_env.settings
    for key, value in {
        "DATABASE_URL": s.resolved_database_url(),
        "ADMIN_USER_IDS": str(ADMIN_ID),
        "TRAINING_DATA_DIR": str(s.training_data_dir),
        "NEW_CLASS_MIN_IMAGES": "4",
    }.items():
        monkeypatch.setenv(key, value)
    retrain_env.correct(ADMIN_ID, "red_thing", "red_thing", seed=600, is_admin=True)
    argv = ["--progress-json", "--models-dir", str(s.models_dir), "--data-dir", str(s.data_dir)]
    assert retrain.main([*argv, "--weights", str(s.vgg16_weights)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines[0]["event"] == "progress" and lines[-1]["event"] == "result"
    assert lines[-1]["version"] == "v0002" and lines[-1]["corrections_used"] == 1
    assert sys.executable  # the bot runs exactly this module with this interpreter


def _white_background_shots(folder: Path, colour: tuple[int, int, int], n: int) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", (96, 96), (255, 255, 255))
        ImageDraw.Draw(image).rectangle((20 + i, 25, 70, 75 - i), fill=colour)
        image.save(folder / f"shot_{i}.png")


def test_thin_classes_are_topped_up_with_synthetic_images(retrain_env: RetrainEnv, tmp_path: Path):
    from PIL import Image

    fg, bg = tmp_path / "fg", tmp_path / "bg"
    _white_background_shots(fg / "blue_thing", (30, 40, 220), 5)
    bg.mkdir()
    for i in range(3):
        Image.new("RGB", (160, 120), (90 + 20 * i, 90, 80)).save(bg / f"gym_{i}.jpg")
    settings = retrain_env.settings.model_copy(
        update={"synth_topup": True, "synth_foregrounds_dir": fg, "synth_backgrounds_dir": bg}
    )
    retrain_env.correct(ADMIN_ID, "blue_thing", "blue_thing", seed=700, is_admin=True)
    events: list[str] = []
    result = run_pipeline(settings, lambda stage, msg: events.append(msg))
    synthetic = sorted((settings.data_dir / "synthetic" / "blue_thing" / "blue_thing").glob("*.jpg"))
    # synth's measured rule for a thin class: eight synthetic images per real (or feedback) training photo
    (message,) = [e for e in events if e.startswith("synthetic top-up") and "blue_thing" in e]
    n_real = int(message.rsplit("(", 1)[1].split()[0])
    assert len(synthetic) == 8 * n_real and f"{len(synthetic)} images" in message
    metrics = Registry(settings.models_dir).read_json(str(result.version), "metrics.json")
    assert metrics["train_counts"]["blue_thing"] == n_real + len(synthetic)


@pytest.mark.parametrize("kill_after", ["export", "train"])
def test_killed_process_leaves_a_readable_registry_and_the_next_run_recovers(
    retrain_env: RetrainEnv, kill_after: str
):
    """SIGKILL the real `python -m classifier.retrain` process right after a stage reports progress."""
    import os
    import signal
    import subprocess

    for s in range(6):
        retrain_env.correct(ADMIN_ID, "green_thing", "green_thing", seed=800 + s, is_admin=True)
    st = retrain_env.settings
    env = {
        **os.environ,
        "DATABASE_URL": st.resolved_database_url(),
        "ADMIN_USER_IDS": str(ADMIN_ID),
        "TRAINING_DATA_DIR": str(st.training_data_dir),
        "MODELS_DIR": str(st.models_dir),
        "DATA_DIR": str(st.data_dir),
        "VGG16_WEIGHTS": str(st.vgg16_weights),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "classifier.retrain", "--progress-json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("stage") == kill_after:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    registry = Registry(st.models_dir)
    # whatever the exact moment: the registry lists only complete versions and its champion is one of them
    assert registry.champion() in registry.versions() and registry.versions()[0] == "v0001"
    for version in registry.versions():
        assert registry.labels(version) and registry.read_json(version, "metrics.json")
    if kill_after == "export":  # killed long before anything is written (training takes seconds)
        assert registry.champion() == "v0001" and registry.versions() == ["v0001"]
        assert all(c.trained_in_version_id is None for c in _corrections(retrain_env))
    # the lock died with the process; the next run finishes the job without exporting anything twice
    result = run_pipeline(st)
    marked = [c for c in _corrections(retrain_env) if c.trained_in_version_id is not None]
    assert len(marked) == 6 and registry.versions()[-1] in ("v0002", "v0003")
    assert result.exported == 0  # the killed run had already exported them; nothing is written twice


@pytest.mark.parametrize("moment", ["save_version", "convert_int8"])
def test_a_champion_promoted_by_hand_during_the_run_is_not_overwritten(
    retrain_env: RetrainEnv, monkeypatch, moment: str
):
    """`python -m classifier promote` does not take the retrain lock; the pipeline re-checks the pointer
    after its last long step (writing the version, then preparing the int8 backbone)."""
    import classifier.train
    from classifier import quantize

    st = retrain_env.settings.model_copy(
        update={"promotion_overall_margin": 1.0, "promotion_per_class_margin": 1.0}  # would always promote
    )
    registry = Registry(st.models_dir)

    def copy_champion(folder: Path) -> None:
        shutil.copytree(registry.version_dir("v0001"), folder, dirs_exist_ok=True)

    registry.create_version(copy_champion)
    assert registry.versions() == ["v0001", "v0002"]
    module = classifier.train if moment == "save_version" else quantize
    real_step = getattr(module, moment)

    def step_while_someone_promotes(*args, **kwargs):
        registry.promote("v0002", reason="manual promotion")  # a maintainer, mid-run
        return real_step(*args, **kwargs)

    monkeypatch.setattr(module, moment, step_while_someone_promotes)
    retrain_env.correct(ADMIN_ID, "red_thing", "red_thing", seed=990, is_admin=True)
    result = run_pipeline(st)
    assert result.status == "kept" and result.version == "v0003"
    assert registry.champion() == "v0002"
    assert any("champion changed from v0001 to v0002" in r for r in result.reasons)


def _forbid_int8_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on an int8 model must come from the cache: converting raises Int8UnavailableError."""
    from classifier import quantize

    def no_conversion(*args: object, **kwargs: object) -> bytes:
        raise quantize.Int8UnavailableError("converted again")

    monkeypatch.setattr(quantize, "convert_int8", no_conversion)


def _int8_service(settings: RetrainSettings) -> ClassifierService:
    """The bot's classifier service in int8, calibrated on TRAINING_DATA_DIR, with retraining's cache."""
    from classifier.serving import ClassifierService

    return ClassifierService(
        settings.models_dir,
        settings.vgg16_weights,
        precision="int8",
        training_data_dir=settings.training_data_dir,
        cache_dir=settings.data_dir / "cache",
    )


async def test_int8_serving_model_is_prepared_before_promotion(retrain_env: RetrainEnv, monkeypatch):
    from classifier.serving import ClassifierService

    settings = retrain_env.settings
    version_dir = Registry(settings.models_dir).version_dir("v0001")
    events: list[tuple[str, str]] = []

    def report(stage: str, msg: str) -> None:
        events.append((stage, msg))

    assert retrain.prepare_int8_serving(settings, version_dir, None, report) is True
    assert len(list((settings.data_dir / "cache" / "int8").glob("*.tflite"))) == 1
    assert events[-1][1].startswith("int8 serving model (int8, calibrated on ")
    no_data = settings.model_copy(update={"training_data_dir": None})  # the bot then serves dynamic range
    assert retrain.prepare_int8_serving(no_data, version_dir, None, report) is True
    assert events[-1][1].startswith("int8 serving model (int8, dynamic range) ready")
    assert len(list((settings.data_dir / "cache" / "int8").glob("*.tflite"))) == 2

    # The bot then loads it from the cache: converting again would fail here.
    _forbid_int8_conversion(monkeypatch)
    service = _int8_service(settings)
    await service.start()
    assert service._predictor is not None
    assert service._predictor.precision_detail.startswith("int8, calibrated on ")
    await service.close()
    service = ClassifierService(
        settings.models_dir, settings.vgg16_weights, precision="int8", cache_dir=settings.data_dir / "cache"
    )
    await service.start()
    assert service._predictor is not None
    assert service._predictor.precision_detail == "int8, dynamic range"
    await service.close()

    float_only = settings.model_copy(update={"classifier_precision": "float32"})
    assert retrain.prepare_int8_serving(float_only, version_dir, None, report) is False
    junk = retrain_env.data_dir / "junk"
    (junk / "a").mkdir(parents=True)
    (junk / "a" / "x.png").write_bytes(b"not an image")
    broken = settings.model_copy(update={"training_data_dir": junk})
    assert retrain.prepare_int8_serving(broken, version_dir, None, report) is False  # reported, not raised
    assert "int8 serving model not prepared" in events[-1][1]


async def test_a_finetuned_champion_passes_its_block5_to_the_challenger(retrain_env: RetrainEnv, monkeypatch):
    from classifier.__main__ import main
    from classifier.predictor import read_version_config

    # any challenger is promoted here: this test is about what it inherits and how it is served
    lenient = {"promotion_overall_margin": 1.0, "promotion_per_class_margin": 1.0}
    settings, world = retrain_env.settings.model_copy(update=lenient), retrain_env.world
    argv = ["--models-dir", str(settings.models_dir), "--weights", str(world.weights)]
    argv += ["--data-dir", str(settings.data_dir), "-q", "train", "--data", str(world.dataset)]
    argv += ["--input-size", "32", "--epochs", "15", "--hidden", "16", "--learning-rate", "0.01"]
    argv += ["--views", "orig", "--tta", "orig", "--ensemble", "1", "--thin-views", ""]
    tune = ["--finetune-block5", "--finetune-epochs", "2", "--finetune-lr", "1e-3"]  # block 5 really moves
    assert main([*argv, *tune, "--promote"]) == 0
    registry = Registry(settings.models_dir)
    assert registry.champion() == "v0002"
    champion_block5 = read_version_config(registry.version_dir("v0002"))["block5"]

    for seed in range(400, 410):
        retrain_env.correct(ADMIN_ID, "blue_thing", "blue_thing", seed=seed, is_admin=True)
    events: list[tuple[str, str]] = []
    result = run_pipeline(settings, lambda stage, msg: events.append((stage, msg)), force=True)
    assert result.version == "v0003"
    cfg = read_version_config(registry.version_dir("v0003"))
    assert cfg["block5"]["sha256"] == champion_block5["sha256"]
    assert cfg["backbone"] == read_version_config(registry.version_dir("v0002"))["backbone"]
    assert (registry.version_dir("v0003") / "block5.npz").is_file()
    assert result.promoted, result.reasons
    assert any(msg.startswith("int8 serving model (int8, calibrated on ") for _, msg in events)

    # The bot reads the fine-tuned trunk's int8 model that retraining prepared: converting would fail here.
    _forbid_int8_conversion(monkeypatch)
    service = _int8_service(settings)
    await service.start()
    assert service.model_version == "v0003" and service.precision == "int8"
    await service.close()
