"""Alpha extraction: border flood fill, no holes in white parts, existing alpha kept, odd modes."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
from PIL import Image, ImageDraw

from synth.alpha import (
    EmptyForegroundError,
    border_flood_fill,
    cut_out,
    mask_report,
    object_mask,
)
from tests.synth.helpers import product_shot, textured_photo, white_box_with_outline


def _alpha(im: Image.Image) -> np.ndarray:
    return np.asarray(im.getchannel("A"))


def test_white_box_with_dark_outline_keeps_its_white_inside() -> None:
    cut = cut_out(white_box_with_outline())
    alpha = _alpha(cut)
    # Cropped to the box (30..90 x 40..100 -> 61 x 61), give or take the 1-px softened edge.
    assert abs(cut.width - 61) <= 2 and abs(cut.height - 61) <= 2
    inner = alpha[5:-5, 5:-5]
    assert inner.min() == 255, "white interior of the object must stay opaque (no hole)"
    rgb = np.asarray(cut.convert("RGB"))
    assert rgb[cut.height // 2, cut.width // 2].tolist() == [255, 255, 255]


def test_global_threshold_would_have_punched_a_hole_but_flood_fill_does_not() -> None:
    im = Image.new("RGB", (100, 100), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.ellipse((10, 10, 90, 90), fill=(30, 30, 60))
    d.ellipse((35, 35, 65, 65), fill=(250, 250, 250))  # a white seat inside a dark frame
    mask = np.asarray(object_mask(im))
    assert mask[50, 50] == 255
    assert mask[2, 2] == 0 and mask[97, 97] == 0


def test_see_through_opt_in_punches_enclosed_studio_white_only() -> None:
    im = Image.new("RGB", (100, 100), (255, 255, 255))
    d = ImageDraw.Draw(im)
    d.rectangle((10, 10, 90, 90), outline=(0, 0, 0), width=4)  # a rack frame: backdrop inside
    d.rectangle((20, 60, 80, 70), fill=(225, 225, 225), outline=(60, 60, 60), width=2)  # light-grey seat
    mask = np.asarray(object_mask(im, see_through=True))
    assert mask[30, 50] == 0, "backdrop seen through the frame becomes transparent"
    assert mask[65, 50] == 255, "light-grey part of the object is kept"
    assert mask[10, 50] == 255, "frame kept"
    assert np.asarray(object_mask(im))[30, 50] == 255, "default never punches holes"


def test_object_touching_the_border_is_kept() -> None:
    im = Image.new("RGB", (80, 60), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((0, 0, 39, 59), fill=(50, 70, 90))  # touches left, top and bottom edges
    cut = cut_out(im)
    assert abs(cut.width - 40) <= 2 and cut.height >= 58
    alpha = _alpha(cut)
    assert alpha[30, 1] > 200 and alpha[1, 20] > 200, "object pixels at the image edge stay opaque"


def test_existing_alpha_is_kept_and_transparent_black_is_not_object() -> None:
    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent BLACK: must not count as object
    ImageDraw.Draw(im).ellipse((16, 8, 48, 56), fill=(200, 40, 40, 255))
    cut = cut_out(im)
    assert abs(cut.width - 33) <= 2 and abs(cut.height - 49) <= 2
    alpha = _alpha(cut)
    assert alpha[cut.height // 2, cut.width // 2] == 255
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0


def test_white_card_around_a_transparent_image_is_removed_too() -> None:
    im = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((0, 0, 79, 79), radius=15, fill=(255, 255, 255, 255))  # white card, clear corners
    d.rectangle((25, 30, 55, 50), fill=(10, 10, 10, 255))
    cut = cut_out(im)
    assert abs(cut.width - 31) <= 2 and abs(cut.height - 21) <= 2


def test_partial_alpha_is_multiplied_not_replaced() -> None:
    im = Image.new("RGBA", (40, 40), (255, 255, 255, 255))
    ImageDraw.Draw(im).rectangle((10, 10, 29, 29), fill=(0, 0, 200, 180))
    alpha = _alpha(cut_out(im))
    assert alpha[10, 10] == 180


@pytest.mark.parametrize("mode", ["P", "L", "LA", "CMYK", "I;16", "RGBA", "1"])
def test_any_mode_gives_rgba(mode: str) -> None:
    im = product_shot()
    converted = im.convert("L").convert("I;16") if mode == "I;16" else im.convert(mode)
    cut = cut_out(converted)
    assert cut.mode == "RGBA"
    assert 0 < cut.width <= im.width and 0 < cut.height <= im.height


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (100, 50), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((10, 10, 89, 29), fill=(0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    im.info["exif"] = exif.tobytes()
    im.getexif()[0x0112] = 6
    cut = cut_out(im)
    assert cut.height > cut.width, "landscape object turned upright (portrait) by the EXIF orientation"


def test_blank_image_raises() -> None:
    with pytest.raises(EmptyForegroundError):
        cut_out(Image.new("RGB", (30, 30), (255, 255, 255)))


def test_edge_is_softened() -> None:
    im = Image.new("RGB", (200, 200), (255, 255, 255))
    ImageDraw.Draw(im).rectangle((50, 50, 149, 149), fill=(0, 0, 0))
    alpha = _alpha(cut_out(im))
    row = alpha[alpha.shape[0] // 2]
    assert 0 < row[0] < 255 or 0 < row[1] < 255, "the edge has intermediate alpha values (feathered)"
    assert row[len(row) // 2] == 255


def test_mask_report_tells_product_shots_from_photos() -> None:
    assert mask_report(product_shot()).reliable
    photo = mask_report(textured_photo())
    assert not photo.reliable and photo.border_background < 0.1
    blank = mask_report(Image.new("RGB", (20, 20), (255, 255, 255)))
    assert not blank.reliable and blank.foreground_fraction == 0.0


def _bfs_reference(passable: np.ndarray) -> np.ndarray:
    h, w = passable.shape
    seen = np.zeros_like(passable)
    queue: deque[tuple[int, int]] = deque()
    for y in range(h):
        for x in range(w):
            if (y in (0, h - 1) or x in (0, w - 1)) and passable[y, x]:
                seen[y, x] = True
                queue.append((y, x))
    while queue:
        y, x = queue.popleft()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            ny, nx = y + dy, x + dx
            if 0 <= ny < h and 0 <= nx < w and passable[ny, nx] and not seen[ny, nx]:
                seen[ny, nx] = True
                queue.append((ny, nx))
    return seen


@pytest.mark.parametrize("seed", range(6))
def test_flood_fill_matches_a_plain_bfs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    passable = rng.random((37, 53)) < 0.58  # near the percolation threshold: long winding paths
    assert np.array_equal(border_flood_fill(passable), _bfs_reference(passable))


def test_flood_fill_follows_a_spiral() -> None:
    im = Image.new("L", (41, 41), 255)
    d = ImageDraw.Draw(im)
    for k in range(0, 18, 4):  # nested squares with alternating gaps make a maze
        d.rectangle((k + 2, k + 2, 38 - k, 38 - k), outline=0)
        gap_x = k + 3 if (k // 4) % 2 else 37 - k
        d.point((gap_x, k + 2), fill=255)
    passable = np.asarray(im) > 128
    assert np.array_equal(border_flood_fill(passable), _bfs_reference(passable))
