"""Regression tests from the breaker review.

Validators must not accept a trailing newline.

Python's ``$`` also matches just before a final ``\\n``, so ``re.match(r"^...$", "x\\n")`` succeeds; a link
ending in ``%0A`` (decoded by the parser) yielded a 12-character "video id".
An unusable database (bad URL, missing driver, not a database file)
is one line for the operator, not a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.callback_data import FeedbackData
from db import repositories as repo
from db.__main__ import main as db_main
from db.errors import DatabaseUnavailableError
from db.schema import ensure_schema_current
from db.seed import DEFAULT_SEED_PATH, SLUG_RE, SeedError, apply_seed, load_seed
from db.session import make_engine, session_scope
from db.youtube import VIDEO_ID_RE, InvalidYouTubeLinkError, parse_video_id
from tests.db.conftest import predict


@pytest.mark.parametrize(
    "link",
    [
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ%0A",
        "https://youtu.be/dQw4w9WgXcQ%0a",
        "https://www.youtube.com/shorts/dQw4w9WgXcQ%0A",
    ],
)
def test_percent_encoded_newline_after_the_id_is_refused(link: str) -> None:
    with pytest.raises(InvalidYouTubeLinkError):
        parse_video_id(link)


def test_validators_refuse_a_trailing_newline() -> None:
    assert VIDEO_ID_RE.match("dQw4w9WgXcQ\n") is None
    assert SLUG_RE.match("leg_press\n") is None


def test_add_equipment_refuses_a_slug_with_a_trailing_newline(session: Session) -> None:
    with pytest.raises(ValueError, match="slug"):
        repo.add_equipment(session, slug="rowing_machine\n", display_name="Rowing machine")


def test_record_prediction_refuses_a_hash_with_a_trailing_newline(session: Session) -> None:
    prediction = predict(session, 5, b"photo")
    with pytest.raises(ValueError, match="sha256"):
        repo.record_prediction(
            session,
            prediction.user,
            chat_id=5,
            message_id=2,
            image_sha256=prediction.image_sha256 + "\n",
            image_path="data/photos/x.jpg",
            model_version="v0001",
            label="leg_press",
            confidence=0.5,
            decision="unsure",
            top_k=[("leg_press", 0.5)],
        )


def _garbage_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "not-a-db.sqlite3"
    path.write_bytes(b"this is not a database, just text" * 100)
    return f"sqlite:///{path}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "not a valid SQLAlchemy URL"),
        ("foo://x/y", "foo://x/y cannot be used"),
        ("mysql://user:hunter2@db.example/spotter", "cannot be used"),  # driver not installed
        ("sqlite:////proc/spotter-breaker/x/db.sqlite3", "cannot be used"),  # folder cannot be created
    ],
)
def test_make_engine_reports_unusable_urls_in_one_line(url: str, expected: str) -> None:
    with pytest.raises(DatabaseUnavailableError) as info:
        make_engine(url)
    assert expected in str(info.value)
    assert "\n" not in str(info.value) and "hunter2" not in str(info.value)


def test_a_file_that_is_not_a_database_is_reported_not_raised_as_a_driver_error(tmp_path: Path) -> None:
    engine = make_engine(_garbage_sqlite(tmp_path))
    try:
        with pytest.raises(DatabaseUnavailableError, match="cannot be opened: file is not a database"):
            ensure_schema_current(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", ["check", "upgrade"])
@pytest.mark.parametrize("bad", ["foo://x/y", "notaurl", "garbage"])
def test_db_cli_gives_one_line_for_an_unusable_database(
    bad: str,
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", _garbage_sqlite(tmp_path) if bad == "garbage" else bad)
    assert db_main([command]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("days", ["99999999999", "-1", "nan", "soon"])
def test_refresh_videos_refuses_an_out_of_range_age_without_a_traceback(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:  # argparse: usage line + one error line, exit 2
        db_main(["refresh-videos", "--older-than-days", days])
    assert info.value.code == 2
    assert "--older-than-days" in capsys.readouterr().err


def _seed_without(tmp_path: Path, *video_ids: str) -> Path:
    """The shipped catalog.toml minus the [[tutorials]] blocks of ``video_ids``."""
    blocks = DEFAULT_SEED_PATH.read_text(encoding="utf-8").split("[[tutorials]]")
    kept = [blocks[0]] + [b for b in blocks[1:] if not any(f'"{v}"' in b for v in video_ids)]
    assert len(kept) == len(blocks) - len(video_ids)
    path = tmp_path / "catalog.toml"
    path.write_text("[[tutorials]]".join(kept), encoding="utf-8")
    return path


def test_a_tutorial_dropped_from_the_seed_file_stops_being_shown(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Reviewers remove a video from db/catalog.toml (wrong, not women-led...): re-seeding must hide it,
    unless an admin edited it since; listing it again brings it back."""
    with session_scope(factory) as session:
        apply_seed(session, load_seed())
    with session_scope(factory) as session:  # an admin edits the other dropped video
        edited = repo.get_tutorial(session, "7GtUE1MAniY")
        assert edited is not None
        edited.title = "Admin's better title"
    dropped = _seed_without(tmp_path, "8q9LVgN2RD4", "7GtUE1MAniY")
    with session_scope(factory) as session:
        report = apply_seed(session, load_seed(dropped))
        assert report.tutorials_removed == 1 and "1 hidden" in report.summary()
        assert any("7GtUE1MAniY: no longer in the seed" in line for line in report.kept_details)
        shown = {t.youtube_id for t in repo.tutorials_for(session, "plyo_box", limit=10)}
        assert "8q9LVgN2RD4" not in shown
        assert "7GtUE1MAniY" in {t.youtube_id for t in repo.tutorials_for(session, "bench_press", limit=10)}
    with session_scope(factory) as session:  # idempotent
        again = apply_seed(session, load_seed(dropped))
        assert again.tutorials_removed == 0 and again.tutorials_updated == 0
    with session_scope(factory) as session:  # listed again: shown again
        apply_seed(session, load_seed())
        shown = {t.youtube_id for t in repo.tutorials_for(session, "plyo_box", limit=10)}
        assert "8q9LVgN2RD4" in shown


