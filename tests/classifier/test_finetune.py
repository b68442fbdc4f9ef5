"""Block-5 fine-tuning on cached block-4 features (tiny random VGG16 at 32x32; weights=None)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classifier.dataset import LabelledImage
from classifier.finetune import (
    BLOCK5_CONVS,
    Block5FineTune,
    apply_block5,
    block4_features,
    build_block5,
    finetune_block5,
    trunk_to_block4,
)
from classifier.model import load_backbone
from classifier.preprocess import InputSpec, preprocess
from classifier.train import TrainConfig
from tests.classifier.helpers import TINY_LABELS, make_folder_dataset


def _items(root: Path) -> list[LabelledImage]:
    ds = make_folder_dataset(root, per_class=4, ood=0)
    return [LabelledImage(p, p.parent.name) for p in sorted(ds.glob("*_thing/*"))]


def test_block4_trunk_then_block5_equals_the_whole_backbone(tmp_path: Path) -> None:
    bb = load_backbone(None, 32)
    trunk = trunk_to_block4(bb)
    assert trunk.identity.cache_key != bb.identity.cache_key  # never mixed up in the cache
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
