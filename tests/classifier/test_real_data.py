"""The shipped champion under models/ classifies real validation photos with the shared VGG16 weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from classifier.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
#: One validation photo per class: the first ``val`` row of each class in MANIFEST.tsv.
CLASSES = ("bench_press", "leg_press", "power_rack", "treadmill", "dumbbell", "smith_machine")


@pytest.mark.real_data
@pytest.mark.slow
def test_shipped_champion_classifies_real_photos(shared_data: Path, shared_weights: Path) -> None:
    from classifier.predictor import Predictor

    registry = Registry(ROOT / "models")
    champion = registry.champion()
    assert champion is not None, "models/ must ship a champion"
    predictor = Predictor.load(registry.version_dir(champion), str(shared_weights))
    assert len(predictor.labels) == 12
    picked: dict[str, Path] = {}
    with (shared_data / "MANIFEST.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["kind"] == "real" and row["suggested_split"] == "val" and row["class"] in CLASSES:
                picked.setdefault(row["class"], shared_data / row["path"])
    results = {label: predictor.classify_bytes(path.read_bytes()) for label, path in picked.items()}
    correct = [label for label, p in results.items() if p.label == label]
    assert len(correct) >= len(CLASSES) - 1, {k: (p.label, p.confidence) for k, p in results.items()}
    assert all(p.model_version == champion for p in results.values())
    # A clearly non-gym image (flat colour) must not be answered confidently.
    from PIL import Image

    from tests.classifier.helpers import encode

    blank = predictor.classify_bytes(encode(Image.new("RGB", (300, 300), (90, 160, 220))))
    assert blank.decision != "confident"


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["calibrated", "dynamic range"])
def test_champion_in_int8_agrees_with_float(
    shared_data: Path, shared_weights: Path, tmp_path: Path, recipe: str
) -> None:
    """The int8 serving model (calibrated on the training photos, or dynamic range without them) gives the
    float model's answers."""
    from classifier.dataset import load_base_dataset
    from classifier.predictor import Int8Source, Predictor
    from classifier.preprocess import preprocess
    from classifier.quantize import calibration_photos

    registry = Registry(ROOT / "models")
    champion = registry.champion()
    assert champion is not None
    version_dir = registry.version_dir(champion)
    photos = tuple(it.path for it in calibration_photos(shared_data)) if recipe == "calibrated" else ()
    int8 = Predictor.load(version_dir, str(shared_weights), int8=Int8Source(photos, tmp_path))
    assert int8.precision_detail.endswith("100 photos" if photos else "dynamic range")
    fp32 = Predictor.load(version_dir, str(shared_weights))
    _, val, _ = load_base_dataset(shared_data)
    sample = val[::8]  # ~58 photos over every class
    x = [preprocess(it.path.read_bytes(), fp32.spec) for it in sample]
    labels8 = [int8.labels[int(np.argmax(int8.probabilities(v)[: len(int8.labels)]))] for v in x]
    labels32 = [fp32.labels[int(np.argmax(fp32.probabilities(v)[: len(fp32.labels)]))] for v in x]
    agree = sum(a == b for a, b in zip(labels8, labels32, strict=True))
    assert agree >= len(sample) - 2, (agree, len(sample))
    right8 = sum(lab == it.label for lab, it in zip(labels8, sample, strict=True))
    right32 = sum(lab == it.label for lab, it in zip(labels32, sample, strict=True))
    assert right8 >= right32 - 1, (right8, right32)