def test_a_video_an_admin_removed_stays_removed_when_the_seed_lists_it(
    factory: sessionmaker[Session],
) -> None:
    with session_scope(factory) as session:
        apply_seed(session, load_seed())
        repo.remove_tutorial(session, "8q9LVgN2RD4", removed_by_telegram_id=42)
    with session_scope(factory) as session:
        apply_seed(session, load_seed())
        shown = {t.youtube_id for t in repo.tutorials_for(session, "plyo_box", limit=10)}
        assert "8q9LVgN2RD4" not in shown


def test_equipment_slugs_fit_telegram_callback_data(session: Session, tmp_path: Path) -> None:
    """The picker's button data is ``pk:<prediction id>:<slug>`` (at most 64 bytes, bot.callback_data): a
    longer slug made every "Wrong" press fail with CallbackDataError."""
    longest = "a" * 40
    assert SLUG_RE.match(longest) and not SLUG_RE.match(longest + "a")
    encoded = FeedbackData(
        "pk", 10**18 - 1, longest
    ).encode()  # the largest prediction id callback data allows
    assert len(encoded.encode()) <= 64
    with pytest.raises(ValueError, match="2-40"):
        repo.add_equipment(session, slug="assisted_pull_up_and_dip_machine_with_knee_pad", display_name="Dip")
    toml = tmp_path / "catalog.toml"
    toml.write_text('[[equipment]]\nslug = "%s"\nname = "Long"\n' % ("b" * 41), encoding="utf-8")
    with pytest.raises(SeedError, match="2-40"):
        load_seed(toml)
