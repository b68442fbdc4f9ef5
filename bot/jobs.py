"""Scheduled jobs on PTB's JobQueue, and the retraining runner shared with the admin /retrain command.

Retraining never runs on the event loop: `RetrainRunner` starts
``python -m classifier.retrain --progress-json`` as a subprocess with ``asyncio.create_subprocess_exec``
(under ``nice`` when available, in its own process group), relays its progress lines, and kills the whole
group after ``timeout`` seconds. An asyncio.Lock makes sure only one run happens at a time in this
process; the pipeline also holds a file lock in MODELS_DIR, so a maintainer's manual run and the bot's job
cannot overlap either.

Protocol with the subprocess (one JSON object per stdout line; anything else is ignored):
``{"event": "progress", "stage": "...", "message": "..."}`` and, last, ``{"event": "result", ...}`` with the
keys documented in `classifier.retrain.RetrainResult.to_json`.

After a run that promoted a new champion the classifier service loads it in its worker thread, warms it up
and swaps it in (`ClassifierService.reload_if_changed`), then every admin gets the before/after figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import Application, CallbackContext

from bot.services import Services, get_services

log = logging.getLogger(__name__)

RETRAIN_JOB_NAME = "spotter.retrain.daily"
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER_KEY = "retrain.runner"
KILL_GRACE_SECONDS = 5.0

Status = Literal["promoted", "kept", "nothing_to_do", "busy", "failed", "timeout"]
ProgressCallback = Callable[[str], Awaitable[None]]


@dataclass
class RetrainOutcome:
    """What one retraining attempt did.

    status: promoted | kept (challenger trained but not promoted) | nothing_to_do | busy (another run was in
    progress; nothing started) | failed (non-zero exit or no result) | timeout (killed after ``timeout`` s).
    result: the pipeline's result object (None unless it printed one); returncode: the process exit code;
    duration_s: wall time in seconds; error: a short reason (stderr tail) for failed/timeout; swapped: True
    when the running classifier service loaded the new champion.
    """

    status: Status
    result: dict[str, Any] | None = None
    returncode: int | None = None
    duration_s: float = 0.0
    error: str = ""
    swapped: bool = False
    progress: list[str] = field(default_factory=list)


def retrain_command(extra: Sequence[str] = ()) -> list[str]:
    """argv of the pipeline: ``[nice -n 10] <this python> -m classifier.retrain --progress-json [extra]``."""
    argv = [sys.executable, "-m", "classifier.retrain", "--progress-json", *extra]
    nice = shutil.which("nice")
    return [nice, "-n", "10", *argv] if nice else argv


def retrain_env(services: Services) -> dict[str, str]:
    """Environment of the subprocess: ours plus the settings this process runs with, so both agree on the
    database, directories, weights and admins even when they came from overrides rather than the env."""
    s = services.settings
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": s.resolved_database_url(),
            "DATA_DIR": str(s.data_dir),
            "MODELS_DIR": str(s.models_dir),
            "VGG16_WEIGHTS": str(s.vgg16_weights),
            "ADMIN_USER_IDS": ",".join(str(i) for i in sorted(s.admin_user_ids)),
            "REVIEW_AGREEMENT_USERS": str(s.review_agreement_users),
            "PYTHONUNBUFFERED": "1",
            # `python -m classifier.retrain` must resolve whatever the bot's working directory is (relative
            # DATA_DIR / MODELS_DIR keep meaning the same thing because the child inherits that directory)
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
    )
    return env


class RetrainRunner:
    """Runs the pipeline subprocess, one run at a time (see module docstring).

    command: argv to execute; env: its environment (None = inherit); timeout: seconds before the process
    group is killed (SIGTERM, then SIGKILL after KILL_GRACE_SECONDS).
    """

    def __init__(self, command: Sequence[str], env: Mapping[str, str] | None, timeout: float) -> None:
        self.command = list(command)
        self.env = dict(env) if env is not None else None
        self.timeout = timeout
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        """True while a run is in progress."""
        return self._lock.locked()

    async def run(self, on_progress: ProgressCallback | None = None) -> RetrainOutcome:
        """Run the pipeline once; returns at once with status ``busy`` if a run is already in progress."""
        if self._lock.locked():
            return RetrainOutcome("busy", error="a retraining run is already in progress")
        async with self._lock:
            return await self._run(on_progress)

    async def _run(self, on_progress: ProgressCallback | None) -> RetrainOutcome:
        started = time.monotonic()
        log.info("retraining: starting %s", " ".join(self.command))
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                stdin=asyncio.subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            log.exception("retraining: cannot start the pipeline")
            return RetrainOutcome("failed", error=f"cannot start the pipeline: {exc}")
        result: dict[str, Any] | None = None
        progress: list[str] = []
        stderr_tail: deque[str] = deque(maxlen=20)

        async def read_stdout() -> None:
            nonlocal result
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict):
                    continue
                if event.get("event") == "result":
                    result = event
                elif event.get("event") == "progress":
                    message = str(event.get("message", ""))
                    progress.append(message)
                    log.info("retraining: %s", message)
                    if on_progress is not None:
                        try:
                            await on_progress(message)
                        except Exception:  # a failed chat edit must not stop the run
                            log.warning("retraining: progress callback failed", exc_info=True)

        async def read_stderr() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                stderr_tail.append(raw.decode("utf-8", "replace").rstrip())

        readers = asyncio.gather(read_stdout(), read_stderr())
        try:
            async with asyncio.timeout(self.timeout):
                await readers
                returncode = await proc.wait()
        except TimeoutError:
            await _kill_group(proc)
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await readers
            duration = time.monotonic() - started
            log.error("retraining: killed after %.0f s (timeout)", duration)
            return RetrainOutcome(
                "timeout",
                result,
                proc.returncode,
                duration,
                f"timed out after {self.timeout:.0f} s and was stopped; the champion is unchanged",
                progress=progress,
            )
        except asyncio.CancelledError:
            await _kill_group(proc)
            raise
        duration = time.monotonic() - started
        if returncode != 0 or result is None:
            tail = "\n".join(list(stderr_tail)[-5:])
            log.error("retraining: exit code %s; stderr tail:\n%s", returncode, tail)
            return RetrainOutcome(
                "failed", result, returncode, duration, tail or f"exit code {returncode}", progress=progress
            )
        status: Status
        if result.get("promoted"):
            status = "promoted"
        elif result.get("version"):
            status = "kept"
        else:
            status = "nothing_to_do"
        log.info("retraining: %s in %.1f s", status, duration)
        return RetrainOutcome(status, result, returncode, duration, progress=progress)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the subprocess's process group, SIGKILL it if still alive after KILL_GRACE_SECONDS."""
    if proc.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_SECONDS)
            return
        except TimeoutError:
            continue


