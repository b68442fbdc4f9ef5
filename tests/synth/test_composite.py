"""Compositing: parameters from an explicit random.Random, ranges, output size and mode."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from synth.alpha import cut_out
from synth.composite import SCALE_RANGE, compose, sample_params
from tests.synth.helpers import product_shot, textured_photo


def test_same_rng_state_same_params_and_pixels() -> None:
    obj = cut_out(product_shot())
    bgs = [textured_photo((150, 100), 3), textured_photo((90, 140), 4)]
    sizes = [b.size for b in bgs]
    p1 = sample_params(random.Random(7), obj.size, sizes, size=96)
    p2 = sample_params(random.Random(7), obj.size, sizes, size=96)
    assert p1 == p2
    assert compose(obj, bgs, p1).tobytes() == compose(obj, bgs, p2).tobytes()
    p3 = sample_params(random.Random(8), obj.size, sizes, size=96)
    assert p3 != p1


@pytest.mark.parametrize("seed", range(25))
def test_params_keep_the_object_recognisable_and_inside(seed: int) -> None:
    size = 128
    p = sample_params(random.Random(seed), (300, 120), [(640, 480), (200, 900)], size=size)
    assert SCALE_RANGE[0] * size - 1 <= max(p.object_width, p.object_height) <= SCALE_RANGE[1] * size + 1
    assert 0 <= p.object_x <= size - p.object_width and 0 <= p.object_y <= size - p.object_height
    bw, bh = [(640, 480), (200, 900)][p.background_index]
    assert p.crop_left + p.crop_side <= bw and p.crop_top + p.crop_side <= bh
    assert 0.0 <= p.shadow_opacity < 1.0 and p.blur_radius > 0
    assert set(p.as_dict()) >= {"object_scale", "brightness", "contrast", "shadow", "blur_radius"}


def test_no_jitter_no_shadow() -> None:
    p = sample_params(random.Random(1), (50, 50), [(100, 100)], size=64, jitter=False, shadow=False)
    assert (p.brightness, p.contrast, p.saturation, p.shadow) == (1.0, 1.0, 1.0, False)


def test_compose_gives_rgb_of_the_requested_size_with_the_object_visible() -> None:
    obj = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    bg = Image.new("RGB", (100, 100), (0, 0, 255))
    p = sample_params(random.Random(3), obj.size, [bg.size], size=64, jitter=False, shadow=False)
    out = compose(obj, [bg], p)
    assert out.mode == "RGB" and out.size == (64, 64)
    cx = p.object_x + p.object_width // 2
    cy = p.object_y + p.object_height // 2
    r, _, b = out.getpixel((cx, cy))  # type: ignore[misc]
    assert r > 200 and b < 60, "object pasted where the parameters say"
    _, _, b = out.getpixel((0 if p.object_x > 5 else 63, 0 if p.object_y > 5 else 63))  # type: ignore[misc]
    assert b > 200, "background around it"


def test_bad_arguments_raise() -> None:
    rng = random.Random(0)
    with pytest.raises(ValueError, match="background"):
        sample_params(rng, (10, 10), [], size=64)
    with pytest.raises(ValueError, match="32"):
        sample_params(rng, (10, 10), [(50, 50)], size=16)
    with pytest.raises(ValueError, match="positive"):
        sample_params(rng, (0, 10), [(50, 50)], size=64)
