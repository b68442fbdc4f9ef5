"""Learning from corrections: ``python -m classifier.retrain`` (also run daily by the bot in a subprocess).

The offline composition root of Spotter (the one classifier module allowed to import ``db``):

1. lock: one run at a time per MODELS_DIR (``fcntl.flock`` on ``MODELS_DIR/.retrain.lock``);
2. review: re-apply the review rule (`db.review.refresh_review_states`), then collect the approved corrections
   no version trained on yet (`db.repositories.corrections.corrections_for_training`);
3. export: copy each correction's stored photo into the feedback set
   ``DATA_DIR/feedback/<label>/<sha256>.<ext>`` (`export_feedback`): labels validated against the known set
   and a strict slug pattern (never a path), the file's bytes checked against the recorded SHA-256, files
   never overwritten, an image already filed under another label skipped as a conflict. "Not gym equipment"
   corrections go to the ``__other__`` class the classifier trains on out-of-distribution photos. Images no
   approved correction supports any more (rejected by an admin, or deleted with /forget) are pruned;
4. split: a fixed share of feedback images (``FEEDBACK_HOLDOUT_PERCENT``, by content hash, so an image is
   always on the same side) never enters training and joins the base validation split as evaluation set;
5. classes: the champion's classes, plus any equipment type from the catalog with at least
   ``NEW_CLASS_MIN_IMAGES`` feedback training images (until then it is never offered as a prediction);
6. train a challenger head with the champion's recipe on base training data + feedback (+ optional synthetic
   top-up of thin classes), reusing cached bottleneck features (only new images are run through VGG16); a
   champion with fine-tuned block 5 (``block5.npz``) passes it on: the challenger's head trains on the same
   fine-tuned trunk and the version stores the same block 5 (block 5 itself is only re-tuned by
   ``python -m classifier train --finetune-block5``);
7. score champion and challenger on the same evaluation set, apply `classifier.promotion.decide`;
8. write the version atomically (`Registry.create_version`), mark the used corrections with it, and promote
   it only when the rule allows; record the promotion in the database.

A crash at any point leaves the old champion serving and the registry readable (versions are renamed into
place complete; the pointer moves with ``os.replace``); unmarked corrections are simply picked up next run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from classifier.dataset import IMAGE_EXTENSIONS, OTHER_LABEL, LabelledImage, load_base_dataset
from classifier.settings import ClassifierSettings
from db.settings import DatabaseSettings

if TYPE_CHECKING:
    from classifier.predictor import DecisionRule

log = logging.getLogger("classifier.retrain")  # also when run as __main__

LOCK_FILE = ".retrain.lock"
FEEDBACK_DIRNAME = "feedback"
NOT_EQUIPMENT = "not_equipment"
"""The correction label for "something else / not gym equipment" (db.models.NOT_EQUIPMENT)."""
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
"""Equipment slugs: lowercase letters, digits and underscores; never a path component such as ``..``."""


class RetrainSettings(ClassifierSettings, DatabaseSettings):
    """Settings of the retraining pipeline (environment variables, optional ``.env``).

    ADMIN_USER_IDS: comma-separated Telegram ids whose corrections are approved at once.
    REVIEW_AGREEMENT_USERS: distinct users who must agree on an image's label (>= 2, default 3).
    PROMOTION_OVERALL_MARGIN / PROMOTION_PER_CLASS_MARGIN: accuracy fractions the challenger may lose
    overall / on one class (defaults 0.01 / 0.05); PROMOTION_PER_CLASS_MIN_IMAGES: a class drop of this
    many images or fewer never blocks (default 1); PROMOTION_PER_CLASS_ALPHA: nor does a drop that an exact
    McNemar test does not find significant at this level (default 0.05; 1.0 = margins only).
    FEEDBACK_HOLDOUT_PERCENT: share of feedback images held back for evaluation (0-50, default 20).
    NEW_CLASS_MIN_IMAGES: feedback training images an admin-added equipment type needs before it becomes a
    class (default 10). TRAINING_DATA_DIR: the base data set (a folder with MANIFEST.tsv, or
    folder-per-class); default: the one recorded in the champion. SYNTH_TOPUP: top up thin classes with
    synthetic images (needs SYNTH_FOREGROUNDS_DIR and SYNTH_BACKGROUNDS_DIR). BOTTLENECK_CACHE_DIR: feature
    cache (default DATA_DIR/cache, shared with ``python -m classifier train``).
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    review_agreement_users: int = Field(default=3, ge=2)
    promotion_overall_margin: float = Field(default=0.01, ge=0.0, le=1.0)
    promotion_per_class_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    promotion_per_class_min_images: int = Field(default=1, ge=0)
    promotion_per_class_alpha: float = Field(default=0.05, gt=0.0, le=1.0)
    feedback_holdout_percent: int = Field(default=20, ge=0, le=50)
    new_class_min_images: int = Field(default=10, ge=1)
    synth_topup: bool = False
    synth_foregrounds_dir: Path | None = None
    synth_backgrounds_dir: Path | None = None
    bottleneck_cache_dir: Path | None = None

    @field_validator("admin_user_ids", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return frozenset(int(p) for p in value.replace(";", ",").split(",") if p.strip())
            except ValueError:
                raise ValueError("must be comma-separated numeric Telegram user ids") from None
        return value

    @property
    def feedback_dir(self) -> Path:
        """DATA_DIR/feedback: the feedback training set, folder-per-class."""
        return self.data_dir / FEEDBACK_DIRNAME


# --------------------------------------------------------------------------------------------------------
# Progress reporting (the bot relays these lines to the admin who ran /retrain)


class Progress:
    """Reports pipeline stages: JSON lines on stdout (``--progress-json``) or log lines."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def __call__(self, stage: str, message: str) -> None:
        log.info("[%s] %s", stage, message)
        if self.json_lines:
            print(json.dumps({"event": "progress", "stage": stage, "message": message}), flush=True)


# --------------------------------------------------------------------------------------------------------
# Lock


class RetrainBusyError(RuntimeError):
    """Another retraining run holds the lock on this MODELS_DIR."""


@contextlib.contextmanager
def retrain_lock(models_dir: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``models_dir/.retrain.lock`` (released on exit or when
    the process dies). Raises RetrainBusyError if another process holds it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with (models_dir / LOCK_FILE).open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainBusyError(f"another retraining run holds {models_dir / LOCK_FILE}") from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------------
# Export of corrections into the feedback set (pure file logic; the DB side is in `collect_corrections`)


@dataclass(frozen=True)
class FeedbackItem:
    """One approved correction to export: its id, the chosen label (slug or NOT_EQUIPMENT), the recorded
    content hash and the stored photo's path."""

    correction_id: int
    label: str
    image_sha256: str
    image_path: str


@dataclass
class ExportReport:
    """What `export_feedback` did. exported: newly written files; present: already in the set (same content
    under the same label); conflicts / invalid / missing: skipped, with a reason per correction id;
    included: correction ids whose image is now in the feedback set under their label."""

    exported: list[Path] = field(default_factory=list)
    present: list[Path] = field(default_factory=list)
    included: list[int] = field(default_factory=list)
    conflicts: dict[int, str] = field(default_factory=dict)
    invalid: dict[int, str] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)
    pruned: list[Path] = field(default_factory=list)


