"""Composite a cut-out object onto a random crop of a gym interior (pure functions, explicit random.Random).

Recipe after the original experiment (white-background product shots pasted on gym interiors, then a
Gaussian filter to blend), with what a photo of a machine in a gym usually looks like: the machine fills most
of the frame, stands on the floor, is lit differently from the room, and casts a soft contact shadow.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

#: Longer side of the object as a share of the output side. Below ~0.45 the machine becomes a small part of a
#: busy room and stops being recognisable at 224 px; above ~0.95 it is cropped.
SCALE_RANGE = (0.55, 0.95)
#: Side of the square background crop as a share of the background's shorter side.
BACKGROUND_CROP_RANGE = (0.5, 1.0)
#: Multiplicative jitter of the object's brightness / contrast / colour saturation (PIL.ImageEnhance factors).
BRIGHTNESS_RANGE = (0.75, 1.2)
CONTRAST_RANGE = (0.8, 1.2)
SATURATION_RANGE = (0.8, 1.2)
#: Probability and opacity range (0..1) of the soft elliptic contact shadow under the object.
SHADOW_PROBABILITY = 0.6
SHADOW_OPACITY_RANGE = (0.25, 0.55)
#: Radius in output pixels (at 512 px; scaled with the output size) of the final blending Gaussian blur.
BLUR_RANGE = (0.3, 1.1)
#: Output side limits (px). Above the maximum, the canvases exceed Pillow's decompression-bomb limit.
MIN_OUTPUT_SIZE = 32
MAX_OUTPUT_SIZE = 4096


@dataclass(frozen=True)
class CompositeParams:
    """Everything random about one synthetic image; recorded in the manifest.

    Sizes and positions are in output pixels; factors are ImageEnhance factors (1.0 = unchanged).
    """

    size: int
    flip_object: bool
    object_scale: float
    object_width: int
    object_height: int
    object_x: int
    object_y: int
    background_index: int
    background_flip: bool
    crop_left: int
    crop_top: int
    crop_side: int
    brightness: float
    contrast: float
    saturation: float
    shadow: bool
    shadow_opacity: float
    blur_radius: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the parameters (JSON-serialisable)."""
        return asdict(self)


def sample_params(
    rng: random.Random,
    object_size: tuple[int, int],
    background_sizes: list[tuple[int, int]],
    size: int = 512,
    jitter: bool = True,
    shadow: bool = True,
) -> CompositeParams:
    """Draw the parameters of one composite.

    rng: the only source of randomness (same state -> same parameters).
    object_size: (width, height) in pixels of the cropped cut-out.
    background_sizes: (width, height) of each available background, in a stable order; one is picked.
    size: side of the square output in pixels (32-4096).
    jitter / shadow: when False, brightness/contrast/saturation stay 1.0 / no shadow is drawn.
    Raises ValueError for an empty background list, a non-positive object size or a size outside
    32-4096.
    """
    if not background_sizes:
        raise ValueError("at least one background is needed")
    if not MIN_OUTPUT_SIZE <= size <= MAX_OUTPUT_SIZE:
        raise ValueError(f"output size must be {MIN_OUTPUT_SIZE}-{MAX_OUTPUT_SIZE} px, got {size}")
    ow, oh = object_size
    if ow <= 0 or oh <= 0:
        raise ValueError(f"object size must be positive, got {object_size}")
    flip_object = rng.random() < 0.5
    scale = rng.uniform(*SCALE_RANGE)
    factor = scale * size / max(ow, oh)
    width = max(1, min(size, round(ow * factor)))
    height = max(1, min(size, round(oh * factor)))
    x = rng.randint(0, size - width)
    # Equipment stands on the floor: prefer the lower part of the frame (triangular, mode at the bottom).
    y = round(rng.triangular(0, size - height, size - height))
    background_index = rng.randrange(len(background_sizes))
    bw, bh = background_sizes[background_index]
    side = max(1, round(min(bw, bh) * rng.uniform(*BACKGROUND_CROP_RANGE)))
    crop_left = rng.randint(0, bw - side)
    crop_top = rng.randint(0, bh - side)
    background_flip = rng.random() < 0.5
    brightness = rng.uniform(*BRIGHTNESS_RANGE) if jitter else 1.0
    contrast = rng.uniform(*CONTRAST_RANGE) if jitter else 1.0
    saturation = rng.uniform(*SATURATION_RANGE) if jitter else 1.0
    has_shadow = shadow and rng.random() < SHADOW_PROBABILITY
    shadow_opacity = rng.uniform(*SHADOW_OPACITY_RANGE) if has_shadow else 0.0
    blur_radius = rng.uniform(*BLUR_RANGE) * size / 512
    return CompositeParams(
        size=size,
        flip_object=flip_object,
        object_scale=round(scale, 4),
        object_width=width,
        object_height=height,
        object_x=x,
        object_y=y,
        background_index=background_index,
        background_flip=background_flip,
        crop_left=crop_left,
        crop_top=crop_top,
        crop_side=side,
        brightness=round(brightness, 4),
        contrast=round(contrast, 4),
        saturation=round(saturation, 4),
        shadow=has_shadow,
        shadow_opacity=round(shadow_opacity, 4),
        blur_radius=round(blur_radius, 4),
    )


