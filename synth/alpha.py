"""Cut a product shot out of its white background: flood fill from the border, keep an existing alpha.

A global "near-white -> transparent" threshold punches holes in white parts of the equipment (white seats,
white frames, highlights). Instead, background is only what is near-white (or already transparent) AND
connected to the image border through other such pixels (4-connectivity). White regions enclosed by the
object's outline stay opaque. The mask edge is then eroded slightly and feathered so no white halo remains
when the object is pasted onto a dark gym interior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter, ImageOps

#: A pixel is "near white" when every channel is >= 255 - NEAR_WHITE_TOLERANCE and its channels differ by at
#: most NEAR_WHITE_MAX_CHROMA (grey-ish). 40 keeps the light studio gradients of product shots in the
#: background (measured on ../shared/data/white_bg, see docs/experiments.md) while light-grey metal stays in.
NEAR_WHITE_TOLERANCE = 40
NEAR_WHITE_MAX_CHROMA = 30
#: With see_through, enclosed regions this white (min channel, 0..255) are backdrop seen between bars.
STUDIO_WHITE = 248
#: Alpha below this counts as "already transparent" (0..255).
TRANSPARENT_BELOW = 128
#: A mask is "reliable" when at least this share of the border ring is background (near-white/transparent) ...
RELIABLE_MIN_BORDER_BACKGROUND = 0.85
#: ... and the object covers a sensible share of the picture (not a speck, not the whole frame).
RELIABLE_FOREGROUND_RANGE = (0.03, 0.92)


class EmptyForegroundError(ValueError):
    """Raised when nothing is left of an image after removing its background."""


@dataclass(frozen=True)
class MaskReport:
    """How trustworthy the border flood-fill mask of one image is.

    border_background: share (0..1) of the outermost pixel ring that is near-white or transparent.
    foreground_fraction: share (0..1) of all pixels kept as object.
    reliable: both numbers are within the ranges above, i.e. the photo is a cut-out-able product shot.
    """

    border_background: float
    foreground_fraction: float
    reliable: bool


def _to_rgba(image: Image.Image) -> Image.Image:
    """Upright RGBA copy of any Pillow image (EXIF orientation applied, first frame of animations)."""
    upright = ImageOps.exif_transpose(image)
    if upright.mode == "RGBA":
        return upright.copy()
    if upright.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in upright.info:
        return upright.convert("RGBA")
    if upright.mode not in ("RGB", "L"):
        # CMYK, I;16, I, F, YCbCr...: go through RGB so the colour conversion is Pillow's.
        if upright.mode.startswith("I") or upright.mode == "F":
            arr = np.asarray(upright, dtype=np.float64)
            top = float(arr.max()) or 1.0
            upright = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), mode="L")
        else:
            upright = upright.convert("RGB")
    return upright.convert("RGBA")


def _passable(rgba: NDArray[np.uint8], tolerance: int, max_chroma: int) -> NDArray[np.bool_]:
    """Pixels the background flood fill may cross: near-white or already transparent. Shape (H, W)."""
    rgb = rgba[..., :3].astype(np.int16)
    lo = rgb.min(axis=2)
    hi = rgb.max(axis=2)
    near_white = (lo >= 255 - tolerance) & (hi - lo <= max_chroma)
    transparent = rgba[..., 3] < TRANSPARENT_BELOW
    result: NDArray[np.bool_] = near_white | transparent
    return result


def _reach_runs(mask: NDArray[np.bool_], reached: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Spread `reached` along horizontal runs of `mask`: a run touched anywhere is reached everywhere."""
    starts = mask.copy()
    starts[:, 1:] &= ~mask[:, :-1]
    run_id = np.cumsum(starts.ravel()).reshape(mask.shape) * mask
    hit = np.zeros(int(run_id.max()) + 1, dtype=bool)
    hit[run_id[reached & mask]] = True
    hit[0] = False
    spread: NDArray[np.bool_] = hit[run_id]
    return spread


