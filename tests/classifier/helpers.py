"""Tiny real images and models for classifier tests (Pillow-made images, weights=None VGG16 at 32x32)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

TINY_LABELS = ("blue_thing", "green_thing", "red_thing")
COLOURS = {"red_thing": (220, 30, 30), "green_thing": (30, 200, 40), "blue_thing": (30, 40, 220)}


def coloured_image(label: str, seed: int, size: int = 48) -> Image.Image:
    """A noisy image dominated by the label's colour (learnable even by a random-feature head)."""
    rng = np.random.default_rng(seed)
    base = np.array(COLOURS[label], dtype=np.float64)
    arr = base + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_folder_dataset(root: Path, per_class: int = 10, ood: int = 6) -> Path:
    """root/<label>/*.png|jpg, plus root/__other__ grey images; returns root."""
    for label in TINY_LABELS:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = coloured_image(label, seed=hash((label, i)) % 10_000)
            fmt = "JPEG" if i % 2 else "PNG"
            (root / label / f"{label}_{i}.{fmt.lower()}").write_bytes(encode(img, fmt))
    (root / "__other__").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(ood):
        grey = np.clip(128 + rng.normal(0, 40, (48, 48, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
        (root / "__other__" / f"grey_{i}.png").write_bytes(encode(Image.fromarray(grey, "RGB")))
    return root


def tiny_weights_file(path: Path, size: int = 32) -> Path:
    """Save a randomly initialised VGG16 trunk (input size x size) as a Keras weights file."""
    import keras

    keras.utils.set_random_seed(1)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    model.save_weights(path)
    return path
