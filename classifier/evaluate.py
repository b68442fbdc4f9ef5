"""Metrics (pure NumPy) and the fitting of the confident / unsure / not_equipment decision.

* `evaluate(y_true, probs, labels)` -> metrics dict: ``n``, ``top1``, ``top3``, ``per_class``
  ({label: precision, recall, f1, support}), ``confusion_matrix`` (rows = true, columns = predicted, label
  order), ``ece`` (expected calibration error of the top-1 probability, 15 equal-width bins; Guo et al. 2017,
  "On Calibration of Modern Neural Networks"), and ``subset`` accuracies when asked.
* `confusion_text` / `plot_confusion` (matplotlib, Agg backend, PNG).
* `fit_tta_exit(...)`: the early-exit threshold of test-time augmentation (see its docstring).
* `fit_decision_rule(...)`: grid search of the `DecisionRule` thresholds on validation real photos plus
  out-of-distribution photos (see its docstring), and `decision_report` for measuring a rule.

All probability inputs are float arrays (N, n_outputs) whose columns follow ``outputs``; equipment labels
come first, the optional ``__other__`` column last. ``y_true`` are int indices into the equipment labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifier.dataset import OTHER_LABEL
from classifier.predictor import DecisionRule, combine_views, decide, exits_early

#: The five classes of the original experiment (floors: >= 92% top-1 on these, >= 90% over all classes).
ORIGINAL_FIVE = ("bench_press", "hyperextension_bench", "leg_press", "plyo_box", "power_rack")
ECE_BINS = 15
#: Early-exit thresholds tried by `fit_tta_exit`, lowest (most exits) first.
TTA_EXIT_GRID = (0.85, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)
#: A threshold t qualifies only if t - TTA_EXIT_MARGIN qualifies too: the features are fitted in float32, but
#: the bot may serve in int8 or bfloat16 (CLASSIFIER_PRECISION=bfloat16, or int8 unavailable). In bfloat16 a
#: softmax output near 1 moves in steps of 2**-8 ~ 0.004 (bfloat16 keeps 8 significant bits); 0.01 is about
#: 2.5 such steps. Measured on v0002: one held-out OOD photo at 0.9765 in float32 reads 0.9805 in bfloat16,
#: so 0.98 without margin let it exit.
TTA_EXIT_MARGIN = 0.01


def equipment_probs(probs: np.ndarray, outputs: Sequence[str]) -> np.ndarray:
    """Drop the ``__other__`` column (if any): (N, n_outputs) -> (N, n_equipment), not renormalised."""
    keep = [i for i, o in enumerate(outputs) if o != OTHER_LABEL]
    return np.asarray(probs, dtype=np.float64)[:, keep]


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width confidence bins of |accuracy - mean confidence| weighted by bin share."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.size == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def evaluate(
    y_true: Sequence[int] | np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    subsets: dict[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Classification metrics for equipment probabilities (N, len(labels)) (see module docstring).

    subsets: {name: labels} -> ``subset_top1[name]`` accuracy over photos whose true label is in the subset.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n, k = len(y), len(labels)
    if p.shape != (n, k):
        raise ValueError(f"probs shape {p.shape} != ({n}, {k})")
    pred = p.argmax(axis=1) if n else np.zeros(0, np.int64)
    top3 = np.argsort(-p, axis=1)[:, :3] if n else np.zeros((0, 3), np.int64)
    cm = np.zeros((k, k), dtype=np.int64)
    for t, q in zip(y, pred, strict=True):
        cm[t, q] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, lab in enumerate(labels):
        tp = float(cm[i, i])
        support = float(cm[i].sum())
        predicted = float(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[lab] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": int(support),
        }
    correct = pred == y
    conf = p.max(axis=1) / np.maximum(p.sum(axis=1), 1e-12) if n else np.zeros(0)
    out: dict[str, Any] = {
        "n": int(n),
        "top1": round(float(correct.mean()) if n else 0.0, 4),
        "top3": round(float((top3 == y[:, None]).any(axis=1).mean()) if n else 0.0, 4),
        "ece": round(expected_calibration_error(conf, correct), 4),
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }
    if subsets:
        out["subset_top1"] = {}
        for name, subset in subsets.items():
            idx = [labels.index(s) for s in subset if s in labels]
            mask = np.isin(y, idx)
            out["subset_top1"][name] = round(float(correct[mask].mean()) if mask.any() else 0.0, 4)
            out["subset_n"] = {**out.get("subset_n", {}), name: int(mask.sum())}
    return out


def confusion_text(cm: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], width: int = 6) -> str:
    """Plain-text confusion matrix (rows = true label, columns = predicted, abbreviated headers)."""
    cm = np.asarray(cm, dtype=np.int64)
    short = [lab[: width - 1] for lab in labels]
    name_w = max(len(lab) for lab in labels) + 1 if labels else 5
    lines = [" " * name_w + "".join(s.rjust(width) for s in short)]
    for lab, row in zip(labels, cm, strict=True):
        lines.append(lab.ljust(name_w) + "".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)


def plot_confusion(
    cm: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: Path, title: str
) -> None:
    """Save the confusion matrix as a PNG (row-normalised colours, counts written in cells)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * len(labels), 0.8 + 0.55 * len(labels)), dpi=100)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(cm[i, j])),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def decision_report(
    rule: DecisionRule,
    outputs: Sequence[str],
    real_probs: np.ndarray,
    real_true: Sequence[int] | np.ndarray,
    ood_probs: np.ndarray,
) -> dict[str, float]:
    """Measure a rule: on real photos the share answered confident (``accept``), the accuracy of those
    (``confident_precision``), unsure/not_equipment shares; on OOD photos the share NOT answered confident
    (``ood_rejection``) and the share answered not_equipment (``ood_not_equipment``)."""
    outs = list(outputs)
    labels = [o for o in outs if o != OTHER_LABEL]
    real = [decide(p, outs, rule) for p in np.asarray(real_probs)]
    ood = [decide(p, outs, rule) for p in np.asarray(ood_probs)]
    y = list(np.asarray(real_true, dtype=np.int64))
    conf = [r for r, t in zip(real, y, strict=True) if r.decision == "confident"]
    conf_ok = [r.label == labels[t] for r, t in zip(real, y, strict=True) if r.decision == "confident"]
    n_real = max(len(real), 1)
    n_ood = max(len(ood), 1)
    return {
        "real_n": len(real),
        "accept": round(len(conf) / n_real, 4),
        "confident_precision": round(float(np.mean(conf_ok)) if conf_ok else 0.0, 4),
        "real_unsure": round(sum(r.decision == "unsure" for r in real) / n_real, 4),
        "real_not_equipment": round(sum(r.decision == "not_equipment" for r in real) / n_real, 4),
        "ood_n": len(ood),
        "ood_rejection": round(sum(r.decision != "confident" for r in ood) / n_ood, 4),
        "ood_not_equipment": round(sum(r.decision == "not_equipment" for r in ood) / n_ood, 4),
    }


