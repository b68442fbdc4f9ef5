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
* `finetune_backbone(...)` -> `Backbone`: the whole recipe for `python -m classifier train --finetune-block5`:
  block-4 features of the training images, `finetune_block5`, then `with_block5`; it also writes the new
  trunk's bottleneck features of the training views into the cache, computed from the block-4 features, so
  that `classifier.train.fit_version` then trains the shipped head on them without another pass of blocks
  1-4.
* `Block5Weights`: fine-tuned weights as a version stores them (``block5.npz``, float16; the values are
  rounded to float16 before the head is trained, so storing them loses nothing) with their SHA-256 and
  recipe; `with_block5(backbone, weights)` puts them into a copy of a trunk, with a cache identity of its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.dataset import LabelledImage, extract_bottleneck_features, store_cached_features
from classifier.model import Backbone, HeadSpec, probe_fingerprint

if TYPE_CHECKING:
    import keras

    from classifier.train import TrainConfig

log = logging.getLogger(__name__)

#: The fine-tuned layers, in order (names as in ``keras.applications.VGG16``).
BLOCK5_CONVS = ("block5_conv1", "block5_conv2", "block5_conv3")
#: A version's fine-tuned block-5 weights (``w000``..``w005``: kernel, bias per conv, float16).
BLOCK5_FILE = "block5.npz"
#: Marks the ``source`` of a fine-tuned trunk's identity (`with_block5`).
FINETUNED_MARK = "+block5:"


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
    # "b4" + the trunk's hash: the cache key keeps 14 hex digits of it (vgg16-b4<14 hex>-<size>)
    identity = replace(backbone.identity, tensor_sha256="b4" + backbone.identity.tensor_sha256)
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
    from tqdm import tqdm

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
    for epoch in tqdm(range(ft.epochs), desc="block5", unit="epoch", disable=not progress):
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
        )
    return block5, head


@dataclass(frozen=True, eq=False)
class Block5Weights:
    """Fine-tuned block-5 weights: ``tensors`` are (kernel (3, 3, 512, 512), bias (512,)) per conv of
    BLOCK5_CONVS, float32 holding float16-representable values; ``sha256`` is over their float32 bytes in
    order; ``recipe`` is JSON (how they were trained). Build with `from_arrays`."""

    tensors: tuple[np.ndarray, ...]
    sha256: str
    recipe: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], recipe: dict[str, Any]) -> Block5Weights:
        """Round ``arrays`` (kernel, bias per conv) to float16 and hash them. Raises ValueError unless there
        are two arrays per conv of BLOCK5_CONVS."""
        if len(arrays) != 2 * len(BLOCK5_CONVS):
            raise ValueError(f"{len(arrays)} block-5 arrays, expected {2 * len(BLOCK5_CONVS)}")
        tensors = tuple(np.asarray(a, np.float16).astype(np.float32) for a in arrays)
        digest = hashlib.sha256()
        for t in tensors:
            digest.update(np.ascontiguousarray(t).tobytes())
        return cls(tensors, digest.hexdigest(), dict(recipe))

    def to_json(self) -> dict[str, Any]:
        """The ``block5`` entry of a version's head.json."""
        return {"file": BLOCK5_FILE, "dtype": "float16", "sha256": self.sha256, "recipe": self.recipe}

    def save(self, version_dir: Path) -> None:
        """Write BLOCK5_FILE into ``version_dir`` (float16, lossless by construction). Raises OSError."""
        arrays: dict[str, Any] = {f"w{i:03d}": t.astype(np.float16) for i, t in enumerate(self.tensors)}
        np.savez(version_dir / BLOCK5_FILE, **arrays)

    @classmethod
    def load(cls, version_dir: Path, entry: dict[str, Any]) -> Block5Weights:
        """Read a version's block 5 (``entry``: its head.json ``block5``). Raises OSError, and ValueError
        when the file's values do not have the SHA-256 recorded in head.json (a damaged or swapped file)."""
        with np.load(version_dir / str(entry.get("file", BLOCK5_FILE))) as npz:
            arrays = [npz[n] for n in sorted(npz.files)]
        weights = cls.from_arrays(arrays, dict(entry.get("recipe") or {}))
        if weights.sha256 != entry.get("sha256"):
            raise ValueError(
                f"{version_dir.name}: {BLOCK5_FILE} does not match head.json (SHA-256 "
                f"{weights.sha256[:16]}... against {str(entry.get('sha256'))[:16]}...)"
            )
        return weights


