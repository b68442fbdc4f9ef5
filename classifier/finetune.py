"""Block-5 fine-tuning on cached block-4 features.

VGG16's last conv block (``block5_conv1..3`` + ``block5_pool``, 7,079,424 parameters, ~2.8 of the 15.5
GFLOPs per 224 px image) is trained together with the dense head at a low learning rate, after the head
has been fitted on the frozen features: the recipe of Chollet, "Building powerful image classification
models using very little data" (Keras blog, 2016) and of the Keras transfer-learning guide
(https://keras.io/guides/transfer_learning/, "fine-tuning ... with a very low learning rate").

Blocks 1-4 stay frozen, so their output (``block4_pool``: (S/16, S/16, 512), 14x14x512 at 224 px) is computed
once per image and view and cached like the bottleneck features (`classifier.dataset`), under a cache key of
its own. An epoch then costs only block 5's forward and backward pass.

* `trunk_to_block4(backbone)` -> `Backbone` whose features are ``block4_pool`` outputs.
* `block4_features(items, trunk, cache_dir, view)` -> (float16 (N_ok, 14, 14, 512), readable indices).
* `build_block5(backbone)` -> a Keras model (14, 14, 512) -> (7, 7, 512) initialised from the backbone's
  block-5 weights; `apply_block5` runs it in batches.
* `finetune_block5(...)` -> (block5, head): the fine-tuned block and the head trained with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.dataset import LabelledImage, extract_bottleneck_features
from classifier.model import Backbone, HeadSpec

if TYPE_CHECKING:
    import keras

    from classifier.train import TrainConfig

log = logging.getLogger(__name__)

#: The fine-tuned layers, in order (names as in ``keras.applications.VGG16``).
BLOCK5_CONVS = ("block5_conv1", "block5_conv2", "block5_conv3")


@dataclass(frozen=True)
class Block5FineTune:
    """Fine-tuning hyper-parameters: epochs over the training photos (each epoch sees every photo once,
    as its original or mirrored view at random), Adam learning rate, batch size, seed."""

    epochs: int = 4
    learning_rate: float = 1e-5
    batch_size: int = 32
    seed: int = 0


def trunk_to_block4(backbone: Backbone) -> Backbone:
    """The frozen trunk up to ``block4_pool`` as a `Backbone` (its cache key differs from the full one's)."""
    import keras

    model = keras.Model(backbone.model.input, backbone.model.get_layer("block4_pool").output)
    identity = replace(backbone.identity, tensor_sha256="block4pool-" + backbone.identity.tensor_sha256)
    return Backbone(model=model, identity=identity)


def block4_features(
    items: Sequence[LabelledImage], trunk: Backbone, cache_dir: Path | None, view: str, progress: bool = True
) -> tuple[np.ndarray, list[int]]:
    """Cached block-4 features of ``items`` for one view: float16 (N_ok, S/16, S/16, 512), their indices."""
    r = extract_bottleneck_features([it.path for it in items], trunk, cache_dir, view, progress=progress)
    return r.features, r.index


def build_block5(backbone: Backbone, weights: Sequence[np.ndarray] | None = None) -> keras.Model:
    """Block 5 as its own model: float32 (N, h, w, 512) block-4 features -> (N, h/2, w/2, 512) bottleneck
    features. Initialised from ``backbone``'s block-5 weights, or from ``weights`` (kernel, bias per conv)."""
    import keras
    from keras import layers

    h, w = (int(d) for d in backbone.model.get_layer("block4_pool").output.shape[1:3])
    inp = keras.Input(shape=(h, w, 512), name="block4")
    x = inp
    convs = []
    for name in BLOCK5_CONVS:
        conv = layers.Conv2D(512, 3, padding="same", activation="relu", name=name)
        x = conv(x)
        convs.append(conv)
    out = layers.MaxPooling2D(2, name="block5_pool")(x)
    model = keras.Model(inp, out, name="block5")
    src = (
        [t for name in BLOCK5_CONVS for t in backbone.model.get_layer(name).get_weights()]
        if weights is None
        else list(weights)
    )
    for i, conv in enumerate(convs):
        conv.set_weights([np.asarray(src[2 * i], np.float32), np.asarray(src[2 * i + 1], np.float32)])
    return model


def apply_block5(block5: keras.Model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run block 5 on block-4 features: (N, h, w, 512) -> float16 (N, h/2, w/2, 512)."""
    out = [
        np.asarray(block5(np.asarray(x[i : i + batch_size], np.float32), training=False), np.float16)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, *block5.output_shape[1:]), np.float16)


def finetune_block5(
    backbone: Backbone,
    x_orig: np.ndarray,
    y: np.ndarray,
    x_flip: np.ndarray,
    n_outputs: int,
    config: TrainConfig,
    ft: Block5FineTune,
    extra: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
) -> tuple[keras.Model, keras.Model]:
    """Fine-tune block 5 with a single dense head (``HeadSpec(hidden=512)``) on block-4 features.

    x_orig / x_flip: float16 (N, h, w, 512) block-4 features of the same N photos (original / mirrored),
    y: int labels (N,) in [0, n_outputs); extra: more (features, labels) seen every epoch (augmented views of
    thin classes). Step 1 trains the head on frozen ImageNet block-5 output with ``config`` (as
    `classifier.train.train_head`); step 2 trains block 5 + head jointly for ``ft.epochs`` epochs with
    Adam(``ft.learning_rate``) and the same class weights. Returns (block5, head).
    """
    import keras

    from classifier.train import class_weights, train_head

    x_extra, y_extra = extra if extra is not None else (x_orig[:0], y[:0])
    block5 = build_block5(backbone)
    spec = HeadSpec(hidden=512, dropout=config.head.dropout, n_outputs=n_outputs)
    feats = np.concatenate([apply_block5(block5, x_orig), apply_block5(block5, x_extra)])
    head = train_head(feats, np.concatenate([y, y_extra]), n_outputs, spec, config, progress)
    del feats

    keras.utils.set_random_seed(ft.seed)
    inp = keras.Input(shape=block5.input_shape[1:], name="block4")
    joint = keras.Model(inp, head(block5(inp)), name="block5_head")
    joint.compile(
        optimizer=keras.optimizers.Adam(ft.learning_rate), loss=keras.losses.SparseCategoricalCrossentropy()
    )
    weights = class_weights(np.concatenate([y, y_extra]), n_outputs, config.class_weight_power)
    rng = np.random.default_rng(ft.seed)
    callbacks: list[Any] = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="block5"))
    for epoch in range(ft.epochs):
        mirrored = rng.random(len(x_orig)) < 0.5
        x_epoch = np.where(mirrored[:, None, None, None], x_flip, x_orig)
        joint.fit(
            np.concatenate([x_epoch, x_extra]).astype(np.float32),
            np.concatenate([y, y_extra]),
            epochs=epoch + 1,
            initial_epoch=epoch,
            batch_size=ft.batch_size,
            class_weight=weights,
            shuffle=True,
            verbose=0,
            callbacks=callbacks,
        )
    return block5, head
