"""Int8 serving: the frozen VGG16 backbone quantized after training, run with LiteRT.

Why: one VGG16 pass at 320 px costs ~31.6 GFLOPs. oneDNN's bfloat16 kernels run it in ~150 ms on this
2-core CPU; the backbone quantized to int8 (AVX-512 VNNI through LiteRT's XNNPACK kernels) in ~76 ms
calibrated, ~90 ms dynamic range (README ``## Classifier``, "Int8 serving").

Two recipes, both from the TensorFlow Lite post-training quantization guides (tensorflow.org/lite/
performance/post_training_quantization): the float32 Keras backbone is frozen into a concrete function and
converted with ``optimizations=[tf.lite.Optimize.DEFAULT]``.

* **Calibrated full integer** (`RECIPE`; "Post-training integer quantization"): with a
  ``representative_dataset`` of real preprocessed photos (`calibration_photos`), weights become int8 (per
  output channel for convolutions) and activations int8 with ranges calibrated on those photos.
* **Dynamic range** (`DYNAMIC_RECIPE`; "Post-training dynamic range quantization"): without photos, weights
  become int8 and activations are quantized at run time from each tensor's own range (XNNPACK's dynamically
  quantized int8 kernels). No calibration data is needed, so every machine can serve int8; one pass is
  ~15 % slower than the calibrated model and converts in ~5 s instead of ~50 s.

Input and output stay float32 in both, so the interpreter takes exactly what
`classifier.preprocess.preprocess` returns and gives bottleneck features (1, S/32, S/32, 512). Only the
backbone is quantized: the version's head stays float32 (`classifier.predictor.Predictor`), so the softmax
is not rounded to int8 steps of 1/256 and the decision thresholds keep their meaning.

Nothing int8 is committed: the quantized model is the (quantized) ImageNet backbone, which the registry
never stores. It is derived on the machine from the configured backbone, the input size and (calibrated
recipe) `CALIBRATION_PHOTOS` photos of the base data set, and cached under ``cache_dir`` by a key over all
of those (`int8_cache_key`). It does not depend on the head, so every version of the same input size and
backbone shares it: a machine converts once, and a retrained version needs no conversion. A version with
fine-tuned block 5 has a backbone identity of its own (`classifier.finetune.with_block5`), so its trunk is
converted and cached separately; retrained versions inherit its block 5 and share that conversion.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from classifier.dataset import LabelledImage, load_base_dataset
from classifier.preprocess import InputSpec, preprocess
from classifier.types import ImageDecodeError

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

#: Photos used to calibrate activation ranges. The TFLite guide suggests "around 100-500 samples"; 100 kept
#: validation top-1 within one photo of float for v0005 (README), and costs ~20 s of the conversion.
CALIBRATION_PHOTOS = 100
#: Bump when a conversion recipe changes, so cached int8 models of the old recipe are not reused.
RECIPE = "ptq-int8-v1"
DYNAMIC_RECIPE = "drq-int8-v1"

#: Cache keys whose conversion failed in this process, with the error. They are not converted again until
#: the process restarts (or `forget_failed_conversions`): otherwise each hot swap in the bot would block its
#: classifier thread for another minute on the same failure. Retraining runs in its own process and tries
#: once per run. Out-of-memory and I/O errors are not remembered (they may pass), and a cached file for the
#: key, e.g. written meanwhile by the retraining process, is still used.
_FAILED: dict[str, str] = {}
_FAILED_LOCK = threading.Lock()


def recipe_for(photos: Sequence[Path]) -> str:
    """`RECIPE` when there are calibration photos, else `DYNAMIC_RECIPE`."""
    return RECIPE if photos else DYNAMIC_RECIPE


class CalibrationDataError(ValueError):
    """A data set's calibration photos cannot be listed (a malformed MANIFEST.tsv, an unreadable file).
    ``reason``: the cause, shortened to one line of at most 200 characters."""

    def __init__(self, data_dir: Path, cause: Exception) -> None:
        # a bad byte in MANIFEST.tsv would otherwise repeat the whole line in the message
        self.reason = textwrap.shorten(repr(cause), 200)
        super().__init__(f"cannot read calibration photos in {data_dir}: {self.reason}")


class Int8UnavailableError(RuntimeError):
    """An int8 model was required but cannot be built (no readable calibration photo, conversion failed)."""


def forget_failed_conversions() -> None:
    """Let `load_int8` try again the conversions that failed earlier in this process."""
    with _FAILED_LOCK:
        _FAILED.clear()


@dataclass(frozen=True)
class Int8Source:
    """Where an int8 backbone comes from: calibration ``photos`` (image files of the base data set,
    `calibration_photos`; empty: the dynamic-range recipe, see module docstring) and the ``cache_dir``
    (DATA_DIR/cache) holding converted backbones."""

    photos: tuple[Path, ...]
    cache_dir: Path

    @classmethod
    def for_serving(cls, data_dir: Path | None, cache_dir: Path) -> Int8Source:
        """What the bot serves: `calibration_photos` of ``data_dir`` (TRAINING_DATA_DIR) when it has photos,
        else the dynamic-range recipe, with a warning when ``data_dir`` is set but has no photos or cannot
        be read (`CalibrationDataError`). Never raises."""
        try:
            source = cls.from_data_set(data_dir, cache_dir)
        except Exception as exc:  # CalibrationDataError; anything else is logged the same way
            why = exc.reason if isinstance(exc, CalibrationDataError) else textwrap.shorten(repr(exc), 200)
            log.warning(
                "TRAINING_DATA_DIR=%s cannot be read (%s); int8 uses the dynamic-range recipe", data_dir, why
            )
            return cls.dynamic(cache_dir)
        if source is None and data_dir is not None:
            log.warning("TRAINING_DATA_DIR=%s has no photos; int8 uses the dynamic-range recipe", data_dir)
        return source or cls.dynamic(cache_dir)

    @classmethod
    def dynamic(cls, cache_dir: Path) -> Int8Source:
        """The dynamic-range recipe: no calibration photos."""
        return cls((), Path(cache_dir))

    @property
    def recipe(self) -> str:
        """`recipe_for` its photos."""
        return recipe_for(self.photos)

    def describe(self) -> str:
        """For logs: ``int8, calibrated on N photos`` or ``int8, dynamic range``."""
        return f"int8, calibrated on {len(self.photos)} photos" if self.photos else "int8, dynamic range"

    @classmethod
    def from_data_set(cls, data_dir: Path | None, cache_dir: Path) -> Int8Source | None:
        """`calibration_photos` of ``data_dir`` with ``cache_dir``; None when ``data_dir`` is None or has no
        photos. Raises CalibrationDataError for a data set that cannot be read."""
        if data_dir is None:
            return None
        photos = tuple(it.path for it in calibration_photos(Path(data_dir)))
        return cls(photos, Path(cache_dir)) if photos else None


def calibration_photos(data_dir: Path, n: int = CALIBRATION_PHOTOS) -> list[LabelledImage]:
    """Up to ``n`` calibration photos from a base data set (as `load_base_dataset` reads it): its training
    images and out-of-distribution photos, taken round-robin over labels (file order within a label), so
    every class and the OOD scenes shape the activation ranges. Deterministic. Empty when ``data_dir`` is
    not a directory or holds no images. Raises CalibrationDataError when `load_base_dataset` fails on it (a
    malformed MANIFEST.tsv: OSError, KeyError, TypeError, ValueError, csv.Error)."""
    if not data_dir.is_dir():
        return []
    try:
        train, _, ood = load_base_dataset(data_dir)
    except (OSError, KeyError, TypeError, ValueError, csv.Error) as exc:
        raise CalibrationDataError(data_dir, exc) from exc
    by_label: dict[str, list[LabelledImage]] = {}
    for it in sorted([*train, *ood], key=lambda it: (it.label, str(it.path))):
        by_label.setdefault(it.label, []).append(it)
    queues = [by_label[k] for k in sorted(by_label)]
    picked: list[LabelledImage] = []
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in queues):
        picked.extend(q[depth] for q in queues if depth < len(q))
        depth += 1
    return picked[:n]


def int8_cache_key(backbone_key: str, photos: Sequence[Path]) -> str:
    """Hex SHA-256 naming one int8 backbone: the backbone identity including its input size
    (`classifier.model.BackboneIdentity.cache_key`), the calibration photos' bytes (none: dynamic range),
    the TensorFlow version and the recipe (`RECIPE` or `DYNAMIC_RECIPE`). Raises OSError if a photo cannot
    be read."""
    import tensorflow as tf

    h = hashlib.sha256()
    for part in (recipe_for(photos), tf.__version__, backbone_key):
        h.update(part.encode() + b"\0")
    for path in photos:
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def representative_views(photos: Sequence[Path], spec: InputSpec) -> Iterator[list[np.ndarray]]:
    """The converter's ``representative_dataset``: each readable photo as ``[x]`` with x float32
    (1, S, S, C), preprocessed exactly as served; unreadable photos are logged and skipped."""
    for path in photos:
        try:
            x = preprocess(path.read_bytes(), spec)
        except (OSError, ImageDecodeError) as exc:
            log.warning("calibration photo skipped (%s): %s", path, exc)
            continue
        yield [x[None].astype(np.float32)]


def convert_int8(model: keras.Model, spec: InputSpec, photos: Sequence[Path]) -> bytes:
    """Quantize ``model`` (the backbone: float32 (1, S, S, C) -> (1, S/32, S/32, 512)) to a TFLite
    flatbuffer with float32 input/output (module docstring): full integer calibrated on ``photos``, or
    dynamic range when ``photos`` is empty. Raises Int8UnavailableError when photos are given but none is
    readable (a calibration set that silently became dynamic range would be another model than asked)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    readable = list(representative_views(photos, spec))
    if photos and not readable:
        raise Int8UnavailableError("no readable calibration photo")
    signature = tf.TensorSpec((1, spec.size, spec.size, spec.channels), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[signature])
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if readable:
        converter.representative_dataset = lambda: iter(readable)
    with warnings.catch_warnings():
        # Input and output are float32 on purpose (module docstring), so there are no input statistics.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        flatbuffer: bytes = converter.convert()
    return flatbuffer