def with_block5(backbone: Backbone, block5: Block5Weights) -> Backbone:
    """A copy of ``backbone`` (which is left untouched: the service shares it between versions) whose block
    5 has ``block5``'s weights. Its identity gets a tensor hash (and so a bottleneck / int8 cache key) of its
    own, derived from both hashes, no file hash and a source ending in FINETUNED_MARK + the block's hash, so
    that `classifier.model.check_backbone` never matches it against a version; ``pretrained`` keeps the
    original identity, which versions record and loading checks. ``backbone`` already carrying the same
    weights is returned as is. Raises ValueError if it carries other fine-tuned weights (start from the
    pretrained trunk) or if the shapes do not fit (another input size does fit: convolutions are
    size-independent)."""
    import keras

    if backbone.block5 is not None:
        if backbone.block5.sha256 == block5.sha256:
            return backbone
        raise ValueError("the trunk already has other fine-tuned block-5 weights")
    model = keras.models.clone_model(backbone.model)
    model.set_weights(backbone.model.get_weights())
    for i, name in enumerate(BLOCK5_CONVS):
        model.get_layer(name).set_weights([block5.tensors[2 * i], block5.tensors[2 * i + 1]])
    model.trainable = False
    base = backbone.identity
    derived = hashlib.sha256(f"{base.tensor_sha256}{FINETUNED_MARK}{block5.sha256}".encode()).hexdigest()
    # no file hash and a source of its own: check_backbone never takes this trunk for the pretrained one
    source = f"{base.source}{FINETUNED_MARK}{block5.sha256[:16]}"
    identity = replace(
        base, source=source, file_sha256=None, tensor_sha256=derived, probe=probe_fingerprint(model)
    )
    return Backbone(model=model, identity=identity, block5=block5, pretrained=base)


def finetune_backbone(
    train_items: Sequence[LabelledImage],
    thin: Sequence[LabelledImage],
    outputs: Sequence[str],
    backbone: Backbone,
    cache_dir: Path | None,
    config: TrainConfig,
    ft: Block5FineTune,
    progress: bool = True,
) -> Backbone:
    """Fine-tune ``backbone``'s block 5 on the images a head would train on and return the new trunk
    (`with_block5`).

    train_items: training images (labels in ``outputs``, ``__other__`` included), each seen per epoch as its
    original or mirrored view; thin: the thin-class images (`classifier.train.training_plan`), which also
    train on ``config.thin_views`` other than ``flip``. Blocks 1-4 run once per image and view (cached under
    their own key in ``cache_dir``). The new trunk's features of the ``orig`` view of ``train_items`` and of
    ``config.thin_views`` of ``thin`` are then written into the cache under the new trunk's key, computed from
    the block-4 features, so `classifier.train.fit_version` finds them. Memory: the block-4 features of both
    views stay in RAM (float16 (N, S/16, S/16, 512): about 2.5 GB for 3,000 photos at 320 px) plus an
    epoch's float32 copy (about 5 GB). Raises ValueError when ``backbone`` is already fine-tuned or no
    training image is readable; what `finetune_block5` raises.
    """
    if backbone.block5 is not None:
        raise ValueError("fine-tune from the pretrained trunk, not from an already fine-tuned one")
    t0 = time.perf_counter()
    trunk = trunk_to_block4(backbone)
    index_of = {lab: i for i, lab in enumerate(outputs)}
    extra_views = [v for v in config.thin_views if v != "flip"]

    def features(items: Sequence[LabelledImage], view: str) -> Any:
        return extract_bottleneck_features(
            [it.path for it in items], trunk, cache_dir, view, progress=progress
        )

    orig, flip = features(train_items, "orig"), features(train_items, "flip")
    common = sorted(set(orig.index) & set(flip.index))
    if not common:
        raise ValueError("no readable training images")
    pos_o, pos_f = ({i: k for k, i in enumerate(r.index)} for r in (orig, flip))
    x_orig = orig.features[[pos_o[i] for i in common]]
    x_flip = flip.features[[pos_f[i] for i in common]]
    y = np.array([index_of[train_items[i].label] for i in common], dtype=np.int64)
    extra = {v: features(thin, v) for v in extra_views}
    x_extra = np.concatenate([r.features for r in extra.values()]) if extra else x_orig[:0]
    y_extra = np.array([index_of[thin[i].label] for r in extra.values() for i in r.index], dtype=np.int64)
    block5, _ = finetune_block5(
        backbone, x_orig, y, x_flip, len(outputs), config, ft, extra=(x_extra, y_extra), progress=progress
    )
    recipe = {
        "epochs": ft.epochs,
        "learning_rate": ft.learning_rate,
        "batch_size": ft.batch_size,
        "seed": ft.seed,
        "train_images": len(common),
        "extra_views": extra_views,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    weights = Block5Weights.from_arrays(
        [t for name in BLOCK5_CONVS for t in block5.get_layer(name).get_weights()], recipe
    )
    tuned = with_block5(backbone, weights)
    if cache_dir is not None:
        rounded = build_block5(backbone, weights.tensors)  # the stored (float16) values, as served
        thin_paths = {str(it.path) for it in thin}
        jobs = [("orig", orig, None), ("flip", flip, thin_paths)] + [(v, r, None) for v, r in extra.items()]
        for view, result, only in jobs:
            keep = [k for k, i in enumerate(result.index) if only is None or str(train_items[i].path) in only]
            if not keep:
                continue
            out = apply_block5(rounded, result.features[keep])
            for k, f in zip(keep, out, strict=True):
                store_cached_features(cache_dir, tuned.identity.cache_key, view, result.sha256[k], f)
    log.info("block 5 fine-tuned on %d images in %.0f s", len(common), time.perf_counter() - t0)
    return tuned
