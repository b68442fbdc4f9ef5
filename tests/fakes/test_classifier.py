"""Self-test of the fake classifier: protocol, decoding like the real one, scripting, slowness."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from PIL import Image

from classifier.types import Classifier, ImageDecodeError
from tests.fakes.classifier import LABELS, FakeClassifier, prediction


def png(color: tuple[int, int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).convert(mode).save(buffer, "PNG")
    return buffer.getvalue()


async def test_protocol_scripting_and_decode_errors() -> None:
    fake = FakeClassifier()
    as_protocol: Classifier = fake
    assert as_protocol.labels == LABELS and as_protocol.model_version == "v-fake"
    assert (await fake.classify(png((10, 10, 10)))).label == "leg_press"
    fake.answer_color((250, 0, 0), "plyo_box")
    fake.queue.append(prediction("treadmill", "unsure"))
    assert (await fake.classify(png((245, 8, 4)))).label == "plyo_box"
    queued = await fake.classify(png((0, 0, 250)))
    assert (queued.label, queued.decision) == ("treadmill", "unsure")
    assert queued.top_k[0] == ("treadmill", 0.41) and len(queued.top_k) == 3
    assert sum(probability for _, probability in queued.top_k) <= 1.0
    assert (await fake.classify(png((0, 0, 250), "P"))).label == "leg_press"
    for bad in (b"", b"not an image", png((1, 2, 3))[:40]):
        with pytest.raises(ImageDecodeError):
            await fake.classify(bad)
    assert fake.failures == 3
    fake.fail_with = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        await fake.classify(png((1, 2, 3)))
    await fake.close()
    await fake.start()
    assert (await fake.classify(png((1, 2, 3)))).label == "leg_press"
    await fake.close()


async def test_slow_classifications_queue_in_one_worker_without_blocking_the_loop() -> None:
    fake = FakeClassifier(delay=0.3)
    started = time.monotonic()
    tasks = [asyncio.create_task(fake.classify(png((9, 9, 9)))) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert time.monotonic() - started < 0.2  # the loop is free while the worker sleeps
    await asyncio.gather(*tasks)
    assert time.monotonic() - started >= 0.9  # one worker thread: requests queue, like the real service
    assert fake.max_in_flight == 3
    await fake.close()
