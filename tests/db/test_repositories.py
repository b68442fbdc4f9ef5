"""Repository behaviour on a real migrated, seeded SQLite file."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from db import repositories as repo
from db.errors import (
    CorrectionLockedError,
    DuplicateVideoError,
    NotFoundError,
    NotYourPredictionError,
    UnknownLabelError,
)
from db.models import (
    NOT_EQUIPMENT,
    VIDEO_AVAILABLE,
    VIDEO_UNAVAILABLE,
    Correction,
    Equipment,
    Prediction,
    User,
)
from db.session import session_scope
from tests.db.conftest import predict, sha

ALICE, BEA, CARA, DANA, ADMIN = 1001, 1002, 1003, 1004, 9_000_000_001


def test_users_are_upserted_and_timestamps_are_aware_utc(session: Session) -> None:
    t0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    user = repo.upsert_user(session, 5_000_000_000, language_code="pt-br", now=t0)
    again = repo.upsert_user(session, 5_000_000_000, now=t0 + dt.timedelta(hours=1))
    assert again.id == user.id and again.language_code == "pt-br"
    session.expire_all()
    loaded = repo.get_user(session, 5_000_000_000)
    assert loaded is not None
    assert loaded.first_seen_at == t0 and loaded.first_seen_at.tzinfo is not None
    assert loaded.last_seen_at == t0 + dt.timedelta(hours=1)
    assert session.scalar(select(func.count(User.id))) == 1


def test_naive_datetimes_are_refused(session: Session) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        repo.upsert_user(session, 1, now=dt.datetime(2026, 1, 1))


def test_prediction_is_recorded_with_photo_hash_and_validated(session: Session) -> None:
    prediction = predict(session, ALICE, b"photo-1")
    session.expire_all()
    loaded = repo.get_prediction(session, prediction.id)
    assert loaded is not None
    assert loaded.image_sha256 == sha(b"photo-1")
    assert loaded.image_path.endswith(f"{sha(b'photo-1')}.jpg")
    assert loaded.top_k == [["leg_press", 0.8], ["bench_press", 0.1]]
    assert loaded.user.telegram_id == ALICE and loaded.model_version == "v0001"
    user = repo.upsert_user(session, ALICE)

    def record(image_sha256: str, confidence: float, decision: str) -> None:
        repo.record_prediction(
            session,
            user,
            chat_id=1,
            message_id=1,
            image_sha256=image_sha256,
            image_path="p",
            model_version="v1",
            label="x",
            confidence=confidence,
            decision=decision,
            top_k=[],
        )

    with pytest.raises(ValueError, match="sha256"):
        record("abc", 0.5, "unsure")
    with pytest.raises(ValueError, match="decision"):
        record(sha(b"x"), 0.5, "maybe")
    with pytest.raises(ValueError, match="confidence"):
        record(sha(b"x"), 1.5, "unsure")
    with pytest.raises(ValueError, match="confidence"):
        record(sha(b"x"), float("nan"), "unsure")
    repo.set_reply_message(session, prediction.id, 777)
    reloaded = repo.get_prediction(session, prediction.id)
    assert reloaded is not None and reloaded.reply_message_id == 777


def test_database_constraints_hold_even_without_the_repository(session: Session) -> None:
    user = repo.upsert_user(session, ALICE)
    session.add(
        Prediction(
            user_id=user.id,
            chat_id=1,
            message_id=1,
            image_sha256=sha(b"x"),
            image_path="p",
            model_version="v1",
            label="x",
            confidence=0.5,
            decision="bogus",
            top_k=[],
        )
    )
    with pytest.raises(IntegrityError):
        session.flush()


def test_only_the_owner_can_give_feedback(session: Session) -> None:
    prediction = predict(session, ALICE, b"photo")
    with pytest.raises(NotYourPredictionError):
        repo.record_correction(session, prediction.id, BEA, "bench_press", is_admin=False)
    with pytest.raises(NotYourPredictionError):
        repo.confirm_prediction(session, prediction.id, BEA)
    with pytest.raises(NotFoundError):
        repo.record_correction(session, 987654, ALICE, "bench_press", is_admin=False)
    with pytest.raises(UnknownLabelError):
        repo.record_correction(session, prediction.id, ALICE, "../../etc/passwd", is_admin=False)
    assert session.scalar(select(func.count(Correction.id))) == 0


def test_correction_by_a_user_is_pending_and_by_an_admin_approved(session: Session) -> None:
    mine = predict(session, ALICE, b"a")
    correction = repo.record_correction(session, mine.id, ALICE, "bench_press", is_admin=False)
    assert correction.review_state == "pending" and correction.approval_source is None
    assert mine.feedback == "corrected"
    admins = predict(session, ADMIN, b"b")
    by_admin = repo.record_correction(session, admins.id, ADMIN, NOT_EQUIPMENT, is_admin=True)
    assert by_admin.review_state == "approved" and by_admin.approval_source == "admin"
    again = repo.record_correction(session, mine.id, ALICE, "bench_press", is_admin=False)
    assert again.id == correction.id
    changed = repo.record_correction(session, mine.id, ALICE, "power_rack", is_admin=False)
    assert changed.id == correction.id and changed.label == "power_rack"
    assert session.scalar(select(func.count(Correction.id))) == 2
    assert repo.count_pending(session) == 1
    assert [c.id for c in repo.pending_corrections(session)] == [correction.id]


def test_agreement_of_different_users_on_the_same_image_approves(session: Session) -> None:
    image = b"same bytes sent by several users"
    p_alice = predict(session, ALICE, image)
    p_alice_again = predict(session, ALICE, image, message_id=2)
    p_bea = predict(session, BEA, image)
    p_cara = predict(session, CARA, image)
    first = repo.record_correction(session, p_alice.id, ALICE, "smith_machine", is_admin=False)
    repo.record_correction(session, p_alice_again.id, ALICE, "smith_machine", is_admin=False)
    repo.record_correction(session, p_bea.id, BEA, "smith_machine", is_admin=False)
    assert first.review_state == "pending"  # Alice twice + Bea = 2 different users < 3
    third = repo.record_correction(
        session, p_cara.id, CARA, "smith_machine", is_admin=False, agreement_threshold=3
    )
    assert third.review_state == "approved" and third.approval_source == "agreement"
    assert first.review_state == "approved"
    other = predict(session, DANA, b"another image")
    lone = repo.record_correction(session, other.id, DANA, "smith_machine", is_admin=False)
    assert lone.review_state == "pending"
    with pytest.raises(ValueError):
        repo.record_correction(session, other.id, DANA, "treadmill", is_admin=False, agreement_threshold=1)


def test_review_actions_and_training_lifecycle(session: Session) -> None:
    a = repo.record_correction(
        session, predict(session, ALICE, b"1").id, ALICE, "bench_press", is_admin=False
    )
    b = repo.record_correction(session, predict(session, BEA, b"2").id, BEA, "treadmill", is_admin=False)
    c = repo.record_correction(session, predict(session, CARA, b"3").id, CARA, "leg_press", is_admin=False)
    n = repo.record_correction(session, predict(session, ADMIN, b"4").id, ADMIN, NOT_EQUIPMENT, is_admin=True)
    repo.review_correction(session, a.id, reviewer_telegram_id=ADMIN, action="approve")
    repo.review_correction(session, b.id, reviewer_telegram_id=ADMIN, action="reject")
    repo.review_correction(session, c.id, reviewer_telegram_id=ADMIN, action="relabel", label="power_rack")
    assert (a.review_state, a.approval_source, a.reviewed_by_telegram_id) == ("approved", "review", ADMIN)
    assert b.review_state == "rejected" and c.label == "power_rack" and c.review_state == "approved"
    with pytest.raises(UnknownLabelError):
        repo.review_correction(session, c.id, reviewer_telegram_id=ADMIN, action="relabel", label="sofa")
    with pytest.raises(ValueError):
        repo.review_correction(session, c.id, reviewer_telegram_id=ADMIN, action="relabel")
    with pytest.raises(NotFoundError):
        repo.review_correction(session, 424242, reviewer_telegram_id=ADMIN, action="approve")

    examples = repo.corrections_for_training(session)
    assert [(e.correction_id, e.label) for e in examples] == [(a.id, "bench_press"), (c.id, "power_rack")]
    assert examples[0].image_sha256 == sha(b"1") and examples[0].image_path.endswith(".jpg")
    with_negatives = repo.corrections_for_training(session, include_not_equipment=True)
    assert n.id in {e.correction_id for e in with_negatives}
    assert repo.corrections_for_training(session, labels=["power_rack"])[0].correction_id == c.id

    assert repo.mark_corrections_trained(session, [a.id, c.id], "v0002") == 2
    assert repo.mark_corrections_trained(session, [a.id], "v0003") == 0  # first version is kept
    session.expire_all()
    trained = repo.get_correction(session, a.id)
    assert trained is not None and trained.trained_in_version is not None
    assert trained.trained_in_version.version == "v0002"
    assert repo.corrections_for_training(session) == []
    with pytest.raises(CorrectionLockedError):
        repo.review_correction(session, a.id, reviewer_telegram_id=ADMIN, action="reject")
    with pytest.raises(CorrectionLockedError):
        repo.record_correction(session, trained.prediction_id, ALICE, "treadmill", is_admin=False)


def test_confirm_withdraws_an_untrained_correction(session: Session) -> None:
    prediction = predict(session, ALICE, b"x")
    repo.record_correction(session, prediction.id, ALICE, "treadmill", is_admin=False)
    confirmed = repo.confirm_prediction(session, prediction.id, ALICE)
    assert confirmed.feedback == "confirmed" and confirmed.correction is None
    assert session.scalar(select(func.count(Correction.id))) == 0
    assert repo.confirm_prediction(session, prediction.id, ALICE).feedback == "confirmed"


def test_forget_user_deletes_her_rows_and_returns_only_unshared_photos(session: Session) -> None:
    mine = predict(session, ALICE, b"only mine")
    shared = predict(session, ALICE, b"shared photo")
    predict(session, BEA, b"shared photo")
    repo.record_correction(session, mine.id, ALICE, "treadmill", is_admin=False)
    result = repo.forget_user(session, ALICE)
    assert result.user_found and result.predictions_deleted == 2 and result.corrections_deleted == 1
    assert result.photo_paths_to_delete == [mine.image_path]
    assert shared.image_path not in result.photo_paths_to_delete
    assert repo.get_user(session, ALICE) is None
    assert session.scalar(select(func.count(Prediction.id))) == 1
    assert repo.forget_user(session, ALICE).user_found is False


def test_model_versions_and_promotions(session: Session) -> None:
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert repo.current_champion(session) is None
    repo.record_promotion(session, "v0001", reason="initial", now=t0, metrics={"accuracy": 0.93})
    second = repo.record_promotion(
        session, "v0002", now=t0 + dt.timedelta(days=1), promoted_by_telegram_id=ADMIN
    )
    assert second.previous_version == "v0001" and repo.current_champion(session) == "v0002"
    back = repo.record_promotion(session, "v0001", reason="rollback", now=t0 + dt.timedelta(days=2))
    assert back.previous_version == "v0002" and repo.current_champion(session) == "v0001"
    assert repo.ensure_champion_recorded(session, "v0001") is None
    assert repo.ensure_champion_recorded(session, "v0003") is not None
    versions = {v.version: v for v in repo.list_model_versions(session)}
    assert versions["v0001"].first_promoted_at == t0 and versions["v0001"].metrics == {"accuracy": 0.93}
    assert len(versions["v0001"].promotions) == 2
    assert [p.model_version.version for p in repo.promotion_history(session, limit=2)] == ["v0003", "v0001"]


def test_stats_aggregate_users_photos_corrections_and_agreement(session: Session) -> None:
    p1 = predict(session, ALICE, b"1", "leg_press")
    p2 = predict(session, BEA, b"2", "leg_press")
    p3 = predict(session, CARA, b"3", "leg_press")
    predict(session, CARA, b"3", "leg_press", message_id=9)
    p5 = predict(session, DANA, b"5", "treadmill")
    repo.confirm_prediction(session, p1.id, ALICE)
    repo.confirm_prediction(session, p2.id, BEA)
    repo.record_correction(session, p3.id, CARA, "smith_machine", is_admin=False)
    repo.confirm_prediction(session, p5.id, DANA)
    repo.record_promotion(session, "v0001", reason="initial")
    stats = repo.collect_stats(session)
    assert (stats.users, stats.photos, stats.distinct_images) == (4, 5, 4)
    assert stats.confirmed == 3 and stats.corrections == 1
    assert stats.corrections_by_state == {"pending": 1, "approved": 0, "rejected": 0}
    assert stats.agreement_rate == pytest.approx(3 / 4)
    assert stats.champion == "v0001" and stats.tutorials == 17
    rows = {r.slug: r for r in stats.per_equipment}
    assert len(rows) == 12
    assert (rows["leg_press"].predictions, rows["leg_press"].confirmed, rows["leg_press"].corrected) == (
        4,
        2,
        1,
    )
    assert rows["leg_press"].agreement_rate == pytest.approx(2 / 3)
    assert rows["treadmill"].agreement_rate == 1.0
    assert rows["smith_machine"].corrected_to == 1 and rows["smith_machine"].agreement_rate is None
    later = repo.collect_stats(session, since=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert later.photos == 0 and later.users == 0


def test_stats_per_equipment_leave_out_photos_answered_not_equipment(session: Session) -> None:
    """A dog photo answered not_equipment (top label "dumbbell") is a photo, not a dumbbell prediction."""
    predict(session, ALICE, b"dog", "dumbbell", decision="not_equipment")
    predict(session, BEA, b"rack", "dumbbell", decision="unsure")
    stats = repo.collect_stats(session)
    assert stats.photos == 2
    rows = {r.slug: r for r in stats.per_equipment}
    assert rows["dumbbell"].predictions == 1


def test_catalog_queries(session: Session) -> None:
    slugs = repo.equipment_slugs(session)
    assert len(slugs) == 12 and slugs[0] == "dumbbell"
    counts = {e.slug: n for e, n in repo.equipment_with_tutorial_counts(session)}
    assert counts["dumbbell"] == 9 and counts["smith_machine"] == 0
    lat = repo.resolve_equipment(session, "Lat Pull-Down")
    assert lat is not None and lat.slug == "lat_pulldown_machine"
    assert repo.resolve_equipment(session, "pec deck").slug == "chest_fly_machine"  # type: ignore[union-attr]
    assert repo.resolve_equipment(session, "leg_press").slug == "leg_press"  # type: ignore[union-attr]
    assert repo.resolve_equipment(session, "sofa") is None
    assert repo.resolve_equipment(session, "  ") is None


def test_tutorials_for_orders_and_hides(session: Session) -> None:
    shown = repo.tutorials_for(session, "dumbbell", limit=3)
    assert [t.youtube_id for t in shown] == ["vN8xskk-7G8", "Xef_H9ZLkdY", "0RJXwEZmcCg"]
    verified = repo.get_tutorial(session, "j1FjaWu5Am4")
    gone = repo.get_tutorial(session, "vN8xskk-7G8")
    assert verified is not None and gone is not None
    verified.status = VIDEO_AVAILABLE
    gone.status = VIDEO_UNAVAILABLE
    session.flush()
    shown = repo.tutorials_for(session, "dumbbell", limit=3)
    assert shown[0].youtube_id == "j1FjaWu5Am4" and "vN8xskk-7G8" not in {t.youtube_id for t in shown}
    assert repo.tutorials_for(session, "smith_machine") == []
    untitled = repo.get_tutorial(session, "nmuC472g9rE")
    assert untitled is not None and untitled.display_title == "low-box step-up, slow"
    assert untitled.url == "https://www.youtube.com/watch?v=nmuC472g9rE"


def test_add_remove_and_readd_a_video(session: Session) -> None:
    added = repo.add_tutorial(
        session,
        equipment_slug="smith_machine",
        youtube_id="AAAAAAAAAAA",
        added_by_telegram_id=ADMIN,
        title="Smith squat",
        channel="Coach",
        duration_seconds=61,
    )
    assert added.source == "admin" and added.status == "unverified" and added.added_by_telegram_id == ADMIN
    assert [t.youtube_id for t in repo.tutorials_for(session, "smith_machine")] == ["AAAAAAAAAAA"]
    with pytest.raises(DuplicateVideoError, match="smith_machine"):
        repo.add_tutorial(
            session, equipment_slug="leg_press", youtube_id="AAAAAAAAAAA", added_by_telegram_id=1
        )
    with pytest.raises(UnknownLabelError):
        repo.add_tutorial(session, equipment_slug="sofa", youtube_id="BBBBBBBBBBB", added_by_telegram_id=1)
    repo.remove_tutorial(session, "AAAAAAAAAAA", removed_by_telegram_id=ADMIN)
    assert repo.tutorials_for(session, "smith_machine") == []
    with pytest.raises(NotFoundError):
        repo.remove_tutorial(session, "AAAAAAAAAAA", removed_by_telegram_id=ADMIN)
    again = repo.add_tutorial(
        session, equipment_slug="leg_press", youtube_id="AAAAAAAAAAA", added_by_telegram_id=ADMIN
    )
    assert again.id == added.id and again.removed_at is None and again.equipment.slug == "leg_press"


def test_youtube_search_link_is_built_with_urllib() -> None:
    url = repo.youtube_search_url("Smith machine")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "www.youtube.com", "/results")
    assert parse_qs(parts.query) == {"search_query": ["how to use Smith machine tutorial for beginners"]}
    tricky = repo.youtube_search_url("Leg press & hack squat #1?")
    assert parse_qs(urlsplit(tricky).query)["search_query"][0].startswith(
        "how to use Leg press & hack squat #1?"
    )


def test_repositories_never_commit(seeded: sessionmaker[Session]) -> None:
    with seeded() as session:
        predict(session, ALICE, b"uncommitted")
        session.rollback()
    with session_scope(seeded) as session:
        assert session.scalar(select(func.count(Prediction.id))) == 0
        assert session.scalar(select(func.count(Equipment.id))) == 12


def test_savepoint_in_upsert_does_not_escape_the_callers_transaction(seeded: sessionmaker[Session]) -> None:
    """The sqlite3 driver's legacy mode would commit a released SAVEPOINT on its own; db.session makes
    SQLAlchemy emit BEGIN so that a rollback undoes the new user too."""
    with seeded() as session:
        session.begin()
        repo.upsert_user(session, 31337)
        session.rollback()
    with session_scope(seeded) as session:
        assert repo.get_user(session, 31337) is None


def test_concurrent_transactions_from_threads_all_land(seeded: sessionmaker[Session]) -> None:
    """The bot records photos from worker threads: same new user in parallel (an album), many users."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> int:
        with session_scope(seeded) as session:
            prediction = predict(session, 7000 + i % 3, f"photo {i}".encode(), message_id=i)
            return prediction.id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(work, range(40)))
    assert len(set(ids)) == 40
    with session_scope(seeded) as session:
        assert session.scalar(select(func.count(Prediction.id))) == 40
        assert session.scalar(select(func.count(User.id))) == 3


