"""Command line: ``python -m classifier {train,evaluate,predict,versions,promote}``.

Settings (MODELS_DIR, DATA_DIR, VGG16_WEIGHTS) come from the environment / ``.env`` via
`classifier.settings.ClassifierSettings`; flags override them.

* ``train --data DIR [--model vgg16|scratch] [--promote]``: DIR is either the shared data set (has
  ``MANIFEST.tsv``: real photos with ``suggested_split``, white-background shots, OOD photos) or a
  folder-per-class tree (validation = a hash-based share, ``--val-fraction``). ``--extra DIR`` adds
  folder-per-class training images (e.g. synthetic or feedback sets), ``--ood DIR`` a folder of photos that
  are not known equipment. Bottleneck features are cached under ``DATA_DIR/cache``.
* ``evaluate [--version V] --data DIR [--out DIR] [--json]``: top-1/top-3, per-class precision/recall,
  confusion matrix (text, and PNG + JSON in --out), calibration error of a saved version on DIR's
  validation split, through the serving path (bytes -> Predictor).
* ``--precision float32|bfloat16|int8`` (evaluate, predict; default float32, whatever
  CLASSIFIER_PRECISION says): compute as the bot does. int8 is calibrated on TRAINING_DATA_DIR's photos
  (for evaluate: ``--data``'s when TRAINING_DATA_DIR is unset); without photos, or with ``--no-calibration``,
  it is the dynamic-range recipe (what the bot serves without TRAINING_DATA_DIR). Cached under
  ``DATA_DIR/cache/int8`` (`classifier.quantize`).
* ``predict [--json] [--version V] IMAGE...``: one line per image; with ``--json`` one JSON object per line
  ``{"path", "label", "confidence", "decision", "top_k": [[label, p], ...], "model_version",
  "other_probability"}`` (P(``__other__``), what ``not_equipment`` is decided on), or
  ``{"path", "error"}`` for an unreadable file; exit status 0 unless no model could be loaded.
* ``versions``: the registry's versions (``*`` marks the champion) with top-1 and creation date.
* ``promote VERSION``: move the champion pointer (atomic, history kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from classifier.dataset import OTHER_LABEL, LabelledImage, load_base_dataset, scan_folder_dataset
from classifier.quantize import Int8UnavailableError
from classifier.registry import Registry, RegistryError
from classifier.settings import PRECISIONS, ClassifierSettings
from classifier.types import BackboneMismatchError, ImageDecodeError

log = logging.getLogger("classifier")


def _settings(args: argparse.Namespace) -> ClassifierSettings:
    s = ClassifierSettings()
    if getattr(args, "models_dir", None):
        s.models_dir = Path(args.models_dir)
    if getattr(args, "weights", None):
        s.vgg16_weights = args.weights
    if getattr(args, "data_dir", None):
        s.data_dir = Path(args.data_dir)
    return s


def _weights_arg(value: str) -> str | None:
    return None if value == "none" else value


def cmd_train(args: argparse.Namespace) -> int:
    from classifier.finetune import Block5FineTune, finetune_backbone
    from classifier.model import HeadSpec, load_backbone
    from classifier.train import (
        TrainConfig,
        fit_scratch,
        fit_version,
        report_lines,
        save_version,
        training_plan,
    )

    s = _settings(args)
    train, val, ood = load_base_dataset(Path(args.data), args.val_fraction)
    for extra in args.extra or []:
        train += scan_folder_dataset(Path(extra), "train", "extra")
    for o in args.ood or []:
        ood += [
            LabelledImage(p, OTHER_LABEL, "ood", "ood") for p in sorted(Path(o).rglob("*")) if p.is_file()
        ]
    if not train:
        print(f"no training images found in {args.data}", file=sys.stderr)
        return 2
    if not val:  # checked before any training: fine-tuning alone takes half an hour on real data
        print(
            f"no validation images in {args.data}: add photos per class or raise --val-fraction "
            f"(now {args.val_fraction})",
            file=sys.stderr,
        )
        return 2
    if not args.finetune_block5 and (args.finetune_epochs is not None or args.finetune_lr is not None):
        print("--finetune-epochs and --finetune-lr need --finetune-block5", file=sys.stderr)
        return 2
    config = TrainConfig(
        head=HeadSpec(pooling=args.pooling, hidden=args.hidden, dropout=args.dropout, ensemble=args.ensemble),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        views=tuple(args.views.split(",")),
        tta=tuple(args.tta.split(",")),
        thin_views=tuple(v for v in args.thin_views.split(",") if v),
        thin_class_max=args.thin_class_max,
        other_class=not args.no_other,
        seed=args.seed,
    )
    registry = Registry(s.models_dir)
    if args.model == "scratch":
        if args.finetune_block5:
            print("--finetune-block5 applies to --model vgg16", file=sys.stderr)
            return 2
        fit = fit_scratch(train, val, config, progress=not args.quiet)
        version = save_version(registry, fit, None, notes=args.notes, promote=args.promote)
    else:
        backbone = load_backbone(_weights_arg(s.vgg16_weights), args.input_size)
        cache = None if args.no_cache else s.data_dir / "cache"
        if args.finetune_block5:
            plan = training_plan(train, ood, config)
            default = Block5FineTune()
            ft = Block5FineTune(
                epochs=args.finetune_epochs or default.epochs,
                learning_rate=args.finetune_lr or default.learning_rate,
                seed=args.seed,
            )
            backbone = finetune_backbone(
                plan.train_items, plan.thin, plan.outputs, backbone, cache, config, ft, not args.quiet
            )
        fit = fit_version(train, val, ood, backbone, cache, config, progress=not args.quiet)
        identity = backbone.pretrained_identity
        version = save_version(registry, fit, identity, notes=args.notes, promote=args.promote)
    for path, reason in fit.failed.items():
        print(f"skipped unreadable image {path}: {reason}", file=sys.stderr)
    print(f"saved {version} in {registry.models_dir}" + (" (champion)" if args.promote else ""))
    for line in report_lines(fit.metrics):
        print(line)
    return 0


def _load_predictor(
    s: ClassifierSettings,
    version: str | None,
    precision: str = "float32",
    calibration: Path | None = None,
    dynamic: bool = False,
) -> Any:
    """Load ``version`` (default: the champion) in ``precision``; int8 is calibrated on the photos of
    TRAINING_DATA_DIR, else of ``calibration`` (a base data set), and is the dynamic-range recipe when
    ``dynamic`` or neither has photos. Raises RegistryError, what `classifier.predictor.Predictor.load`
    raises, and ValueError (one line) when TRAINING_DATA_DIR is not a directory or a data set cannot be
    read (a malformed MANIFEST.tsv)."""
    from classifier.predictor import Predictor
    from classifier.quantize import Int8Source

    registry = Registry(s.models_dir)
    name = version or registry.champion()
    if name is None:
        raise RegistryError(f"no champion model in {s.models_dir}; train one or pass --version")
    int8 = None
    if precision == "int8":
        cache = s.data_dir / "cache"
        if s.training_data_dir is not None and not Path(s.training_data_dir).is_dir():
            raise ValueError(f"TRAINING_DATA_DIR={s.training_data_dir} is not a directory")
        if not dynamic:  # a malformed data set raises CalibrationDataError, a ValueError: one line
            int8 = Int8Source.from_data_set(s.training_data_dir, cache)
            int8 = int8 or Int8Source.from_data_set(calibration, cache)
        int8 = int8 or Int8Source.dynamic(cache)
    try:
        return Predictor.load(
            registry.version_dir(name),
            _weights_arg(s.vgg16_weights),
            bfloat16=precision == "bfloat16",
            int8=int8,
        )
    except Int8UnavailableError as exc:
        if int8 is None or not int8.photos:
            raise
        hint = "--no-calibration uses the dynamic-range recipe, which needs no photos"
        raise Int8UnavailableError(f"{exc} ({hint})") from exc


def _precision(args: argparse.Namespace) -> str:
    if args.bfloat16 and args.precision not in ("float32", "bfloat16"):
        raise ValueError(f"--bfloat16 contradicts --precision {args.precision}")
    precision = "bfloat16" if args.bfloat16 else str(args.precision)
    if args.no_calibration and precision != "int8":
        raise ValueError("--no-calibration applies to --precision int8")
    return precision


def cmd_predict(args: argparse.Namespace) -> int:
    s = _settings(args)
    predictor = _load_predictor(s, args.version, _precision(args), dynamic=args.no_calibration)
    if not args.quiet:
        print(f"model {predictor.version} ({predictor.precision_detail})", file=sys.stderr)
    for image in args.images:
        out: dict[str, Any] = {"path": image}
        try:
            data = Path(image).read_bytes()
            p = predictor.classify_bytes(data)
            out.update(
                label=p.label,
                confidence=round(p.confidence, 6),
                decision=p.decision,
                top_k=[[lab, prob] for lab, prob in p.top_k],
                model_version=p.model_version,
                other_probability=p.other_probability,
            )
        except (OSError, ImageDecodeError) as exc:
            out["error"] = str(exc) if isinstance(exc, ImageDecodeError) else f"cannot read file: {exc}"
        if args.json:
            print(json.dumps(out), flush=True)
        elif "error" in out:
            print(f"{image}: ERROR {out['error']}", flush=True)
        else:
            top = ", ".join(f"{lab} {prob:.2f}" for lab, prob in out["top_k"])
            p_other = out["other_probability"]  # 0 when not_equipment came from a version without __other__
            why = f", P(other) {p_other:.2f}" if out["decision"] == "not_equipment" and p_other > 0 else ""
            answer = f"{out['label']} ({out['confidence']:.2f}, {out['decision']}{why})"
            print(f"{image}: {answer} [{top}]", flush=True)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from classifier.dataset import split_ood
    from classifier.evaluate import (
        ORIGINAL_FIVE,
        confusion_text,
        decision_report,
        equipment_probs,
        evaluate,
        plot_confusion,
    )
    from classifier.preprocess import preprocess
    from classifier.train import TrainConfig

    s = _settings(args)
    predictor = _load_predictor(s, args.version, _precision(args), Path(args.data), args.no_calibration)
    _, val, ood = load_base_dataset(Path(args.data), args.val_fraction)
    val = [it for it in val if it.label in predictor.labels]
    # The OOD photos the version held out of training (same deterministic split as `fit_version`).
    registry = Registry(s.models_dir)
    config = registry.read_json(predictor.version, "metrics.json").get("config", {})
    _, ood_held = split_ood(ood, float(config.get("ood_holdout", TrainConfig.ood_holdout)))
    passes: list[int] = []

    def run(items: list[LabelledImage], desc: str) -> tuple[np.ndarray, list[int]]:
        probs, kept = [], []
        for i, it in enumerate(tqdm(items, desc=desc, unit="img", disable=args.quiet)):
            try:
                x = preprocess(it.path.read_bytes(), predictor.spec)
            except (OSError, ImageDecodeError) as exc:
                print(f"skipped unreadable image {it.path}: {exc}", file=sys.stderr)
                continue
            probs.append(predictor.probabilities(x))
            passes.append(predictor.last_views)
            kept.append(i)
        return np.array(probs, dtype=np.float32).reshape(len(probs), len(predictor.outputs)), kept

    p, kept = run(val, "evaluate")
    truth = [predictor.labels.index(val[i].label) for i in kept]
    p_ood, _ = run(ood_held, "held-out OOD")
    metrics = evaluate(
        truth, equipment_probs(p, predictor.outputs), predictor.labels, {"original_five": ORIGINAL_FIVE}
    )
    metrics["decision"] = decision_report(predictor.rule, predictor.outputs, p, truth, p_ood)
    metrics["two_pass_share"] = round(sum(n > 1 for n in passes) / max(1, len(passes)), 4)
    metrics["model_version"] = predictor.version
    metrics["precision"] = predictor.precision
    metrics["precision_detail"] = predictor.precision_detail
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plot_confusion(
            metrics["confusion_matrix"], predictor.labels, out / "confusion_matrix.png", predictor.version
        )
    if args.json:
        print(json.dumps(metrics))
        return 0
    head = f"{predictor.version} ({predictor.precision_detail}): top-1 {metrics['top1']:.4f}"
    head += f"  top-3 {metrics['top3']:.4f}"
    print(f"{head}  ECE {metrics['ece']:.4f}")
    five_n = metrics.get("subset_n", {}).get("original_five", "?")
    five = metrics["subset_top1"]["original_five"]
    print(f"original five top-1 {five:.4f}  n={five_n} (of {metrics['n']})")
    d = metrics["decision"]
    print(
        f"confident on real {d['accept']:.3f} (precision {d['confident_precision']:.3f}); held-out OOD not "
        f"confident {d['ood_rejection']:.3f} of {d['ood_n']}"
    )
    print(
        f"unsure on real {d['real_unsure']:.3f}, not_equipment on real {d['real_not_equipment']:.3f}; "
        f"photos (validation + held-out OOD) needing a second TTA pass {metrics['two_pass_share']:.3f}"
    )
    print(f"{'class':24s} precision recall support")
    for lab, pc in metrics["per_class"].items():
        print(f"{lab:24s} {pc['precision']:9.3f} {pc['recall']:6.3f} {pc['support']:7d}")
    print(confusion_text(metrics["confusion_matrix"], predictor.labels))
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    s = _settings(args)
    registry = Registry(s.models_dir)
    champion = registry.champion()
    versions = registry.versions()
    if not versions:
        print(f"no model versions in {s.models_dir}")
    for v in versions:
        try:
            m = registry.read_json(v, "metrics.json")
        except (OSError, ValueError):
            m = {}
        mark = "*" if v == champion else " "
        top1 = m.get("top1")
        five = m.get("subset_top1", {}).get("original_five")
        desc = f"top-1 {top1:.4f}" if isinstance(top1, float) else "top-1 ?"
        if isinstance(five, float):
            desc += f"  five {five:.4f}"
        print(f"{mark} {v}  {m.get('kind', '?'):10s} {desc}  {m.get('created', '')}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    s = _settings(args)
    registry = Registry(s.models_dir)
    if registry.champion() == args.version:
        registry.version_dir(args.version)  # still validates the name
        print(f"{args.version} is already the champion; nothing changed")
        return 0
    registry.promote(args.version, reason=args.reason)
    print(f"champion is now {args.version}")
    return 0


def _add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="float32 (default), bfloat16, or int8 (what the bot serves; calibrated on TRAINING_DATA_DIR's "
        "photos, for evaluate else --data's, else dynamic range: README 'Int8 serving')",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="int8 without calibration photos (dynamic range), as the bot serves without TRAINING_DATA_DIR",
    )
    parser.add_argument("--bfloat16", action="store_true", help="same as --precision bfloat16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m classifier", description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", help="model registry (default: MODELS_DIR or models/)")
    parser.add_argument(
        "--weights",
        help="VGG16 weights: imagenet, a file path, or none (random; tests only: a new process cannot load "
        "the version) (default: VGG16_WEIGHTS)",
    )
    parser.add_argument("--data-dir", help="DATA_DIR for caches (default: DATA_DIR or data/)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, int8 conversion messages or model line"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a new version")
    t.add_argument("--data", required=True, help="MANIFEST.tsv data set or folder-per-class tree")
    t.add_argument("--model", choices=("vgg16", "scratch"), default="vgg16")
    t.add_argument("--extra", action="append", help="extra folder-per-class training images (repeatable)")
    t.add_argument("--ood", action="append", help="folder of not-equipment photos (repeatable)")
    t.add_argument("--val-fraction", type=float, default=0.15)
    t.add_argument("--pooling", choices=("gap", "gmp", "gapgmp", "flatten"), default="gap")
    t.add_argument("--hidden", type=int, default=512)
    t.add_argument("--dropout", type=float, default=0.5)
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--views", default="orig", help="training feature views (orig, flip, aug1, aug2, ...)")
    t.add_argument("--thin-views", default="flip,aug1", help="extra views for thin classes")
    t.add_argument("--thin-class-max", type=int, default=150, help="a class with <= this many images is thin")
    t.add_argument("--ensemble", type=int, default=3, help="independently trained head branches, averaged")
    t.add_argument("--tta", default="orig,flip", help="test-time views (orig, flip)")
    t.add_argument("--input-size", type=int, default=224)
    t.add_argument("--no-other", action="store_true", help="no explicit __other__ class")
    t.add_argument("--no-cache", action="store_true")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--finetune-block5",
        action="store_true",
        help="fine-tune VGG16's block 5 with the head first (README 'Block-5 fine-tuning'); the version "
        "stores it (14 MB)",
    )
    t.add_argument("--finetune-epochs", type=int, help="block-5 fine-tuning epochs (default 4)")
    t.add_argument("--finetune-lr", type=float, help="block-5 fine-tuning learning rate, Adam (default 1e-5)")
    t.add_argument("--notes", default="")
    t.add_argument("--promote", action="store_true", help="make the new version the champion")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a version on a data set's validation split")
    e.add_argument("--version")
    e.add_argument("--data", required=True)
    e.add_argument("--val-fraction", type=float, default=0.15)
    e.add_argument("--out", help="folder for metrics.json and confusion_matrix.png")
    e.add_argument("--json", action="store_true")
    _add_precision_arguments(e)
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files")
    p.add_argument("--version")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_precision_arguments(p)
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_predict)

    v = sub.add_parser("versions", help="list model versions")
    v.set_defaults(func=cmd_versions)

    pr = sub.add_parser("promote", help="make a version the champion")
    pr.add_argument("version")
    pr.add_argument("--reason", default="manual promotion")
    pr.set_defaults(func=cmd_promote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if not args.quiet:  # the first int8 use converts for about a minute: say so
        logging.getLogger("classifier.quantize").setLevel(logging.INFO)
    try:
        status: int = args.func(args)
        return status
    except (RegistryError, BackboneMismatchError, FileNotFoundError, ValueError, Int8UnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
