"""Training: heads on cached bottleneck features, the from-scratch baseline, and saving registry versions.

Reusable API (the retraining pipeline and the synthetic-data experiments call these):

* `fit_version(train, val, ood, backbone, cache_dir, config)` -> `FitResult`: extracts (or reads cached)
  bottleneck features for every view in ``config.views`` (training) and ``config.tta`` (evaluation), trains
  a head with `train_head`, fits the decision rule on ``val`` + the OOD photos held out from training
  (`fit_decision_rule`, on TTA-averaged probabilities), then the TTA early-exit threshold
  (`fit_tta_exit`, when ``config.tta_early_exit``), and evaluates ``val`` as served: the original view
  alone when it exits early, else the TTA average (`classifier.evaluate.evaluate`); returns all that.
  Classes with at most ``config.thin_class_max`` training images also train on the augmented views
  ``config.thin_views`` (oversampling thin classes with real augmentations, not copies).
  ``train``/``val`` are `LabelledImage` lists (equipment labels), ``ood`` photos labelled ``__other__``: a
  share ``config.ood_holdout`` is held out (by file-name hash) for fitting/measuring the decision, the rest
  trains the explicit ``__other__`` output when ``config.other_class``.
* `train_head(x, y, n_outputs, spec, config)`: Adam + sparse categorical cross-entropy on float32 features
  (N, h, w, 512), class weights (``balanced`` ** ``config.class_weight_power``), fixed epochs, progress bar.
* `head_probabilities(head, views)`: average of softmax outputs over TTA views.
* `save_version(registry, fit, backbone_identity, ...)`: writes head.json, head.npz (float16 weights when
  the float16 round trip keeps every validation prediction identical, else float32), labels.json,
  metrics.json, model_card.md and confusion_matrix.png into a new numbered version, atomically; plus
  block5.npz when the head was trained on a trunk with fine-tuned block 5 (`classifier.finetune`).
* `fit_scratch(train, val, config)`: the original experiment's from-scratch CNN on 150x150 grayscale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.dataset import (
    OTHER_LABEL,
    LabelledImage,
    class_counts,
    extract_bottleneck_features,
    load_images,
    split_ood,
)
from classifier.evaluate import (
    ORIGINAL_FIVE,
    confusion_text,
    decision_report,
    equipment_probs,
    evaluate,
    fit_decision_rule,
    fit_tta_exit,
    plot_confusion,
)
from classifier.finetune import BLOCK5_FILE
from classifier.model import HeadSpec
from classifier.predictor import DecisionRule, combine_views
from classifier.preprocess import SCRATCH_150, VGG16_224, InputSpec

if TYPE_CHECKING:
    import keras

    from classifier.finetune import Block5Weights
    from classifier.model import Backbone, BackboneIdentity
    from classifier.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters (defaults = what won the measurements reported in README ``## Classifier``)."""

    head: HeadSpec = field(default_factory=lambda: HeadSpec(hidden=512, ensemble=3))
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    views: tuple[str, ...] = ("orig",)
    tta: tuple[str, ...] = ("orig", "flip")
    thin_views: tuple[str, ...] = ("flip", "aug1")
    thin_class_max: int = 150
    class_weight_power: float = 0.5
    other_class: bool = True
    ood_holdout: float = 0.4
    label_smoothing: float = 0.0
    seed: int = 0
    min_confident_precision: float = 0.97
    tta_early_exit: bool = True

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["views"] = list(self.views)
        d["tta"] = list(self.tta)
        d["thin_views"] = list(self.thin_views)
        return d


@dataclass
class FitResult:
    """Everything `fit_version` produced (see module docstring)."""

    head: keras.Model
    spec: HeadSpec
    labels: list[str]
    outputs: list[str]
    metrics: dict[str, Any]
    rule: DecisionRule
    decision: dict[str, float]
    train_counts: dict[str, int]
    val_counts: dict[str, int]
    failed: dict[str, str]
    config: TrainConfig
    val_probs: np.ndarray
    val_true: np.ndarray
    ood_holdout_probs: np.ndarray
    seconds: float = 0.0
    kind: str = "vgg16_head"
    input_spec: InputSpec = VGG16_224
    val_views: list[np.ndarray] | None = None
    tta_exit: float | None = None
    #: Fine-tuned block-5 weights of the trunk the head was trained on (None: the ImageNet block 5).
    block5: Block5Weights | None = None


