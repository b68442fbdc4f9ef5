"""Contact sheet of synthetic samples: per class, one cut-out on a checkerboard and a few composites."""

from __future__ import annotations

import os
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from synth.alpha import EmptyForegroundError, cut_out
from synth.composite import compose, sample_params
from synth.generate import list_classes, list_images, load_backgrounds, open_image, read_manifest

TILE = 192
LABEL_HEIGHT = 16


def default_shared_data() -> Path:
    """The development data folder: $SPOTTER_SHARED_DIR/data, else ../shared/data next to the repository."""
    shared = os.environ.get("SPOTTER_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"
    return root / "data"


def checkerboard(size: tuple[int, int], square: int = 12) -> Image.Image:
    """Light-grey checkerboard (RGBA) that makes transparency visible."""
    board = Image.new("RGBA", size, (235, 235, 235, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size[1], square):
        for x in range(0, size[0], square):
            if (x // square + y // square) % 2:
                draw.rectangle((x, y, x + square - 1, y + square - 1), fill=(190, 190, 190, 255))
    return board


def _tile(image: Image.Image) -> Image.Image:
    """Image fitted into a TILE x TILE square (RGBA kept on a checkerboard)."""
    fitted = ImageOps.contain(image, (TILE, TILE))
    tile = (
        checkerboard((TILE, TILE))
        if fitted.mode == "RGBA"
        else Image.new("RGBA", (TILE, TILE), (0, 0, 0, 255))
    )
    offset = ((TILE - fitted.width) // 2, (TILE - fitted.height) // 2)
    tile.alpha_composite(fitted.convert("RGBA"), offset)
    return tile.convert("RGB")


def contact_sheet(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
    """Assemble rows of (caption, images) into one RGB sheet; each row is captioned above its tiles."""
    columns = max((len(images) for _, images in rows), default=1)
    sheet = Image.new("RGB", (columns * TILE, len(rows) * (TILE + LABEL_HEIGHT)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (caption, images) in enumerate(rows):
        y = r * (TILE + LABEL_HEIGHT)
        draw.text((4, y + 2), caption, fill=(0, 0, 0))
        for c, image in enumerate(images):
            sheet.paste(_tile(image), (c * TILE, y + LABEL_HEIGHT))
    return sheet


def preview_from_inputs(
    foregrounds_dir: Path, backgrounds_dir: Path, per_class: int, seed: int, size: int = 512
) -> Image.Image:
    """Sheet made on the fly: per class, the first product shot's cut-out, then `per_class` composites
    of randomly chosen product shots. Deterministic for a given seed."""
    _, backgrounds = load_backgrounds(backgrounds_dir)
    sizes = [im.size for im in backgrounds]
    rng = random.Random(seed)
    rows: list[tuple[str, list[Image.Image]]] = []
    for label in list_classes(foregrounds_dir):
        paths = list_images(foregrounds_dir / label)
        # Cut out only the shots shown (cutting all of them takes seconds per class).
        chosen = [rng.choice(paths) for _ in range(per_class)] if paths else []
        cache: dict[Path, Image.Image | None] = {}
        for path in chosen:
            if path not in cache:
                try:
                    cache[path] = cut_out(open_image(path))
                except (OSError, ValueError, EmptyForegroundError):
                    cache[path] = None
        cutouts = [cache[p] for p in chosen if cache[p] is not None]
        if not cutouts:
            continue
        images: list[Image.Image] = [c for c in cutouts[:1] if c is not None]
        for obj in cutouts:
            assert obj is not None
            images.append(compose(obj, backgrounds, sample_params(rng, obj.size, sizes, size=size)))
        rows.append((f"{label} ({len(paths)} product shots; first tile: cut-out)", images))
    return contact_sheet(rows)


def preview_from_output(out_dir: Path, per_class: int, seed: int) -> Image.Image:
    """Sheet of `per_class` random images per class from a `generate` output folder (via its manifest)."""
    records = read_manifest(out_dir)
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for record in records:
        by_label.setdefault(str(record["label"]), []).append(str(record["file"]))
    rows: list[tuple[str, list[Image.Image]]] = []
    for label in sorted(by_label):
        files = by_label[label]
        chosen = rng.sample(files, min(per_class, len(files)))
        rows.append((f"{label} ({len(files)} images)", [open_image(out_dir / f) for f in chosen]))
    return contact_sheet(rows)
