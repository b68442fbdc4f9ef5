"""Decode image bytes into the exact tensor a model sees: the ONE preprocessing path for training and serving.

Pipeline (`preprocess`): bytes -> Pillow decode (first frame of animations) -> EXIF orientation applied
(`PIL.ImageOps.exif_transpose`) -> any mode (RGBA/LA/P with transparency composited on white, 16-bit and
32-bit integer scaled to 8 bit, CMYK, L, 1, YCbCr...) normalised to 8-bit RGB -> resized to the model's
input size (plain resize to a square, bilinear with Pillow's antialiasing, the same as Keras'
``image_dataset_from_directory`` default of not keeping the aspect ratio) -> optional augmentation on the
float RGB array in [0, 255] -> model-specific normalisation:

* ``"vgg16"``: ``keras.applications.vgg16.preprocess_input`` ("caffe" mode: RGB->BGR, minus the ImageNet
  channel means 103.939, 116.779, 123.68; Simonyan & Zisserman 2014 / Keras docs), float32.
* ``"gray"``: the from-scratch baseline of the original experiment: 8-bit luminance (ITU-R 601-2 as in
  Pillow's ``convert("L")``) divided by 255, shape (H, W, 1), float32 in [0, 1].

No TensorFlow import at module import time (Keras is imported on first use of the vgg16 mode), so
`classifier.serving` stays importable without TensorFlow.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from classifier.types import ImageDecodeError

Normalisation = Literal["vgg16", "gray"]

#: Largest encoded image we accept (bytes). Telegram's Bot API download limit is 20 MB; keep headroom.
MAX_IMAGE_BYTES = 40 * 1024 * 1024
#: Largest decoded image we accept (pixels), well below Pillow's decompression-bomb error threshold.
MAX_IMAGE_PIXELS = 80_000_000

#: Formats `decode_image` opens: photo and common raster formats only. Pillow would otherwise run Ghostscript
#: on an EPS file sent as a photo (Pillow docs, EPS: "requires Ghostscript"), i.e. untrusted PostScript.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "AVIF", "PPM", "ICO", "TGA")

#: ImageNet channel means in BGR order used by VGG16's "caffe" preprocessing (Keras vgg16.preprocess_input).
VGG16_BGR_MEANS = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class InputSpec:
    """What a model expects: square side ``size`` (px) and the ``normalisation`` applied after resizing."""

    size: int = 224
    normalisation: Normalisation = "vgg16"

    @property
    def channels(self) -> int:
        """3 for VGG16 (BGR), 1 for the grayscale baseline."""
        return 1 if self.normalisation == "gray" else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one preprocessed image."""
        return (self.size, self.size, self.channels)


VGG16_224 = InputSpec(224, "vgg16")
SCRATCH_150 = InputSpec(150, "gray")

#: An augmentation: float32 RGB array (H, W, 3) in [0, 255] -> array of the same shape and range.
Augment = Callable[[np.ndarray], np.ndarray]


def decode_image(data: bytes) -> Image.Image:
    """Decode encoded bytes to an upright 8-bit RGB Pillow image.

    Accepts the raster formats in ALLOWED_FORMATS (JPEG, PNG incl. 16-bit and alpha, WEBP, GIF/animated ->
    first frame, TIFF, BMP, CMYK JPEG...); never EPS/PostScript (Pillow hands those to Ghostscript).
    Transparent pixels are composited onto white (product shots are on white).
    Raises ImageDecodeError (with a human-readable reason) for empty, oversized, truncated or unknown data.
    """
    if not data:
        raise ImageDecodeError("empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageDecodeError(f"file too large ({len(data)} bytes > {MAX_IMAGE_BYTES})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ImageDecodeError(f"image too large ({img.width}x{img.height} pixels)")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
            upright = ImageOps.exif_transpose(img)
            return to_rgb(upright)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image format Pillow can read") from exc
    except (OSError, ValueError, SyntaxError, EOFError, Warning) as exc:
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    except Image.DecompressionBombError as exc:  # pragma: no cover - subclass of Exception only
        raise ImageDecodeError(f"image too large: {exc}") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to 8-bit RGB (alpha composited on white, high bit depths scaled to 8 bit)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def resize(img: Image.Image, size: int) -> Image.Image:
    """Resize an RGB image to ``size`` x ``size`` (aspect not kept), bilinear with antialiasing."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)


def normalise(rgb: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """float RGB array (..., H, W, 3) in [0, 255] -> model input (float32), see the module docstring."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if normalisation == "gray":
        # Pillow's convert("L") weights (ITU-R 601-2 luma).
        gray = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
        return (gray / 255.0)[..., None].astype(np.float32)
    from keras.applications.vgg16 import preprocess_input  # lazy: keeps serving importable without TF

    return np.asarray(preprocess_input(rgb.copy()), dtype=np.float32)


def preprocess(data: bytes, spec: InputSpec = VGG16_224, augment: Augment | None = None) -> np.ndarray:
    """Encoded image bytes -> one model input, float32 of shape ``spec.shape`` (no batch axis).

    Used by training (feature extraction, baseline), evaluation and serving alike. ``augment`` (training only)
    receives the resized float32 RGB array in [0, 255]. Raises ImageDecodeError for unreadable bytes.
    """
    img = resize(decode_image(data), spec.size)
    rgb = np.asarray(img, dtype=np.float32)
    if augment is not None:
        rgb = np.clip(augment(rgb), 0.0, 255.0).astype(np.float32)
    return normalise(rgb, spec.normalisation)


def preprocess_file(path: str | bytes | object, spec: InputSpec = VGG16_224) -> np.ndarray:
    """Read a file and `preprocess` it. Raises ImageDecodeError (naming the file) if unreadable."""
    from pathlib import Path

    p = Path(str(path))
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"{p}: cannot read file: {exc}") from exc
    try:
        return preprocess(data, spec)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{p}: {exc}") from exc
