"""Settings the classifier reads from the environment (and an optional ``.env``)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class ClassifierSettings(BaseSettings):
    """MODELS_DIR: model registry root; DATA_DIR: caches and feedback images; VGG16_WEIGHTS: ``imagenet``
    (Keras downloads and caches the ImageNet weights) or a path to a ``vgg16_notop.weights.h5`` file."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    models_dir: Path = Path("models")
    data_dir: Path = Path("data")
    vgg16_weights: str = "imagenet"
