"""Block-5 fine-tuning experiment: does training VGG16's last conv block help on our validation split?

    nice .venv/bin/python -m scripts.finetune_block5 --stage extract     # block4_pool features, cached
    nice .venv/bin/python -m scripts.finetune_block5 --stage finetune    # fine-tune + evaluate

Block-4 features (14x14x512 float16 for 224 px input) are cached like the 7x7 bottleneck features, under
a cache key of their own, so each fine-tuning epoch only runs block 5 (~2.8 of VGG16's 15.5 GFLOPs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from classifier.dataset import OTHER_LABEL, LabelledImage, class_counts, load_base_dataset, split_ood
from classifier.evaluate import ORIGINAL_FIVE, equipment_probs, evaluate, fit_decision_rule
from classifier.finetune import (
    Block5FineTune,
    apply_block5,
    block4_features,
    finetune_block5,
    trunk_to_block4,
)
from classifier.model import HeadSpec, load_backbone
from classifier.train import TrainConfig, head_probabilities, train_head


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stage", choices=["extract", "finetune"], required=True)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--weights", default="../shared/weights/vgg16_notop.weights.h5")
    p.add_argument("--cache", default="data/cache")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="")
    args = p.parse_args()

    train, val, ood = load_base_dataset(Path(args.data))
    ood_train, ood_hold = split_ood(ood, TrainConfig().ood_holdout)
    labels = sorted({it.label for it in train})
    outputs = [*labels, OTHER_LABEL]
    train_items = train + ood_train
    counts = class_counts(train_items)
    thin = [
        it
        for it in train_items
        if counts[it.label] <= TrainConfig().thin_class_max and it.label != OTHER_LABEL
    ]
    bb = load_backbone(args.weights)
    b4 = trunk_to_block4(bb)
    cache = Path(args.cache)

    def feats(items: list[LabelledImage], view: str) -> tuple[np.ndarray, np.ndarray]:
        f, idx = block4_features(items, b4, cache, view)
        y = np.array([outputs.index(items[i].label) for i in idx])
        return f, y

    t0 = time.perf_counter()
    xtr, ytr = feats(train_items, "orig")
    xtf, _ = feats(train_items, "flip")
    xth, yth = feats(thin, "aug1")
    xv, yv = feats(val, "orig")
    xvf, _ = feats(val, "flip")
    xh, _ = feats(ood_hold, "orig")
    xhf, _ = feats(ood_hold, "flip")
    print(f"block4 features ready in {time.perf_counter() - t0:.0f}s: train {xtr.shape}", flush=True)
    if args.stage == "extract":
        return

    yv_eq = np.array([labels.index(outputs[i]) for i in yv])
    results: dict[str, Any] = {}

    def report(name: str, head: Any, block5: Any) -> None:
        v = [apply_block5(block5, xv), apply_block5(block5, xvf)]
        h = [apply_block5(block5, xh), apply_block5(block5, xhf)]
        for tta_name, vv, hh in (("orig", v[:1], h[:1]), ("orig+flip", v, h)):
            probs = head_probabilities(head, vv)
            hold = head_probabilities(head, hh)
            m = evaluate(yv_eq, equipment_probs(probs, outputs), labels, {"five": ORIGINAL_FIVE})
            _, rep = fit_decision_rule(outputs, probs, yv_eq, hold)
            key = f"{name} tta={tta_name}"
            results[key] = {
                "top1": m["top1"],
                "five": m["subset_top1"]["five"],
                "top3": m["top3"],
                "ece": m["ece"],
                "accept": rep["accept"],
                "ood_rejection": rep["ood_rejection"],
                "recall": {k: v["recall"] for k, v in m["per_class"].items()},
            }
            print(
                f"{key:50s} top1 {m['top1']:.4f} five {m['subset_top1']['five']:.4f} top3 {m['top3']:.4f} "
                f"ece {m['ece']:.3f} accept {rep['accept']:.3f} ood_rej {rep['ood_rejection']:.3f}",
                flush=True,
            )

    config = TrainConfig(seed=args.seed)
    ft = Block5FineTune(epochs=args.epochs, learning_rate=args.lr, seed=args.seed)
    t0 = time.perf_counter()
    block5, head = finetune_block5(bb, xtr, ytr, xtf, len(outputs), config, ft, extra=(xth, yth))
    print(f"fine-tuned in {time.perf_counter() - t0:.0f}s", flush=True)
    report("finetuned single head", head, block5)
    # the v0001 recipe (3-head ensemble, thin views) on the fine-tuned block-5 features
    x7 = np.concatenate([apply_block5(block5, xtr), apply_block5(block5, xth)])
    y7 = np.concatenate([ytr, yth])
    t0 = time.perf_counter()
    ens = train_head(x7, y7, len(outputs), HeadSpec(hidden=512, ensemble=3), config, progress=False)
    print(f"ensemble on fine-tuned features in {time.perf_counter() - t0:.0f}s", flush=True)
    report("ensemble3 on finetuned block5", ens, block5)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
