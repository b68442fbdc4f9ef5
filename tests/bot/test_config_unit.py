"""Unit tests of bot.config and the startup checks of ``python -m bot`` (no Telegram, no model)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.__main__ import check_database, check_model, int8_setting_problem, main, webhook_options
from bot.config import TELEGRAM_API_URL, TELEGRAM_FILE_URL, SettingsError, load_settings
from classifier.registry import RegistryError
from db.errors import DatabaseBehindError
from tests.conftest import ROOT

TOKEN = "123456:ABCdef_ghi-jkl"
ENV_NAMES = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_BASE_URL",
    "TELEGRAM_BASE_FILE_URL",
    "ADMIN_USER_IDS",
    "RETRAIN_TIME",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET_TOKEN",
    "WEBHOOK_PATH",
    "DATABASE_URL",
    "VGG16_WEIGHTS",
    "CLASSIFIER_PRECISION",
    "TRAINING_DATA_DIR",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_point_at_telegram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    settings = load_settings()
    assert settings.token() == TOKEN
    assert TOKEN not in repr(settings)
    assert (
        settings.telegram_base_url == TELEGRAM_API_URL
        and settings.telegram_base_file_url == TELEGRAM_FILE_URL
    )
    assert settings.admin_user_ids == frozenset()
    assert settings.retrain_time == dt.time(3, 0, tzinfo=dt.UTC)
    assert settings.photos_dir == Path("data") / "photos"


def test_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", f"  {TOKEN} ")
    monkeypatch.setenv("ADMIN_USER_IDS", " 11, 22 ,,33")
    monkeypatch.setenv("RETRAIN_TIME", "04:30")
    monkeypatch.setenv("TELEGRAM_BASE_URL", "http://127.0.0.1:8081/bot")
    settings = load_settings()
    assert settings.token() == TOKEN
    assert settings.admin_user_ids == {11, 22, 33}
    assert settings.is_admin(22) and not settings.is_admin(44) and not settings.is_admin(None)
    assert settings.retrain_time == dt.time(4, 30, tzinfo=dt.UTC)
    assert settings.telegram_base_url == "http://127.0.0.1:8081/bot"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "TELEGRAM_BOT_TOKEN is missing"),
        ({"TELEGRAM_BOT_TOKEN": "not-a-token"}, "TELEGRAM_BOT_TOKEN is malformed"),
        ({"TELEGRAM_BOT_TOKEN": "123:short"}, "TELEGRAM_BOT_TOKEN is malformed"),
        ({"TELEGRAM_BOT_TOKEN": "abc:defghijklmnop"}, "TELEGRAM_BOT_TOKEN is malformed"),
        ({"TELEGRAM_BOT_TOKEN": TOKEN, "ADMIN_USER_IDS": "12,bob"}, "ADMIN_USER_IDS is invalid"),
        (
            {"TELEGRAM_BOT_TOKEN": TOKEN, "WEBHOOK_SECRET_TOKEN": "has space"},
            "WEBHOOK_SECRET_TOKEN is invalid",
        ),
    ],
)
def test_bad_settings_give_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "not-a-token" not in str(caught.value)  # never echo a secret


def test_python_m_bot_without_token_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spotter: configuration error: TELEGRAM_BOT_TOKEN is missing (get one from @BotFather)"
    ]
    assert "Traceback" not in result.stderr


def test_webhook_needs_url_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    with pytest.raises(SettingsError, match="WEBHOOK_URL and WEBHOOK_SECRET_TOKEN"):
        webhook_options(load_settings())
    assert main(["--webhook"]) == 2


def test_webhook_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("WEBHOOK_URL", "https://spotter.example.org/")
    monkeypatch.setenv("WEBHOOK_SECRET_TOKEN", "s3cr3t_-X")
    monkeypatch.setenv("WEBHOOK_PATH", "/hook/")
    options = webhook_options(load_settings())
    assert options["webhook_url"] == "https://spotter.example.org/hook"
    assert options["url_path"] == "hook" and options["secret_token"] == "s3cr3t_-X"
    assert options["port"] == 8443 and options["listen"] == "0.0.0.0"


def test_startup_refuses_a_database_behind_head(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(telegram_bot_token=TOKEN, database_url=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    with pytest.raises(DatabaseBehindError, match="alembic upgrade head"):
        check_database(settings)


def test_startup_refuses_without_a_champion(tmp_path: Path) -> None:
    settings = load_settings(telegram_bot_token=TOKEN, models_dir=tmp_path / "models")
    with pytest.raises(RegistryError, match="no champion"):
        check_model(settings)


def test_main_reports_database_problem_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "alembic upgrade head" in err[0]


def test_main_refuses_a_missing_weights_file_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("VGG16_WEIGHTS", str(tmp_path / "missing.h5"))
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "VGG16_WEIGHTS" in err[0] and "missing.h5" in err[0]


def test_bot_never_imports_tensorflow_at_import_or_build_time(tmp_path: Path) -> None:
    """The bot package and a default-built application (real ClassifierService, not started) leave
    TensorFlow unimported: it only loads in the classifier's worker thread."""
    code = (
        "import sys\n"
        "import bot.__main__, bot.app, bot.handlers.photo, bot.handlers.admin, bot.handlers.feedback\n"
        "from bot.app import build_application\n"
        "from bot.config import load_settings\n"
        "from classifier.serving import ClassifierService\n"
        f"s = load_settings(telegram_bot_token={TOKEN!r}, data_dir={str(tmp_path)!r})\n"
        "app = build_application(s)\n"
        "from bot.services import get_services\n"
        "assert isinstance(get_services(app).classifier, ClassifierService)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras'})\n"
        "print('HEAVY', bad)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_int8_without_calibration_photos_is_dynamic_range_but_an_unreadable_data_set_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("CLASSIFIER_PRECISION", "int8")
    monkeypatch.delenv("TRAINING_DATA_DIR", raising=False)
    assert int8_setting_problem(load_settings()) is None  # dynamic-range int8 needs no photos
    monkeypatch.setenv("TRAINING_DATA_DIR", str(tmp_path))  # exists, but no photos: dynamic range too
    assert int8_setting_problem(load_settings()) is None
    monkeypatch.setenv("TRAINING_DATA_DIR", str(tmp_path / "typo"))
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"TRAINING_DATA_DIR={tmp_path / 'typo'} is not a directory" in err[0]
    monkeypatch.setenv("TRAINING_DATA_DIR", str(tmp_path))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / "MANIFEST.tsv").write_text("path\tno_kind_column\nx.png\t1\n")  # no kind/class columns
    assert main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"TRAINING_DATA_DIR={tmp_path} cannot be read" in err[0]
    monkeypatch.setenv("CLASSIFIER_PRECISION", "fast")
    assert main([]) == 2
    assert "CLASSIFIER_PRECISION is invalid" in capsys.readouterr().err
