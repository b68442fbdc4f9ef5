"""refresh-videos against HttpMockSequence on a real database, and the `python -m db` commands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from googleapiclient.http import HttpMockSequence
from sqlalchemy.orm import Session, sessionmaker

from db import repositories as repo
from db.__main__ import EXIT_BEHIND, EXIT_OK, main
from db.refresh import refresh_videos
from db.seed import load_seed
from db.session import session_scope
from db.youtube import YouTubeClient
from tests.db.conftest import DATA

OK = {"status": "200", "content-type": "application/json; charset=UTF-8"}


def test_refresh_marks_unavailable_and_verifies_available(seeded: sessionmaker[Session]) -> None:
    seed_ids = [t.youtube_id for t in load_seed().tutorials]
    answered = json.loads((DATA / "videos_list_seed.json").read_text(encoding="utf-8"))
    assert len(seed_ids) < 50  # one call
    http = HttpMockSequence([(OK, json.dumps(answered))])
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    report = refresh_videos(seeded, YouTubeClient("k", http=http), now=now)
    assert report.api_calls == 1 and report.checked == len(seed_ids) and report.unchecked == []
    # 3 answered as playable; the private one and every id YouTube left out are unavailable
    assert report.available == 3 and report.unavailable == len(seed_ids) - 3
    assert "JGzA6FPzZS8" in report.newly_unavailable
    with session_scope(seeded) as session:
        bench = repo.get_tutorial(session, "7GtUE1MAniY")
        assert bench is not None
        assert (bench.status, bench.duration_seconds, bench.channel) == ("available", 38, "LIndseyReneeBell")
        assert (
            bench.last_checked_at == now
            and bench.presenter == "Lindsey Renee Bell (name inferred from handle)"
        )
        private = repo.get_tutorial(session, "JGzA6FPzZS8")
        assert private is not None and (private.status, private.status_detail) == ("unavailable", "private")
        assert [t.youtube_id for t in repo.tutorials_for(session, "treadmill")] == ["u2GwfCmfUrY"]
        assert [t.youtube_id for t in repo.tutorials_for(session, "bench_press")] == ["7GtUE1MAniY"]


def test_refresh_after_quota_error_keeps_previous_state(seeded: sessionmaker[Session]) -> None:
    http = HttpMockSequence([({"status": "403"}, (DATA / "error_quota_exceeded.json").read_text())])
    report = refresh_videos(seeded, YouTubeClient("k", http=http))
    assert report.quota_exceeded and report.checked == 0 and len(report.unchecked) == 17
    assert "quota" in report.summary()
    with session_scope(seeded) as session:
        assert all(
            t.status == "unverified" and t.last_checked_at is None for t in repo.list_tutorials(session)
        )


def test_refresh_only_stale_videos(seeded: sessionmaker[Session]) -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    with session_scope(seeded) as session:
        for t in repo.list_tutorials(session):
            t.last_checked_at = now
        fresh_ids = [t.youtube_id for t in repo.list_tutorials(session)]
        stale = repo.get_tutorial(session, fresh_ids[0])
        assert stale is not None
        stale.last_checked_at = now - dt.timedelta(days=30)
    http = HttpMockSequence([(OK, '{"items": []}')])
    report = refresh_videos(
        seeded, YouTubeClient("k", http=http), checked_before=now - dt.timedelta(days=7), now=now
    )
    assert report.checked == 1 and report.unavailable == 1
    assert http.request_sequence[0][0].count(fresh_ids[0]) == 1


def test_cli_refuses_a_database_that_is_behind(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["seed"]) == EXIT_BEHIND
    err = capsys.readouterr().err
    assert "behind" in err and "alembic upgrade head" in err


def test_cli_upgrade_seed_check_videos_stats(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("YOUTUBE_API_KEY", raising=False)
    assert main(["upgrade"]) == EXIT_OK
    assert main(["seed"]) == EXIT_OK
    assert "12 inserted" in capsys.readouterr().out
    assert main(["seed"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "0 inserted" in out and "12 unchanged" in out
    assert main(["check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "at head" in out and "smith_machine: no tutorial yet" in out
    assert main(["videos", "lat_pulldown_machine"]) == EXIT_OK
    assert "diBoTD4-uG8" in capsys.readouterr().out
    assert main(["videos", "sofa"]) != EXIT_OK
    assert main(["stats"]) == EXIT_OK
    assert "users 0" in capsys.readouterr().out
    assert main(["refresh-videos"]) == EXIT_OK
    assert "unverified" in capsys.readouterr().out


def test_cli_seed_dry_run_writes_nothing(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    assert main(["seed", "--dry-run"]) == EXIT_OK
    assert "dry run" in capsys.readouterr().out
    assert main(["check"]) != EXIT_OK  # still no equipment rows
    assert "missing equipment rows" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[[equipment]]\nslug = 'X'\n", encoding="utf-8")
    assert main(["seed", "--file", str(bad)]) != EXIT_OK


def test_cli_check_compares_a_models_labels_with_the_catalog(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated_url)
    assert main(["seed"]) == EXIT_OK
    good = tmp_path / "good.json"
    good.write_text(json.dumps(sorted(e.slug for e in load_seed().equipment)), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(["leg_press", "__other__", "rowing_machine"]), encoding="utf-8")
    capsys.readouterr()
    assert main(["check", "--labels", str(good)]) == EXIT_OK
    assert "all 12 labels" in capsys.readouterr().out
    assert main(["check", "--labels", str(bad)]) != EXIT_OK
    assert "rowing_machine" in capsys.readouterr().out


def test_every_label_of_a_shipped_model_has_an_equipment_row_in_the_seed() -> None:
    """Issue 3: every label the shipped model knows has a row (models/vNNNN/labels.json, when shipped)."""
    from tests.conftest import ROOT

    slugs = {e.slug for e in load_seed().equipment}
    label_files = sorted((ROOT / "models").glob("v*/labels.json"))
    if not label_files:
        pytest.skip("no model version shipped under models/ yet")
    for path in label_files:
        labels = json.loads(path.read_text(encoding="utf-8"))
        labels = labels.get("labels", labels) if isinstance(labels, dict) else labels
        assert {x for x in labels if not x.startswith("__")} - {"not_equipment"} <= slugs, path


def test_refresh_holds_no_database_lock_while_youtube_answers(
    seeded: sessionmaker[Session], migrated_url: str
) -> None:
    """The bot keeps writing while refresh-videos waits on the network."""
    import sqlite3

    from sqlalchemy.engine import make_url

    database = make_url(migrated_url).database
    assert database is not None
    path: str = database
    locked_out: list[str] = []

    class ProbingClient(YouTubeClient):
        def fetch(self, video_ids):
            probe = sqlite3.connect(path, timeout=0.5, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")  # fails with "database is locked" if refresh holds the lock
                probe.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                locked_out.append(str(exc))
            finally:
                probe.close()
            return super().fetch(video_ids)

    http = HttpMockSequence([(OK, '{"items": []}')])
    report = refresh_videos(seeded, ProbingClient("k", http=http))
    assert locked_out == []
    assert report.checked == 17 and report.unavailable == 17
