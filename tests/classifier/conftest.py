"""Session fixtures for classifier tests: a tiny data set, tiny VGG16 weights files, a trained registry."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.classifier.helpers import make_folder_dataset, tiny_weights_file

#: `train` options of the tiny models: 32x32 input, a 16-unit head, 10 epochs at a high learning rate.
TINY_TRAIN_ARGS = ("--input-size", "32", "--epochs", "10", "--hidden", "16", "--learning-rate", "0.01")


@dataclass(frozen=True)
class TinyEnv:
    root: Path
    dataset: Path
    weights: Path
    other_weights: Path
    models: Path
    data_dir: Path

    def argv(self, *args: str) -> list[str]:
        return [
            "--models-dir",
            str(self.models),
            "--weights",
            str(self.weights),
            "--data-dir",
            str(self.data_dir),
            "-q",
            *args,
        ]


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyEnv]:
    """A trained tiny champion (weights=None VGG16 at 32x32 saved to a file, 3 colour classes + __other__)."""
    from classifier.__main__ import main

    root = tmp_path_factory.mktemp("classifier")
    env = TinyEnv(
        root=root,
        dataset=make_folder_dataset(root / "ds"),
        weights=tiny_weights_file(root / "tiny.weights.h5"),
        other_weights=root / "other.weights.h5",
        models=root / "models",
        data_dir=root / "data",
    )
    import keras

    keras.utils.set_random_seed(2)
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(
        env.other_weights
    )
    status = main(
        env.argv(
            "train",
            "--data",
            str(env.dataset),
            *TINY_TRAIN_ARGS,
            "--ensemble",
            "2",
            "--thin-views",
            "flip",
            "--promote",
        )
    )
    assert status == 0
    yield env
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tiny_models(tiny_env: TinyEnv, tmp_path: Path) -> Path:
    """A private copy of the tiny registry (tests may add versions and move the pointer)."""
    dst = tmp_path / "models"
    shutil.copytree(tiny_env.models, dst)
    return dst