def load_int8(
    model: keras.Model, spec: InputSpec, photos: Sequence[Path], cache_dir: Path, key: str
) -> Int8Model:
    """The int8 backbone for ``key``: read from ``cache_dir/int8/<key>.tflite``, else converted
    (`convert_int8`) and written there atomically with a ``.json`` note beside it (photos, seconds, TF
    version). A cached file LiteRT cannot open (truncated, damaged) is logged, deleted and converted again;
    a cache that cannot be written is logged and the converted model served from memory. Raises
    Int8UnavailableError when conversion fails or its result cannot be opened; unless it was caused by
    MemoryError or OSError, that failure is remembered for ``key`` in this process, and later calls raise it
    again at once instead of converting again."""
    out = cache_dir / "int8" / f"{key}.tflite"
    if out.is_file():
        try:
            return Int8Model(out)
        except (ValueError, RuntimeError, OSError) as exc:
            log.warning("cached int8 backbone %s is unreadable (%s); converting it again", out, exc)
            with contextlib.suppress(OSError):  # a read-only cache: the new one is then served from memory
                out.unlink()
    with _FAILED_LOCK:
        earlier = _FAILED.get(key)
    if earlier is not None:
        raise Int8UnavailableError(f"{earlier} (failed earlier in this process; not retried until a restart)")
    try:
        return _convert_and_cache(model, spec, photos, out)
    except Int8UnavailableError as exc:
        if not isinstance(exc.__cause__, MemoryError | OSError):
            with _FAILED_LOCK:
                _FAILED[key] = str(exc)
        raise