def get_runner(services: Services) -> RetrainRunner:
    """This process's RetrainRunner (created on first use from the settings; tests may install their own
    under ``services.state[RUNNER_KEY]``)."""
    runner = services.state.get(RUNNER_KEY)
    if not isinstance(runner, RetrainRunner):
        runner = RetrainRunner(
            retrain_command(), retrain_env(services), services.settings.retrain_timeout_seconds
        )
        services.state[RUNNER_KEY] = runner
    return runner


async def swap_in_champion(services: Services) -> bool:
    """Ask the classifier service to load the registry's champion if it moved (in its worker thread, warm-up,
    then swap; in-flight requests finish on the old model). False when the service cannot hot-swap."""
    reload = getattr(services.classifier, "reload_if_changed", None)
    if reload is None:
        log.warning("classifier service has no reload_if_changed(); restart the bot to serve the new model")
        return False
    return bool(await reload())


async def retrain_and_swap(services: Services, on_progress: ProgressCallback | None = None) -> RetrainOutcome:
    """Run the pipeline (one at a time) and hot-swap the new champion if it was promoted."""
    outcome = await get_runner(services).run(on_progress)
    if outcome.status == "promoted":
        try:
            outcome.swapped = await swap_in_champion(services)
        except Exception as exc:  # the old model keeps serving; admins are told
            log.exception("retraining: loading the new champion failed")
            outcome.error = f"the new champion could not be loaded ({exc}); the old one keeps serving"
    return outcome


def _pct(value: Any) -> str:
    return f"{float(value):.1%}" if isinstance(value, int | float) else "n/a"


