"""Settings the classifier reads from the environment (and an optional ``.env``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic_settings import BaseSettings, SettingsConfigDict

#: What a loaded model computes in (`classifier.predictor.Predictor.precision`, the CLI's ``--precision``).
Precision = Literal["float32", "bfloat16", "int8"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: CLASSIFIER_PRECISION values (`classifier.serving.resolve_precision`): a precision, or ``auto``.
PrecisionSetting = Literal["auto", "int8", "bfloat16", "float32"]


class ClassifierSettings(BaseSettings):
    """MODELS_DIR: model registry root; DATA_DIR: caches and feedback images; VGG16_WEIGHTS: ``imagenet``
    (Keras downloads and caches the ImageNet weights) or a path to a ``vgg16_notop.weights.h5`` file.
    TRAINING_DATA_DIR: the base data set the champion was trained on (retraining; its photos also calibrate
    the int8 serving model). CLASSIFIER_PRECISION: ``auto`` (int8: calibrated on TRAINING_DATA_DIR's photos,
    else dynamic range; if int8 cannot be built, bfloat16 on CPUs with AVX512_BF16, else float32), ``int8``,
    ``bfloat16`` or ``float32``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    models_dir: Path = Path("models")
    data_dir: Path = Path("data")
    vgg16_weights: str = "imagenet"
    training_data_dir: Path | None = None
    classifier_precision: PrecisionSetting = "auto"
