"""End-to-end at the process level: ``python -m bot`` as a user starts it (environment variables only), with
the real shipped model, long-polling the fake Bot API server; it answers a real photo and /help, and stops
cleanly on Ctrl-C (SIGINT). Slow and real_data: skips without ../shared or a shipped champion."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from classifier.registry import Registry
from tests.bot.conftest import ROOT
from tests.bot.test_real_model_e2e import SHIPPED_MODELS, held_out_photos
from tests.fakes.telegram_server import FakeTelegramServer

STARTUP_TIMEOUT = 180.0
"""Seconds for the process to import TensorFlow, load and warm up the model (about 10 s here)."""


@pytest.fixture
async def bot_process(
    server: FakeTelegramServer,
    session_factory: sessionmaker[Session],
    db_url: str,
    tmp_path: Path,
    shared_weights: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    if Registry(SHIPPED_MODELS).champion() is None:
        pytest.skip("no shipped champion model under models/")
    admin = server.new_user("Admin")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TELEGRAM_BOT_TOKEN": server.token,
        "TELEGRAM_BASE_URL": server.base_url,
        "TELEGRAM_BASE_FILE_URL": server.base_file_url,
        "ADMIN_USER_IDS": str(admin.id),
        "DATABASE_URL": db_url,
        "DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(SHIPPED_MODELS),
        "VGG16_WEIGHTS": str(shared_weights),
    }
    log_path = tmp_path / "bot.log"
    with log_path.open("wb") as log_file:
        # cwd is the test directory, so a developer's .env in the repository cannot leak in.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=log_file, stderr=log_file
        )
        try:
            yield process, log_path
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest.mark.slow
@pytest.mark.real_data
@pytest.mark.parametrize("catalog", ["shipped"])
async def test_python_m_bot_serves_a_real_photo_and_stops_on_sigint(
    server: FakeTelegramServer,
    bot_process: tuple[asyncio.subprocess.Process, Path],
    shared_data: Path,
    catalog: str,
) -> None:
    process, log_path = bot_process
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The command menus are set in post_init, after the model is loaded and warmed up.
    await server.wait_for("setMyCommands", timeout=STARTUP_TIMEOUT)
    startup = loop.time() - started

    user = server.new_user("Process")
    server.send_text(user, "/help")
    await server.wait_for_text(user.id, "/equipment", timeout=10)
    truth, photo = held_out_photos(shared_data)[0]
    sent = loop.time()
    server.send_photo(user, photo.read_bytes())
    reply = await server.wait_for("sendMessage", lambda c: c.params["chat_id"] == user.id, timeout=60)
    answered = loop.time() - sent
    assert reply.button_texts()  # Correct/Wrong, choices, or "It is gym equipment"

    process.send_signal(signal.SIGINT)
    code = await asyncio.wait_for(process.wait(), timeout=30)
    log = log_path.read_text(encoding="utf-8", errors="replace")
    print(
        f"\npython -m bot: ready after {startup:.1f} s, "
        f"photo ({truth}) answered in {answered:.2f} s, exit {code}"
    )
    assert code == 0, log[-3000:]
    assert "Champion model" in log and "Traceback" not in log, log[-3000:]
    assert server.token.split(":", 1)[1] not in log  # the token never reaches the log
