"""Simulate Spotter's learning loop on real photos (issue 6) and report figures and timings.

    nice .venv/bin/python -m scripts.benchmark_retrain --target smith_machine --out retrain_benchmark.json

1. A champion is trained (the classifier's own `fit_version` recipe, cached bottleneck features) on the real
   photos of ``../shared/data`` WITHOUT most training photos of one class (``--target``, ``--withhold``).
2. Those withheld photos are sent to the bot's code path as users would: each is re-encoded as JPEG (as
   Telegram recompresses uploads, so the bytes and bottleneck features are new), stored by `PhotoStore`,
   classified by the champion (`Predictor`), recorded with `bot.data.record_classified_photo`, and, when the
   champion was wrong, corrected with `bot.data.record_choice` -- by an admin or by three different users
   agreeing (``--feed``). Photos the champion already named right are confirmations, not corrections.
3. `classifier.retrain.run_pipeline` retrains; the target class's accuracy on its validation photos (never
   fed in) is compared for champion and challenger, and whether the champion changed.
4. One non-admin user then sends deliberately wrong corrections (photos of ``--poison-from`` labelled
   ``--poison-to``); the pipeline runs again and nothing may be promoted. With ``--approve-poison`` an admin
   then approves them by mistake, to show the promotion margins still keep the champion.

Everything lives in ``--work`` (default: a temporary folder); bottleneck features are cached in
``--cache`` (default ``data/cache``, shared with ``python -m classifier train``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared"
ADMIN_ID = 1
POISONER_ID = 666
log = logging.getLogger("benchmark_retrain")


@dataclass
class LoopConfig:
    """Parameters of one simulated loop (see module docstring).

    classes: restrict to these classes (None = all); max_train / max_val: cap photos per class (None = all);
    withhold: share of the target's training photos kept from the champion and fed as corrections;
    epochs/views/tta/thin_views/ensemble: head training recipe (None = the classifier's TrainConfig defaults,
    i.e. the shipped champion's recipe); include_ood: keep
    the out-of-distribution photos (the ``__other__`` class).
    """

    shared_data: Path
    weights: Path
    work: Path
    cache: Path
    target: str = "smith_machine"
    withhold: float = 0.85
    feed: str = "admin"
    classes: list[str] | None = None
    max_train: int | None = None
    max_val: int | None = None
    epochs: int | None = None
    views: tuple[str, ...] | None = None
    tta: tuple[str, ...] | None = None
    thin_views: tuple[str, ...] | None = None
    ensemble: int | None = None
    poison_from: str = "treadmill"
    poison_to: str = "leg_press"
    poison_count: int = 40
    approve_poison: bool = False
    jpeg_quality: int = 87
    include_ood: bool = True


@dataclass
class LoopReport:
    """Figures of one simulated loop (all accuracies are fractions; times in seconds)."""

    target: str
    champion: str = ""
    champion_train_images: int = 0
    withheld: int = 0
    fed_corrections: int = 0
    fed_confirmations: int = 0
    target_val_photos: int = 0
    target_val_acc_champion: float = 0.0
    target_val_acc_challenger: float = 0.0
    overall_champion: float | None = None
    overall_challenger: float | None = None
    eval_images: int = 0
    retrain: dict[str, Any] = field(default_factory=dict)
    champion_after_retrain: str = ""
    poison: dict[str, Any] = field(default_factory=dict)
    poison_approved: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_base_dataset(cfg: LoopConfig) -> tuple[Path, list[Path], list[Path]]:
    """Write ``work/base/MANIFEST.tsv`` (symlinked folders) without the withheld target photos.

    Returns (base folder, withheld target training photos, target validation photos). The choice is
    deterministic (by content hash).
    """
    base = cfg.work / "base"
    base.mkdir(parents=True, exist_ok=True)
    for sub in ("real", "white_bg", "ood", "backgrounds"):
        link = base / sub
        if not link.exists() and (cfg.shared_data / sub).exists():
            link.symlink_to((cfg.shared_data / sub).resolve())
    with (cfg.shared_data / "MANIFEST.tsv").open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    keep: list[dict[str, str]] = []
    target_val: list[Path] = []
    per_class: dict[tuple[str, str], int] = {}
    target_train: list[dict[str, str]] = []
    for row in sorted(rows, key=lambda r: r["sha256"]):
        kind, label, split = row["kind"], row["class"], row["suggested_split"]
        if kind == "white_bg" and cfg.classes is not None:
            continue
        if kind in ("ood", "backgrounds") and not cfg.include_ood:
            continue
        if kind == "real":
            if cfg.classes is not None and label not in cfg.classes:
                continue
            cap = cfg.max_train if split == "train" else cfg.max_val
            n = per_class.get((label, split), 0)
            if cap is not None and n >= cap:
                continue
            per_class[(label, split)] = n + 1
            if label == cfg.target and split == "train":
                target_train.append(row)
                continue
            if label == cfg.target and split == "val":
                target_val.append(cfg.shared_data / row["path"])
        keep.append(row)
    # withhold an exact share of the target's training photos, chosen by a hash of their content hash
    target_train.sort(key=lambda r: hashlib.sha256(f"withhold:{r['sha256']}".encode()).hexdigest())
    n_withheld = round(cfg.withhold * len(target_train))
    withheld = [cfg.shared_data / r["path"] for r in target_train[:n_withheld]]
    keep += target_train[n_withheld:]
    with (base / "MANIFEST.tsv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, delimiter="\t")
        writer.writeheader()
        writer.writerows(keep)
    return base, withheld, target_val


def train_config(cfg: LoopConfig) -> Any:
    """The classifier's TrainConfig with the overrides of ``cfg``."""
    from classifier.train import TrainConfig

    config = TrainConfig()
    if cfg.epochs is not None:
        config = replace(config, epochs=cfg.epochs)
    if cfg.views is not None:
        config = replace(config, views=cfg.views)
    if cfg.tta is not None:
        config = replace(config, tta=cfg.tta)
    if cfg.thin_views is not None:
        config = replace(config, thin_views=cfg.thin_views)
    if cfg.ensemble is not None:
        config = replace(config, head=replace(config.head, ensemble=cfg.ensemble))
    return config


def as_telegram_jpeg(path: Path, quality: int) -> bytes:
    """The photo as the bot would receive it: EXIF-upright RGB, at most 1280 px, re-encoded as JPEG."""
    with Image.open(path) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    rgb.thumbnail((1280, 1280))
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def target_accuracy(
    version_dir: Path, photos: Sequence[Path], label: str, backbone: Any, cache: Path
) -> float:
    """Top-1 accuracy of a version's head on ``photos`` (all of class ``label``), from cached features."""
    from classifier.dataset import LabelledImage
    from classifier.retrain import aligned_features, load_head, predicted_labels

    loaded = load_head(version_dir, backbone.feature_shape)
    items = [LabelledImage(p, label, "val") for p in photos]
    feats, idx = aligned_features(items, backbone, cache, loaded.tta)
    pred = predicted_labels(loaded.head, loaded.outputs, feats, loaded.rule, loaded.tta_exit)
    return sum(p == label for p in pred) / max(1, len(idx))


def feed_photo(
    factory: Any, user: int, message_id: int, stored: Any, prediction: Any, label: str, *, is_admin: bool
) -> None:
    """One user's photo through the bot's own path: the classified photo recorded, then her choice of
    ``label`` (a correction, or a confirmation when it is the predicted label; 3-user agreement rule)."""
    from bot import data as bot_data

    recorded = bot_data.record_classified_photo(
        factory,
        telegram_user_id=user,
        language_code="en",
        chat_id=user,
        message_id=message_id,
        media_group_id=None,
        stored=stored,
        prediction=prediction,
    )
    bot_data.record_choice(
        factory, recorded.prediction_id, user, label, is_admin=is_admin, agreement_threshold=3
    )


def run_loop(cfg: LoopConfig, progress: bool = False) -> LoopReport:
    """Run the whole simulation (see module docstring) and return its figures."""
    from bot.photo_store import PhotoStore
    from classifier.dataset import OTHER_LABEL
    from classifier.model import load_backbone
    from classifier.predictor import Predictor
    from classifier.registry import Registry
    from classifier.retrain import RetrainSettings, load_base_dataset, run_pipeline
    from classifier.train import fit_version, save_version
    from db.models import Equipment
    from db.repositories.corrections import pending_corrections, review_correction
    from db.schema import upgrade_to_head
    from db.session import make_engine, make_session_factory, session_scope

    report = LoopReport(cfg.target)
    t = time.perf_counter()
    base, withheld, target_val = build_base_dataset(cfg)
    report.withheld, report.target_val_photos = len(withheld), len(target_val)

    # 1. champion without the withheld photos
    train, val, ood = load_base_dataset(base)
    backbone = load_backbone(str(cfg.weights), 224)
    config = train_config(cfg)
    fit = fit_version(train, val, ood, backbone, cfg.cache, config, progress=progress)
    registry = Registry(cfg.work / "models")
    champion = save_version(
        registry,
        fit,
        backbone.identity,
        notes=f"benchmark champion without {len(withheld)} {cfg.target} photos",
        promote=True,
        extra_metrics={"data": {"path": str(base)}},
    )
    report.champion = champion
    report.champion_train_images = sum(fit.train_counts.values())
    report.timings["champion_train"] = round(time.perf_counter() - t, 1)

    # 2. database, catalog, and the withheld photos fed through the bot's code path
    t = time.perf_counter()
    db_url = f"sqlite:///{cfg.work / 'spotter.sqlite3'}"
    upgrade_to_head(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        for order, slug in enumerate(fit.labels):
            if slug != OTHER_LABEL:
                session.add(Equipment(slug=slug, display_name=slug.replace("_", " "), sort_order=order))
    data_dir = cfg.work / "data"
    store = PhotoStore(data_dir / "photos")
    predictor = Predictor.load(registry.version_dir(champion), str(cfg.weights), backbone)
    users = [ADMIN_ID] if cfg.feed == "admin" else [101, 102, 103]
    message_id = 0
    for path in withheld:
        photo = as_telegram_jpeg(path, cfg.jpeg_quality)
        stored = store.save(photo)
        prediction = predictor.classify_bytes(photo)
        corrected = False
        for user in users:
            message_id += 1
            feed_photo(factory, user, message_id, stored, prediction, cfg.target, is_admin=user == ADMIN_ID)
            corrected = prediction.decision == "not_equipment" or prediction.label != cfg.target
        if corrected:
            report.fed_corrections += 1
        else:
            report.fed_confirmations += 1
    report.timings["feed"] = round(time.perf_counter() - t, 1)

    # 3. retrain
    settings = RetrainSettings(
        models_dir=cfg.work / "models",
        data_dir=data_dir,
        vgg16_weights=str(cfg.weights),
        database_url=db_url,
        admin_user_ids=frozenset({ADMIN_ID}),
        training_data_dir=base,
        bottleneck_cache_dir=cfg.cache,
    )
    t = time.perf_counter()
    result = run_pipeline(settings, lambda stage, msg: log.info("[%s] %s", stage, msg))
    report.timings["retrain"] = round(time.perf_counter() - t, 1)
    report.retrain = result.to_json()
    report.overall_champion, report.overall_challenger = result.champion_accuracy, result.challenger_accuracy
    report.eval_images = result.eval_images
    report.champion_after_retrain = registry.champion() or ""
    report.target_val_acc_champion = target_accuracy(
        registry.version_dir(champion), target_val, cfg.target, backbone, cfg.cache
    )
    if result.version:
        report.target_val_acc_challenger = target_accuracy(
            registry.version_dir(result.version), target_val, cfg.target, backbone, cfg.cache
        )

    # 4. deliberately wrong corrections from one non-admin user
    t = time.perf_counter()
    poison_src = [it.path for it in train if it.label == cfg.poison_from][: cfg.poison_count]
    serving = Predictor.load(
        registry.version_dir(registry.champion() or champion), str(cfg.weights), backbone
    )
    for path in poison_src:
        photo = as_telegram_jpeg(path, cfg.jpeg_quality - 2)
        stored = store.save(photo)
        message_id += 1
        prediction = serving.classify_bytes(photo)
        feed_photo(factory, POISONER_ID, message_id, stored, prediction, cfg.poison_to, is_admin=False)
    before = registry.champion()
    poison = run_pipeline(settings)
    report.poison = {
        "corrections": len(poison_src),
        "status": poison.status,
        "pending": poison.corrections_pending,
        "champion_before": before,
        "champion_after": registry.champion(),
        "promoted": poison.promoted,
    }
    report.timings["poison_retrain"] = round(time.perf_counter() - t, 1)

    if cfg.approve_poison:
        t = time.perf_counter()
        with session_scope(factory) as session:
            for c in pending_corrections(session, limit=10_000):
                review_correction(session, c.id, reviewer_telegram_id=ADMIN_ID, action="approve")
        before = registry.champion()
        approved = run_pipeline(settings)
        report.poison_approved = {
            "status": approved.status,
            "version": approved.version,
            "champion_before": before,
            "champion_after": registry.champion(),
            "overall": [approved.champion_accuracy, approved.challenger_accuracy],
            "reasons": approved.reasons,
            "poisoned_class": approved.per_class.get(cfg.poison_from),
        }
        report.timings["approved_poison_retrain"] = round(time.perf_counter() - t, 1)
    engine.dispose()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: run the loop with the given options; print the report as JSON (and write it with --out)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--work", type=Path, help="work folder (default: a new temporary folder, removed)")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "cache")
    parser.add_argument("--target", default="smith_machine")
    parser.add_argument("--withhold", type=float, default=0.85)
    parser.add_argument("--feed", choices=("admin", "agreement"), default="admin")
    parser.add_argument("--classes", help="comma-separated subset of classes")
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--max-val", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--views")
    parser.add_argument("--tta")
    parser.add_argument("--poison-from", default="treadmill")
    parser.add_argument("--poison-to", default="leg_press")
    parser.add_argument("--poison-count", type=int, default=40)
    parser.add_argument("--approve-poison", action="store_true")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = args.work or Path(tempfile.mkdtemp(prefix="spotter-retrain-"))
    cfg = LoopConfig(
        shared_data=args.shared / "data",
        weights=args.shared / "weights" / "vgg16_notop.weights.h5",
        work=work,
        cache=args.cache,
        target=args.target,
        withhold=args.withhold,
        feed=args.feed,
        classes=args.classes.split(",") if args.classes else None,
        max_train=args.max_train,
        max_val=args.max_val,
        epochs=args.epochs,
        views=tuple(args.views.split(",")) if args.views else None,
        tta=tuple(args.tta.split(",")) if args.tta else None,
        poison_from=args.poison_from,
        poison_to=args.poison_to,
        poison_count=args.poison_count,
        approve_poison=args.approve_poison,
    )
    try:
        report = run_loop(cfg, progress=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
