"""A fake classifier implementing `classifier.types.Classifier`, for bot tests without TensorFlow.

Like the real `classifier.serving.ClassifierService` it works off the event loop in ONE worker thread (so
requests queue behind each other), decodes the bytes with Pillow and raises `ImageDecodeError` for anything
Pillow cannot read. Its answers are scripted:

- by the photo's mean colour (`FakeClassifier.by_color`), so each photo of an album gets its own answer
  whatever order the bot processes them in (JPEG re-encoding moves colours a little; the nearest scripted
  colour within `COLOR_TOLERANCE` wins);
- else from a queue (`FakeClassifier.queue`), in order;
- else the default (`FakeClassifier.default`, confident ``leg_press`` unless changed).

`delay` makes every classification take that long in the worker thread (to prove the bot's loop stays free).
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from classifier.types import Decision, ImageDecodeError, Prediction

LABELS: list[str] = [
    "bench_press",
    "chest_fly_machine",
    "dumbbell",
    "hyperextension_bench",
    "lat_pulldown_machine",
    "leg_extension_machine",
    "leg_press",
    "plyo_box",
    "power_rack",
    "seated_row_machine",
    "smith_machine",
    "treadmill",
]
"""The class folder names of ../shared/data/real, which are also the DB equipment slugs (team brief)."""
COLOR_TOLERANCE = 40.0
"""Largest Euclidean RGB distance between a photo's mean colour and a scripted colour that still matches."""


def prediction(
    label: str,
    decision: Decision = "confident",
    confidence: float | None = None,
    runners_up: tuple[str, ...] = (),
    model_version: str = "v-fake",
) -> Prediction:
    """A Prediction with a plausible top-k: ``label`` first, then ``runners_up`` (default: the next labels in
    `LABELS`), probabilities summing to at most 1."""
    top = (
        confidence
        if confidence is not None
        else {"confident": 0.93, "unsure": 0.41, "not_equipment": 0.22}[decision]
    )
    others = list(runners_up) or [name for name in LABELS if name != label][:2]
    share = (1.0 - top) / (len(others) + 1)
    top_k = [(label, top)] + [
        (name, round(share * (len(others) - index), 4)) for index, name in enumerate(others)
    ]
    return Prediction(label, top, decision, top_k, model_version)


@dataclass(frozen=True)
class Seen:
    """One image the fake classified: its size in bytes, decoded size (w, h), mean RGB colour and when the
    worker finished it (`time.monotonic()`)."""

    nbytes: int
    size: tuple[int, int]
    mean_rgb: tuple[float, float, float]
    finished_at: float


class FakeClassifier:
    """Implements the `Classifier` protocol (``labels``, ``model_version``, ``async classify``)."""

    def __init__(
        self, labels: list[str] | None = None, model_version: str = "v-fake", delay: float = 0.0
    ) -> None:
        self._labels = list(labels or LABELS)
        self._model_version = model_version
        self.delay = delay
        self.default: Prediction = prediction("leg_press", model_version=model_version)
        self.by_color: dict[tuple[int, int, int], Prediction] = {}
        self.queue: deque[Prediction] = deque()
        self.seen: list[Seen] = []
        self.failures = 0
        """Number of classify calls that raised (ImageDecodeError or an injected error)."""
        self.fail_with: Exception | None = None
        """When set, the next classify raises it (once), e.g. RuntimeError to test the bot's error path."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = False
        self.closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-classifier")
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def model_version(self) -> str:
        return self._model_version

    def answer(self, label: str, decision: Decision = "confident", **kwargs: object) -> Prediction:
        """Make every later photo (without a colour rule or queued answer) get this prediction."""
        self.default = prediction(label, decision, model_version=self._model_version, **kwargs)  # type: ignore[arg-type]
        return self.default

    def answer_color(
        self, color: tuple[int, int, int], label: str, decision: Decision = "confident"
    ) -> Prediction:
        """Photos whose mean colour is near ``color`` get ``label`` with ``decision``."""
        self.by_color[color] = prediction(label, decision, model_version=self._model_version)
        return self.by_color[color]

    async def classify(self, image: bytes) -> Prediction:
        """Decode and "classify" ``image`` in the worker thread. Raises ImageDecodeError when unreadable."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._classify_blocking, image)
        except Exception:
            self.failures += 1
            raise
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        """Like `ClassifierService.start` (the bot's post_init calls it): nothing to load; after `close` it
        starts a fresh worker thread, so one fake can serve a restarted bot."""
        if self.closed:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fake-classifier")
            self.closed = False
        self.started = True

    async def close(self) -> None:
        """Like `ClassifierService.close` (the bot's post_shutdown calls it): stop the worker thread."""
        self.closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    def _classify_blocking(self, image: bytes) -> Prediction:
        if self.delay:
            time.sleep(self.delay)
        if not image:
            raise ImageDecodeError("empty image")
        try:
            with Image.open(io.BytesIO(image)) as opened:
                opened.load()
                upright = ImageOps.exif_transpose(opened).convert("RGB")
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise ImageDecodeError(f"cannot decode image: {error}") from error
        mean = upright.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
        assert isinstance(mean, tuple)
        mean_rgb = (float(mean[0]), float(mean[1]), float(mean[2]))
        with self._lock:
            self.seen.append(Seen(len(image), upright.size, mean_rgb, time.monotonic()))
            if self.fail_with is not None:
                injected, self.fail_with = self.fail_with, None
                raise injected
            return self._scripted(mean_rgb)

    def _scripted(self, mean_rgb: tuple[float, float, float]) -> Prediction:
        best: tuple[float, Prediction] | None = None
        for color, scripted in self.by_color.items():
            distance = sum((a - b) ** 2 for a, b in zip(color, mean_rgb, strict=True)) ** 0.5
            if distance <= COLOR_TOLERANCE and (best is None or distance < best[0]):
                best = (distance, scripted)
        if best is not None:
            return best[1]
        if self.queue:
            return self.queue.popleft()
        return self.default