def class_weights(y: np.ndarray, n_outputs: int, power: float) -> dict[int, float]:
    """{class index: (N / (K * count)) ** power}, normalised to mean 1 over present classes."""
    counts = np.bincount(y, minlength=n_outputs).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_outputs)
    w[present] = (len(y) / (present.sum() * counts[present])) ** power
    w[present] /= w[present].mean()
    return {i: float(w[i]) for i in range(n_outputs) if present[i]}


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    n_outputs: int,
    spec: HeadSpec,
    config: TrainConfig,
    progress: bool = True,
) -> keras.Model:
    """Fit a head on bottleneck features x (N, h, w, C) with int labels y (N,) in [0, n_outputs).

    With ``spec.ensemble`` = k > 1, k single heads are trained with seeds ``config.seed + i`` and their
    weights copied into the branches of one averaged head (`classifier.model.build_head`)."""
    import keras

    from classifier.model import build_head

    if spec.ensemble > 1:
        shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
        combined = build_head(replace(spec, n_outputs=n_outputs), shape)
        for i in range(spec.ensemble):
            member = train_head(
                x, y, n_outputs, replace(spec, ensemble=1), replace(config, seed=config.seed + i), progress
            )
            for name in ("hidden", "probs"):
                if any(layer.name == name for layer in member.layers):
                    combined.get_layer(f"{name}_{i}").set_weights(member.get_layer(name).get_weights())
        return combined

    keras.utils.set_random_seed(config.seed)
    shape = (int(x.shape[1]), int(x.shape[2]), int(x.shape[3]))
    head = build_head(replace(spec, n_outputs=n_outputs), shape)
    loss: Any = keras.losses.SparseCategoricalCrossentropy()
    if config.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    head.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=loss)
    targets: np.ndarray = y
    if config.label_smoothing > 0:
        targets = np.eye(n_outputs, dtype=np.float32)[y]
    callbacks: list[Any] = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="head"))
    head.fit(
        x.astype(np.float32),
        targets,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(y, n_outputs, config.class_weight_power),
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return head


def head_probabilities(head: keras.Model, views: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Mean softmax over views: each view float (N, h, w, C) -> (N, n_outputs) float32."""
    probs = [np.asarray(head.predict(v.astype(np.float32), batch_size=batch_size, verbose=0)) for v in views]
    return np.mean(probs, axis=0).astype(np.float32)


def _features(
    items: Sequence[LabelledImage], backbone: Backbone, cache_dir: Path | None, view: str, progress: bool
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    r = extract_bottleneck_features([it.path for it in items], backbone, cache_dir, view, progress=progress)
    return r.features, r.index, r.failed


def _aligned_views(
    items: Sequence[LabelledImage],
    backbone: Backbone,
    cache_dir: Path | None,
    views: Sequence[str],
    progress: bool,
) -> tuple[list[np.ndarray], list[int], dict[str, str]]:
    """Features for each view restricted to the items readable in every view."""
    per_view = [_features(items, backbone, cache_dir, v, progress) for v in views]
    failed: dict[str, str] = {}
    for _, _, f in per_view:
        failed.update(f)
    common = sorted(set.intersection(*(set(idx) for _, idx, _ in per_view))) if per_view else []
    out = []
    for feats, idx, _ in per_view:
        pos = {i: k for k, i in enumerate(idx)}
        out.append(feats[[pos[i] for i in common]] if common else feats[:0])
    return out, common, failed


@dataclass(frozen=True)
class TrainingPlan:
    """Which images train a head (`training_plan`): equipment ``labels``; ``outputs`` (labels, plus
    ``__other__`` when ``config.other_class`` and OOD photos train it); ``train_items`` (training images of
    those labels + the OOD photos not held out); ``thin`` (the equipment images of classes with at most
    ``config.thin_class_max`` of them, which also train on ``config.thin_views``); ``ood_hold`` (OOD photos
    held out for the decision rule)."""

    labels: list[str]
    outputs: list[str]
    train_items: list[LabelledImage]
    thin: list[LabelledImage]
    ood_hold: list[LabelledImage]


def training_plan(
    train: Sequence[LabelledImage],
    ood: Sequence[LabelledImage],
    config: TrainConfig,
    labels: Sequence[str] | None = None,
) -> TrainingPlan:
    """The `TrainingPlan` of `fit_version` (shared with block-5 fine-tuning, which must train on the same
    images). ``labels`` defaults to the sorted equipment labels of ``train``; the OOD split is
    `classifier.dataset.split_ood` with ``config.ood_holdout``."""
    labels = sorted({it.label for it in train if it.label != OTHER_LABEL}) if labels is None else list(labels)
    ood_train, ood_hold = split_ood(list(ood), config.ood_holdout)
    outputs = labels + ([OTHER_LABEL] if config.other_class and ood_train else [])
    train_items = [it for it in train if it.label in labels] + (ood_train if OTHER_LABEL in outputs else [])
    counts = class_counts(train_items)
    thin = [it for it in train_items if counts[it.label] <= config.thin_class_max and it.label != OTHER_LABEL]
    return TrainingPlan(labels, outputs, train_items, thin, ood_hold)


def fit_version(
    train: Sequence[LabelledImage],
    val: Sequence[LabelledImage],
    ood: Sequence[LabelledImage],
    backbone: Backbone,
    cache_dir: Path | None,
    config: TrainConfig = TrainConfig(),
    labels: Sequence[str] | None = None,
    progress: bool = True,
) -> FitResult:
    """Train and measure a head (see module docstring). ``labels`` defaults to the sorted train labels.

    Raises ValueError if a validation label is unknown or no training image is readable.
    """
    t0 = time.perf_counter()
    plan = training_plan(train, ood, config, labels)
    labels, outputs, train_items, thin, ood_hold = (
        plan.labels,
        plan.outputs,
        plan.train_items,
        plan.thin,
        plan.ood_hold,
    )
    unknown = {it.label for it in val} - set(labels)
    if unknown:
        raise ValueError(f"validation labels not in training labels: {sorted(unknown)}")
    index_of = {lab: i for i, lab in enumerate(outputs)}

    xs, ys = [], []
    failed: dict[str, str] = {}
    jobs = [(view, train_items) for view in config.views] + [(view, thin) for view in config.thin_views]
    for view, view_items in jobs:
        if not view_items:
            continue
        feats, idx, f = _features(view_items, backbone, cache_dir, view, progress)
        failed.update(f)
        xs.append(feats)
        ys.append(np.array([index_of[view_items[i].label] for i in idx], dtype=np.int64))
    if not xs or sum(len(x) for x in xs) == 0:
        raise ValueError("no readable training images")
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    head = train_head(x, y, len(outputs), config.head, config, progress)
    del x

    val_views, val_idx, f = _aligned_views(val, backbone, cache_dir, config.tta, progress)
    failed.update(f)
    if not val_idx:
        raise ValueError(
            f"no readable validation images (of {len(val)}): add photos per class or raise --val-fraction"
        )
    val_true = np.array([labels.index(val[i].label) for i in val_idx], dtype=np.int64)
    hold_views, _, f = _aligned_views(ood_hold, backbone, cache_dir, config.tta, progress)
    failed.update(f)
    val_per_view = [head_probabilities(head, [v]) for v in val_views]
    hold_per_view = [
        head_probabilities(head, [v]) if len(v) else np.zeros((0, len(outputs)), np.float32)
        for v in hold_views
    ]
    if not hold_per_view:
        hold_per_view = [np.zeros((0, len(outputs)), np.float32)] * len(val_per_view)
    rule, _ = fit_decision_rule(
        outputs,
        np.mean(val_per_view, axis=0),
        val_true,
        np.mean(hold_per_view, axis=0),
        config.min_confident_precision,
    )
    exit_threshold, exit_report = (
        fit_tta_exit(outputs, rule, val_per_view, val_true, hold_per_view)
        if config.tta_early_exit
        else (None, {})
    )
    # What the served model answers: every TTA view averaged, unless the original view exits early.
    val_probs = combine_views(val_per_view, outputs, rule, exit_threshold)
    hold_probs = combine_views(hold_per_view, outputs, rule, exit_threshold)
    report = decision_report(rule, outputs, val_probs, val_true, hold_probs)
    metrics = evaluate(
        val_true, equipment_probs(val_probs, outputs), labels, {"original_five": ORIGINAL_FIVE}
    )
    spec = replace(config.head, n_outputs=len(outputs))
    metrics["decision"] = {"rule": rule.to_json(), **report}
    metrics["tta_exit"] = exit_report
    return FitResult(
        head=head,
        spec=spec,
        labels=labels,
        outputs=outputs,
        metrics=metrics,
        rule=rule,
        decision=report,
        train_counts=class_counts(train_items),
        val_counts=class_counts([val[i] for i in val_idx]),
        failed=failed,
        config=replace(config, head=spec),  # the recipe as fitted: n_outputs counts the labels found
        val_probs=val_probs,
        val_true=val_true,
        ood_holdout_probs=hold_probs,
        seconds=time.perf_counter() - t0,
        input_spec=InputSpec(backbone.input_size, "vgg16"),
        val_views=val_views,
        tta_exit=exit_threshold,
        block5=backbone.block5,
    )


def fit_scratch(
    train: Sequence[LabelledImage],
    val: Sequence[LabelledImage],
    config: TrainConfig = TrainConfig(epochs=30),
    labels: Sequence[str] | None = None,
    input_spec: InputSpec = SCRATCH_150,
    progress: bool = True,
) -> FitResult:
    """Train the from-scratch baseline CNN (`classifier.model.build_scratch_cnn`) on whole images.

    Same labels/metrics contract as `fit_version`; no ``__other__`` class and no TTA. The decision rule is
    fitted on validation photos only.
    """
    import keras

    from classifier.model import build_scratch_cnn

    t0 = time.perf_counter()
    labels = sorted({it.label for it in train if it.label != OTHER_LABEL}) if labels is None else list(labels)
    train_items = [it for it in train if it.label in labels]
    x, idx, failed = load_images(train_items, input_spec, progress)
    y = np.array([labels.index(train_items[i].label) for i in idx], dtype=np.int64)
    keras.utils.set_random_seed(config.seed)
    model = build_scratch_cnn(len(labels), input_spec.size)
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate), loss="sparse_categorical_crossentropy"
    )
    callbacks: list[Any] = []
    if progress:
        from tqdm.keras import TqdmCallback

        callbacks.append(TqdmCallback(verbose=0, desc="scratch"))
    model.fit(
        x,
        y,
        epochs=config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(y, len(labels), config.class_weight_power),
        verbose=0,
        callbacks=callbacks,
    )
    xv, vidx, f2 = load_images(val, input_spec, progress)
    failed.update(f2)
    probs = np.asarray(model.predict(xv, batch_size=64, verbose=0)) if len(xv) else np.zeros((0, len(labels)))
    yv = np.array([labels.index(val[i].label) for i in vidx], dtype=np.int64)
    metrics = evaluate(yv, probs, labels, {"original_five": ORIGINAL_FIVE})
    empty = np.zeros((0, len(labels)), np.float32)
    rule, report = fit_decision_rule(labels, probs, yv, empty, config.min_confident_precision)
    metrics["decision"] = {"rule": rule.to_json(), **report}
    return FitResult(
        head=model,
        spec=HeadSpec(n_outputs=len(labels)),
        labels=labels,
        outputs=labels,
        metrics=metrics,
        rule=rule,
        decision=report,
        train_counts=class_counts([train_items[i] for i in idx]),
        val_counts=class_counts([val[i] for i in vidx]),
        failed=failed,
        config=replace(config, tta=("orig",), views=("orig",), other_class=False),
        val_probs=probs.astype(np.float32),
        val_true=yv,
        ood_holdout_probs=empty,
        seconds=time.perf_counter() - t0,
        kind="scratch",
        input_spec=input_spec,
    )


def _float16_lossless(fit: FitResult, val_views: Sequence[np.ndarray] | None) -> bool:
    """True when float16 weights give the same top-1 on every validation photo (checked on the val probs)."""
    if val_views is None:
        return False
    import keras

    w32 = fit.head.get_weights()
    clone = keras.models.clone_model(fit.head)
    clone.set_weights([w.astype(np.float16).astype(np.float32) for w in w32])
    p16 = head_probabilities(clone, val_views)
    p32 = head_probabilities(fit.head, val_views)
    return bool((p16.argmax(1) == p32.argmax(1)).all() and np.abs(p16 - p32).max() < 1e-2)


def save_version(
    registry: Registry,
    fit: FitResult,
    backbone_identity: BackboneIdentity | None,
    notes: str = "",
    val_views: Sequence[np.ndarray] | None = None,
    promote: bool = False,
    extra_metrics: dict[str, Any] | None = None,
) -> str:
    """Write ``fit`` as a new registry version (see module docstring); optionally promote it. Returns the
    version name. ``backbone_identity``: the pretrained weights' identity (`Backbone.pretrained_identity`,
    which loading checks; None for the scratch baseline). ``val_views`` (default ``fit.val_views``: the
    validation TTA features) enables the float16 losslessness check; without them the weights are stored as
    float32 (e.g. the scratch baseline). Raises ValueError when ``backbone_identity`` is a fine-tuned
    trunk's own identity."""
    import json

    from classifier.finetune import FINETUNED_MARK

    if backbone_identity is not None and FINETUNED_MARK in backbone_identity.source:
        raise ValueError("save_version needs the pretrained identity (Backbone.pretrained_identity)")
    lossless16 = _float16_lossless(fit, val_views if val_views is not None else fit.val_views)
    dtype = np.float16 if lossless16 else np.float32
    weights = fit.head.get_weights()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    backbone_json = backbone_identity.to_json() if backbone_identity is not None else None
    config_json: dict[str, Any] = {
        "kind": fit.kind,
        "head": fit.spec.to_json(),
        "outputs": fit.outputs,
        "labels": fit.labels,
        "tta": list(fit.config.tta),
        "input": {"size": fit.input_spec.size, "normalisation": fit.input_spec.normalisation},
        "decision": fit.rule.to_json(),
        "tta_exit": fit.tta_exit,
        "backbone": backbone_json,
        "weights_dtype": np.dtype(dtype).name,
    }
    if fit.block5 is not None:
        config_json["block5"] = fit.block5.to_json()
    metrics = {
        **fit.metrics,
        "created": created,
        "kind": fit.kind,
        "train_counts": fit.train_counts,
        "val_counts": fit.val_counts,
        "train_seconds": round(fit.seconds, 1),
        "config": fit.config.to_json(),
        "backbone": backbone_json,
        "unreadable_files": fit.failed,
        **(extra_metrics or {}),
    }

    def write(tmp: Path) -> None:
        np.savez(tmp / "head.npz", **{f"w{i:03d}": w.astype(dtype) for i, w in enumerate(weights)})
        if fit.block5 is not None:
            fit.block5.save(tmp)
        (tmp / "head.json").write_text(json.dumps(config_json, indent=2) + "\n")
        (tmp / "labels.json").write_text(json.dumps(fit.labels, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        title = f"{fit.kind} top-1 {fit.metrics['top1']:.3f} on {fit.metrics['n']} validation photos"
        plot_confusion(fit.metrics["confusion_matrix"], fit.labels, tmp / "confusion_matrix.png", title)
        (tmp / "model_card.md").write_text(model_card(fit, config_json, metrics, notes))

    version = registry.create_version(write)
    if promote:
        registry.promote(version, reason="trained by python -m classifier train")
    return version


def model_card(fit: FitResult, cfg: dict[str, Any], metrics: dict[str, Any], notes: str) -> str:
    """Markdown model card: data counts per class, backbone identity, metrics, decision rule, confusion."""
    m = fit.metrics
    lines = [
        "# Spotter classifier model card",
        "",
        f"- Created: {metrics['created']}",
        f"- Kind: `{fit.kind}`; head: `{json_compact(fit.spec.to_json())}`; outputs: {len(fit.outputs)}",
        f"- Input: {fit.input_spec.size}x{fit.input_spec.size} {fit.input_spec.normalisation}; "
        f"test-time views: {', '.join(fit.config.tta)} ({tta_exit_text(fit)}); "
        f"head weights stored as {cfg['weights_dtype']}",
        f"- Training config: `{json_compact(fit.config.to_json())}`",
        "",
        "## Backbone",
    ]
    b = cfg.get("backbone")
    if b:
        lines += [
            f"- VGG16 `include_top=False` weights source when trained: `{b['source']}`",
            f"- Weights file SHA-256: `{b['file_sha256']}`",
            f"- SHA-256 over the loaded weight tensors (float32, layer order): `{b['tensor_sha256']}`",
            f"- Probe fingerprint ({len(b['probe'])} conv kernel values, blocks 1-5): "
            f"`{json_compact(b['probe'])}`",
            "",
            "Loading checks the configured `VGG16_WEIGHTS`: the same file (SHA-256) passes; otherwise",
            "the weights tensor hash, otherwise every probe value must agree to a relative 1e-5. The",
            "probe exists because production uses `VGG16_WEIGHTS=imagenet`, whose file Keras downloads",
            "and caches and whose bytes (HDF5 layout) differ from the shared file, while the values are",
            "the same ImageNet checkpoint (see ../shared/README.md); the file hash alone would wrongly",
            "reject it. Any other VGG16 checkpoint differs in these values: `BackboneMismatchError`.",
        ]
    else:
        lines.append("- No backbone (from-scratch baseline).")
    if fit.block5 is not None:
        lines += ["", "## Fine-tuned block 5", "", *block5_card_lines(fit.block5)]
    lines += ["", "## Training data (images per class, all views share these files)", ""]
    lines += ["| class | train | validation |", "|---|---:|---:|"]
    for lab in fit.outputs:
        lines.append(f"| {lab} | {fit.train_counts.get(lab, 0)} | {fit.val_counts.get(lab, 0)} |")
    lines += [
        "",
        "## Validation metrics",
        "",
        f"- top-1 {m['top1']:.4f}, top-3 {m['top3']:.4f}, ECE {m['ece']:.4f} over {m['n']} photos",
        f"- top-1 on the original five classes: {m.get('subset_top1', {}).get('original_five', 0):.4f} "
        f"({m.get('subset_n', {}).get('original_five', 0)} photos)",
        "",
        "| class | precision | recall | support |",
        "|---|---:|---:|---:|",
    ]
    for lab, pc in m["per_class"].items():
        lines.append(f"| {lab} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['support']} |")
    d = fit.decision
    lines += [
        "",
        "## Decision (confident / unsure / not_equipment)",
        "",
        f"- Rule: `{json_compact(fit.rule.to_json())}` (fitted on validation photos + held-out OOD photos)",
        f"- Validation photos answered confident: {d['accept']:.3f} "
        f"(precision {d['confident_precision']:.3f})",
        f"- Held-out OOD photos not answered confident: {d['ood_rejection']:.3f} of {d['ood_n']} "
        f"(answered not_equipment: {d['ood_not_equipment']:.3f})",
        "",
        "## Confusion matrix (rows true, columns predicted; also confusion_matrix.png)",
        "",
        "```",
        confusion_text(m["confusion_matrix"], fit.labels),
        "```",
    ]
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"


def block5_card_lines(block5: Block5Weights) -> list[str]:
    """Model-card lines for a version with fine-tuned block-5 weights."""
    return [
        f"- `block5_conv1..3` fine-tuned; stored in `{BLOCK5_FILE}` (float16, about 14 MB), SHA-256 over the "
        f"float32 values: `{block5.sha256}`",
        f"- Recipe: `{json_compact(block5.recipe)}`",
        "- Blocks 1-4 are the pretrained weights above; loading checks those, then puts these block-5",
        "  weights into a copy of the trunk (`classifier.finetune.with_block5`).",
    ]


def tta_exit_text(fit: FitResult) -> str:
    """Model-card phrase for the TTA early exit of ``fit``."""
    if fit.tta_exit is None:
        return "every view on every photo, no early exit"
    share = fit.metrics.get("tta_exit", {}).get("exit_share", 0.0)
    return (
        f"early exit after the first view when it is confident with top probability >= {fit.tta_exit}; "
        f"{share:.1%} of validation photos exit early"
    )


def json_compact(obj: Any) -> str:
    """Compact JSON for markdown."""
    import json

    return json.dumps(obj, separators=(",", ":"))


def report_lines(metrics: dict[str, Any]) -> list[str]:
    """Human summary lines of a metrics dict (for the CLI)."""
    d = metrics.get("decision", {})
    return [
        f"top-1 {metrics['top1']:.4f}  top-3 {metrics['top3']:.4f}  ECE {metrics['ece']:.4f}  "
        f"n={metrics['n']}",
        f"original five top-1 {metrics.get('subset_top1', {}).get('original_five', 0):.4f}",
        f"confident on real {d.get('accept', 0):.3f} (precision {d.get('confident_precision', 0):.3f}); "
        f"OOD not confident {d.get('ood_rejection', 0):.3f} of {d.get('ood_n', 0)}",
    ]
