"""The retraining runner: a real subprocess, never two at once, killed on timeout; the daily job schedule."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import textwrap
from pathlib import Path

import pytest
from telegram.ext import Application

from bot import jobs
from bot.config import Settings
from bot.jobs import RetrainOutcome, RetrainRunner, format_outcome, retrain_and_swap
from bot.photo_store import PhotoStore
from bot.services import Services

RESULT = (
    '{"event": "result", "promoted": true, "version": "v0002", "champion_version": "v0001", '
    '"champion_accuracy": 0.8, "challenger_accuracy": 0.9, "eval_images": 10, "corrections_used": 3, '
    '"corrections_pending": 1, "reasons": ["overall 80.0% -> 90.0% within the margins"], '
    '"per_class": {"smith_machine": [0.36, 0.87, 87], "treadmill": [1.0, 0.98, 48], '
    '"new_thing": [null, 0.5, 4]}}'
)


def script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "fake_pipeline.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def pipeline(tmp_path: Path, sleep: float = 0.0, result: str = RESULT, code: int = 0) -> list[str]:
    return script(
        tmp_path,
        f"""
        import os, sys, time
        print("not json, ignored", flush=True)
        print('{{"event": "progress", "stage": "export", "message": "exporting 3 corrections"}}', flush=True)
        open(os.path.join({str(tmp_path)!r}, f"pid-{{os.getpid()}}"), "w").close()
        time.sleep({sleep})
        print({result!r}, flush=True)
        print("some log line", file=sys.stderr)
        sys.exit({code})
        """,
    )


async def test_runner_relays_progress_and_result(tmp_path):
    seen: list[str] = []

    async def on_progress(message: str) -> None:
        seen.append(message)

    outcome = await RetrainRunner(pipeline(tmp_path), None, timeout=30).run(on_progress)
    assert outcome.status == "promoted"
    assert seen == ["exporting 3 corrections"]
    assert outcome.result is not None and outcome.result["version"] == "v0002"
    text = format_outcome(outcome)
    assert "80.0% -> v0002 90.0%" in text and "promoted" in text
    assert "smith_machine 36% -> 87%" in text and "treadmill" not in text  # only moves of 5 points or more


async def test_never_two_runs_at_once(tmp_path):
    runner = RetrainRunner(pipeline(tmp_path, sleep=1.0), None, timeout=30)
    first = asyncio.create_task(runner.run())
    for _ in range(500):  # wait until the first run holds the lock
        if runner.busy:
            break
        await asyncio.sleep(0.01)
    second = await runner.run()
    assert second.status == "busy"
    assert (await first).status == "promoted"
    assert len(list(tmp_path.glob("pid-*"))) == 1  # only one pipeline process was ever started
    assert (await runner.run()).status == "promoted"  # free again afterwards


async def test_timeout_kills_the_process_group(tmp_path):
    runner = RetrainRunner(pipeline(tmp_path, sleep=60), None, timeout=1.0)
    started = asyncio.get_running_loop().time()
    outcome = await runner.run()
    assert outcome.status == "timeout"
    assert asyncio.get_running_loop().time() - started < 15
    pid = int(next(tmp_path.glob("pid-*")).name.split("-")[1])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "champion is unchanged" in format_outcome(outcome)
    assert not runner.busy


async def test_failure_reports_stderr(tmp_path):
    outcome = await RetrainRunner(pipeline(tmp_path, code=3), None, timeout=30).run()
    assert outcome.status == "failed" and outcome.returncode == 3
    assert "some log line" in outcome.error
    no_result = await RetrainRunner(pipeline(tmp_path, result="nothing"), None, timeout=30).run()
    assert no_result.status == "failed"
    missing = await RetrainRunner(["/nonexistent/python"], None, timeout=30).run()
    assert missing.status == "failed" and "cannot start" in missing.error


def _services(tmp_path: Path, classifier: object) -> Services:
    settings = Settings(
        telegram_bot_token="123456:abcdefghijklmnop",  # type: ignore[arg-type]
        data_dir=tmp_path,
        models_dir=tmp_path / "models",
        admin_user_ids="7",  # type: ignore[arg-type]
        retrain_time=dt.time(2, 30, tzinfo=dt.UTC),
    )
    return Services(
        classifier=classifier,  # type: ignore[arg-type]
        session_factory=None,  # type: ignore[arg-type]
        settings=settings,
        photo_store=PhotoStore(tmp_path / "photos"),
    )


class SwappableClassifier:
    def __init__(self) -> None:
        self.reloads = 0

    async def reload_if_changed(self) -> bool:
        self.reloads += 1
        return True


async def test_hot_swap_only_after_promotion(tmp_path):
    classifier = SwappableClassifier()
    services = _services(tmp_path, classifier)
    services.state[jobs.RUNNER_KEY] = RetrainRunner(pipeline(tmp_path), None, timeout=30)
    outcome = await retrain_and_swap(services)
    assert outcome.status == "promoted" and outcome.swapped and classifier.reloads == 1
    kept = RESULT.replace('"promoted": true', '"promoted": false')
    services.state[jobs.RUNNER_KEY] = RetrainRunner(pipeline(tmp_path, result=kept), None, timeout=30)
    outcome = await retrain_and_swap(services)
    assert outcome.status == "kept" and not outcome.swapped and classifier.reloads == 1
    assert "NOT promoted" in format_outcome(outcome)


def test_default_command_and_env(tmp_path):
    services = _services(tmp_path, SwappableClassifier())
    runner = jobs.get_runner(services)
    assert runner.command[-3:] == ["-m", "classifier.retrain", "--progress-json"]
    assert runner.env is not None and runner.env["ADMIN_USER_IDS"] == "7"
    assert runner.env["MODELS_DIR"] == str(tmp_path / "models")
    assert jobs.get_runner(services) is runner


async def test_schedule_jobs_registers_daily_job(tmp_path):
    services = _services(tmp_path, SwappableClassifier())
    application = Application.builder().token(services.settings.token()).build()
    jobs.schedule_jobs(application, services.settings)
    assert application.job_queue is not None
    (job,) = application.job_queue.get_jobs_by_name(jobs.RETRAIN_JOB_NAME)
    assert job.callback is jobs.daily_retrain
    trigger = job.job.trigger
    assert "hour='2'" in str(trigger) and "minute='30'" in str(trigger)


def test_format_outcome_variants():
    assert "already running" in format_outcome(RetrainOutcome("busy"))
    assert "nothing to do" in format_outcome(RetrainOutcome("nothing_to_do", {"reason": "no corrections"}))
    assert "failed" in format_outcome(RetrainOutcome("failed", error="boom"))
