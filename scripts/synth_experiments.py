"""Synthetic-data experiments of issue 5 (results and commands in docs/experiments.md).

Heavy (VGG16 bottleneck features): run with ``nice`` from the repository root, e.g.

    nice -n 10 .venv/bin/python -m scripts.synth_experiments masks
    nice -n 10 .venv/bin/python -m scripts.synth_experiments exp1 --synthetic data/synth/exp_default --scratch
    nice -n 10 .venv/bin/python -m scripts.synth_experiments exp2 --synthetic data/synth/exp_default

Features come from `classifier.dataset.extract_bottleneck_features` with the shared cache (default
``data/cache``), keyed by image content, so images already seen by the classifier are not recomputed.
Heads are trained with `classifier.train.train_head` (HeadSpec pooling "gap"): the features are
global-average-pooled once to (N, 1, 1, 512), which is mathematically the same input the GAP head sees and
makes each fit take
seconds. Results are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from classifier.dataset import (
    LabelledImage,
    extract_bottleneck_features,
    load_manifest_dataset,
    scan_folder_dataset,
)
from classifier.evaluate import ORIGINAL_FIVE, evaluate
from classifier.model import Backbone, HeadSpec, load_backbone
from classifier.train import TrainConfig, fit_scratch, head_probabilities, train_head
from synth.alpha import RELIABLE_MIN_BORDER_BACKGROUND, mask_report
from synth.generate import list_images, open_image

log = logging.getLogger("synth_experiments")

FIVE = tuple(sorted(ORIGINAL_FIVE))
THIN = ("hyperextension_bench", "plyo_box")
HEAD = HeadSpec(pooling="gap", hidden=256, dropout=0.5)


def pooled_features(
    items: Sequence[LabelledImage], backbone: Backbone, cache: Path, view: str = "orig"
) -> tuple[np.ndarray, list[int]]:
    """GAP-pooled bottleneck features (N_ok, 1, 1, 512) float32 and the indices of the readable items."""
    r = extract_bottleneck_features([it.path for it in items], backbone, cache, view, progress=True)
    x = r.features.astype(np.float32).mean(axis=(1, 2), keepdims=True)
    return x, r.index


def summarise(metrics: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """top-1, balanced accuracy (mean recall) and per-class recall/precision from `evaluate` output."""
    per = metrics["per_class"]
    present = [lab for lab in labels if per[lab]["support"] > 0]
    return {
        "n": metrics["n"],
        "top1": metrics["top1"],
        "balanced": round(float(np.mean([per[lab]["recall"] for lab in present])), 4) if present else 0.0,
        "recall": {lab: per[lab]["recall"] for lab in labels},
        "precision": {lab: per[lab]["precision"] for lab in labels},
        "confusion_matrix": metrics["confusion_matrix"],
    }


def mean_sd(values: Sequence[float]) -> str:
    """'m ± s' (population sd) with three decimals."""
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


# ----------------------------------------------------------------------------------------------- masks
def cmd_masks(args: argparse.Namespace) -> dict[str, Any]:
    """Can objects be cut from the photos of each class? mask_report over every photo of --folder."""
    result: dict[str, Any] = {}
    for label in args.classes:
        reports = []
        for path in list_images(args.data / args.folder / label):
            r = mask_report(open_image(path))
            reports.append((path.name, r))
        borders = [r.border_background for _, r in reports]
        reliable = [name for name, r in reports if r.reliable]
        result[label] = {
            "photos": len(reports),
            "reliable": len(reliable),
            "reliable_files": reliable,
            "border_background_max": max(borders) if borders else None,
            "border_background_median": float(np.median(borders)) if borders else None,
        }
        print(
            f"{label:24s} photos={len(reports):4d} reliable={len(reliable):3d} "
            f"border max={max(borders):.2f} median={np.median(borders):.2f} "
            f"(needs >= {RELIABLE_MIN_BORDER_BACKGROUND})"
        )
    return result


# ------------------------------------------------------------------------------------------------ exp1
def cmd_exp1(args: argparse.Namespace) -> dict[str, Any]:
    """Train only on synthetic images of the five original classes; test on all their real photos."""
    labels = list(FIVE)
    syn = [
        it for d in args.synthetic for it in scan_folder_dataset(d, kind="synthetic") if it.label in labels
    ]
    if args.per_class_limit is not None:  # a seeded random subset per class (learning curve)
        rng = random.Random(f"limit:{args.per_class_limit}")
        rng.shuffle(syn)
        kept = {lab: 0 for lab in labels}
        subset = []
        for it in syn:
            if kept[it.label] < args.per_class_limit:
                kept[it.label] += 1
                subset.append(it)
        syn = sorted(subset, key=lambda it: str(it.path))
    real = [it for it in load_manifest_dataset(args.data) if it.kind == "real" and it.label in labels]
    result: dict[str, Any] = {
        "synthetic": [str(d) for d in args.synthetic],
        "per_class_limit": args.per_class_limit,
        "train_counts": {lab: sum(it.label == lab for it in syn) for lab in labels},
        "test_counts": {lab: sum(it.label == lab for it in real) for lab in labels},
        "head": HEAD.to_json(),
        "epochs": args.epochs,
    }
    backbone = load_backbone(args.weights)
    x_syn, idx_syn = pooled_features(syn, backbone, args.cache)
    y_syn = np.array([labels.index(syn[i].label) for i in idx_syn])
    x_real, idx_real = pooled_features(real, backbone, args.cache)
    real_ok = [real[i] for i in idx_real]
    y_real = np.array([labels.index(it.label) for it in real_ok])
    # Real photos that are really product shots (our own mask test says the object can be cut out).
    in_context = np.array([not mask_report(open_image(it.path)).reliable for it in real_ok])
    val_split = np.array([it.split == "val" for it in real_ok])
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        cfg = TrainConfig(head=HEAD, epochs=args.epochs, seed=seed)
        head = train_head(x_syn, y_syn, len(labels), HEAD, cfg, progress=False)
        probs = head_probabilities(head, [x_real])
        run: dict[str, Any] = {"seed": seed, "all": summarise(evaluate(y_real, probs, labels), labels)}
        for name, mask in (
            ("in_context", in_context),
            ("product_shot_like", ~in_context),
            ("val_split", val_split),
        ):
            run[name] = summarise(evaluate(y_real[mask], probs[mask], labels), labels)
        runs.append(run)
        print(
            f"vgg16 seed {seed}: top1 {run['all']['top1']:.3f} balanced {run['all']['balanced']:.3f}",
            flush=True,
        )
    result["vgg16"] = runs
    result["vgg16_summary"] = {
        part: {
            "n": runs[0][part]["n"],
            "top1": mean_sd([r[part]["top1"] for r in runs]),
            "balanced": mean_sd([r[part]["balanced"] for r in runs]),
            "recall": {
                lab: round(float(np.mean([r[part]["recall"][lab] for r in runs])), 3) for lab in labels
            },
            "confusion_matrix_sum": np.sum([r[part]["confusion_matrix"] for r in runs], axis=0).tolist(),
        }
        for part in ("all", "in_context", "product_shot_like", "val_split")
    }
    if args.scratch:
        scratch_runs: list[dict[str, Any]] = []
        for seed in range(args.scratch_seeds):
            t0 = time.perf_counter()
            cfg = TrainConfig(epochs=args.scratch_epochs, batch_size=32, seed=seed)
            fit = fit_scratch(syn, real, cfg, labels=labels, progress=False)
            srun: dict[str, Any] = {"seed": seed, "seconds": round(time.perf_counter() - t0, 1)}
            srun["all"] = summarise(fit.metrics, labels)
            scratch_runs.append(srun)
            print(
                f"scratch seed {seed}: top1 {srun['all']['top1']:.3f} balanced {srun['all']['balanced']:.3f}"
            )
        result["scratch"] = scratch_runs
        result["scratch_summary"] = {
            "top1": mean_sd([r["all"]["top1"] for r in scratch_runs]),
            "balanced": mean_sd([r["all"]["balanced"] for r in scratch_runs]),
            "recall": {
                lab: round(float(np.mean([r["all"]["recall"][lab] for r in scratch_runs])), 3)
                for lab in labels
            },
            "epochs": args.scratch_epochs,
        }
    print(json.dumps({k: v for k, v in result.items() if k.endswith("summary")}, indent=1))
    return result


# ------------------------------------------------------------------------------------------------ exp2
def shoot_group(item: LabelledImage) -> str:
    """Photos of one shoot share a group (free-exercise-db start/end frame pairs end in __0/__1)."""
    return re.sub(r"__[01]\.jpg$", "", item.path.name)


def grouped_folds(items: Sequence[LabelledImage], k: int, salt: str) -> list[int]:
    """Fold number (0..k-1) of each item; whole shoot groups stay in one fold; balanced round robin."""
    groups = sorted(
        {shoot_group(it) for it in items}, key=lambda g: hashlib.sha256(f"{salt}:{g}".encode()).digest()
    )
    fold_of = {g: i % k for i, g in enumerate(groups)}
    return [fold_of[shoot_group(it)] for it in items]


def cmd_exp2(args: argparse.Namespace) -> dict[str, Any]:
    """Real photos only vs real + synthetic top-up (ratio r synthetic per real training photo).

    Thin classes: grouped k-fold over ALL their real photos (each photo is tested exactly once per seed);
    other classes: train on the suggested train split, test on the val split (same in every fold).
    Variant "thin": top up only the thin classes; "small": every class with fewer than 100 real training
    photos that has synthetic images (here also bench_press and power_rack).
    """
    data = load_manifest_dataset(args.data)
    real = [it for it in data if it.kind == "real"]
    labels = sorted({it.label for it in real})
    syn_all = scan_folder_dataset(args.synthetic, kind="synthetic")
    backbone = load_backbone(args.weights)
    x_real, idx_real = pooled_features(real, backbone, args.cache)
    real = [real[i] for i in idx_real]
    x_flip: np.ndarray | None = None
    if args.flip:  # the champion recipe's mirrored view: extra training rows and test-time augmentation
        x_flip, idx_flip = pooled_features(real, backbone, args.cache, view="flip")
        if len(idx_flip) != len(real):
            raise ValueError("some real photos have no flip features")
    x_syn, idx_syn = pooled_features(syn_all, backbone, args.cache)
    syn_all = [syn_all[i] for i in idx_syn]
    y_real = np.array([labels.index(it.label) for it in real])
    # A fixed random order of each class's synthetic pool; the first n are used at every ratio (nested sets).
    pools: dict[str, list[int]] = {}
    for lab in labels:
        idx = [i for i, it in enumerate(syn_all) if it.label == lab]
        random.Random(f"pool:{lab}").shuffle(idx)
        pools[lab] = idx
    thin_idx = [i for i, it in enumerate(real) if it.label in THIN]
    folds = dict(zip(thin_idx, grouped_folds([real[i] for i in thin_idx], args.folds, "exp2"), strict=True))
    base_train = [i for i, it in enumerate(real) if it.label not in THIN and it.split == "train"]
    base_val = [i for i, it in enumerate(real) if it.label not in THIN and it.split == "val"]
    n_train = {lab: sum(it.label == lab and it.split == "train" for it in real) for lab in labels}
    small = [lab for lab in labels if pools.get(lab) and n_train[lab] < 100]
    topup_labels = {"thin": list(THIN), "small": small}
    result: dict[str, Any] = {
        "synthetic": str(args.synthetic),
        "folds": args.folds,
        "seeds": args.seeds,
        "flip": args.flip,
        "ratios": args.ratios,
        "thin_counts": {lab: sum(real[i].label == lab for i in thin_idx) for lab in THIN},
        "pool_sizes": {lab: len(p) for lab, p in pools.items() if p},
        "conditions": [],
    }
    conditions = [("real_only", 0.0)] + [(v, r) for v in args.variants for r in args.ratios if r > 0]
    for variant, ratio in conditions:
        t0 = time.perf_counter()
        per_seed: list[dict[str, Any]] = []
        capped: set[str] = set()
        for seed in range(args.seeds):
            thin_pred = np.zeros(len(real), dtype=np.int64) - 1
            base_metrics: list[dict[str, Any]] = []
            added_total = 0
            for fold in range(args.folds):
                train_real = base_train + [i for i in thin_idx if folds[i] != fold]
                test_thin = [i for i in thin_idx if folds[i] == fold]
                syn_rows: list[int] = []
                for lab in topup_labels.get(variant, []):
                    n_real = sum(real[i].label == lab for i in train_real)
                    want = round(ratio * n_real)
                    if want > len(pools[lab]):
                        log.warning(
                            "%s: pool of %d < %d wanted at ratio %g: capped",
                            lab,
                            len(pools[lab]),
                            want,
                            ratio,
                        )
                        capped.add(lab)
                    syn_rows += pools[lab][:want]
                added_total += len(syn_rows)
                y_syn = np.array([labels.index(syn_all[i].label) for i in syn_rows], dtype=np.int64)
                if x_flip is None:
                    x = np.concatenate([x_real[train_real], x_syn[syn_rows]])
                    y = np.concatenate([y_real[train_real], y_syn])
                else:
                    x = np.concatenate([x_real[train_real], x_flip[train_real], x_syn[syn_rows]])
                    y = np.concatenate([y_real[train_real], y_real[train_real], y_syn])
                cfg = TrainConfig(head=HEAD, epochs=args.epochs, seed=seed)
                head = train_head(x, y, len(labels), HEAD, cfg, progress=False)
                test = base_val + test_thin
                views = [x_real[test]] if x_flip is None else [x_real[test], x_flip[test]]
                pred = head_probabilities(head, views).argmax(axis=1)
                thin_pred[test_thin] = pred[len(base_val) :]
                base_pred = pred[: len(base_val)]
                base_metrics.append(
                    {
                        "base_top1": float((base_pred == y_real[base_val]).mean()),
                        # Base photos wrongly called a thin class (false positives of the top-up classes).
                        "base_called_thin": int(np.isin(base_pred, [labels.index(t) for t in THIN]).sum()),
                        "base_recall": {
                            lab: float((base_pred[y_real[base_val] == k] == k).mean())
                            for k, lab in enumerate(labels)
                            if lab not in THIN
                        },
                    }
                )
            # Pooled over folds: each thin photo predicted once; base val averaged over folds.
            thin_recall = {
                lab: float(np.mean([thin_pred[i] == y_real[i] for i in thin_idx if real[i].label == lab]))
                for lab in THIN
            }
            thin_correct = sum(int(thin_pred[i] == y_real[i]) for i in thin_idx)
            base_top1 = float(np.mean([m["base_top1"] for m in base_metrics]))
            base_fp = float(np.mean([m["base_called_thin"] for m in base_metrics]))
            n_base, n_thin = len(base_val), len(thin_idx)
            overall = (base_top1 * n_base + thin_correct) / (n_base + n_thin)
            per_seed.append(
                {
                    "seed": seed,
                    "thin_recall": thin_recall,
                    "thin_mean_recall": float(np.mean(list(thin_recall.values()))),
                    "base_top1": base_top1,
                    "base_called_thin_per_fold": base_fp,
                    "overall_top1": overall,
                    "base_recall": {
                        lab: float(np.mean([m["base_recall"][lab] for m in base_metrics]))
                        for lab in labels
                        if lab not in THIN
                    },
                    "synthetic_added_per_fold": added_total / args.folds,
                }
            )
        cond = {
            "variant": variant,
            "ratio": ratio,
            "capped_by_pool": sorted(capped),
            "seconds": round(time.perf_counter() - t0, 1),
            "runs": per_seed,
            "summary": {
                "hyperextension_bench": mean_sd([r["thin_recall"]["hyperextension_bench"] for r in per_seed]),
                "plyo_box": mean_sd([r["thin_recall"]["plyo_box"] for r in per_seed]),
                "thin_mean_recall": mean_sd([r["thin_mean_recall"] for r in per_seed]),
                "base_top1": mean_sd([r["base_top1"] for r in per_seed]),
                "base_called_thin_per_fold": mean_sd([r["base_called_thin_per_fold"] for r in per_seed]),
                "overall_top1": mean_sd([r["overall_top1"] for r in per_seed]),
                "synthetic_added_per_fold": per_seed[0]["synthetic_added_per_fold"],
                **{
                    f"recall_{lab}": mean_sd([r["base_recall"][lab] for r in per_seed])
                    for lab in ("bench_press", "power_rack")
                    if lab in labels
                },
            },
        }
        result["conditions"].append(cond)
        if args.out is not None:  # partial results survive an interrupted run
            args.out.write_text(json.dumps(result, indent=1, default=str))
        print(
            f"{variant:9s} r={ratio:<5g} " + " ".join(f"{k}={v}" for k, v in cond["summary"].items()),
            flush=True,
        )
    return result


def build_parser() -> argparse.ArgumentParser:
    """CLI of the experiments (see module docstring)."""
    p = argparse.ArgumentParser(prog="python -m scripts.synth_experiments", description=__doc__)
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--weights", default="../shared/weights/vgg16_notop.weights.h5")
    p.add_argument("--cache", type=Path, default=Path("data/cache"), help="bottleneck cache (shared)")
    p.add_argument("--out", type=Path, help="write the result JSON here")
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("masks")
    m.add_argument("--classes", nargs="+", default=list(THIN))
    m.add_argument("--folder", default="real", help="real or white_bg (sub-folder of --data)")
    e1 = sub.add_parser("exp1")
    e1.add_argument("--synthetic", type=Path, nargs="+", required=True, help="one or more generate outputs")
    e1.add_argument("--per-class-limit", type=int, help="use a random subset of this many images per class")
    e1.add_argument("--seeds", type=int, default=3)
    e1.add_argument("--epochs", type=int, default=30)
    e1.add_argument("--scratch", action="store_true", help="also train the from-scratch CNN baseline")
    e1.add_argument("--scratch-seeds", type=int, default=1)
    e1.add_argument("--scratch-epochs", type=int, default=20)
    e2 = sub.add_parser("exp2")
    e2.add_argument("--synthetic", type=Path, required=True)
    e2.add_argument("--folds", type=int, default=4)
    e2.add_argument("--seeds", type=int, default=2)
    e2.add_argument("--epochs", type=int, default=30)
    e2.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1, 2, 4, 8])
    e2.add_argument("--variants", nargs="+", default=["thin"], choices=["thin", "small"])
    e2.add_argument("--flip", action="store_true", help="real photos also train and test with the flip view")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one experiment; print results; write JSON to --out."""
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    commands = {"masks": cmd_masks, "exp1": cmd_exp1, "exp2": cmd_exp2}
    result = commands[args.command](args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