def test_admin_adds_and_edits_equipment(session: Session) -> None:
    added = repo.add_equipment(
        session, slug="cable_crossover", display_name="Cable crossover", aliases=["cable machine", " "]
    )
    assert added.sort_order == 130 and added.aliases == ["cable machine"] and added.seed_hash is None
    assert repo.equipment_slugs(session)[-1] == "cable_crossover"
    assert repo.resolve_equipment(session, "Cable Machine") is added
    for bad in ("Cable", "not_equipment", "x", "a-b"):
        with pytest.raises(ValueError):
            repo.add_equipment(session, slug=bad, display_name="X")
    with pytest.raises(ValueError, match="already exists"):
        repo.add_equipment(session, slug="leg_press", display_name="Leg press")
    edited = repo.update_equipment(session, "leg_press", description="Quads.\nFeet flat.", sort_order=1)
    assert edited.description == "Quads.\nFeet flat." and repo.equipment_slugs(session)[0] == "leg_press"
    with pytest.raises(UnknownLabelError):
        repo.update_equipment(session, "sofa", display_name="Sofa")
    with pytest.raises(ValueError):
        repo.update_equipment(session, "leg_press", display_name="  ")
    # a correction may name the new type right away
    prediction = predict(session, ALICE, b"cable")
    correction = repo.record_correction(session, prediction.id, ALICE, "cable_crossover", is_admin=True)
    assert correction.label == "cable_crossover"
