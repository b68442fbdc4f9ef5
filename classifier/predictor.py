"""A loaded model version: image bytes -> ranked labels with probabilities and a decision.

`Predictor.load(version_dir, vgg16_weights)` reads a registry version (``head.json`` + ``head.npz``, see
`classifier.train.save_version`), loads the backbone named by ``vgg16_weights`` (``"imagenet"`` or a file),
checks it is the backbone the version was trained on (`classifier.model.check_backbone`, raises
BackboneMismatchError), and fuses backbone and head into one Keras model called through a ``tf.function``
with a fixed input signature (one photo, plus its mirror image when the version uses flip test-time
augmentation). Not thread-safe by design: `classifier.serving` calls it from one worker thread.

The decision (`decide`) is pure: given the model's output probabilities (equipment classes, plus an optional
``__other__`` class trained on out-of-distribution photos), it returns the top equipment label, its
probability, the top-k equipment labels and ``confident`` / ``unsure`` / ``not_equipment`` using thresholds
fitted on validation data (`classifier.evaluate.fit_decision_rule`).

Test-time augmentation with an early exit (`combine_views`): the original view runs first; when it alone is
already a confident answer with top probability >= the version's ``tta_exit`` threshold, the mirrored view is
skipped. The threshold is fitted on validation data (`classifier.evaluate.fit_tta_exit`) as the lowest one
that loses nothing against always averaging both views, so most photos cost one backbone pass, not two.

Precision: float32, bfloat16 (Keras ``mixed_bfloat16``) or int8 (`classifier.quantize`: the backbone
quantized after training and run with LiteRT, the head in float32; calibrated on photos or dynamic range,
see `Int8Source`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from classifier.dataset import OTHER_LABEL
from classifier.preprocess import InputSpec, preprocess
from classifier.quantize import Int8Source as Int8Source
from classifier.settings import Precision
from classifier.types import Decision, Prediction

if TYPE_CHECKING:
    import keras

    from classifier.model import Backbone

log = logging.getLogger(__name__)

TOP_K = 3


@dataclass(frozen=True)
class DecisionRule:
    """Thresholds on output probabilities (fitted on validation data; see `classifier.evaluate`).

    not_equipment when P(__other__) >= other_threshold or the top equipment probability < reject_threshold;
    otherwise confident when the top equipment probability >= confident_threshold, else unsure.
    """

    confident_threshold: float = 0.6
    other_threshold: float = 0.5
    reject_threshold: float = 0.0

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DecisionRule:
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Ranked:
    """Pure result of `decide` (no model version)."""

    label: str
    confidence: float
    decision: Decision
    top_k: list[tuple[str, float]]
    other_probability: float = 0.0


def decide(probs: np.ndarray, outputs: list[str], rule: DecisionRule, k: int = TOP_K) -> Ranked:
    """Turn one probability vector into a ranked answer.

    probs: float (n_outputs,) summing to ~1, aligned with ``outputs`` (equipment labels, optionally ending
    with OTHER_LABEL). top_k: the k likeliest *equipment* labels with their probabilities, best first
    (ties broken by label order). other_probability: P(``__other__``) in [0, 1], 0.0 for a version without
    that output. Raises ValueError when ``probs`` and ``outputs`` differ in length.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    if p.shape[0] != len(outputs):
        raise ValueError(f"{p.shape[0]} probabilities for {len(outputs)} outputs")
    p_other = 0.0
    eq_idx = [i for i, lab in enumerate(outputs) if lab != OTHER_LABEL]
    if len(eq_idx) != len(outputs):
        # rounded like the top-k probabilities, so the reported value is exactly the one compared
        p_other = round(float(sum(p[i] for i, lab in enumerate(outputs) if lab == OTHER_LABEL)), 6)
    order = sorted(eq_idx, key=lambda i: (-p[i], i))
    top = order[: max(1, k)]
    top_k = [(outputs[i], round(float(p[i]), 6)) for i in top]
    label, conf = top_k[0]
    decision: Decision
    if p_other >= rule.other_threshold or conf < rule.reject_threshold:
        decision = "not_equipment"
    elif conf >= rule.confident_threshold:
        decision = "confident"
    else:
        decision = "unsure"
    return Ranked(label, float(conf), decision, top_k, p_other)


def exits_early(probs: np.ndarray, outputs: list[str], rule: DecisionRule, threshold: float | None) -> bool:
    """True when the first TTA view's probabilities (n_outputs,) already give a ``confident`` answer whose
    top equipment probability is >= ``threshold`` (0-1); never when ``threshold`` is None."""
    if threshold is None:
        return False
    ranked = decide(probs, outputs, rule)
    return ranked.decision == "confident" and ranked.confidence >= threshold


