"""Pillow-made test images for the synth tests (no files from ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def white_box_with_outline(
    size: int = 120, box: tuple[int, int, int, int] = (30, 40, 90, 100)
) -> Image.Image:
    """A pure-white box with a 3-px dark outline on a pure-white background (RGB)."""
    im = Image.new("RGB", (size, size), (255, 255, 255))
    ImageDraw.Draw(im).rectangle(box, fill=(255, 255, 255), outline=(20, 20, 20), width=3)
    return im


def textured_photo(size: tuple[int, int] = (96, 80), seed: int = 0) -> Image.Image:
    """A 'real photo' stand-in: colourful noise everywhere, no white border."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 200, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, mode="RGB")


def product_shot(
    size: tuple[int, int] = (100, 80), colour: tuple[int, int, int] = (200, 30, 30)
) -> Image.Image:
    """A coloured ellipse with a dark bar on white: a tiny product shot (RGB)."""
    im = Image.new("RGB", size, (255, 255, 255))
    d = ImageDraw.Draw(im)
    w, h = size
    d.ellipse((w // 5, h // 5, 4 * w // 5, 4 * h // 5), fill=colour)
    d.rectangle((w // 4, h // 2 - 2, 3 * w // 4, h // 2 + 2), fill=(10, 10, 10))
    return im


def write_inputs(root: Path) -> tuple[Path, Path]:
    """foregrounds/{alpha,beta}/ and backgrounds/ with a few tiny images of several formats."""
    fg = root / "foregrounds"
    (fg / "alpha").mkdir(parents=True)
    (fg / "beta").mkdir(parents=True)
    product_shot().save(fg / "alpha" / "a1.jpg", quality=95)
    product_shot((90, 110), (30, 120, 200)).save(fg / "alpha" / "a2.png")
    transparent = Image.new("RGBA", (70, 70), (0, 0, 0, 0))
    ImageDraw.Draw(transparent).rectangle((10, 20, 60, 50), fill=(40, 160, 40, 255))
    transparent.save(fg / "beta" / "b1.png")
    bg = root / "backgrounds"
    bg.mkdir()
    textured_photo((160, 120), 1).save(bg / "gym1.jpg", quality=90)
    textured_photo((120, 200), 2).save(bg / "gym2.png")
    return fg, bg
