"""Fixtures shared by every test package. Fakes live in tests/fakes/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPOTTER_SHARED_DIR", ROOT.parent / "shared"))
SHARED_WEIGHTS = SHARED / "weights" / "vgg16_notop.weights.h5"
SHARED_DATA = SHARED / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test cleanly when it is absent (a user's fresh machine)."""
    if not (SHARED_DATA / "MANIFEST.tsv").is_file():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def shared_weights() -> Path:
    """../shared/weights/vgg16_notop.weights.h5, or skip cleanly when it is absent."""
    if not SHARED_WEIGHTS.is_file():
        pytest.skip("../shared/weights/vgg16_notop.weights.h5 is not present")
    return SHARED_WEIGHTS


@pytest.fixture(autouse=True)
def _forget_failed_int8_conversions() -> None:
    """Each test starts without the int8 conversion failures an earlier test left in this process."""
    from classifier.quantize import forget_failed_conversions

    forget_failed_conversions()