def combine_views(
    view_probs: list[np.ndarray], outputs: list[str], rule: DecisionRule, threshold: float | None
) -> np.ndarray:
    """Test-time augmentation with an early exit, for a batch: ``view_probs`` is one float array
    (N, n_outputs) per view, the first being the original image. Row i is the first view's row when
    `exits_early` holds for it, else the mean over all views. Returns float32 (N, n_outputs)."""
    first = np.asarray(view_probs[0], dtype=np.float32)
    mean = np.mean([np.asarray(v, dtype=np.float32) for v in view_probs], axis=0)
    if threshold is None or len(view_probs) == 1:
        return mean.astype(np.float32)
    keep = np.array([exits_early(row, outputs, rule, threshold) for row in first], dtype=bool)
    return np.where(keep[:, None], first, mean).astype(np.float32)


def _int8_forward(backbone: Backbone, head: keras.Model, spec: InputSpec, int8: Int8Source) -> Any:
    """float32 (1, S, S, C) -> float32 (n_outputs,): the int8 backbone (`classifier.quantize`, converted once
    per backbone, input size and calibration set, then cached) followed by the float32 head."""
    import tensorflow as tf

    from classifier.quantize import Int8UnavailableError, int8_cache_key, load_int8

    try:
        key = int8_cache_key(backbone.identity.cache_key, int8.photos)
    except OSError as exc:
        raise Int8UnavailableError(f"calibration photo unreadable: {exc}") from exc
    trunk = load_int8(backbone.model, spec, int8.photos, int8.cache_dir, key)

    @tf.function(input_signature=[tf.TensorSpec((1, *backbone.feature_shape), tf.float32)])
    def head_forward(features: Any) -> Any:
        return head(features, training=False)[0]

    def forward(x: np.ndarray) -> np.ndarray:
        return np.asarray(head_forward(trunk(x)), dtype=np.float32)

    return forward


def read_version_config(version_dir: Path) -> dict[str, Any]:
    """Parsed ``head.json`` of a version (kind, head, outputs, labels, tta, input, decision, backbone)."""
    cfg: dict[str, Any] = json.loads((version_dir / "head.json").read_text(encoding="utf-8"))
    return cfg


def load_npz_weights(path: Path) -> list[np.ndarray]:
    """Weights stored by `classifier.train.save_version` (``w000``, ``w001``... in order) as float32."""
    with np.load(path) as npz:
        names = sorted(npz.files)
        return [np.asarray(npz[n], dtype=np.float32) for n in names]