def _convert_and_cache(model: keras.Model, spec: InputSpec, photos: Sequence[Path], out: Path) -> Int8Model:
    """`load_int8` on a cache miss. Raises Int8UnavailableError."""
    if photos:
        log.info(
            "building the int8 backbone from %d calibration photos (about a minute, once; cached in %s)",
            len(photos),
            out.parent,
        )
    else:
        log.info("building the dynamic-range int8 backbone (a few seconds, once; cached in %s)", out.parent)
    t0 = time.perf_counter()
    try:
        flatbuffer = convert_int8(model, spec, photos)
    except Int8UnavailableError:
        raise
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise Int8UnavailableError(f"int8 conversion failed: {exc}") from exc
    seconds = time.perf_counter() - t0
    log.info("int8 backbone built in %.1f s (%.1f MB)", seconds, len(flatbuffer) / 1e6)
    cached = True
    try:
        _write_cache(out, flatbuffer, photos, seconds)
    except OSError as exc:
        log.warning("int8 backbone not cached (%s: %s); serving it from memory", out.parent, exc)
        cached = False
    try:
        return Int8Model(out) if cached else Int8Model(None, content=flatbuffer)
    except (ValueError, RuntimeError) as exc:
        with contextlib.suppress(OSError):  # not left in the cache as if it were usable
            out.unlink()
        raise Int8UnavailableError(f"the converted int8 backbone cannot be opened: {exc}") from exc


def _write_cache(out: Path, flatbuffer: bytes, photos: Sequence[Path], seconds: float) -> None:
    """Write ``out`` atomically (temporary file + os.replace) and its ``.json`` note. Raises OSError."""
    import tensorflow as tf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    note = {"recipe": recipe_for(photos), "tensorflow": tf.__version__, "photos": [str(p) for p in photos]}
    try:
        tmp.write_bytes(flatbuffer)
        out.with_suffix(".json").write_text(json.dumps({**note, "seconds": round(seconds, 1)}, indent=1))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Int8Model:
    """A LiteRT interpreter over an int8 backbone, from a file ``path`` or from ``content`` (flatbuffer
    bytes): ``model(x)`` with x float32 (1, S, S, C) preprocessed -> float32 (1, S/32, S/32, 512)
    bottleneck features. Not thread-safe (one interpreter, one worker thread). Raises ValueError (not a
    valid model) or RuntimeError (cannot allocate) when constructed."""

    path: Path | None
    threads: int | None = None
    content: bytes | None = None
    _interpreter: Any = None
    _input: int = 0
    _output: int = 0

    def __post_init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        threads = self.threads or os.cpu_count()
        if self.content is not None:
            self._interpreter = Interpreter(model_content=self.content, num_threads=threads)
        else:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, np.asarray(x, dtype=np.float32))
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output), dtype=np.float32)