def _class_changes(per_class: Any, limit: int = 4) -> list[str]:
    """``label a% -> b%`` for the classes whose recall moved most (at least 5 points), biggest first."""
    if not isinstance(per_class, dict):
        return []
    moves: list[tuple[float, str]] = []
    for label, values in per_class.items():
        if (
            isinstance(values, list)
            and len(values) >= 2
            and all(isinstance(v, int | float) for v in values[:2])
        ):
            before, after = float(values[0]), float(values[1])
            if abs(after - before) >= 0.05:
                moves.append((abs(after - before), f"{label} {before:.0%} -> {after:.0%}"))
    return [text for _, text in sorted(moves, reverse=True)[:limit]]


def format_outcome(outcome: RetrainOutcome) -> str:
    """A short plain-text report for admins: status, corrections used, before/after accuracy, timing."""
    r = outcome.result or {}
    minutes = outcome.duration_s / 60
    if outcome.status == "busy":
        return "Retraining is already running; try again when it has finished."
    if outcome.status == "timeout":
        return f"Retraining stopped: {outcome.error}."
    if outcome.status == "failed":
        return (
            f"Retraining failed after {minutes:.1f} min; the champion is unchanged.\n{outcome.error[-500:]}"
        )
    lines: list[str] = []
    if outcome.status == "nothing_to_do":
        lines.append(f"Retraining: nothing to do ({r.get('reason', 'no new approved corrections')}).")
    else:
        verdict = "promoted" if outcome.status == "promoted" else "NOT promoted (champion kept)"
        lines.append(f"Retraining: challenger {r.get('version')} {verdict}.")
        lines.append(
            f"Accuracy on the evaluation set ({r.get('eval_images', '?')} real photos): "
            f"{r.get('champion_version') or 'none'} {_pct(r.get('champion_accuracy'))} -> "
            f"{r.get('version')} {_pct(r.get('challenger_accuracy'))}"
        )
        for reason in list(r.get("reasons") or [])[:6]:
            lines.append(f"- {reason}")
        changed = _class_changes(r.get("per_class"))
        if changed:
            lines.append("Biggest per-class changes: " + ", ".join(changed))
    lines.append(
        f"Corrections: {r.get('corrections_used', 0)} used, "
        f"{r.get('corrections_pending', 0)} waiting for /review."
    )
    if outcome.status == "promoted":
        lines.append("Now serving the new model." if outcome.swapped else "The bot will load it on restart.")
    if outcome.error and outcome.status != "failed":
        lines.append(outcome.error)
    lines.append(f"Took {minutes:.1f} min.")
    return "\n".join(lines)


async def notify_admins(bot: Any, services: Services, text: str, skip: int | None = None) -> None:
    """Send ``text`` to every admin (except ``skip``); admins who never started the bot are skipped."""
    for admin_id in sorted(services.settings.admin_user_ids):
        if admin_id == skip:
            continue
        try:
            await bot.send_message(admin_id, html.escape(text), parse_mode=ParseMode.HTML)
        except TelegramError as exc:
            log.warning("cannot notify admin %s: %s", admin_id, exc)


async def daily_retrain(context: CallbackContext[Any, Any, Any, Any]) -> None:
    """JobQueue callback: retrain, hot-swap on promotion, tell admins the before/after figures."""
    services = get_services(context)
    outcome = await retrain_and_swap(services)
    if outcome.status == "busy":
        log.info("daily retraining skipped: a run is already in progress")
        return
    await notify_admins(context.bot, services, format_outcome(outcome))


def schedule_jobs(application: Application[Any, Any, Any, Any, Any, Any], settings: Any) -> None:
    """Register the daily retraining job at RETRAIN_TIME (a timezone-aware ``datetime.time``, UTC by default).

    Raises RuntimeError when the application has no JobQueue (install python-telegram-bot[job-queue]).
    """
    if application.job_queue is None:
        raise RuntimeError("PTB JobQueue is unavailable: install python-telegram-bot[job-queue]")
    application.job_queue.run_daily(
        daily_retrain,
        time=settings.retrain_time,
        name=RETRAIN_JOB_NAME,
        job_kwargs={"max_instances": 1, "coalesce": True, "misfire_grace_time": 3600},
    )
    log.info("daily retraining scheduled at %s", settings.retrain_time.isoformat())