def class_folder(label: str) -> str:
    """Folder name for a correction label: ``__other__`` for NOT_EQUIPMENT, else the slug itself.

    Raises ValueError for anything that is not a strict slug (e.g. ``../x``, ``a/b``, empty, upper case).
    """
    if label == NOT_EQUIPMENT:
        return OTHER_LABEL
    if not SLUG_RE.fullmatch(label):
        raise ValueError(f"label {label!r} is not a valid equipment slug")
    return label


#: Extension for a stored photo whose name carries no usable one (the bot stores formats it does not
#: recognise by magic bytes as ``<sha256>.img``), by the format Pillow identifies.
PILLOW_FORMAT_EXTENSIONS = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "DIB": ".bmp",
    "TIFF": ".tif",
    "PPM": ".ppm",
}


def _image_extension(path: Path) -> str:
    """The feedback file extension for a stored photo: its own when the classifier reads it, else (``.img``)
    the one of the format Pillow identifies from the content. Raises ValueError when neither works."""
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return ext
    if ext == ".img":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                found = PILLOW_FORMAT_EXTENSIONS.get(str(image.format))
        except (OSError, UnidentifiedImageError):
            found = None
        if found is not None:
            return found
    raise ValueError(f"unsupported image format ({path.name}); such photos are not used for training")


