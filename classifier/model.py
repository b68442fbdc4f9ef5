"""Models: the frozen VGG16 backbone with its identity, the dense head, the fused serving model, the baseline.

* `load_backbone(weights, size)` -> `Backbone`: ``keras.applications.VGG16(include_top=False)`` (13 conv
  layers, 14,714,688 parameters; Simonyan & Zisserman 2014) with ``weights`` = ``"imagenet"`` (Keras
  downloads and caches them)
  or a path to a ``vgg16_notop.weights.h5`` file, or ``None`` (random, tests only). Output of the trunk for a
  224x224 input: bottleneck features of shape (7, 7, 512) float32.
* `BackboneIdentity`: how a model version names the backbone it was trained on (file SHA-256, a probe
  fingerprint of conv weight values that is identical for the shared file and Keras' ImageNet file, and a
  SHA-256 over all loaded weight tensors). `check_backbone` raises BackboneMismatchError on mismatch.
* `HeadSpec` / `build_head`: pooling (``gap`` global average, ``gmp`` global max, ``gapgmp`` both
  concatenated, ``flatten``) -> optional Dense(hidden, relu) + Dropout -> Dense(n_outputs, softmax).
* `build_fused(backbone, head)`: one Keras model image -> probabilities, used for serving.
* `build_scratch_cnn`: the original experiment's from-scratch baseline (three Conv(3x3)+ReLU+MaxPool blocks
  with 32/32/64 filters, Dense(64, relu), Dropout(0.5), Dense(n, softmax), 150x150 grayscale input).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from classifier.types import BackboneMismatchError, BackboneUnavailableError

if TYPE_CHECKING:
    import keras

    from classifier.finetune import Block5Weights

log = logging.getLogger(__name__)

Pooling = Literal["gap", "gmp", "gapgmp", "flatten"]

#: (layer name, flat index) pairs read for the probe fingerprint: first/last conv of blocks 1, 2, 3, 4, 5.
PROBE_LAYERS = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block3_conv3",
    "block4_conv3",
    "block5_conv1",
    "block5_conv3",
)
PROBES_PER_LAYER = 4
#: Relative tolerance when comparing probe values (float32 round trips through other formats are exact or
#: within a few ulps; a different checkpoint differs in the first significant digit).
PROBE_RTOL = 1e-5


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class BackboneIdentity:
    """Identity of loaded backbone weights.

    source: ``"imagenet"``, a file path or ``"random"``; file_sha256: SHA-256 of the weights file (None for
    ``imagenet``, whose cached file is Keras' business); probe: ``{"layer[index]": value}`` conv kernel values
    spread over blocks 1-5; tensor_sha256: SHA-256 over all weight tensors (float32, layer order) after
    loading, identical whatever file format carried the same values; input_size: square input side (px).
    """

    source: str
    file_sha256: str | None
    probe: dict[str, float]
    tensor_sha256: str
    input_size: int

    @property
    def cache_key(self) -> str:
        """Short stable key for bottleneck caches: weights content + input size."""
        return f"vgg16-{self.tensor_sha256[:16]}-{self.input_size}"

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable dict (stored in a version's metrics.json under ``backbone``)."""
        return asdict(self)


def probe_fingerprint(model: keras.Model) -> dict[str, float]:
    """Read PROBES_PER_LAYER kernel values from each PROBE_LAYERS layer at fixed, spread flat indices."""
    probe: dict[str, float] = {}
    for name in PROBE_LAYERS:
        kernel = np.asarray(model.get_layer(name).get_weights()[0], dtype=np.float32).ravel()
        for i in range(PROBES_PER_LAYER):
            idx = (i * 7919 + 13) % kernel.size
            probe[f"{name}[{idx}]"] = float(kernel[idx])
    return probe


def identify_backbone(model: keras.Model, weights: str | None) -> BackboneIdentity:
    """Compute the `BackboneIdentity` of a loaded backbone (reads the weights file once if it is a path)."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    fsha = None
    source = "random" if weights is None else weights
    if weights is not None and weights != "imagenet":
        fsha = file_sha256(Path(weights))
    return BackboneIdentity(
        source=source,
        file_sha256=fsha,
        probe=probe_fingerprint(model),
        tensor_sha256=digest.hexdigest(),
        input_size=int(model.input_shape[1]),
    )


def check_backbone(expected: dict[str, Any], actual: BackboneIdentity) -> str:
    """Check that ``actual`` (configured weights) is the backbone a version was trained on (``expected``,
    the version's recorded identity). Returns how it matched (``"file_sha256"``, ``"tensor_sha256"`` or
    ``"probe"``); raises BackboneMismatchError with both identities if not.

    Order: identical file SHA-256 (the weights file used in training) -> identical tensor hash -> every probe
    value equal within PROBE_RTOL (how ``VGG16_WEIGHTS=imagenet`` matches a head trained on the shared file,
    whose values equal Keras' ImageNet checkpoint; see the model card).
    """
    if expected.get("file_sha256") and expected.get("file_sha256") == actual.file_sha256:
        return "file_sha256"
    if expected.get("tensor_sha256") == actual.tensor_sha256:
        return "tensor_sha256"
    exp_probe: dict[str, float] = expected.get("probe") or {}
    if exp_probe and set(exp_probe) == set(actual.probe):
        ok = all(np.isclose(actual.probe[k], v, rtol=PROBE_RTOL, atol=1e-8) for k, v in exp_probe.items())
        if ok:
            return "probe"
    raise BackboneMismatchError(
        "the configured VGG16 backbone weights are not the ones this model version was trained on: "
        f"configured VGG16_WEIGHTS={actual.source!r} (file sha256={actual.file_sha256}, "
        f"tensor sha256={actual.tensor_sha256[:16]}...), version expects file sha256="
        f"{expected.get('file_sha256')} (tensor sha256={str(expected.get('tensor_sha256'))[:16]}...). "
        "Point VGG16_WEIGHTS at the weights named in the version's model_card.md, or use 'imagenet'."
    )


@dataclass
class Backbone:
    """A loaded frozen VGG16 trunk, its identity, and a compiled batch feature function.

    ``features(x)``: float32 (N, S, S, 3) preprocessed images -> float32 (N, S/32, S/32, 512).
    ``identity`` keys the bottleneck and int8 caches. A trunk whose block 5 was fine-tuned
    (`classifier.finetune.with_block5`) also carries ``block5`` and ``pretrained``: the identity of the
    ImageNet weights it was derived from, which is what a version records and `check_backbone` checks.
    """

    model: keras.Model
    identity: BackboneIdentity
    _fn: Any = field(default=None, repr=False)
    block5: Block5Weights | None = None
    pretrained: BackboneIdentity | None = None

    @property
    def pretrained_identity(self) -> BackboneIdentity:
        """Identity of the pretrained (ImageNet) weights: ``pretrained`` for a fine-tuned trunk, else
        ``identity``."""
        return self.pretrained or self.identity

    @property
    def input_size(self) -> int:
        return self.identity.input_size

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        shape = self.model.output_shape
        return (int(shape[1]), int(shape[2]), int(shape[3]))

    def features(self, x: np.ndarray) -> np.ndarray:
        """Bottleneck features for a batch of preprocessed images (see class docstring)."""
        if self._fn is None:
            import tensorflow as tf

            model = self.model
            self._fn = tf.function(lambda t: model(t, training=False), reduce_retracing=True)
        return np.asarray(self._fn(np.asarray(x, dtype=np.float32)))


def load_backbone(weights: str | Path | None, input_size: int = 224) -> Backbone:
    """Load the frozen VGG16 trunk. ``weights``: ``"imagenet"``, a weights file path, or None (random init;
    tests). Raises BackboneUnavailableError (a FileNotFoundError) if a path does not exist (before TensorFlow
    tries) or if Keras cannot download the ImageNet weights (offline), with the fix in the message."""
    import keras

    w: str | None = None if weights is None else str(weights)
    if w is not None and w != "imagenet" and not Path(w).is_file():
        raise BackboneUnavailableError(
            f"VGG16 weights file not found: {w} (set VGG16_WEIGHTS to a file or 'imagenet')"
        )
    try:
        model = keras.applications.VGG16(
            include_top=False, weights=w, input_shape=(input_size, input_size, 3)
        )
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when the download fails
        if w != "imagenet":
            raise
        raise BackboneUnavailableError(
            f"could not get the ImageNet VGG16 weights from Keras ({exc}); offline, set VGG16_WEIGHTS to a "
            "local vgg16_notop.weights.h5"
        ) from exc
    model.trainable = False
    return Backbone(model=model, identity=identify_backbone(model, w))


@dataclass(frozen=True)
class HeadSpec:
    """Architecture of the dense head on top of (S, S, 512) bottleneck features.

    pooling: see module docstring; hidden: units of the hidden Dense(relu) layer (0 = none); dropout: rate
    before the output layer (and after pooling when ``input_dropout``); n_outputs: softmax width;
    ensemble: number of independently trained hidden+output branches on the shared pooling whose softmax
    outputs are averaged (layers ``hidden_i``/``probs_i``; 1 = a single head with ``hidden``/``probs``).
    """

    pooling: Pooling = "gap"
    hidden: int = 256
    dropout: float = 0.5
    n_outputs: int = 12
    input_dropout: float = 0.0
    ensemble: int = 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HeadSpec:
        return cls(
            **{
                k: data[k]
                for k in ("pooling", "hidden", "dropout", "n_outputs", "input_dropout", "ensemble")
                if k in data
            }
        )


def build_head(spec: HeadSpec, feature_shape: tuple[int, int, int]) -> keras.Model:
    """Build the head: input (S, S, C) bottleneck features float32 -> (n_outputs,) softmax probabilities."""
    import keras
    from keras import layers

    inp = keras.Input(shape=feature_shape, name="bottleneck")
    x: Any
    if spec.pooling == "gap":
        x = layers.GlobalAveragePooling2D(name="gap")(inp)
    elif spec.pooling == "gmp":
        x = layers.GlobalMaxPooling2D(name="gmp")(inp)
    elif spec.pooling == "gapgmp":
        x = layers.Concatenate(name="gapgmp")(
            [layers.GlobalAveragePooling2D()(inp), layers.GlobalMaxPooling2D()(inp)]
        )
    elif spec.pooling == "flatten":
        x = layers.Flatten(name="flatten")(inp)
    else:
        raise ValueError(f"unknown pooling {spec.pooling!r}")
    if spec.input_dropout > 0:
        x = layers.Dropout(spec.input_dropout, name="input_dropout")(x)
    outs = []
    for i in range(max(1, spec.ensemble)):
        suffix = "" if spec.ensemble <= 1 else f"_{i}"
        z = x
        if spec.hidden > 0:
            z = layers.Dense(spec.hidden, activation="relu", name=f"hidden{suffix}")(z)
        if spec.dropout > 0:
            z = layers.Dropout(spec.dropout, name=f"dropout{suffix}")(z)
        outs.append(layers.Dense(spec.n_outputs, activation="softmax", name=f"probs{suffix}")(z))
    out = outs[0] if len(outs) == 1 else layers.Average(name="probs")(outs)
    return keras.Model(inp, out, name="head")


def build_fused(backbone: Backbone, head: keras.Model) -> keras.Model:
    """One Keras model: preprocessed images (N, S, S, 3) float32 -> head probabilities (N, n_outputs)."""
    import keras

    inp = keras.Input(shape=(backbone.input_size, backbone.input_size, 3), name="image")
    out = head(backbone.model(inp, training=False), training=False)
    return keras.Model(inp, out, name="spotter_fused")


def build_scratch_cnn(n_classes: int, size: int = 150) -> keras.Model:
    """The original experiment's from-scratch CNN: (size, size, 1) grayscale in [0, 1] -> softmax(n_classes).

    Three Conv2D(3x3)+ReLU+MaxPool(2x2) blocks (32, 32, 64 filters), Flatten, Dense(64, relu), Dropout(0.5),
    Dense(n_classes, softmax): the classic Keras "small data" recipe (Chollet 2016) the experiment followed.
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(shape=(size, size, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(n_classes, activation="softmax"),
        ],
        name="scratch_cnn",
    )
