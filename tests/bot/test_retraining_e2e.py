"""End-to-end: the admin commands of issue 6 through the real bot and the fake Bot API server (fake
classifier): /review (photo, predicted and proposed labels, approve / reject / relabel / skip buttons,
refusals), /retrain (progress messages, report, busy; the pipeline process is a scripted stand-in here, the
real one runs in test_retraining_hot_swap_e2e.py), /rollback and /versions without history.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from bot import data as bot_data
from bot import jobs
from bot.jobs import RetrainRunner
from bot.services import get_services
from classifier.types import Prediction
from tests.bot.conftest import Spotter, image_bytes
from tests.fakes.telegram_server import Call, FakeUser


def feed(
    spotter: Spotter, user: FakeUser, photo: bytes, predicted: str, label: str, *, is_admin: bool = False
) -> int:
    """A classified photo and the user's choice, stored by the same functions the photo and feedback
    handlers call (PhotoStore, bot.data.record_classified_photo, bot.data.record_choice)."""
    services = get_services(spotter.app)  # type: ignore[arg-type]
    stored = services.photo_store.save(photo)
    recorded = bot_data.record_classified_photo(
        spotter.session_factory,
        telegram_user_id=user.id,
        language_code="en",
        chat_id=user.id,
        message_id=1,
        media_group_id=None,
        stored=stored,
        prediction=Prediction(predicted, 0.55, "unsure", [(predicted, 0.55)], "v0001"),
    )
    bot_data.record_choice(
        spotter.session_factory,
        recorded.prediction_id,
        user.id,
        label,
        is_admin=is_admin,
        agreement_threshold=3,
    )
    return recorded.prediction_id


def correction_states(spotter: Spotter) -> list[tuple[str, str]]:
    return [(c.label, c.review_state) for c in spotter.corrections()]


async def answer_to(spotter: Spotter, query_id: str) -> Call:
    return await spotter.server.wait_for(
        "answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id
    )


async def test_review_one_at_a_time_with_buttons(spotter: Spotter) -> None:
    server, admin = spotter.server, spotter.admin
    ana, bea = server.new_user("Ana"), server.new_user("Bea")
    feed(spotter, ana, image_bytes((200, 30, 30)), "leg_press", "smith_machine")
    feed(spotter, bea, image_bytes((30, 200, 30)), "treadmill", "power_rack")
    feed(spotter, bea, image_bytes((30, 30, 200)), "treadmill", "bench_press")

    server.send_text(ana, "/review")
    await server.wait_for_text(ana.id, "only spotter's admins")

    server.send_text(admin, "/review")
    first = await server.wait_for("sendPhoto", lambda c: c.params["chat_id"] == admin.id)
    assert "3 pending" in first.text and "Leg press" in first.text and "Smith machine" in first.text
    assert first.files  # the stored photo itself is uploaded
    assert first.button_texts() == ["✅ Approve", "🚫 Reject", "🏷 Relabel", "⏭ Skip"]
    assert all(len(b["callback_data"].encode()) <= 64 for row in first.buttons for b in row)

    # a non-admin pressing the admin's button (e.g. a forwarded message) changes nothing
    query = server.press_button(ana, first.result, "Approve")
    assert "only admins" in str((await answer_to(spotter, query)).params.get("text", "")).lower()
    assert correction_states(spotter)[0] == ("smith_machine", "pending")

    server.press_button(admin, first.result, "Approve")
    edited = await server.wait_for("editMessageCaption", lambda c: c.params["chat_id"] == admin.id)
    assert "Approved" in edited.text and edited.buttons == []
    second = await server.wait_for("sendPhoto", lambda c: c.params["chat_id"] == admin.id)
    assert "Power rack" in second.text

    server.press_button(admin, second.result, "Reject")
    rejected = await server.wait_for("editMessageCaption", lambda c: c.params["chat_id"] == admin.id)
    assert "Rejected" in rejected.text
    third = await server.wait_for(
        "sendPhoto", lambda c: c.params["chat_id"] == admin.id and "Bench press" in c.text
    )
    server.press_button(admin, third.result, "Relabel")
    picker = await server.wait_for("editMessageCaption", lambda c: c.params["chat_id"] == admin.id)
    assert "Plyo box" in picker.button_texts() and "Not gym equipment" in picker.button_texts()
    server.press_button(admin, third.result, "Plyo box")
    await server.wait_for_text(admin.id, "No corrections are waiting")
    assert correction_states(spotter) == [
        ("smith_machine", "approved"),
        ("power_rack", "rejected"),
        ("plyo_box", "approved"),
    ]
    reviewed = spotter.corrections()
    assert {c.reviewed_by_telegram_id for c in reviewed} == {admin.id}

    # stale and tampered buttons: a polite answer, nothing changes
    query = server.send_callback(admin, third.result, f"rv:a:{reviewed[1].id}")
    assert "already rejected" in str((await answer_to(spotter, query)).params.get("text", ""))
    query = server.send_callback(admin, third.result, "rv:a:999999")
    assert "no longer exists" in str((await answer_to(spotter, query)).params.get("text", ""))
    query = server.send_callback(admin, third.result, "rv:p:1:../../etc")
    assert "not valid" in str((await answer_to(spotter, query)).params.get("text", ""))
    assert correction_states(spotter)[1] == ("power_rack", "rejected")


def fake_pipeline(tmp_path: Path, sleep: float, result: str) -> list[str]:
    script = tmp_path / "pipeline.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, time
            def say(stage, message):
                print(json.dumps({{"event": "progress", "stage": stage, "message": message}}), flush=True)
            say("collect", "2 new approved corrections")
            time.sleep({sleep})
            say("train", "challenger trained")
            print({result!r}, flush=True)
            """
        )
    )
    return [sys.executable, str(script)]