def fit_decision_rule(
    outputs: Sequence[str],
    real_probs: np.ndarray,
    real_true: Sequence[int] | np.ndarray,
    ood_probs: np.ndarray,
    min_precision: float = 0.97,
) -> tuple[DecisionRule, dict[str, float]]:
    """Grid-search thresholds on validation photos (``real_*``) and OOD photos not used to train the head.

    Objective: maximise ``accept * confident_precision + ood_rejection`` (correct confident answers on real
    photos plus refused OOD photos, equal weight), subject to ``confident_precision >= min_precision``
    (falls back to the best precision if no rule reaches it). ``other_threshold`` only matters when
    ``outputs`` has an ``__other__`` column. Returns (rule, its `decision_report`).
    """
    has_other = OTHER_LABEL in outputs
    conf_grid = [float(round(x, 3)) for x in np.arange(0.30, 0.96, 0.025)]
    other_grid = [float(round(x, 3)) for x in np.arange(0.1, 0.91, 0.05)] if has_other else [1.01]

    def summary(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = np.asarray(probs, dtype=np.float64).reshape(-1, len(outputs))
        eq = equipment_probs(p, outputs)
        other = p.sum(axis=1) - eq.sum(axis=1)
        top = eq.argmax(axis=1) if len(eq) else np.zeros(0, np.int64)
        conf = np.round(eq.max(axis=1), 6) if len(eq) else np.zeros(0)
        return conf, other, top

    r_conf, r_other, r_top = summary(real_probs)
    correct = r_top == np.asarray(real_true, dtype=np.int64)
    o_conf, o_other, _ = summary(ood_probs)
    best: tuple[float, DecisionRule] | None = None
    for tc in conf_grid:
        for to in other_grid:
            confident = (r_other < to) & (r_conf >= tc)
            accept = float(confident.mean()) if len(confident) else 0.0
            precision = float(correct[confident].mean()) if confident.any() else 0.0
            rejection = float(1.0 - ((o_other < to) & (o_conf >= tc)).mean()) if len(o_conf) else 1.0
            if precision >= min_precision:
                score = 10.0 + accept * precision + rejection
            else:  # no rule is precise enough: the most precise one (then the one answering most)
                score = precision + 1e-3 * accept
            if best is None or score > best[0] + 1e-9:
                best = (score, DecisionRule(confident_threshold=tc, other_threshold=to, reject_threshold=0.0))
    assert best is not None
    return best[1], decision_report(best[1], outputs, real_probs, real_true, ood_probs)


def fit_tta_exit(
    outputs: Sequence[str],
    rule: DecisionRule,
    real_views: Sequence[np.ndarray],
    real_true: Sequence[int] | np.ndarray,
    ood_views: Sequence[np.ndarray],
    grid: Sequence[float] = TTA_EXIT_GRID,
    margin: float = TTA_EXIT_MARGIN,
) -> tuple[float | None, dict[str, float]]:
    """The lowest early-exit threshold (`classifier.predictor.combine_views`) that loses nothing against
    averaging every test-time view, on validation photos and held-out OOD photos, with a safety margin.

    real_views / ood_views: per view, float (N, n_outputs) probabilities (first view = original image);
    real_true: int equipment indices (N,). "Loses nothing" means: top-1 accuracy, share of real photos
    answered confident, precision of those answers, and share of OOD photos not answered confident are all
    >= their values with every view averaged, at the threshold and at threshold - ``margin`` (see
    TTA_EXIT_MARGIN). Returns (threshold, report with ``threshold``, ``exit_share`` = share of real photos
    that skip the other views, and the four measures both ways). The threshold is None (always average every
    view) when there is one view, no validation photo, no qualifying threshold, or no validation photo that
    would exit at it (no evidence for any threshold).
    """
    outs = list(outputs)
    y = np.asarray(real_true, dtype=np.int64)

    def measures(real: np.ndarray, ood: np.ndarray) -> dict[str, float]:
        eq = equipment_probs(real, outs)
        rep = decision_report(rule, outs, real, y, ood)
        return {
            "top1": float((eq.argmax(1) == y).mean()) if len(y) else 0.0,
            "accept": rep["accept"],
            "confident_precision": rep["confident_precision"],
            "ood_rejection": rep["ood_rejection"],
        }

    full = measures(
        combine_views(list(real_views), outs, rule, None), combine_views(list(ood_views), outs, rule, None)
    )
    report: dict[str, float] = {f"all_views_{k}": round(v, 4) for k, v in full.items()}
    if len(real_views) < 2 or len(y) == 0:
        return None, {**report, "exit_share": 0.0}

    def served(threshold: float) -> dict[str, float]:
        real = combine_views(list(real_views), outs, rule, threshold)
        return measures(real, combine_views(list(ood_views), outs, rule, threshold))

    def qualifies(m: dict[str, float]) -> bool:
        return all(m[k] >= full[k] - 1e-9 for k in full)

    for threshold in grid:
        m = served(threshold)
        if qualifies(m) and qualifies(served(threshold - margin)):
            share = float(np.mean([exits_early(p, outs, rule, threshold) for p in np.asarray(real_views[0])]))
            if share == 0.0:  # higher thresholds exit even less: nothing supports an early exit
                break
            return threshold, {
                **report,
                **{f"early_exit_{k}": round(v, 4) for k, v in m.items()},
                "threshold": threshold,
                "exit_share": round(share, 4),
            }
    return None, {**report, "exit_share": 0.0}
