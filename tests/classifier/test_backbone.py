"""Backbone identity: loading a version with other backbone weights fails clearly; equal values pass."""

from __future__ import annotations

import pytest

from classifier.model import check_backbone, load_backbone
from classifier.predictor import Predictor
from classifier.registry import Registry
from classifier.types import BackboneMismatchError, BackboneUnavailableError


def test_other_weights_raise_backbone_mismatch(tiny_env) -> None:
    reg = Registry(tiny_env.models)
    with pytest.raises(BackboneMismatchError, match="VGG16_WEIGHTS"):
        Predictor.load(reg.version_dir("v0001"), str(tiny_env.other_weights))


def test_same_values_in_another_file_pass_by_tensor_hash_and_probe(tiny_env, tmp_path) -> None:
    reg = Registry(tiny_env.models)
    expected = reg.read_json("v0001", "metrics.json")["backbone"]
    same = load_backbone(str(tiny_env.weights), 32)
    assert check_backbone(expected, same.identity) == "file_sha256"
    # The same values saved again (another file, other bytes): like the imagenet file vs the shared file.
    copy = tmp_path / "copy.weights.h5"
    same.model.save_weights(copy)
    again = load_backbone(str(copy), 32)
    assert check_backbone(expected, again.identity) in ("file_sha256", "tensor_sha256")
    # Only the probe fingerprint known (e.g. tiny float round-off elsewhere): the probe decides.
    probe_only = {**expected, "file_sha256": "0" * 64, "tensor_sha256": "f" * 64}
    assert check_backbone(probe_only, again.identity) == "probe"
    other = load_backbone(str(tiny_env.other_weights), 32)
    with pytest.raises(BackboneMismatchError):
        check_backbone(probe_only, other.identity)


def test_missing_weights_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(BackboneUnavailableError, match="VGG16_WEIGHTS"):
        load_backbone(str(tmp_path / "nope.h5"), 32)


def test_failed_imagenet_download_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, Keras' get_file raises a bare Exception; it becomes one clear BackboneUnavailableError."""
    import keras

    def offline(**kwargs: object) -> None:
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(BackboneUnavailableError, match="set VGG16_WEIGHTS to a local"):
        load_backbone("imagenet", 32)
