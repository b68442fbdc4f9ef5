"""Head / augmentation / TTA / "other"-class measurements on cached VGG16 bottleneck features.

Usage (after the features are cached, e.g. by ``python -m classifier train``):

    nice .venv/bin/python -m scripts.classifier_experiments --data ../shared/data \
        --weights ../shared/weights/vgg16_notop.weights.h5 --out data/runs/experiments.json

Every experiment trains a head on the training split (real + white-background photos [+ OOD photos as
``__other__``]), evaluates on the MANIFEST ``val`` split and on held-out OOD photos, and prints one line:
top-1 (all 12 classes), top-1 on the original five, top-3, ECE, share of real photos answered
``confident`` and share of held-out OOD photos NOT answered confident at the fitted decision rule.
Views that are not cached are computed (slow: ~0.2-0.5 s per image on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from classifier.dataset import OTHER_LABEL, LabelledImage, extract_bottleneck_features, split_ood
from classifier.evaluate import ORIGINAL_FIVE, equipment_probs, evaluate, fit_decision_rule
from classifier.model import Backbone, HeadSpec, load_backbone
from classifier.train import TrainConfig, head_probabilities, train_head


def _feats(items: list[LabelledImage], bb: Backbone, cache: Path, view: str) -> tuple[np.ndarray, list[int]]:
    r = extract_bottleneck_features([it.path for it in items], bb, cache, view, progress=False)
    return r.features, r.index


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from classifier.dataset import load_base_dataset

    train, val, ood = load_base_dataset(Path(args.data))
    ood_train, ood_hold = split_ood(ood, TrainConfig().ood_holdout)
    labels = sorted({it.label for it in train})
    bb = load_backbone(args.weights)
    cache = Path(args.cache)
    views = args.views.split(",")
    train_items = train + ood_train
    cached: dict[tuple[str, str], tuple[np.ndarray, list[int]]] = {}
    for v in views:
        cached[("train", v)] = _feats(train_items, bb, cache, v)
    tta_views = args.tta.split(",")
    for v in tta_views:
        cached[("val", v)] = _feats(val, bb, cache, v)
        cached[("hold", v)] = _feats(ood_hold, bb, cache, v)

    def xy(train_views: list[str], other: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        outputs = labels + ([OTHER_LABEL] if other else [])
        xs, ys = [], []
        for v in train_views:
            f, idx = cached[("train", v)]
            keep = [k for k, i in enumerate(idx) if train_items[i].label in outputs]
            xs.append(f[keep])
            ys.append(np.array([outputs.index(train_items[idx[k]].label) for k in keep]))
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys), outputs

    val_true = np.array([labels.index(val[i].label) for i in cached[("val", "orig")][1]])
    results: list[dict[str, Any]] = []

    def experiment(
        name: str, spec: HeadSpec, config: TrainConfig, train_views: list[str], tta: list[str]
    ) -> None:
        x, y, outputs = xy(train_views, config.other_class)
        t0 = time.perf_counter()
        head = train_head(x, y, len(outputs), replace(spec, n_outputs=len(outputs)), config, progress=False)
        secs = time.perf_counter() - t0
        probs = head_probabilities(head, [cached[("val", v)][0] for v in tta])
        hold = head_probabilities(head, [cached[("hold", v)][0] for v in tta])
        m = evaluate(val_true, equipment_probs(probs, outputs), labels, {"five": ORIGINAL_FIVE})
        rule, rep = fit_decision_rule(outputs, probs, val_true, hold)
        row = {
            "name": name,
            "top1": m["top1"],
            "five": m["subset_top1"]["five"],
            "top3": m["top3"],
            "ece": m["ece"],
            "accept": rep["accept"],
            "confident_precision": rep["confident_precision"],
            "ood_rejection": rep["ood_rejection"],
            "ood_n": rep["ood_n"],
            "train_s": round(secs, 1),
            "head": spec.to_json(),
            "views": train_views,
            "tta": tta,
            "rule": rule.to_json(),
        }
        results.append(row)
        print(
            f"{name:42s} top1 {row['top1']:.4f} five {row['five']:.4f} top3 {row['top3']:.4f} "
            f"ece {row['ece']:.3f} accept {row['accept']:.3f}@{row['confident_precision']:.3f} "
            f"ood_rej {row['ood_rejection']:.3f} ({secs:.0f}s)",
            flush=True,
        )

    base = TrainConfig(epochs=args.epochs)
    tta_all = tta_views
    for name in args.only.split(","):
        if name == "heads":
            for spec in [
                HeadSpec("gap", 0, 0.0),
                HeadSpec("gap", 256, 0.5),
                HeadSpec("gap", 512, 0.5),
                HeadSpec("gap", 1024, 0.5),
                HeadSpec("gapgmp", 512, 0.5),
                HeadSpec("gmp", 512, 0.5),
                HeadSpec("flatten", 256, 0.5),
            ]:
                experiment(
                    f"{spec.pooling}-{spec.hidden}-d{spec.dropout} [orig]", spec, base, ["orig"], ["orig"]
                )
        elif name == "tta":
            spec = HeadSpec(args.pooling, args.hidden, 0.5)
            experiment(f"{spec.pooling}-{spec.hidden} tta={'+'.join(tta_all)}", spec, base, ["orig"], tta_all)
        elif name == "views":
            spec = HeadSpec(args.pooling, args.hidden, 0.5)
            for k in range(1, len(views) + 1):
                tv = views[:k]
                experiment(f"{spec.pooling}-{spec.hidden} train={'+'.join(tv)}", spec, base, tv, tta_all)
        elif name == "other":
            spec = HeadSpec(args.pooling, args.hidden, 0.5)
            experiment("no __other__ class", spec, replace(base, other_class=False), views, tta_all)
            experiment("with __other__ class", spec, base, views, tta_all)
        elif name == "weights":
            spec = HeadSpec(args.pooling, args.hidden, 0.5)
            for power in (0.0, 0.5, 1.0):
                experiment(
                    f"class_weight_power={power}",
                    spec,
                    replace(base, class_weight_power=power),
                    views,
                    tta_all,
                )
        elif name == "epochs":
            spec = HeadSpec(args.pooling, args.hidden, 0.5)
            for ep in (15, 30, 60):
                experiment(f"epochs={ep}", spec, replace(base, epochs=ep), views, tta_all)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--weights", default="../shared/weights/vgg16_notop.weights.h5")
    p.add_argument("--cache", default="data/cache")
    p.add_argument("--views", default="orig", help="training views available, in order (orig,flip,aug1)")
    p.add_argument("--tta", default="orig", help="test-time views (orig or orig,flip)")
    p.add_argument("--only", default="heads", help="comma list: heads,tta,views,other,weights,epochs")
    p.add_argument("--pooling", default="gap")
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="")
    args = p.parse_args()
    results = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
