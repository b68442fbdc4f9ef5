"""Preprocessing: odd image modes, EXIF orientation, unreadable bytes, and training/serving tensor parity."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.preprocess import SCRATCH_150, InputSpec, decode_image, preprocess
from classifier.types import ImageDecodeError
from tests.classifier.helpers import encode

SPEC = InputSpec(32, "vgg16")


def _rgb_pattern(w: int = 40, h: int = 24) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (200, 30, 30)
    arr[:, w // 2 :] = (30, 30, 200)
    return Image.fromarray(arr, "RGB")


def test_vgg16_normalisation_matches_keras_preprocess_input() -> None:
    from keras.applications.vgg16 import preprocess_input

    img = _rgb_pattern(32, 32)
    x = preprocess(encode(img), SPEC)
    expected = preprocess_input(np.asarray(img, np.float32)[None].copy())[0]
    assert x.shape == (32, 32, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-4)
    # BGR order: the left half is red in RGB, so channel 2 (R) is high after mean subtraction.
    assert x[0, 0, 2] > 50 and x[0, 0, 0] < 0


def test_rgba_transparency_is_composited_on_white() -> None:
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent red
    out = decode_image(encode(img))
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_palette_with_transparency_and_la() -> None:
    p = Image.new("P", (10, 10), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.info["transparency"] = 0
    assert decode_image(encode(p, "PNG", transparency=0)).getpixel((1, 1)) == (255, 255, 255)
    la = Image.new("LA", (10, 10), (40, 255))
    assert decode_image(encode(la)).getpixel((1, 1)) == (40, 40, 40)


def test_cmyk_and_grayscale_become_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    px = decode_image(encode(cmyk, "JPEG", quality=95)).getpixel((8, 8))
    assert isinstance(px, tuple)
    r, g, b = px[:3]
    assert r > 200 and g < 60 and b < 60
    gray = Image.new("L", (16, 16), 100)
    assert decode_image(encode(gray)).getpixel((3, 3)) == (100, 100, 100)


def test_sixteen_bit_png_is_scaled_to_eight_bit() -> None:
    arr = np.full((12, 12), 65535 // 2, dtype=np.uint16)
    img = Image.fromarray(arr)  # uint16 -> mode I;16
    data = encode(img)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    px = decode_image(data).getpixel((2, 2))
    assert isinstance(px, tuple) and abs(px[0] - 127) <= 1 and px[0] == px[1] == px[2]


def test_exif_orientation_is_applied() -> None:
    img = _rgb_pattern(40, 20)  # landscape: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    assert out.size == (20, 40)  # portrait once upright
    top = out.getpixel((10, 2))
    assert isinstance(top, tuple) and top[0] > 150  # red ends up on top after a clockwise turn


def test_webp_and_gif_first_frame() -> None:
    webp = decode_image(encode(_rgb_pattern(), "WEBP", quality=90))
    assert webp.size == (40, 24) and webp.mode == "RGB"
    frames = [Image.new("RGB", (10, 10), (250, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 250))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    first = decode_image(buf.getvalue()).getpixel((5, 5))
    assert isinstance(first, tuple) and first[0] > 200 and first[2] < 50


@pytest.mark.parametrize("data", [b"", b"not an image at all", encode(_rgb_pattern(), "PNG")[:60]])
def test_unreadable_bytes_raise_image_decode_error(data: bytes) -> None:
    with pytest.raises(ImageDecodeError):
        preprocess(data, SPEC)


def test_grayscale_baseline_input() -> None:
    x = preprocess(encode(Image.new("RGB", (300, 200), (255, 255, 255))), SCRATCH_150)
    assert x.shape == (150, 150, 1)
    np.testing.assert_allclose(x, 1.0, atol=1e-3)


def test_training_and_serving_feed_identical_tensors(tiny_env, tmp_path: Path) -> None:
    """The tensor the backbone sees while extracting training features equals what serving feeds the model."""
    from classifier.dataset import extract_bottleneck_features
    from classifier.model import load_backbone
    from classifier.predictor import Predictor
    from classifier.registry import Registry

    photo = tmp_path / "odd.png"
    photo.write_bytes(encode(Image.new("RGBA", (50, 30), (10, 200, 30, 128))))
    backbone = load_backbone(str(tiny_env.weights), 32)
    seen_training: list[np.ndarray] = []
    original = backbone.features

    def spy(x: np.ndarray) -> np.ndarray:
        seen_training.append(np.array(x))
        return original(x)

    backbone.features = spy  # type: ignore[method-assign]
    extract_bottleneck_features([photo], backbone, None, "orig", progress=False)

    registry = Registry(tiny_env.models)
    predictor = Predictor.load(registry.version_dir(registry.champion() or ""), str(tiny_env.weights))
    seen_serving: list[np.ndarray] = []
    forward = predictor._forward

    def spy_forward(x: np.ndarray) -> object:
        seen_serving.append(np.array(x))
        return forward(x)

    predictor._forward = spy_forward
    predictor.classify_bytes(photo.read_bytes())
    assert seen_training[0].shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(seen_serving[0][0], seen_training[0][0])  # view 0 = the original image
