"""File side of the pipeline: read foregrounds and backgrounds, write JPEGs and a manifest (I/O adapter).

Layout written: OUT/<class>/<class>_<foreground id>_<index>.jpg plus OUT/manifest.jsonl with one JSON object
per image (file, label, foreground, background, seed and every CompositeParams field).
Determinism: each image has its own random.Random seeded with the string "<seed>/<class>/<foreground>/<index>"
(str seeds are hashed with SHA-512 by CPython, independent of PYTHONHASHSEED), files are visited in sorted
order and JPEGs are written with fixed settings, so the same inputs and seed give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from synth.alpha import EmptyForegroundError, MaskReport, cut_out, mask_report
from synth.composite import MAX_OUTPUT_SIZE, MIN_OUTPUT_SIZE, compose, sample_params

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
JPEG_QUALITY = 92
#: A class with fewer product shots than this is "thin": real photos are searched for cut-out-able objects.
MIN_FOREGROUNDS = 5


def image_extensions() -> set[str]:
    """Lower-case file extensions (with dot) that the installed Pillow can open."""
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (hidden files skipped)."""
    exts = image_extensions()
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )


def list_classes(root: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of a folder-per-class directory."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def open_image(path: Path) -> Image.Image:
    """Open an image fully (first frame), EXIF orientation applied. Raises OSError/UnidentifiedImageError."""
    with Image.open(path) as im:
        im.seek(0)
        im.load()
        return ImageOps.exif_transpose(im)


@dataclass(frozen=True)
class Foreground:
    """One object to paste: its class, file, whether it came from a product shot or a real photo, cut-out."""

    label: str
    path: Path
    name: str
    kind: str  # "product_shot" or "real_photo"
    cutout: Image.Image = field(repr=False, compare=False)


@dataclass
class ClassReport:
    """What generate() did for one class."""

    label: str
    product_shots: int = 0
    unusable: list[str] = field(default_factory=list)
    real_scanned: int = 0
    real_accepted: list[str] = field(default_factory=list)
    best_real_border: float | None = None
    images: int = 0

    @property
    def foregrounds(self) -> int:
        """Number of distinct objects the class's synthetic images are made from."""
        return self.product_shots + len(self.real_accepted)

    def summary(self, min_foregrounds: int, real_dir: Path | None) -> str:
        """One human-readable line (plus a warning for thin classes) for the CLI output."""
        text = f"{self.label}: {self.images} images from {self.product_shots} product shots"
        if self.real_accepted:
            text += f" + {len(self.real_accepted)} objects cut from real photos"
        if self.unusable:
            text += f"; skipped {len(self.unusable)} unusable file(s): {', '.join(self.unusable)}"
        if self.product_shots < min_foregrounds:
            if real_dir is None:
                text += (
                    f"\n  WARNING thin class: only {self.product_shots} product shots (< {min_foregrounds}); "
                    "pass --real DIR to try cutting objects from real photos"
                )
            elif not self.real_accepted:
                best = "no photos" if self.best_real_border is None else f"best {self.best_real_border:.2f}"
                text += (
                    f"\n  WARNING thin class: only {self.product_shots} product shots, and none of the "
                    f"{self.real_scanned} real photos has a reliable mask (border must be >= 85% near-white; "
                    f"{best}): cannot cut objects from them, so every image repeats the same "
                    f"{self.product_shots} object(s)"
                )
            else:
                accepted = len(self.real_accepted)
                text += f"\n  thin class: {self.real_scanned} real photos scanned, {accepted} usable"
        return text


@dataclass
class GenerateReport:
    """Per-class reports and the manifest path of one generate() run."""

    out_dir: Path
    manifest: Path
    classes: list[ClassReport]

    @property
    def total_images(self) -> int:
        """Images written over all classes."""
        return sum(c.images for c in self.classes)


def short_id(text: str) -> str:
    """8 hex characters identifying a foreground name in output file names (SHA-1 prefix)."""
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def load_foregrounds(
    foregrounds_dir: Path,
    label: str,
    report: ClassReport,
    real_dir: Path | None,
    min_foregrounds: int,
    see_through: bool = False,
) -> list[Foreground]:
    """Cut out every product shot of `label`; for thin classes also reliable objects from real photos."""
    result: list[Foreground] = []
    class_dir = foregrounds_dir / label
    for path in list_images(class_dir) if class_dir.is_dir() else []:
        try:
            cut = cut_out(open_image(path), see_through=see_through)
        except (OSError, UnidentifiedImageError, EmptyForegroundError, ValueError) as exc:
            log.warning("skipping foreground %s: %s", path, exc)
            report.unusable.append(path.name)
            continue
        result.append(Foreground(label, path, f"{label}/{path.name}", "product_shot", cut))
    report.product_shots = len(result)
    real_class = real_dir / label if real_dir is not None else None
    if real_class is not None and real_class.is_dir() and len(result) < min_foregrounds:
        for path in list_images(real_class):
            report.real_scanned += 1
            try:
                image = open_image(path)
                quality: MaskReport = mask_report(image)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.warning("skipping real photo %s: %s", path, exc)
                continue
            best = report.best_real_border
            report.best_real_border = max(quality.border_background, best if best is not None else 0.0)
            if not quality.reliable:
                continue
            try:
                cut = cut_out(image, see_through=see_through)
            except EmptyForegroundError:
                continue
            report.real_accepted.append(path.name)
            result.append(Foreground(label, path, f"real:{label}/{path.name}", "real_photo", cut))
    return result


def load_backgrounds(backgrounds_dir: Path) -> tuple[list[str], list[Image.Image]]:
    """Names and RGB images of every readable background (sorted). Raises ValueError if there is none."""
    names: list[str] = []
    images: list[Image.Image] = []
    for path in list_images(backgrounds_dir):
        try:
            images.append(open_image(path).convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            log.warning("skipping background %s: %s", path, exc)
            continue
        names.append(path.name)
    if not images:
        raise ValueError(f"no readable background images in {backgrounds_dir}")
    return names, images


def image_rng(seed: int, name: str, index: int) -> random.Random:
    """The random.Random of one output image (see module docstring)."""
    return random.Random(f"{seed}/{name}/{index}")


def _clear_previous(out_dir: Path) -> None:
    """Delete the images a previous run listed in OUT/manifest.jsonl (nothing else is touched)."""
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return
    listed: list[Path] = []
    for number, line in enumerate(manifest.read_text().splitlines(), start=1):
        if line.strip():
            try:
                record = json.loads(line)
                listed.append(out_dir / record["file"])
            except (ValueError, KeyError, TypeError) as exc:  # nothing is deleted from a damaged manifest
                raise ValueError(
                    f"{manifest} line {number} is not a manifest record of `synth generate` ({exc!r}); "
                    "delete the manifest or choose another --out"
                ) from None
    for old in listed:
        if old.is_file() and old.resolve().is_relative_to(out_dir.resolve()):
            old.unlink()
    manifest.unlink()


def counts_per_foreground(n_foregrounds: int, per_foreground: int | None, per_class: int | None) -> list[int]:
    """How many images to make from each of n foregrounds: either N each, or a class total spread evenly.

    Raises ValueError unless exactly one of per_foreground / per_class is given (and >= 0).
    """
    if (per_foreground is None) == (per_class is None):
        raise ValueError("give exactly one of per_foreground or per_class")
    if per_foreground is not None:
        if per_foreground < 0:
            raise ValueError("per_foreground must be >= 0")
        return [per_foreground] * n_foregrounds
    assert per_class is not None
    if per_class < 0:
        raise ValueError("per_class must be >= 0")
    if n_foregrounds == 0:
        return []
    base, extra = divmod(per_class, n_foregrounds)
    return [base + (1 if i < extra else 0) for i in range(n_foregrounds)]


def generate(
    foregrounds_dir: Path,
    backgrounds_dir: Path,
    out_dir: Path,
    seed: int,
    per_foreground: int | None = None,
    per_class: int | None = None,
    size: int = 512,
    classes: Iterable[str] | None = None,
    real_dir: Path | None = None,
    min_foregrounds: int = MIN_FOREGROUNDS,
    jitter: bool = True,
    shadow: bool = True,
    see_through: bool = False,
    progress: bool = True,
    on_class: Callable[[ClassReport], None] | None = None,
) -> GenerateReport:
    """Make synthetic photos for every class folder of `foregrounds_dir` (or only `classes`).

    Writes OUT/<class>/*.jpg (RGB, size x size, JPEG quality 92) and OUT/manifest.jsonl. Images listed in
    an existing manifest in OUT are replaced; other files there are left alone.
    Raises FileNotFoundError for a missing input folder, ValueError for no backgrounds, no class folders,
    bad counts, a size outside 32-4096 px, or a class in ``classes`` that is not a folder of
    `foregrounds_dir` (or `real_dir`), all before anything in OUT is touched.
    """
    for folder in (foregrounds_dir, backgrounds_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"not a folder: {folder}")
    if real_dir is not None and not real_dir.is_dir():
        raise FileNotFoundError(f"not a folder: {real_dir}")
    if not MIN_OUTPUT_SIZE <= size <= MAX_OUTPUT_SIZE:
        raise ValueError(f"output size must be {MIN_OUTPUT_SIZE}-{MAX_OUTPUT_SIZE} px, got {size}")
    counts_per_foreground(0, per_foreground, per_class)  # validates the counts
    available = list_classes(foregrounds_dir)
    if classes is None:
        if not available:
            loose = len(list_images(foregrounds_dir))
            raise ValueError(
                f"no class folders in {foregrounds_dir} (expected {foregrounds_dir}/<class>/<image>)"
                + (f"; it holds {loose} images directly: pass its parent folder" if loose else "")
            )
        labels = available
    else:
        labels = sorted(set(classes))
        known = set(available) | (set(list_classes(real_dir)) if real_dir is not None else set())
        unknown = [c for c in labels if c not in known]  # also refuses "../x": class names are folder names
        if unknown:
            raise ValueError(
                f"unknown class(es) {', '.join(map(repr, unknown))}: not a folder of {foregrounds_dir}"
                + (f" or {real_dir}" if real_dir is not None else "")
                + f" (known: {', '.join(available) or 'none'})"
            )
    bg_names, backgrounds = load_backgrounds(backgrounds_dir)
    bg_sizes = [im.size for im in backgrounds]
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    reports: list[ClassReport] = []
    records: list[dict[str, object]] = []
    for label in labels:
        report = ClassReport(label)
        foregrounds = load_foregrounds(foregrounds_dir, label, report, real_dir, min_foregrounds, see_through)
        counts = counts_per_foreground(len(foregrounds), per_foreground, per_class)
        (out_dir / label).mkdir(exist_ok=True)
        bar = tqdm(total=sum(counts), desc=label, unit="img", disable=not progress, leave=False)
        for fg, count in zip(foregrounds, counts, strict=True):
            for index in range(count):
                rng = image_rng(seed, fg.name, index)
                params = sample_params(rng, fg.cutout.size, bg_sizes, size=size, jitter=jitter, shadow=shadow)
                image = compose(fg.cutout, backgrounds, params)
                rel = f"{label}/{label}_{short_id(fg.name)}_{index:04d}.jpg"
                image.save(out_dir / rel, format="JPEG", quality=JPEG_QUALITY)
                records.append(
                    {
                        "file": rel,
                        "label": label,
                        "foreground": fg.name,
                        "foreground_kind": fg.kind,
                        "background": bg_names[params.background_index],
                        "seed": seed,
                        "index": index,
                        "see_through": see_through,
                        **params.as_dict(),
                    }
                )
                report.images += 1
                bar.update(1)
        bar.close()
        reports.append(report)
        if on_class is not None:
            on_class(report)
    manifest = out_dir / MANIFEST_NAME
    with manifest.open("w") as fh:
        for record in records:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    return GenerateReport(out_dir, manifest, reports)


def read_manifest(out_dir: Path) -> list[dict[str, Any]]:
    """The records of OUT/manifest.jsonl, in file order."""
    return [json.loads(line) for line in (out_dir / MANIFEST_NAME).read_text().splitlines() if line.strip()]