def grow_from(passable: NDArray[np.bool_], seeds: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of `passable` (bool, (H, W)) connected to a seed pixel through passable pixels (4-connectivity).

    Implemented as alternating row-run / column-run propagation in NumPy, which converges in as many rounds
    as the longest path has turns (a handful for photos), so a 1280 px image takes tens of milliseconds
    instead of the seconds of a per-pixel Python flood fill.
    """
    reached = seeds & passable
    count = -1
    while True:
        reached = _reach_runs(passable, reached)
        reached = _reach_runs(passable.T, reached.T).T
        new_count = int(reached.sum())
        if new_count == count:
            return reached
        count = new_count


def border_flood_fill(passable: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of `passable` (bool, (H, W)) connected to the image border through passable pixels."""
    seeds = np.zeros_like(passable)
    seeds[0, :] = seeds[-1, :] = True
    seeds[:, 0] = seeds[:, -1] = True
    return grow_from(passable, seeds)


def object_mask(
    image: Image.Image,
    tolerance: int = NEAR_WHITE_TOLERANCE,
    max_chroma: int = NEAR_WHITE_MAX_CHROMA,
    see_through: bool = False,
) -> Image.Image:
    """Hard object mask (mode "L", 0 or 255, same size as `image`) before softening.

    Background = near-white or transparent pixels connected to the border; everything else is object,
    including white areas enclosed by the object (default). Pixels that were already transparent stay
    transparent wherever they are (an existing alpha channel is kept).
    see_through: opt-in; enclosed areas that are studio white (every channel >= STUDIO_WHITE, blobs that
        survive a 5x5 opening, grown over adjacent near-white pixels) are treated as backdrop seen between the
        bars of a rack or bench. This DOES
        punch holes in pure-white parts of an object, which is why it is off by default.
    """
    rgba = np.asarray(_to_rgba(image), dtype=np.uint8)
    passable = _passable(rgba, tolerance, max_chroma)
    background = border_flood_fill(passable) | (rgba[..., 3] < TRANSPARENT_BELOW)
    if see_through:
        studio = (rgba[..., :3].min(axis=2) >= STUDIO_WHITE) & ~background
        blobs = Image.fromarray(np.where(studio, 255, 0).astype(np.uint8), mode="L")
        blobs = blobs.filter(ImageFilter.MinFilter(5)).filter(ImageFilter.MaxFilter(5))
        # Grow the holes over the adjacent near-white rim (anti-aliased edges, shading of the backdrop).
        background |= grow_from(passable, np.asarray(blobs) > 0)
    return Image.fromarray(np.where(background, 0, 255).astype(np.uint8), mode="L")


def mask_report(image: Image.Image, tolerance: int = NEAR_WHITE_TOLERANCE) -> MaskReport:
    """Measure whether `image` is a product shot whose object can be cut out reliably (see MaskReport)."""
    rgba = np.asarray(_to_rgba(image), dtype=np.uint8)
    passable = _passable(rgba, tolerance, NEAR_WHITE_MAX_CHROMA)
    ring = np.concatenate([passable[0, :], passable[-1, :], passable[1:-1, 0], passable[1:-1, -1]])
    border_background = float(ring.mean())
    background = border_flood_fill(passable) | (rgba[..., 3] < TRANSPARENT_BELOW)
    foreground_fraction = float(1.0 - background.mean())
    lo, hi = RELIABLE_FOREGROUND_RANGE
    reliable = border_background >= RELIABLE_MIN_BORDER_BACKGROUND and lo <= foreground_fraction <= hi
    return MaskReport(round(border_background, 4), round(foreground_fraction, 4), reliable)


def cut_out(
    image: Image.Image,
    tolerance: int = NEAR_WHITE_TOLERANCE,
    feather: float | None = None,
    see_through: bool = False,
) -> Image.Image:
    """Remove the white background of a product shot and crop to the object.

    image: any Pillow image (RGB, RGBA, P, L, CMYK, 16-bit...); EXIF orientation is applied.
    tolerance: 0..255, how far from pure white a background pixel may be (see NEAR_WHITE_TOLERANCE).
    feather: Gaussian blur radius in pixels for the mask edge; default scales with the image (about 0.15% of
        the longer side, at least 0.6 px) after a 1-px erosion (MinFilter(3)) that removes the white fringe.
    see_through: see object_mask (off by default: white parts of the object are never made transparent).
    Returns an RGBA image cropped to the bounding box of the visible object (alpha > 0); the existing alpha
    channel, if any, is multiplied in. Raises EmptyForegroundError when no object is left.
    """
    rgba = _to_rgba(image)
    hard = object_mask(rgba, tolerance, see_through=see_through)
    # Opening removes isolated specks (JPEG noise in the background), then a 1-px erosion eats the fringe.
    soft = hard.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    soft = soft.filter(ImageFilter.MinFilter(3))
    radius = feather if feather is not None else max(0.6, 0.0015 * max(rgba.size))
    soft = soft.filter(ImageFilter.GaussianBlur(radius))
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.uint16) * np.asarray(soft, dtype=np.uint16) // 255
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8), mode="L"))
    bbox = rgba.getchannel("A").getbbox()
    if bbox is None:
        raise EmptyForegroundError("no object left after removing the white background")
    return rgba.crop(bbox)
