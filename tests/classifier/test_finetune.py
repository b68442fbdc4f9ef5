"""Block-5 fine-tuning on cached block-4 features (tiny random VGG16 at 32x32; weights=None)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from classifier.dataset import LabelledImage
from classifier.finetune import (
    BLOCK5_CONVS,
    BLOCK5_FILE,
    FINETUNED_MARK,
    Block5FineTune,
    Block5Weights,
    apply_block5,
    block4_features,
    build_block5,
    finetune_backbone,
    finetune_block5,
    trunk_to_block4,
    with_block5,
)
from classifier.model import Backbone, HeadSpec, build_head, check_backbone, load_backbone
from classifier.predictor import Predictor, load_npz_weights, read_version_config
from classifier.preprocess import InputSpec, preprocess
from classifier.registry import Registry
from classifier.train import TrainConfig, save_version
from classifier.types import BackboneMismatchError
from tests.classifier.conftest import TINY_TRAIN_ARGS, TinyEnv
from tests.classifier.helpers import TINY_LABELS, make_folder_dataset


def _items(root: Path) -> list[LabelledImage]:
    ds = make_folder_dataset(root, per_class=4, ood=0)
    return [LabelledImage(p, p.parent.name) for p in sorted(ds.glob("*_thing/*"))]


def test_block4_trunk_then_block5_equals_the_whole_backbone(tmp_path: Path) -> None:
    bb = load_backbone(None, 32)
    trunk = trunk_to_block4(bb)
    assert trunk.identity.cache_key != bb.identity.cache_key  # never mixed up in the cache
    assert trunk.identity.cache_key == f"vgg16-b4{bb.identity.tensor_sha256[:14]}-32"  # 56 bits of the hash
    assert trunk.feature_shape == (2, 2, 512)
    items = _items(tmp_path / "ds")
    x = np.stack([preprocess(it.path.read_bytes(), InputSpec(32, "vgg16")) for it in items])
    f4, idx = block4_features(items, trunk, tmp_path / "cache", "orig", progress=False)
    assert idx == list(range(len(items))) and f4.dtype == np.float16
    assert len(list((tmp_path / "cache" / trunk.identity.cache_key / "orig").rglob("*.npy"))) == len(items)
    block5 = build_block5(bb)
    np.testing.assert_allclose(
        apply_block5(block5, trunk.features(x)).astype(np.float32), bb.features(x), rtol=1e-2, atol=1e-2
    )


def test_finetune_changes_block5_and_learns(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(1)  # the tiny trunk of tests/classifier/helpers.tiny_weights_file
    bb = load_backbone(None, 32)
    trunk = trunk_to_block4(bb)
    items = _items(tmp_path / "ds")
    labels = list(TINY_LABELS)
    y = np.array([labels.index(it.label) for it in items])
    x, _ = block4_features(items, trunk, None, "orig", progress=False)
    xf, _ = block4_features(items, trunk, None, "flip", progress=False)
    config = TrainConfig(epochs=20, learning_rate=0.01)
    block5, head = finetune_block5(
        bb, x, y, xf, len(labels), config, Block5FineTune(epochs=2, learning_rate=1e-4), progress=False
    )
    before = bb.model.get_layer(BLOCK5_CONVS[-1]).get_weights()[0]
    after = block5.get_layer(BLOCK5_CONVS[-1]).get_weights()[0]
    assert before.shape == after.shape and not np.allclose(before, after)
    probs = np.asarray(head.predict(apply_block5(block5, x).astype(np.float32), verbose=0))
    assert probs.shape == (len(items), len(labels))
    assert (probs.argmax(1) == y).mean() >= 0.75
    # the backbone itself is untouched (serving and the bottleneck cache rely on it)
    np.testing.assert_array_equal(bb.model.get_layer(BLOCK5_CONVS[-1]).get_weights()[0], before)


def _tuned_arrays(bb: Backbone, scale: float = 1.5) -> list[np.ndarray]:
    return [t * scale for name in BLOCK5_CONVS for t in bb.model.get_layer(name).get_weights()]


def test_block5_weights_round_trip_in_float16_and_a_damaged_file_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 3, 4, 4)) if i % 2 == 0 else rng.normal(size=4) for i in range(6)]
    weights = Block5Weights.from_arrays(arrays, {"epochs": 1})
    assert all(t.dtype == np.float32 for t in weights.tensors)
    for t in weights.tensors:  # rounded to float16 once, so storing them as float16 loses nothing
        np.testing.assert_array_equal(t.astype(np.float16).astype(np.float32), t)
    weights.save(tmp_path)
    entry = weights.to_json()
    assert entry["file"] == BLOCK5_FILE and entry["dtype"] == "float16"
    with np.load(tmp_path / BLOCK5_FILE) as npz:
        assert {npz[n].dtype for n in npz.files} == {np.dtype(np.float16)}
    loaded = Block5Weights.load(tmp_path, entry)
    assert loaded.sha256 == weights.sha256 and loaded.recipe == {"epochs": 1}
    for a, b in zip(loaded.tensors, weights.tensors, strict=True):
        np.testing.assert_array_equal(a, b)

    damaged = [t.copy() for t in weights.tensors]
    damaged[0].flat[0] += 1.0
    stored: dict[str, Any] = {f"w{i:03d}": t.astype(np.float16) for i, t in enumerate(damaged)}
    np.savez(tmp_path / BLOCK5_FILE, **stored)
    with pytest.raises(ValueError, match=r"does not match head\.json"):
        Block5Weights.load(tmp_path, entry)
    with pytest.raises(ValueError, match="5 block-5 arrays"):
        Block5Weights.from_arrays(arrays[:5], {})


def test_with_block5_is_a_copy_with_its_own_cache_key(tmp_path: Path) -> None:
    bb = load_backbone(None, 32)
    before = [w.copy() for w in bb.model.get_weights()]
    weights = Block5Weights.from_arrays(_tuned_arrays(bb), {})
    tuned = with_block5(bb, weights)
    # the shared trunk is untouched; the copy has its own cache key but checks as the pretrained weights
    for a, b in zip(bb.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert tuned.model is not bb.model and tuned.block5 is weights
    assert tuned.identity.cache_key != bb.identity.cache_key
    assert tuned.pretrained_identity == bb.identity and bb.pretrained_identity == bb.identity
    assert check_backbone(bb.identity.to_json(), tuned.pretrained_identity) == "tensor_sha256"
    # the fine-tuned trunk's own identity never passes for the pretrained one
    assert tuned.identity.file_sha256 is None and FINETUNED_MARK in tuned.identity.source
    with pytest.raises(BackboneMismatchError):
        check_backbone(bb.identity.to_json(), tuned.identity)
    with pytest.raises(ValueError, match="already fine-tuned"):
        finetune_backbone([], [], list(TINY_LABELS), tuned, None, TrainConfig(), Block5FineTune())
    with pytest.raises(ValueError, match="pretrained identity"):  # a version must record the ImageNet trunk
        save_version(Registry(tmp_path / "models"), cast(Any, None), tuned.identity)
    # the bot and retraining derive the same key from the same weights
    assert with_block5(bb, weights).identity == tuned.identity
    assert with_block5(tuned, weights) is tuned
    with pytest.raises(ValueError, match="other fine-tuned"):
        with_block5(tuned, Block5Weights.from_arrays(_tuned_arrays(bb, 2.0), {}))

    items = _items(tmp_path / "ds")
    x = np.stack([preprocess(it.path.read_bytes(), InputSpec(32, "vgg16")) for it in items])
    expected = apply_block5(build_block5(bb, weights.tensors), trunk_to_block4(bb).features(x))
    np.testing.assert_allclose(tuned.features(x), expected.astype(np.float32), rtol=1e-2, atol=1e-2)
    assert not np.allclose(tuned.features(x), bb.features(x), atol=1e-3)


def _train_finetuned(tiny_env: TinyEnv, models: Path, data_dir: Path, *extra: str) -> int:
    from classifier.__main__ import main

    return main(
        [
            "--models-dir",
            str(models),
            "--weights",
            str(tiny_env.weights),
            "--data-dir",
            str(data_dir),
            "-q",
            "train",
            "--data",
            str(tiny_env.dataset),
            *TINY_TRAIN_ARGS,
            "--ensemble",
            "1",
            "--thin-views",
            "flip",
            *extra,
        ]
    )


def test_train_finetune_block5_ships_a_version_that_serves_its_block5(
    tiny_env: TinyEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from classifier.__main__ import main

    models, data_dir = tmp_path / "models", tmp_path / "data"
    through: dict[str, int] = {}  # images through each trunk (by whether its block 5 is fine-tuned)
    features = Backbone.features

    def counting(self: Backbone, x: np.ndarray) -> np.ndarray:
        key = "tuned" if self.block5 is not None else "pretrained"
        through[key] = through.get(key, 0) + len(x)
        return features(self, x)

    monkeypatch.setattr(Backbone, "features", counting)
    args = ("--finetune-block5", "--finetune-epochs", "2", "--finetune-lr", "1e-3", "--promote")
    assert _train_finetuned(tiny_env, models, data_dir, *args) == 0
    monkeypatch.undo()
    version_dir = Registry(models).version_dir("v0001")
    cfg = read_version_config(version_dir)
    base = load_backbone(str(tiny_env.weights), 32)
    # the version records the pretrained trunk (which loading checks) and its own block 5
    assert cfg["backbone"]["tensor_sha256"] == base.identity.tensor_sha256
    assert cfg["block5"]["recipe"]["epochs"] == 2 and cfg["block5"]["recipe"]["learning_rate"] == 1e-3
    assert (version_dir / BLOCK5_FILE).stat().st_size < 20_000_000
    assert "## Fine-tuned block 5" in (version_dir / "model_card.md").read_text()
    block5 = Block5Weights.load(version_dir, cfg["block5"])
    ft_block = build_block5(base)
    assert not np.allclose(block5.tensors[4], ft_block.get_layer(BLOCK5_CONVS[-1]).get_weights()[0])
    # the head trained on features written into the cache from the block-4 features: only the validation
    # and held-out OOD photos (both TTA views) went through the whole fine-tuned trunk
    tuned = with_block5(base, block5)
    metrics = json.loads((version_dir / "metrics.json").read_text())
    evaluated = sum(metrics["val_counts"].values()) + metrics["decision"]["ood_n"]
    assert through["tuned"] == 2 * evaluated
    primed = list((data_dir / "cache" / tuned.identity.cache_key / "orig").rglob("*.npy"))
    assert len(primed) == sum(metrics["train_counts"].values()) + evaluated

    before = [w.copy() for w in base.model.get_weights()]
    predictor = Predictor.load(version_dir, str(tiny_env.weights), backbone=base)
    assert predictor.backbone is not None and predictor.backbone.block5 is not None
    assert predictor.backbone.block5.sha256 == cfg["block5"]["sha256"]
    for a, b in zip(base.model.get_weights(), before, strict=True):  # the shared trunk is not modified
        np.testing.assert_array_equal(a, b)
    photo = sorted(tiny_env.dataset.glob("red_thing/*"))[0]
    x = preprocess(photo.read_bytes(), predictor.spec)
    head = build_head(HeadSpec.from_json(cfg["head"]), base.feature_shape)
    head.set_weights(load_npz_weights(version_dir / "head.npz"))
    served = np.asarray(predictor._forward(x[None]))
    np.testing.assert_allclose(served, np.asarray(head(tuned.features(x[None])))[0], atol=1e-4)
    assert not np.allclose(served, np.asarray(head(base.features(x[None])))[0], atol=1e-4)

    argv = ["--models-dir", str(models), "--weights", str(tiny_env.weights), "-q", "predict", "--json"]
    capsys.readouterr()
    assert main([*argv, str(photo)]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["model_version"] == "v0001" and line["label"] in TINY_LABELS


def test_a_finetuned_version_with_a_damaged_block5_file_does_not_load(
    tiny_env: TinyEnv, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    args = ("--finetune-block5", "--finetune-epochs", "1")
    assert _train_finetuned(tiny_env, models, tmp_path / "data", *args) == 0
    version_dir = Registry(models).version_dir("v0001")
    with np.load(version_dir / BLOCK5_FILE) as npz:
        arrays = {n: npz[n].copy() for n in npz.files}
    arrays["w005"][0] += 1
    (version_dir / BLOCK5_FILE).chmod(0o644)
    np.savez(version_dir / BLOCK5_FILE, **arrays)
    with pytest.raises(ValueError, match=r"does not match head\.json"):
        Predictor.load(version_dir, str(tiny_env.weights))


def test_finetune_block5_is_for_vgg16_versions(tiny_env: TinyEnv, tmp_path: Path) -> None:
    args = ("--model", "scratch", "--finetune-block5")
    assert _train_finetuned(tiny_env, tmp_path / "models", tmp_path / "data", *args) == 2


def test_train_refuses_before_training(
    tiny_env: TinyEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # fine-tuning options without --finetune-block5 would be silently ignored
    args = ("--finetune-epochs", "2")
    assert _train_finetuned(tiny_env, tmp_path / "models", tmp_path / "data", *args) == 2
    assert "need --finetune-block5" in capsys.readouterr().err
    # no validation photo: said before half an hour of fine-tuning, not after
    no_val = ("--finetune-block5", "--val-fraction", "0")
    assert _train_finetuned(tiny_env, tmp_path / "models", tmp_path / "data", *no_val) == 2
    assert "no validation images" in capsys.readouterr().err
    assert not (tmp_path / "data" / "cache").exists()  # nothing ran through the backbone
