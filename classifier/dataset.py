"""Folder-per-class datasets, validation splits, and cached bottleneck features.

Datasets
--------
* `scan_folder_dataset(root)`: ``root/<label>/<image>`` -> `LabelledImage` list (any extension Pillow may
  open; hidden files skipped). Labels are folder names.
* `load_manifest_dataset(data_dir)`: the shared data set described by ``data_dir/MANIFEST.tsv`` (columns
  path, kind, class, ..., sha256, suggested_split): real photos with their ``train``/``val`` split,
  white-background product shots (always ``train``), and out-of-distribution photos / gym backgrounds
  (label `OTHER_LABEL`, split ``ood``).
* `split_holdout(items, fraction, salt)`: a deterministic, content-hash based holdout (used for OOD photos:
  part trains the "other" class, part measures rejection honestly).

Bottleneck features
-------------------
`extract_bottleneck_features(paths, backbone, cache_dir, view="orig")` -> `BottleneckFeatures`: features of
shape (N_ok, S/32, S/32, 512) float16 for every readable file (unreadable ones are reported by name in
``failed`` and skipped, never a crash). Each image's features are cached in
``cache_dir/<backbone.identity.cache_key>/<view>/<sha256[:2]>/<sha256>.npy`` keyed by the image *content*
SHA-256 and the backbone identity (SHA-256 over the loaded weight tensors + input size) and the view:

* ``orig``: the image as served; ``flip``: mirrored left-right (also the test-time-augmentation view);
* ``aug<k>`` (k = 1, 2, ...): one random augmentation per image made with Keras preprocessing layers
  (RandomFlip horizontal, RandomRotation +-0.04 turn, RandomZoom +-20%, RandomTranslation +-10%,
  RandomBrightness +-20%), seeded with k.

Adding a few images to a data set therefore only computes the new images' features.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.preprocess import Augment, InputSpec, preprocess
from classifier.types import ImageDecodeError

if TYPE_CHECKING:
    from classifier.model import Backbone

log = logging.getLogger(__name__)

#: Label used for out-of-distribution training photos (not gym equipment / no known machine).
OTHER_LABEL = "__other__"
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class LabelledImage:
    """One image file with its label and split (``train``, ``val``, ``ood``, ``holdout``...)."""

    path: Path
    label: str
    split: str = "train"
    kind: str = "real"


def scan_folder_dataset(root: Path, split: str = "train", kind: str = "real") -> list[LabelledImage]:
    """List ``root/<label>/*`` image files (sorted; extensions in IMAGE_EXTENSIONS, case-insensitive)."""
    items: list[LabelledImage] = []
    if not root.is_dir():
        return items
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS:
                items.append(LabelledImage(f, class_dir.name, split, kind))
    return items


def load_manifest_dataset(data_dir: Path) -> list[LabelledImage]:
    """Read ``data_dir/MANIFEST.tsv`` (see module docstring). Missing files are skipped with a warning."""
    items: list[LabelledImage] = []
    with (data_dir / "MANIFEST.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = data_dir / row["path"]
            if not path.is_file():
                log.warning("manifest lists a missing file: %s", path)
                continue
            kind = row["kind"]
            if kind == "real":
                items.append(LabelledImage(path, row["class"], row["suggested_split"], "real"))
            elif kind == "white_bg":
                items.append(LabelledImage(path, row["class"], "train", "white_bg"))
            elif kind in ("ood", "backgrounds"):
                items.append(LabelledImage(path, OTHER_LABEL, "ood", kind))
    return items


def split_holdout(
    items: Sequence[LabelledImage], fraction: float, salt: str = "holdout"
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """Deterministically split by a hash of (salt, file name): returns (kept, held_out)."""
    kept: list[LabelledImage] = []
    held: list[LabelledImage] = []
    for it in items:
        h = int(hashlib.sha256(f"{salt}:{it.path.name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < fraction else kept).append(it)
    return kept, held


def split_ood(
    items: Sequence[LabelledImage], fraction: float
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(trains ``__other__``, held out) OOD photos: `split_holdout` with the one salt every version, the
    ``evaluate`` command and the experiment scripts share, so they all hold out the same photos. ``fraction``
    (0-1) is a version's ``ood_holdout`` (`classifier.train.TrainConfig`)."""
    return split_holdout(items, fraction, salt="ood")


@dataclass
class BottleneckFeatures:
    """Result of `extract_bottleneck_features`.

    features: float16 (N_ok, h, w, 512); index: positions (into the input ``paths``) of the readable files,
    aligned with ``features``; sha256: content hashes aligned with ``features``; failed: {path: reason}.
    """

    features: np.ndarray
    index: list[int]
    sha256: list[str]
    failed: dict[str, str] = field(default_factory=dict)


_AUGMENTERS: dict[int, Callable[[np.ndarray], np.ndarray]] = {}


def keras_augmenter(seed: int) -> Augment:
    """A random augmentation built from Keras preprocessing layers (see module docstring), seeded."""
    if seed not in _AUGMENTERS:
        import keras
        from keras import layers

        pipeline = keras.Sequential(
            [
                layers.RandomFlip("horizontal", seed=seed),
                layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),
                layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed + 2),
                layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=seed + 3),
                layers.RandomBrightness(0.2, value_range=(0.0, 255.0), seed=seed + 4),
            ]
        )

        def run(rgb: np.ndarray) -> np.ndarray:
            return np.asarray(pipeline(rgb[None], training=True))[0]

        _AUGMENTERS[seed] = run
    return _AUGMENTERS[seed]


def flip_horizontal(rgb: np.ndarray) -> np.ndarray:
    """Mirror an (H, W, C) array left-right."""
    return rgb[:, ::-1, :]


def view_augment(view: str) -> Augment | None:
    """Augmentation of a cache view name: ``orig`` -> None, ``flip``, ``aug<k>`` (see module docstring)."""
    if view == "orig":
        return None
    if view == "flip":
        return flip_horizontal
    if view.startswith("aug") and view[3:].isdigit():
        return keras_augmenter(int(view[3:]) * 1000)
    raise ValueError(f"unknown feature view {view!r}")


def _cache_path(cache_dir: Path, key: str, view: str, sha: str) -> Path:
    return cache_dir / key / view / sha[:2] / f"{sha}.npy"


def store_cached_features(cache_dir: Path, key: str, view: str, sha: str, features: np.ndarray) -> None:
    """Write one image's features (float16 (h, w, C)) into the bottleneck cache under backbone ``key``,
    ``view`` and the image's content SHA-256, atomically (a temporary file per process, then a rename:
    caches are shared by processes). `extract_bottleneck_features` reads it back. Raises OSError."""
    target = _cache_path(cache_dir, key, view, sha)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}.npy")
    np.save(tmp, np.asarray(features, np.float16))
    tmp.replace(target)


def extract_bottleneck_features(
    paths: Sequence[Path],
    backbone: Backbone,
    cache_dir: Path | None,
    view: str = "orig",
    batch_size: int = 16,
    progress: bool = True,
    on_failure: Callable[[Path, str], None] | None = None,
) -> BottleneckFeatures:
    """Backbone features for image files, cached (see module docstring).

    paths: image files; backbone: a loaded `Backbone`; cache_dir: cache root or None (no cache); view: the
    augmentation view. Unreadable files are logged (warning, with the file name), passed to ``on_failure``
    and listed in ``failed``. Returns float16 features for the readable files in input order.
    """
    from tqdm import tqdm

    spec = InputSpec(backbone.input_size, "vgg16")
    augment = view_augment(view)
    key = backbone.identity.cache_key
    out: dict[int, np.ndarray] = {}
    shas: dict[int, str] = {}
    failed: dict[str, str] = {}
    pending: list[tuple[int, str, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        batch = np.stack([x for _, _, x in pending])
        feats = backbone.features(batch).astype(np.float16)
        for (i, sha, _), f in zip(pending, feats, strict=True):
            out[i] = f
            if cache_dir is not None:
                store_cached_features(cache_dir, key, view, sha, f)
        pending.clear()

    bar = tqdm(total=len(paths), desc=f"bottleneck[{view}]", unit="img", disable=not progress)
    for i, path in enumerate(paths):
        bar.update(1)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            _fail(failed, path, f"cannot read: {exc}", on_failure)
            continue
        sha = hashlib.sha256(data).hexdigest()
        shas[i] = sha
        cached = _cache_path(cache_dir, key, view, sha) if cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                out[i] = np.load(cached)
                continue
            except (OSError, ValueError):
                log.warning("corrupt cache entry %s: recomputing", cached)
        try:
            x = preprocess(data, spec, augment)
        except ImageDecodeError as exc:
            shas.pop(i)
            _fail(failed, path, str(exc), on_failure)
            continue
        pending.append((i, sha, x))
        if len(pending) >= batch_size:
            flush()
    flush()
    bar.close()
    index = sorted(out)
    shape = (0, *backbone.feature_shape)
    feats = np.stack([out[i] for i in index]) if index else np.zeros(shape, np.float16)
    return BottleneckFeatures(feats, index, [shas[i] for i in index], failed)


def _fail(
    failed: dict[str, str], path: Path, reason: str, on_failure: Callable[[Path, str], None] | None
) -> None:
    log.warning("skipping unreadable image %s: %s", path, reason)
    failed[str(path)] = reason
    if on_failure is not None:
        on_failure(Path(path), reason)


def load_images(
    items: Iterable[LabelledImage], spec: InputSpec, progress: bool = False
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """Preprocess whole images (for the from-scratch baseline): returns (float32 (N_ok, *spec.shape),
    index of readable items, {path: reason} for unreadable ones)."""
    from tqdm import tqdm

    arrays: list[np.ndarray] = []
    index: list[int] = []
    failed: dict[str, str] = {}
    for i, it in enumerate(tqdm(list(items), desc="images", unit="img", disable=not progress)):
        try:
            arrays.append(preprocess(it.path.read_bytes(), spec))
            index.append(i)
        except (OSError, ImageDecodeError) as exc:
            _fail(failed, it.path, str(exc), None)
    arr = np.stack(arrays) if arrays else np.zeros((0, *spec.shape), np.float32)
    return arr, index, failed


def class_counts(items: Iterable[LabelledImage]) -> dict[str, int]:
    """{label: number of items}, sorted by label."""
    counts: dict[str, int] = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    return dict(sorted(counts.items()))


def labels_of(items: Iterable[LabelledImage]) -> list[str]:
    """Sorted distinct labels, excluding OTHER_LABEL."""
    return sorted({it.label for it in items if it.label != OTHER_LABEL})


def as_json(items: Sequence[LabelledImage]) -> list[dict[str, Any]]:
    """Serialisable view of items (path as string)."""
    return [{"path": str(it.path), "label": it.label, "split": it.split, "kind": it.kind} for it in items]


def load_base_dataset(
    data: Path, val_fraction: float = 0.15
) -> tuple[list[LabelledImage], list[LabelledImage], list[LabelledImage]]:
    """(train, val, ood) items of a base data set, as `python -m classifier train --data` and the retraining
    pipeline read it.

    ``data`` is either a MANIFEST.tsv data set (``../shared/data``: its ``suggested_split`` column decides
    train/val, ``ood/`` rows become ``__other__``) or a folder-per-class tree, where ``val_fraction`` (0-1) of
    each class is held out by file-name hash and a ``__other__`` folder is the OOD set.
    """
    if (data / "MANIFEST.tsv").is_file():
        items = load_manifest_dataset(data)
        train = [it for it in items if it.split == "train"]
        val = [it for it in items if it.split == "val"]
        ood = [it for it in items if it.label == OTHER_LABEL]
        return train, val, ood
    scanned = scan_folder_dataset(data)
    labelled = [it for it in scanned if it.label != OTHER_LABEL]
    kept, held = split_holdout(labelled, val_fraction, salt="val")
    val = [LabelledImage(it.path, it.label, "val", it.kind) for it in held]
    ood = [LabelledImage(it.path, OTHER_LABEL, "ood", "ood") for it in scanned if it.label == OTHER_LABEL]
    return kept, val, ood