def _existing_by_hash(feedback_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if feedback_dir.is_dir():
        for class_dir in feedback_dir.iterdir():
            if class_dir.is_dir() and not class_dir.name.startswith("."):
                for f in class_dir.iterdir():
                    if f.is_file() and not f.name.startswith("."):
                        found.setdefault(f.stem, f)
    return found


def _copy_no_overwrite(source_bytes: bytes, target: Path) -> bool:
    """Write bytes to ``target`` atomically without ever replacing an existing file (temp file + link).
    Returns False when ``target`` already exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(source_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_feedback(
    items: Sequence[FeedbackItem],
    feedback_dir: Path,
    known_labels: Collection[str],
    photos_dir: Path | None = None,
) -> ExportReport:
    """Copy the corrections' stored photos into ``feedback_dir/<class>/<sha256>.<ext>``.

    known_labels: labels a correction may carry (catalog slugs, the model's labels, NOT_EQUIPMENT); anything
    else is reported invalid. photos_dir: when given, stored photos must lie inside it (a tampered path in
    the database cannot make us read other files). A file whose bytes do not hash to the recorded SHA-256 is
    reported missing. Never overwrites: an image already present under the same label counts as present; an
    image (same hash) already filed under ANOTHER label is a conflict and is skipped.
    """
    report = ExportReport()
    existing = _existing_by_hash(feedback_dir)
    root = feedback_dir.resolve()
    photos_root = photos_dir.resolve() if photos_dir is not None else None
    for item in items:
        try:
            if item.label not in known_labels:
                raise ValueError(f"label {item.label!r} is not a known equipment type")
            folder = class_folder(item.label)
            if not re.fullmatch(r"[0-9a-f]{64}", item.image_sha256):
                raise ValueError("malformed image hash")
            source = Path(item.image_path)
            ext = _image_extension(source)
        except ValueError as exc:
            report.invalid[item.correction_id] = str(exc)
            continue
        if photos_root is not None and not source.resolve().is_relative_to(photos_root):
            report.invalid[item.correction_id] = f"stored photo {source} is outside {photos_root}"
            continue
        target = root / folder / f"{item.image_sha256}{ext}"
        if not target.resolve().is_relative_to(root):  # defence in depth; class_folder already refuses
            report.invalid[item.correction_id] = f"target {target} escapes {root}"
            continue
        already = existing.get(item.image_sha256)
        if already is not None:
            if already.parent.name == folder:
                report.present.append(already)
                report.included.append(item.correction_id)
            else:
                report.conflicts[item.correction_id] = (
                    f"image already filed as {already.parent.name}, not adding it as {folder}"
                )
            continue
        try:
            data = source.read_bytes()
        except OSError as exc:
            report.missing[item.correction_id] = f"stored photo unreadable: {exc}"
            continue
        if hashlib.sha256(data).hexdigest() != item.image_sha256:
            report.missing[item.correction_id] = "stored photo does not match its recorded hash"
            continue
        if _copy_no_overwrite(data, target):
            report.exported.append(target)
        else:
            report.present.append(target)
        existing[item.image_sha256] = target
        report.included.append(item.correction_id)
    return report


def feedback_files(feedback_dir: Path) -> list[Path]:
    """Every image file of the feedback set (``<class>/<sha256>.<ext>``), sorted."""
    if not feedback_dir.is_dir():
        return []
    return sorted(
        f
        for class_dir in feedback_dir.iterdir()
        if class_dir.is_dir() and not class_dir.name.startswith(".")
        for f in class_dir.iterdir()
        if f.is_file() and not f.name.startswith(".")
    )


def prune_feedback(
    feedback_dir: Path, supported: Collection[tuple[str, str]], max_share: float = 0.5
) -> list[Path]:
    """Remove feedback images no approved correction supports any more (an admin rejected it, or its user
    deleted her data with /forget). ``supported``: (image_sha256, class folder) pairs of approved corrections.

    Safety: when more than ``max_share`` of the set would go (e.g. DATABASE_URL points at another database)
    nothing is removed and a warning is logged. Returns the removed paths.
    """
    files = feedback_files(feedback_dir)
    keep = set(supported)
    stale = [f for f in files if (f.stem, f.parent.name) not in keep]
    if files and len(stale) > max_share * len(files) and len(stale) > 2:
        log.warning(
            "not pruning %d of %d feedback images: the database supports too few (wrong DATABASE_URL?)",
            len(stale),
            len(files),
        )
        return []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def forget_feedback(data_dir: Path, image_sha256s: Collection[str]) -> int:
    """Delete the feedback copies of these images (for /forget). Returns how many files were removed."""
    wanted = {s for s in image_sha256s if re.fullmatch(r"[0-9a-f]{64}", s)}
    removed = 0
    for f in feedback_files(data_dir / FEEDBACK_DIRNAME):
        if f.stem in wanted:
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def is_holdout(image_sha256: str, percent: int) -> bool:
    """True when a feedback image belongs to the evaluation holdout: the first 8 hex digits of its content
    hash, modulo 100, below ``percent``. Deterministic, so an image never switches sides between runs."""
    return int(image_sha256[:8], 16) % 100 < percent


def scan_feedback(
    feedback_dir: Path, holdout_percent: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The feedback set as (training items, held-out evaluation items), label = folder name."""
    train: list[LabelledImage] = []
    held: list[LabelledImage] = []
    if not feedback_dir.is_dir():
        return train, held
    for class_dir in sorted(p for p in feedback_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.iterdir()):
            if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if is_holdout(f.stem, holdout_percent):
                held.append(LabelledImage(f, class_dir.name, "val", "feedback"))
            else:
                train.append(LabelledImage(f, class_dir.name, "train", "feedback"))
    return train, held


def active_classes(
    champion_labels: Sequence[str],
    feedback_train: Sequence[LabelledImage],
    catalog_slugs: Collection[str],
    new_class_min_images: int,
) -> tuple[list[str], dict[str, int]]:
    """The challenger's equipment classes: the champion's, plus catalog equipment types with at least
    ``new_class_min_images`` feedback training images.

    Returns (sorted classes, {new class still waiting: its image count}).
    """
    counts: dict[str, int] = {}
    for it in feedback_train:
        counts[it.label] = counts.get(it.label, 0) + 1
    classes = set(champion_labels)
    waiting: dict[str, int] = {}
    for label, n in counts.items():
        if label in classes or label == OTHER_LABEL or label not in catalog_slugs:
            continue
        if n >= new_class_min_images:
            classes.add(label)
        else:
            waiting[label] = n
    return sorted(classes), waiting


# --------------------------------------------------------------------------------------------------------
# Base data, recipe, scoring


def champion_recipe(metrics: Mapping[str, Any]) -> Any:
    """The champion's `classifier.train.TrainConfig`, read back from its metrics.json ``config``."""
    from classifier.model import HeadSpec
    from classifier.train import TrainConfig

    raw = dict(metrics.get("config") or {})
    known = set(TrainConfig.__dataclass_fields__)
    kwargs: dict[str, Any] = {k: v for k, v in raw.items() if k in known}
    if isinstance(kwargs.get("head"), dict):
        kwargs["head"] = HeadSpec.from_json(kwargs["head"])
    for key, value in list(kwargs.items()):
        if isinstance(value, list):  # views, tta, thin_views...: tuples in the frozen dataclass
            kwargs[key] = tuple(value)
    return TrainConfig(**kwargs)


def aligned_features(
    items: Sequence[LabelledImage], backbone: Any, cache_dir: Path | None, views: Sequence[str]
) -> tuple[list[Any], list[int]]:
    """Cached bottleneck features of ``items`` for each view, restricted to the items readable in all views.
    Returns ([float16 (N_ok, h, w, 512) per view], positions of those items)."""
    from classifier.dataset import extract_bottleneck_features

    per_view = [
        extract_bottleneck_features([it.path for it in items], backbone, cache_dir, v, progress=False)
        for v in views
    ]
    common = sorted(set.intersection(*(set(r.index) for r in per_view))) if per_view else []
    out = []
    for r in per_view:
        pos = {i: k for k, i in enumerate(r.index)}
        out.append(r.features[[pos[i] for i in common]])
    return out, common


def predicted_labels(
    head: Any,
    outputs: Sequence[str],
    views: Sequence[Any],
    rule: DecisionRule | None = None,
    tta_exit: float | None = None,
) -> list[str]:
    """Top-1 equipment label per image as the version serves it: TTA-averaged probabilities, or the first
    view's alone where it exits early under ``rule`` (a `classifier.predictor.DecisionRule`) and
    ``tta_exit`` (`classifier.predictor.combine_views`; no exit when either is None). The ``__other__``
    column, if any, is ignored: the same top-1 the classifier's metrics use."""
    import numpy as np

    from classifier.evaluate import equipment_probs
    from classifier.predictor import combine_views
    from classifier.train import head_probabilities

    labels = [o for o in outputs if o != OTHER_LABEL]
    if not views or len(views[0]) == 0:
        return []
    per_view = [head_probabilities(head, [v]) for v in views]
    combined = (
        np.mean(per_view, axis=0) if rule is None else combine_views(per_view, list(outputs), rule, tta_exit)
    )
    probs = equipment_probs(combined, outputs)
    return [labels[i] for i in np.argmax(probs, axis=1)]


@dataclass
class LoadedHead:
    """A version's head (Keras model with its weights) and how it is served: outputs, TTA views, decision
    rule and TTA early-exit threshold (None in versions older than v0002)."""

    head: Any
    outputs: list[str]
    tta: list[str]
    rule: DecisionRule
    tta_exit: float | None


def load_head(version_dir: Path, feature_shape: tuple[int, int, int]) -> LoadedHead:
    """A version's head and serving settings (see `LoadedHead`)."""
    from classifier.model import HeadSpec, build_head
    from classifier.predictor import DecisionRule, load_npz_weights, read_version_config

    cfg = read_version_config(version_dir)
    head = build_head(HeadSpec.from_json(cfg["head"]), feature_shape)
    head.set_weights(load_npz_weights(version_dir / "head.npz"))
    return LoadedHead(
        head,
        list(cfg["outputs"]),
        list(cfg.get("tta", ["orig"])),
        DecisionRule.from_json(cfg.get("decision", {})),
        cfg.get("tta_exit"),
    )


# --------------------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class RetrainResult:
    """Outcome of one run (printed as the last JSON line with ``--progress-json``).

    status: nothing_to_do | promoted | kept | busy | dry_run; version: the challenger written (None if none);
    champion_version: the champion it was compared with; *_accuracy: overall top-1 of both on the same
    evaluation set of ``eval_images`` photos; reasons: the promotion rule's reasons; per_class: {label:
    [champion recall, challenger recall, support]}; corrections_used: corrections that entered the
    training or evaluation data (marked with ``version``); exported / pruned: feedback files added / removed;
    skipped: {correction id: reason}; waiting_classes: new equipment types still below NEW_CLASS_MIN_IMAGES;
    timings: seconds per stage.
    """

    status: str
    promoted: bool = False
    version: str | None = None
    champion_version: str | None = None
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None
    eval_images: int = 0
    reasons: list[str] = field(default_factory=list)
    per_class: dict[str, list[float | int | None]] = field(default_factory=dict)
    corrections_used: int = 0
    corrections_pending: int = 0
    exported: int = 0
    pruned: int = 0
    skipped: dict[int, str] = field(default_factory=dict)
    approved_now: dict[str, int] = field(default_factory=dict)
    new_classes: list[str] = field(default_factory=list)
    waiting_classes: dict[str, int] = field(default_factory=dict)
    train_images: int = 0
    feedback_train_images: int = 0
    feedback_holdout_images: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ``"event": "result"``."""
        data = asdict(self)
        data["skipped"] = {str(k): v for k, v in self.skipped.items()}
        return {"event": "result", **data}


def _weights_setting(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def load_training_backbone(weights: str | None, input_size: int) -> Any:
    """The frozen VGG16 for ``weights``; with None (tests: random init) the Keras seed is fixed first, so that
    every process builds the same random trunk and the bottleneck cache and backbone check stay valid."""
    from classifier.model import load_backbone

    if weights is None:
        import keras

        keras.utils.set_random_seed(0)
    return load_backbone(weights, input_size)


def prepare_int8_serving(
    settings: RetrainSettings, version_dir: Path, backbone: Any, report: Callable[[str, str], None]
) -> bool:
    """Convert ``version_dir`` to int8 into the serving cache (DATA_DIR/cache, `classifier.quantize`)
    before it is promoted, so the bot's hot swap reads the cache instead of converting on its classifier
    thread. Only when the bot would serve int8 (CLASSIFIER_PRECISION auto/int8), with the recipe it would
    pick (`classifier.quantize.Int8Source.for_serving`: calibrated on TRAINING_DATA_DIR's photos, else
    dynamic range). A failure is reported and logged, never raised: the bot then falls back or converts
    itself. True when the model is in the cache."""
    from classifier.predictor import Predictor
    from classifier.quantize import Int8Source

    if settings.classifier_precision not in ("auto", "int8"):
        return False
    source = Int8Source.for_serving(settings.training_data_dir, settings.data_dir / "cache")
    t0 = time.perf_counter()
    try:
        Predictor.load(version_dir, _weights_setting(settings.vgg16_weights), backbone, int8=source)
    except Exception as exc:  # the serving side handles a missing int8 model; promotion must not fail here
        log.warning("int8 serving model for %s not prepared: %s", version_dir.name, exc)
        report("save", f"int8 serving model not prepared ({exc}); the bot will try to convert it itself")
        return False
    report("save", f"int8 serving model ({source.describe()}) ready in {time.perf_counter() - t0:.0f} s")
    return True


def run_pipeline(
    settings: RetrainSettings,
    progress: Callable[[str, str], None] | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> RetrainResult:
    """Run the retraining pipeline once (see module docstring). ``force``: train a challenger even without
    new corrections; ``dry_run``: train and score but write nothing (no version, no marks, no promotion).

    Raises RetrainBusyError when another run holds the lock, db.errors.DatabaseBehindError when the database
    needs ``alembic upgrade head``, classifier.types.BackboneMismatchError when VGG16_WEIGHTS is not the
    champion's backbone, FileNotFoundError when the base data set is missing.
    """
    report = progress or (lambda stage, message: log.info("[%s] %s", stage, message))
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with retrain_lock(settings.models_dir):
        return _run_locked(settings, report, force, dry_run, timings, t_start)


def _run_locked(
    settings: RetrainSettings,
    report: Callable[[str, str], None],
    force: bool,
    dry_run: bool,
    timings: dict[str, float],
    t_start: float,
) -> RetrainResult:
    from classifier.finetune import Block5Weights, with_block5
    from classifier.model import check_backbone
    from classifier.predictor import read_version_config
    from classifier.promotion import PromotionPolicy, decide, score_predictions
    from classifier.registry import Registry
    from db import review
    from db.repositories.catalog import equipment_slugs
    from db.repositories.corrections import corrections_for_training, count_pending, mark_corrections_trained
    from db.repositories.model_versions import record_promotion, register_model_version
    from db.schema import ensure_schema_current
    from db.session import make_engine, make_session_factory, session_scope

    def lap(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 2)

    registry = Registry(settings.models_dir)
    champion = registry.champion()
    if champion is None:
        return RetrainResult(
            "nothing_to_do", reason="no champion yet: train one with python -m classifier train"
        )
    champ_dir = registry.version_dir(champion)
    champ_cfg = read_version_config(champ_dir)
    champ_metrics = registry.read_json(champion, "metrics.json")
    champ_labels = [o for o in champ_cfg["outputs"] if o != OTHER_LABEL]
    if champ_cfg.get("kind") != "vgg16_head":
        return RetrainResult(
            "nothing_to_do",
            champion_version=champion,
            reason=f"champion {champion} is a {champ_cfg.get('kind')!r} model; only VGG16 heads retrain",
        )

    # 1-2. review rule, collect
    t0 = time.perf_counter()
    engine = make_engine(settings.resolved_database_url())
    scratch = contextlib.ExitStack()
    try:
        ensure_schema_current(engine)
        factory = make_session_factory(engine)
        with session_scope(factory) as session:
            approved_now = review.refresh_review_states(
                session, settings.admin_user_ids, review.ReviewPolicy(settings.review_agreement_users)
            )
            examples = corrections_for_training(session, include_not_equipment=True)
            supported = review.approved_image_labels(session)
            catalog = set(equipment_slugs(session))
            pending = count_pending(session)
        lap("collect", t0)
        report("collect", f"{len(examples)} new approved corrections, {pending} waiting for review")

        # 3. export
        t0 = time.perf_counter()
        known = catalog | set(champ_labels) | {NOT_EQUIPMENT}
        items = [FeedbackItem(e.correction_id, e.label, e.image_sha256, e.image_path) for e in examples]
        supported_folders = set()
        for sha, label in supported:
            with contextlib.suppress(ValueError):
                supported_folders.add((sha, class_folder(label)))
        feedback_dir = settings.feedback_dir
        if dry_run:  # the same export into a scratch copy of the feedback set, removed when the run ends
            feedback_dir = (
                Path(scratch.enter_context(tempfile.TemporaryDirectory(prefix="retrain-dry-"))) / "fb"
            )
            if settings.feedback_dir.is_dir():
                shutil.copytree(settings.feedback_dir, feedback_dir)
        pruned = prune_feedback(feedback_dir, supported_folders)
        exported = export_feedback(items, feedback_dir, known, settings.data_dir / "photos")
        fb_train, fb_held = scan_feedback(feedback_dir, settings.feedback_holdout_percent)
        classes, waiting = active_classes(champ_labels, fb_train, catalog, settings.new_class_min_images)
        new_classes = [c for c in classes if c not in champ_labels]
        label_of = {i.correction_id: i.label for i in items}
        usable = [
            cid for cid in exported.included if class_folder(label_of[cid]) in set(classes) | {OTHER_LABEL}
        ]
        skipped = {**exported.invalid, **exported.missing, **exported.conflicts}
        lap("export", t0)
        report(
            "export",
            f"feedback set: {len(exported.exported)} new images, {len(pruned)} removed; "
            f"{len(fb_train)} for training, {len(fb_held)} held out for evaluation",
        )
        result = RetrainResult(
            "nothing_to_do",
            champion_version=champion,
            corrections_pending=pending,
            exported=len(exported.exported),
            pruned=len(pruned),
            skipped=skipped,
            approved_now=approved_now,
            new_classes=new_classes,
            waiting_classes=waiting,
            feedback_train_images=len(fb_train),
            feedback_holdout_images=len(fb_held),
            timings=timings,
        )
        for cid, why in skipped.items():
            log.warning("correction %s not used: %s", cid, why)
        if not usable and not pruned and not new_classes and not force:
            result.reason = "no new approved corrections to learn from"
            return result

        # 4-5. data
        t0 = time.perf_counter()
        data_dir = settings.training_data_dir or _recorded_data_dir(champ_metrics)
        if data_dir is None or not Path(data_dir).is_dir():
            raise FileNotFoundError(
                f"base training data not found ({data_dir}); set TRAINING_DATA_DIR to the data set the "
                "champion was trained on (a folder with MANIFEST.tsv, or folder-per-class)"
            )
        base_train, base_val, ood = load_base_dataset(Path(data_dir))
        extra_train, extra_ood = recorded_extra_data(champ_metrics)
        raw_data = champ_metrics.get("data")
        recorded_data: dict[str, Any] = dict(raw_data) if isinstance(raw_data, dict) else {}
        base_train += extra_train
        ood = list(ood) + extra_ood
        class_set = set(classes)
        train = [it for it in base_train if it.label in class_set]
        train += [it for it in fb_train if it.label in class_set]
        ood = list(ood) + [it for it in (*fb_train, *fb_held) if it.label == OTHER_LABEL]
        val = [it for it in base_val if it.label in class_set] + [
            it for it in fb_held if it.label in class_set
        ]
        if settings.synth_topup:
            train += synthetic_topup(settings, train, report)
        result.train_images = len(train)
        lap("data", t0)

        # 6. train
        t0 = time.perf_counter()
        config = champion_recipe(champ_metrics)
        input_size = int(champ_cfg["input"]["size"])
        backbone = load_training_backbone(_weights_setting(settings.vgg16_weights), input_size)
        check_backbone(champ_cfg["backbone"], backbone.identity)
        if champ_cfg.get("block5"):  # the challenger keeps the champion's fine-tuned block 5
            backbone = with_block5(backbone, Block5Weights.load(champ_dir, champ_cfg["block5"]))
        cache_dir = settings.bottleneck_cache_dir or settings.data_dir / "cache"
        report("train", f"training a challenger on {len(train)} images ({len(classes)} classes)")
        from classifier.train import fit_version, save_version

        fit = fit_version(train, val, ood, backbone, cache_dir, config, labels=classes, progress=False)
        lap("train", t0)
        report("train", f"challenger trained in {timings['train']:.0f} s")

        # 7. score both on the same evaluation set
        t0 = time.perf_counter()
        champ = load_head(champ_dir, backbone.feature_shape)
        views = list(dict.fromkeys([*champ.tta, *fit.config.tta]))
        feats, idx = aligned_features(val, backbone, cache_dir, views)
        by_view = dict(zip(views, feats, strict=True))
        y_true = [val[i].label for i in idx]
        champ_views = [by_view[v] for v in champ.tta]
        champ_pred = predicted_labels(champ.head, champ.outputs, champ_views, champ.rule, champ.tta_exit)
        chall_views = [by_view[v] for v in fit.config.tta]
        chall_pred = predicted_labels(fit.head, fit.outputs, chall_views, fit.rule, fit.tta_exit)
        champ_scores = score_predictions(y_true, champ_pred)
        chall_scores = score_predictions(y_true, chall_pred)
        policy = PromotionPolicy(
            settings.promotion_overall_margin,
            settings.promotion_per_class_margin,
            settings.promotion_per_class_min_images,
            settings.promotion_per_class_alpha,
        )
        decision = decide(champ_scores, chall_scores, policy, champion_labels=champ_labels)
        lap("evaluate", t0)
        result.champion_accuracy = round(champ_scores.accuracy, 4)
        result.challenger_accuracy = round(chall_scores.accuracy, 4)
        result.eval_images = champ_scores.n
        result.reasons = decision.reasons
        result.per_class = {
            d.label: [None if d.champion is None else round(d.champion, 4), round(d.challenger, 4), d.support]
            for d in decision.deltas
        }
        report(
            "evaluate",
            f"on {champ_scores.n} evaluation photos: champion {champion} {champ_scores.accuracy:.1%}, "
            f"challenger {chall_scores.accuracy:.1%} -> {'promote' if decision.promote else 'keep champion'}",
        )
        if dry_run:
            result.status = "dry_run"
            result.reason = (
                f"dry run, nothing written; would {'promote' if decision.promote else 'keep the champion'}"
            )
            return result

        # 8. write atomically, mark corrections, promote
        t0 = time.perf_counter()
        retrain_info = {
            "champion_version": champion,
            "promoted": decision.promote,
            "champion_accuracy": result.champion_accuracy,
            "challenger_accuracy": result.challenger_accuracy,
            "decision": decision.to_dict(),
            "corrections_used": len(usable),
            "feedback_train_images": len(fb_train),
            "feedback_holdout_images": len(fb_held),
            "new_classes": new_classes,
            "data_dir": str(data_dir),
            "eval_set": {
                "base_val": len([it for it in val if it.kind != "feedback"]),
                "feedback_holdout": len([it for it in val if it.kind == "feedback"]),
            },
        }
        notes = (
            f"Retrained from {len(usable)} corrections on top of {champion}; champion "
            f"{champ_scores.accuracy:.1%} vs challenger {chall_scores.accuracy:.1%} on the same "
            f"{champ_scores.n} evaluation photos; {'promoted' if decision.promote else 'not promoted'}."
        )
        version = save_version(
            registry,
            fit,
            backbone.pretrained_identity,
            notes=notes,
            val_views=chall_views,
            promote=False,
            extra_metrics={"retrain": retrain_info, "data": {**recorded_data, "path": str(data_dir)}},
        )
        result.version = version
        report("save", f"saved {version}")
        with session_scope(factory) as session:
            result.corrections_used = mark_corrections_trained(session, usable, version)
            register_model_version(
                session, version, metrics={"retrain": retrain_info, "top1": fit.metrics["top1"]}
            )
        if decision.promote:  # before the champion check: a hand promotion during this must be seen
            prepare_int8_serving(settings, registry.version_dir(version), backbone, report)
        current = registry.champion()
        if decision.promote and current != champion:
            # someone promoted by hand (python -m classifier promote) while we trained: the challenger was
            # compared with the old champion, so it must not silently replace the new one
            result.reasons = [
                *decision.reasons,
                f"not promoted: the champion changed from {champion} to {current} during the run; "
                "retrain again to compare with it",
            ]
            report("save", f"champion moved to {current} meanwhile; {version} kept, not promoted")
            result.status = "kept"
        elif decision.promote:
            registry.promote(version, reason=f"retrain: {decision.reasons[0]}")
            with session_scope(factory) as session:
                record_promotion(session, version, reason="retrain")
            result.status, result.promoted = "promoted", True
        else:
            result.status = "kept"
        lap("save", t0)
        return result
    finally:
        scratch.close()
        engine.dispose()
        timings["total"] = round(time.perf_counter() - t_start, 2)


def _recorded_data_dir(metrics: Mapping[str, Any]) -> Path | None:
    data = metrics.get("data")
    if isinstance(data, dict) and data.get("path"):
        return Path(str(data["path"]))
    return None


def recorded_extra_data(metrics: Mapping[str, Any]) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """The champion's extra training folders and OOD folders as recorded by ``python -m classifier train``
    (``metrics["data"]["extra"]`` / ``["ood"]``; missing folders are skipped with a warning)."""
    from classifier.dataset import scan_folder_dataset

    data = metrics.get("data")
    extra: list[LabelledImage] = []
    ood: list[LabelledImage] = []
    if not isinstance(data, dict):
        return extra, ood
    for folder in data.get("extra") or []:
        if Path(folder).is_dir():
            extra += scan_folder_dataset(Path(folder), "train", "extra")
        else:
            log.warning("extra training folder of the champion is missing: %s", folder)
    for folder in data.get("ood") or []:
        if Path(folder).is_dir():
            ood += [
                LabelledImage(p, OTHER_LABEL, "ood", "ood")
                for p in sorted(Path(folder).rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            ]
        else:
            log.warning("OOD folder of the champion is missing: %s", folder)
    return extra, ood


def synthetic_topup(
    settings: RetrainSettings, train: Sequence[LabelledImage], report: Callable[[str, str], None]
) -> list[LabelledImage]:
    """Synthetic images for thin classes by the synth package's measured top-up rule
    (`synth.topup.topup_count` of the class's real + feedback training photos; issue 5), generated with
    `synth.generate.generate` from SYNTH_FOREGROUNDS_DIR/<class> onto SYNTH_BACKGROUNDS_DIR into
    DATA_DIR/synthetic/<class>. Returns the extra training items (empty when synth is not configured; a class
    whose foregrounds cannot be used is skipped with a progress message)."""
    fg, bg = settings.synth_foregrounds_dir, settings.synth_backgrounds_dir
    if fg is None or bg is None or not fg.is_dir() or not bg.is_dir():
        report("synth", "synthetic top-up skipped: SYNTH_FOREGROUNDS_DIR / SYNTH_BACKGROUNDS_DIR not set")
        return []
    try:
        topup: Any = importlib.import_module("synth.topup")
        generate: Any = importlib.import_module("synth.generate").generate
    except ImportError:
        report("synth", "synthetic top-up skipped: synth.topup is not available")
        return []
    from classifier.dataset import class_counts, scan_folder_dataset

    counts = class_counts([it for it in train if it.kind in ("real", "feedback")])
    wanted = {label: int(topup.topup_count(n)) for label, n in counts.items() if label != OTHER_LABEL}
    wanted = {k: v for k, v in wanted.items() if v > 0 and (fg / k).is_dir()}
    out = settings.data_dir / "synthetic"
    extra: list[LabelledImage] = []
    for label, n in sorted(wanted.items()):
        try:
            generate(fg, bg, out / label, seed=0, per_class=n, classes=[label], progress=False)
        except (ValueError, OSError) as exc:
            report("synth", f"synthetic top-up of {label} skipped: {exc}")
            continue
        made = [it for it in scan_folder_dataset(out / label, "train", "synthetic") if it.label == label]
        extra += made
        report("synth", f"synthetic top-up: {len(made)} images for {label} ({counts[label]} real)")
    return extra


# --------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """``python -m classifier.retrain [--force] [--dry-run] [--progress-json] [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m classifier.retrain",
        description="Retrain from users' corrections; promote the challenger only if it is not worse.",
    )
    parser.add_argument(
        "--force", action="store_true", help="train a challenger even without new corrections"
    )
    parser.add_argument("--dry-run", action="store_true", help="train and score, write nothing")
    parser.add_argument("--progress-json", action="store_true", help="JSON lines on stdout (used by the bot)")
    parser.add_argument("--models-dir", type=Path, help="MODELS_DIR")
    parser.add_argument("--data-dir", type=Path, help="DATA_DIR")
    parser.add_argument("--training-data", type=Path, help="TRAINING_DATA_DIR (base data set)")
    parser.add_argument("--weights", help="VGG16_WEIGHTS: imagenet, a file, or none (tests)")
    parser.add_argument("--database-url", help="DATABASE_URL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point. Exit codes: 0 done (promoted, kept, nothing to do), 1 error, 2 malformed setting,
    75 busy (EX_TEMPFAIL)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    overrides: dict[str, Any] = {}
    for key, value in (
        ("models_dir", args.models_dir),
        ("data_dir", args.data_dir),
        ("training_data_dir", args.training_data),
        ("vgg16_weights", args.weights),
        ("database_url", args.database_url),
    ):
        if value is not None:
            overrides[key] = value
    try:
        settings = RetrainSettings(**overrides)
    except ValidationError as exc:  # one line naming each bad variable, not a traceback
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper() or 'settings'}: "
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        print(f"python -m classifier.retrain: configuration error: {problems}", file=sys.stderr)
        return 2
    progress = Progress(args.progress_json)
    try:
        result = run_pipeline(settings, progress, force=args.force, dry_run=args.dry_run)
    except RetrainBusyError as exc:
        result = RetrainResult("busy", reason=str(exc))
        print(json.dumps(result.to_json()) if args.progress_json else str(exc))
        return 75
    except Exception as exc:
        log.exception("retraining failed; the champion is unchanged")
        print(f"retraining failed: {exc}", file=sys.stderr)
        return 1
    if args.progress_json:
        print(json.dumps(result.to_json()), flush=True)
    else:
        print(json.dumps(result.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