def _jitter(obj: Image.Image, params: CompositeParams) -> Image.Image:
    """Brightness/contrast/saturation jitter of an RGBA object; alpha untouched."""
    alpha = obj.getchannel("A")
    rgb = obj.convert("RGB")
    rgb = ImageEnhance.Brightness(rgb).enhance(params.brightness)
    rgb = ImageEnhance.Contrast(rgb).enhance(params.contrast)
    rgb = ImageEnhance.Color(rgb).enhance(params.saturation)
    rgb.putalpha(alpha)
    return rgb


def _shadow_layer(params: CompositeParams) -> Image.Image:
    """RGBA layer with a soft dark ellipse under the object's base (the contact shadow)."""
    size = params.size
    layer = Image.new("L", (size, size), 0)
    w, h = params.object_width, params.object_height
    cx = params.object_x + w / 2
    base = params.object_y + h
    half_w = 0.55 * w
    half_h = max(2.0, 0.07 * h)
    ImageDraw.Draw(layer).ellipse(
        (cx - half_w, base - half_h, cx + half_w, base + half_h * 0.6),
        fill=round(255 * params.shadow_opacity),
    )
    layer = layer.filter(ImageFilter.GaussianBlur(max(1.0, 0.04 * w)))
    shadow = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    shadow.putalpha(layer)
    return shadow


def compose(object_rgba: Image.Image, backgrounds: list[Image.Image], params: CompositeParams) -> Image.Image:
    """Render one synthetic photo.

    object_rgba: cut-out object, mode RGBA (see synth.alpha.cut_out).
    backgrounds: the same list (same order) whose sizes were given to sample_params; any mode.
    Returns an RGB image of params.size x params.size pixels. Deterministic given its inputs.
    """
    bg = backgrounds[params.background_index].convert("RGB")
    box = (
        params.crop_left,
        params.crop_top,
        params.crop_left + params.crop_side,
        params.crop_top + params.crop_side,
    )
    canvas = bg.crop(box).resize((params.size, params.size), Image.Resampling.LANCZOS)
    if params.background_flip:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas = canvas.convert("RGBA")
    obj = object_rgba.convert("RGBA")
    if params.flip_object:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    obj = obj.resize((params.object_width, params.object_height), Image.Resampling.LANCZOS)
    obj = _jitter(obj, params)
    if params.shadow:
        canvas.alpha_composite(_shadow_layer(params))
    canvas.alpha_composite(obj, (params.object_x, params.object_y))
    out = canvas.convert("RGB")
    if params.blur_radius > 0:
        out = out.filter(ImageFilter.GaussianBlur(params.blur_radius))
    return out
