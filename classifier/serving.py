"""The classifier service used by the bot: all TensorFlow work in ONE worker thread, versions hot-swapped.

Importable without TensorFlow: TensorFlow/Keras are imported inside the worker thread the first time a model
is loaded. Every model call and load runs in a single-thread ``ThreadPoolExecutor`` via
``loop.run_in_executor``, so the asyncio loop never blocks on TensorFlow and TensorFlow never runs
concurrently with itself (2-core machine: concurrency would only add contention).

Hot swap: `reload_if_changed` reads the registry's champion pointer; if it names another version, that
version is loaded and warmed up in the worker thread and then the reference is swapped. Requests queued
before the load was queued run on the old model (the executor is FIFO), requests after on the new one; a
failed load (e.g. BackboneMismatchError) leaves the old model serving and is raised to the caller.

Precision (`resolve_precision`): ``auto`` serves int8 (`classifier.quantize`, 1.6-1.9x faster than
bfloat16 here): calibrated on the training data set's photos when TRAINING_DATA_DIR has them, else the
dynamic-range recipe, which needs no photos. The int8 backbone is converted once per backbone, input size and
recipe (calibrated ~50 s at 320 px, dynamic range ~5 s; in the worker thread, logged; every version of
that size shares it) and cached under ``cache_dir``. If the calibrated conversion fails, the dynamic-range
recipe is tried; if that fails too under ``auto``, the float model serves (bfloat16 on CPUs with
AVX512_BF16, else float32). Each fallback is logged.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from classifier.registry import Registry, RegistryError
from classifier.settings import Precision, PrecisionSetting
from classifier.types import Prediction

if TYPE_CHECKING:
    from classifier.model import Backbone
    from classifier.predictor import Predictor
    from classifier.quantize import Int8Source


log = logging.getLogger(__name__)


def cpu_has_bf16() -> bool:
    """True when the CPU advertises AVX512_BF16 (Linux /proc/cpuinfo), where bfloat16 inference is ~6x
    faster than float32 here (see README ## Classifier); elsewhere bfloat16 would be emulated, so False."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return any(line.startswith("flags") and " avx512_bf16" in line for line in fh)
    except OSError:
        return False


def resolve_precision(setting: PrecisionSetting) -> Precision:
    """The precision to serve in first: ``auto`` is int8 (calibrated or dynamic range, module docstring);
    any other setting is taken as is. The float fallback of ``auto``: `ClassifierService._float_bfloat16`."""
    return "int8" if setting == "auto" else setting


class ClassifierNotReadyError(RuntimeError):
    """classify() was called before start() loaded a model, or after close()."""


class ClassifierService:
    """Implements `classifier.types.Classifier` over a model registry (see module docstring).

    models_dir: registry root (MODELS_DIR); vgg16_weights: ``"imagenet"`` or a weights file path
    (VGG16_WEIGHTS); precision: CLASSIFIER_PRECISION (see `resolve_precision`); training_data_dir: the base
    data set whose photos calibrate int8 (TRAINING_DATA_DIR; None: dynamic range); cache_dir: where int8
    models are cached (default DATA_DIR/cache); bfloat16: overrides the AVX512_BF16 detection for the float
    fallback (float32 weights, Keras mixed_bfloat16); tta: test-time views overriding the version's
    (``["orig"]`` always one pass, about -1 point top-1; by default the version's views with its fitted
    early exit, see README). The loaded float32 backbone is reused across versions of the same input size.
    """

    def __init__(
        self,
        models_dir: Path,
        vgg16_weights: str,
        bfloat16: bool | None = None,
        tta: list[str] | None = None,
        precision: PrecisionSetting = "auto",
        training_data_dir: Path | None = None,
        cache_dir: Path = Path("data/cache"),
    ) -> None:
        self.registry = Registry(Path(models_dir))
        self.tta = tta
        self.vgg16_weights = vgg16_weights
        self.bfloat16 = cpu_has_bf16() if bfloat16 is None else bfloat16
        self.precision_setting: PrecisionSetting = precision
        self.training_data_dir = training_data_dir
        self.cache_dir = Path(cache_dir)
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="classifier"
        )
        self._predictor: Predictor | None = None
        self._backbone: Backbone | None = None
        self._swap_lock = asyncio.Lock()

    @property
    def labels(self) -> list[str]:
        """Equipment labels of the serving version (empty before start)."""
        return list(self._predictor.labels) if self._predictor else []

    @property
    def model_version(self) -> str:
        """Serving version name (e.g. ``v0001``), empty before start."""
        return self._predictor.version if self._predictor else ""

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self._executor is None:
            raise ClassifierNotReadyError("classifier service is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _load_blocking(self, version: str) -> Predictor:
        # Runs in the worker thread: the first call imports TensorFlow.
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from classifier.predictor import Predictor
        from classifier.quantize import Int8Source, Int8UnavailableError

        int8 = self._int8_source()
        bfloat16 = int8 is None and self._float_bfloat16()
        version_dir = self.registry.version_dir(version)
        backbone = None if bfloat16 else self._float32_backbone(version_dir)
        predictor = None
        while predictor is None:
            try:
                predictor = Predictor.load(
                    version_dir, self.vgg16_weights, backbone, tta=self.tta, bfloat16=bfloat16, int8=int8
                )
            except Int8UnavailableError as exc:
                if int8 is not None and int8.photos:  # e.g. no calibration photo readable
                    log.warning("calibrated int8 unavailable (%s); trying the dynamic-range recipe", exc)
                    int8 = Int8Source.dynamic(self.cache_dir)
                    continue
                if self.precision_setting == "int8":
                    raise
                log.warning("int8 serving model unavailable (%s); serving %s in float", exc, version)
                int8, bfloat16 = None, self._float_bfloat16()
                backbone = None if bfloat16 else backbone
        predictor.warm_up()  # the float32 trunk is kept by _float32_backbone; a bfloat16 one is never kept
        detail, seconds = predictor.precision_detail, predictor.load_seconds
        log.info("loaded model %s (%s) in %.1f s", version, detail, seconds)
        return predictor

    def _float32_backbone(self, version_dir: Path) -> Backbone | None:
        """The float32 VGG16 trunk at the version's input size, loaded once and kept for the next versions
        (int8 conversion and float32 serving start from it), so that an int8 attempt that fails and the float
        fallback after it do not load VGG16 again. None for the from-scratch baseline. Raises what
        `classifier.model.load_backbone` raises."""
        from classifier.model import load_backbone
        from classifier.predictor import read_version_config

        cfg = read_version_config(version_dir)
        if cfg.get("kind") != "vgg16_head":
            return None
        size = int(cfg["input"]["size"])
        if self._backbone is None or self._backbone.input_size != size:
            self._backbone = load_backbone(self.vgg16_weights, size)
        return self._backbone

    def _float_bfloat16(self) -> bool:
        """Whether a float model computes in bfloat16: CLASSIFIER_PRECISION=bfloat16, or the float fallback
        of ``auto`` on a CPU with AVX512_BF16 (or the ``bfloat16`` override)."""
        return self.precision_setting == "bfloat16" or (self.precision_setting != "float32" and self.bfloat16)

    def _int8_source(self) -> Int8Source | None:
        """None unless the resolved precision is int8; then `Int8Source.for_serving`: calibration photos of
        TRAINING_DATA_DIR, or the dynamic-range recipe when it is unset, has no photos or cannot be read
        (logged; `bot.__main__` refuses to start on the last two under CLASSIFIER_PRECISION=int8)."""
        from classifier.quantize import Int8Source

        if resolve_precision(self.precision_setting) != "int8":
            return None
        return Int8Source.for_serving(self.training_data_dir, self.cache_dir)

    @property
    def precision(self) -> str:
        """Precision of the serving version (``int8``, ``bfloat16``, ``float32``), empty before start."""
        return self._predictor.precision if self._predictor else ""

    async def start(self) -> None:
        """Load and warm up the champion in the worker thread. Raises RegistryError if there is none,
        BackboneMismatchError if VGG16_WEIGHTS is not the version's backbone."""
        version = self.registry.champion()
        if version is None:
            raise RegistryError(f"no champion model in {self.registry.models_dir} (run python -m classifier)")
        await self.load_version(version)

    async def load_version(self, version: str) -> None:
        """Load, warm up and swap in ``version`` (e.g. after a rollback). Old model serves until then."""
        async with self._swap_lock:
            predictor = await self._run(self._load_blocking, version)
            self._predictor = predictor

    async def reload_if_changed(self) -> bool:
        """Swap to the registry's champion if it moved; True if a new version was swapped in."""
        champion = self.registry.champion()
        if champion is None or champion == self.model_version:
            return False
        await self.load_version(champion)
        return True

    async def classify(self, image: bytes) -> Prediction:
        """Classify encoded image bytes in the worker thread. Raises ImageDecodeError for unreadable images,
        ClassifierNotReadyError before start()."""
        predictor = self._predictor
        if predictor is None:
            raise ClassifierNotReadyError("classifier service not started")
        result: Prediction = await self._run(predictor.classify_bytes, image)
        return result

    async def close(self) -> None:
        """Stop the worker thread (waits for queued work). Idempotent."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)
        self._predictor = None