class Predictor:
    """A loaded model version (see module docstring). Use `Predictor.load`."""

    def __init__(
        self,
        version: str,
        model: keras.Model,
        spec: InputSpec,
        outputs: list[str],
        rule: DecisionRule,
        tta: list[str],
        load_seconds: float = 0.0,
        backbone: Backbone | None = None,
        jit_compile: bool = False,
        tta_exit: float | None = None,
        precision: Precision = "float32",
        int8_model: Any = None,
        precision_detail: str = "",
    ) -> None:
        import tensorflow as tf

        self.version = version
        self.model = model
        self.spec = spec
        self.outputs = outputs
        self.labels = [o for o in outputs if o != OTHER_LABEL]
        self.rule = rule
        self.tta = tta
        self.load_seconds = load_seconds
        self.backbone = backbone
        self.tta_exit = tta_exit
        self.precision: Precision = precision
        #: For logs and reports: the precision, and for int8 its recipe (``int8, dynamic range``...).
        self.precision_detail = precision_detail or precision
        #: Backbone passes of the last `probabilities` call (1 when the early exit skipped the other views).
        self.last_views = 0
        # One photo per call (batch 1): on this CPU oneDNN's batch-1 kernels beat one batch of all views.
        shape = (1, spec.size, spec.size, spec.channels)

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], jit_compile=jit_compile)
        def forward(x: Any) -> Any:
            return tf.cast(model(x, training=False), tf.float32)[0]

        self._forward: Any = forward if int8_model is None else int8_model

    @classmethod
    def load(
        cls,
        version_dir: Path,
        vgg16_weights: str | None,
        backbone: Backbone | None = None,
        tta: list[str] | None = None,
        jit_compile: bool = False,
        bfloat16: bool = False,
        tta_exit: float | Literal["version"] | None = "version",
        int8: Int8Source | None = None,
    ) -> Predictor:
        """Load a version folder. ``vgg16_weights``: ``"imagenet"``, a file path, or None (random init,
        tests). Pass an already loaded ``backbone`` to share it. ``tta`` overrides the version's test-time
        views; ``tta_exit`` the version's early-exit threshold (None: always run every view; ``"version"``:
        the fitted ``tta_exit`` in head.json when ``tta`` is the version's own, absent in versions older
        than v0002; a float: that threshold, applied to the first of ``tta``); ``jit_compile`` compiles
        the forward pass with XLA; ``bfloat16`` computes in bfloat16 (Keras ``mixed_bfloat16`` policy,
        float32 weights); ``int8`` runs the backbone in int8 and the head in float32
        (`classifier.quantize`, converted once and cached; ignored for the from-scratch baseline, and
        takes precedence over ``bfloat16``). Raises BackboneMismatchError, FileNotFoundError,
        KeyError/ValueError for malformed versions (ValueError too when a fine-tuned version's block5.npz
        does not match its head.json), classifier.quantize.Int8UnavailableError when the int8 model cannot
        be built. A version with fine-tuned block 5 (head.json ``block5``) runs on a copy of the trunk with
        those weights (`classifier.finetune.with_block5`); the shared ``backbone`` is not modified."""
        import keras

        from classifier.finetune import Block5Weights, with_block5
        from classifier.model import (
            HeadSpec,
            build_fused,
            build_head,
            build_scratch_cnn,
            check_backbone,
            load_backbone,
        )

        t0 = time.perf_counter()
        cfg = read_version_config(version_dir)
        outputs = list(cfg["outputs"])
        weights = load_npz_weights(version_dir / "head.npz")
        rule = DecisionRule.from_json(cfg.get("decision", {}))
        version_tta = list(cfg.get("tta", ["orig"]))
        tta = list(tta or version_tta)
        # The fitted exit belongs to the version's own views (original first); other views run in full.
        exit_threshold = (
            (cfg.get("tta_exit") if tta == version_tta else None) if tta_exit == "version" else tta_exit
        )
        spec = InputSpec(int(cfg["input"]["size"]), cfg["input"]["normalisation"])
        precision: Precision = "float32"
        detail = ""
        int8_model = None
        if cfg["kind"] == "scratch":
            if int8 is not None:
                log.info("%s is the from-scratch CNN: int8 is for VGG16 versions; float32", version_dir.name)
            backbone = None
            model = build_scratch_cnn(len(outputs), spec.size)
            model.set_weights(weights)
        elif cfg["kind"] == "vgg16_head":
            bfloat16 = bfloat16 and int8 is None  # int8 is converted from the float32 model
            previous_policy = keras.config.dtype_policy()
            if bfloat16:
                keras.config.set_dtype_policy("mixed_bfloat16")
            try:
                block5 = Block5Weights.load(version_dir, cfg["block5"]) if cfg.get("block5") else None
                reusable = backbone is not None and (
                    backbone.block5 is None
                    or (block5 is not None and backbone.block5.sha256 == block5.sha256)
                )
                if backbone is None or not reusable or backbone.input_size != spec.size or bfloat16:
                    backbone = load_backbone(vgg16_weights, spec.size)
                how = check_backbone(cfg["backbone"], backbone.pretrained_identity)
                log.info("backbone of %s matched by %s", version_dir.name, how)
                if block5 is not None:
                    backbone = with_block5(backbone, block5)
                head = build_head(HeadSpec.from_json(cfg["head"]), backbone.feature_shape)
                head.set_weights(weights)
                model = build_fused(backbone, head)
            finally:
                keras.config.set_dtype_policy(previous_policy)
            precision = "bfloat16" if bfloat16 else "float32"
            if int8 is not None:
                int8_model = _int8_forward(backbone, head, spec, int8)
                precision = "int8"
                detail = int8.describe()
        else:
            raise ValueError(f"{version_dir}: unknown model kind {cfg['kind']!r}")
        seconds = time.perf_counter() - t0
        return cls(
            version_dir.name,
            model,
            spec,
            outputs,
            rule,
            tta,
            seconds,
            backbone,
            jit_compile,
            exit_threshold,
            precision,
            int8_model,
            detail,
        )

    def views(self, x: np.ndarray) -> np.ndarray:
        """One preprocessed image (S, S, C) -> its TTA views stacked (n_views, S, S, C)."""
        out = []
        for view in self.tta:
            if view == "orig":
                out.append(x)
            elif view == "flip":
                out.append(x[:, ::-1, :])
            else:
                raise ValueError(f"unsupported test-time view {view!r}")
        return np.stack(out).astype(np.float32)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """One preprocessed image (S, S, C) float32 -> output probabilities (n_outputs,) float32: the mean
        over the TTA views, or the first view's alone when it exits early (`exits_early`)."""
        views = self.views(x)
        probs = [np.asarray(self._forward(views[0:1]))]
        if not exits_early(probs[0], self.outputs, self.rule, self.tta_exit):
            probs += [np.asarray(self._forward(views[i : i + 1])) for i in range(1, len(views))]
        self.last_views = len(probs)
        return np.mean(probs, axis=0).astype(np.float32)

    def classify_bytes(self, data: bytes) -> Prediction:
        """Encoded image bytes -> Prediction. Raises classifier.types.ImageDecodeError if unreadable."""
        ranked = decide(self.probabilities(preprocess(data, self.spec)), self.outputs, self.rule)
        return Prediction(
            ranked.label,
            ranked.confidence,
            ranked.decision,
            ranked.top_k,
            self.version,
            ranked.other_probability,
        )

    def warm_up(self) -> None:
        """Run the model once on a blank image (traces the tf.function, allocates buffers)."""
        self.probabilities(np.zeros(self.spec.shape, np.float32))