KEPT = (
    '{"event": "result", "status": "kept", "promoted": false, "version": "v0002",'
    ' "champion_version": "v0001", "champion_accuracy": 0.9, "challenger_accuracy": 0.85,'
    ' "eval_images": 40, "corrections_used": 2,'
    ' "corrections_pending": 1, "reasons": ["treadmill: 80.0% vs champion 95.0% <sic>"]}'
)


async def test_retrain_progress_report_and_busy(spotter: Spotter, tmp_path: Path) -> None:
    server, admin = spotter.server, spotter.admin
    other_admin = server.new_user("Second admin", user_id=555_000)
    services = get_services(spotter.app)  # type: ignore[arg-type]
    services.settings.admin_user_ids = frozenset({admin.id, other_admin.id})
    services.state[jobs.RUNNER_KEY] = RetrainRunner(fake_pipeline(tmp_path, 1.0, KEPT), None, timeout=30)
    user = server.new_user()
    server.send_text(user, "/retrain")
    await server.wait_for_text(user.id, "only spotter's admins")

    server.send_text(admin, "/retrain")
    await server.wait_for_text(admin.id, "Retraining started")
    progress = await server.wait_for("editMessageText", lambda c: "2 new approved corrections" in c.text)
    assert progress.params["chat_id"] == admin.id
    server.send_text(admin, "/retrain")  # while the first run is still going
    await server.wait_for_text(admin.id, "already running")
    server.send_text(admin, "/help")  # the bot stays responsive during a run
    await server.wait_for_text(admin.id, "")
    final = await server.wait_for("editMessageText", lambda c: "NOT promoted" in c.text, timeout=20)
    assert "v0001 90.0% -> v0002 85.0%" in final.text and "<sic>" in final.text  # escaped, shown as text
    told = await server.wait_for_text(other_admin.id, "NOT promoted")
    assert "1 waiting for /review" in told.text


async def test_rollback_and_versions_without_history(spotter: Spotter) -> None:
    server, admin = spotter.server, spotter.admin
    server.send_text(admin, "/versions")
    await server.wait_for_text(admin.id, "No model versions yet")
    server.send_text(admin, "/rollback")
    await server.wait_for_text(admin.id, "Cannot roll back")
    server.send_text(admin, "/rollback ../v0001")
    await server.wait_for_text(admin.id, "invalid version name")
    user = server.new_user()
    server.send_text(user, "/rollback")
    await server.wait_for_text(user.id, "only spotter's admins")


async def test_daily_job_runs_on_the_job_queue_and_tells_admins(spotter: Spotter, tmp_path: Path) -> None:
    services = get_services(spotter.app)  # type: ignore[arg-type]
    promoted = KEPT.replace('"promoted": false', '"promoted": true').replace('"kept"', '"promoted"')
    services.state[jobs.RUNNER_KEY] = RetrainRunner(fake_pipeline(tmp_path, 0.0, promoted), None, timeout=30)
    assert spotter.app is not None and spotter.app.job_queue is not None
    (daily,) = spotter.app.job_queue.get_jobs_by_name(jobs.RETRAIN_JOB_NAME)
    spotter.app.job_queue.run_once(daily.callback, 0)  # what the scheduler does at RETRAIN_TIME
    told = await spotter.server.wait_for_text(spotter.admin.id, "promoted", timeout=20)
    # the fake classifier cannot hot-swap: the admin is told the bot loads the model on restart
    assert "v0002 promoted" in told.text and "on restart" in told.text
