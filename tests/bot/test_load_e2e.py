"""Load test: while several slow classifications run in the classifier's worker thread, /help from another
user is answered promptly (the event loop never waits for the model). A negative control shows that the
measurement does catch a classifier that blocks the loop."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable

from classifier.types import Prediction
from tests.bot.conftest import Spotter, image_bytes
from tests.fakes.classifier import FakeClassifier

CLASSIFY_SECONDS = 0.8
"""How long each fake classification occupies the worker thread."""
PHOTOS = 5
HELP_LATENCY_BOUND = 0.5
"""Seconds; typical is a few tens of milliseconds. Generous for a shared 2-core CI machine."""


async def help_latency(
    spotter: Spotter, user_name: str, fire_when: Callable[[], bool] = lambda: True, lag: float = 0.0
) -> float:
    """Seconds from sending /help to the bot's answer reaching the server.

    The probe runs in its own thread and stamps the send time there, then hands the update to the loop: if
    the bot blocks the event loop, the update waits and the latency shows it (a stamp taken on the loop
    itself would be blocked too and hide the delay). It fires once ``fire_when()`` is true, plus ``lag``."""
    server = spotter.server
    user = server.new_user(user_name)
    loop = asyncio.get_running_loop()
    sent_at: list[float] = []

    def probe() -> None:
        deadline = time.monotonic() + 10
        while not fire_when() and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(lag)
        sent_at.append(time.monotonic())
        loop.call_soon_threadsafe(server.send_text, user, "/help")

    thread = threading.Thread(target=probe, name="help-probe")
    thread.start()
    reply = await server.wait_for_text(user.id, "/equipment", timeout=15)
    await asyncio.to_thread(thread.join)
    return reply.at - sent_at[0]


async def test_help_is_answered_promptly_while_photos_are_classified(spotter: Spotter) -> None:
    server, fake = spotter.server, spotter.fake
    fake.delay = CLASSIFY_SECONDS
    photographers = [server.new_user(f"Lifter{i}") for i in range(PHOTOS)]
    started = time.monotonic()
    for index, user in enumerate(photographers):
        server.send_photo(user, image_bytes((40 * index, 100, 200 - 30 * index)))
    while fake.in_flight < 2:  # classifications are running (and queueing) in the worker thread
        await asyncio.sleep(0.01)
        assert time.monotonic() - started < 5, "the photos never reached the classifier"

    latencies = []
    for probe in range(5):
        assert fake.in_flight >= 1, "the load finished before the probe"
        latencies.append(await help_latency(spotter, f"Helpseeker{probe}"))
        await asyncio.sleep(0.1)
    for user in photographers:
        await server.wait_for_text(user.id, "leg press", timeout=PHOTOS * CLASSIFY_SECONDS + 5)
    total = time.monotonic() - started

    print(
        f"\n/help latency during {PHOTOS} queued {CLASSIFY_SECONDS}s classifications: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms; "
        f"max in flight {fake.max_in_flight}; all {PHOTOS} photos answered after {total:.1f} s"
    )
    assert max(latencies) < HELP_LATENCY_BOUND
    assert fake.max_in_flight >= 2  # photos really were handled concurrently (handler does not block)
    assert total >= PHOTOS * CLASSIFY_SECONDS * 0.9  # and they really were slow


class LoopBlockingClassifier(FakeClassifier):
    """A broken classifier that runs its "model" on the event loop (what the bot must never do)."""

    blocking = False

    async def classify(self, image: bytes) -> Prediction:
        self.blocking = True
        time.sleep(self.delay)  # noqa: ASYNC251 - deliberately blocking: the negative control
        self.blocking = False
        return self.default


async def test_negative_control_a_loop_blocking_classifier_is_detected(spotter: Spotter) -> None:
    blocking = LoopBlockingClassifier(delay=2.0)
    spotter.classifier = blocking
    await spotter.restart()
    server = spotter.server
    user = server.new_user()
    server.send_photo(user, image_bytes())
    latency = await help_latency(spotter, "Helpseeker", fire_when=lambda: blocking.blocking, lag=0.2)
    print(f"\ncontrol: /help latency with a loop-blocking classifier: {latency * 1000:.0f} ms")
    assert latency > HELP_LATENCY_BOUND
    await server.wait_for_text(user.id, "leg press")
