"""The review rule: admins at once; others need an admin or N different users agreeing on the same image."""

from __future__ import annotations

import pytest

from db import review
from db.models import NOT_EQUIPMENT, REVIEW_APPROVED, REVIEW_PENDING, REVIEW_REJECTED
from db.review import ReviewError, ReviewPolicy, Vote, agreed_labels
from db.session import session_scope
from tests.retrain.conftest import add_correction, add_equipment, photo_bytes

ADMIN = 1000
POLICY = ReviewPolicy(agreement_users=3)


def test_agreed_labels_pure():
    v = [Vote(1, "a", REVIEW_PENDING, False), Vote(2, "a", REVIEW_PENDING, False)]
    assert agreed_labels(v, 3) == set()
    assert agreed_labels([*v, Vote(3, "a", REVIEW_PENDING, False)], 3) == {"a"}
    # the same user three times counts once
    assert agreed_labels([Vote(1, "a", REVIEW_PENDING, False)] * 5, 3) == set()
    # an admin-rejected label is never approved by agreement
    votes = [Vote(u, "a", REVIEW_PENDING, False) for u in (1, 2, 3)] + [Vote(4, "a", REVIEW_REJECTED, True)]
    assert agreed_labels(votes, 3) == set()
    # two labels over the threshold: conflicting, left to an admin
    votes = [Vote(u, "a", REVIEW_PENDING, False) for u in (1, 2, 3)]
    votes += [Vote(u, "b", REVIEW_PENDING, False) for u in (4, 5, 6)]
    assert agreed_labels(votes, 3) == set()
    with pytest.raises(ValueError):
        ReviewPolicy(agreement_users=1)


def test_admin_correction_is_approved_at_once(session_factory, tmp_path):
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        c = add_correction(
            s,
            telegram_id=ADMIN,
            data=photo_bytes((200, 0, 0)),
            data_dir=tmp_path,
            predicted="leg_press",
            label="power_rack",
        )
        assert review.on_new_correction(s, c, by_admin=True, policy=POLICY) == REVIEW_APPROVED
        assert c.approval_source == "admin"
        assert [x.id for x in review.training_candidates(s)] == [c.id]


def test_non_admin_needs_distinct_users_on_same_image(session_factory, tmp_path):
    photo = photo_bytes((0, 120, 0))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        first = add_correction(
            s, telegram_id=1, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
        )
        assert review.on_new_correction(s, first, by_admin=False, policy=POLICY) == REVIEW_PENDING
        # the same user again (she sent the photo five times): still pending
        for i in range(5):
            c = add_correction(
                s,
                telegram_id=1,
                data=photo,
                data_dir=tmp_path,
                predicted="leg_press",
                label="power_rack",
                message_id=10 + i,
            )
            assert review.on_new_correction(s, c, by_admin=False, policy=POLICY) == REVIEW_PENDING
        # a different image from user 2 does not count for this one
        other = add_correction(
            s,
            telegram_id=2,
            data=photo_bytes((1, 2, 3)),
            data_dir=tmp_path,
            predicted="leg_press",
            label="power_rack",
        )
        assert review.on_new_correction(s, other, by_admin=False, policy=POLICY) == REVIEW_PENDING
        second = add_correction(
            s, telegram_id=2, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
        )
        assert review.on_new_correction(s, second, by_admin=False, policy=POLICY) == REVIEW_PENDING
        assert review.training_candidates(s) == []
        third = add_correction(
            s, telegram_id=3, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
        )
        assert review.on_new_correction(s, third, by_admin=False, policy=POLICY) == REVIEW_APPROVED
        approved = review.training_candidates(s)
        # every correction of that image with the agreed label is approved, the other image is not
        assert other not in approved and first in approved and third in approved
        assert {c.approval_source for c in approved} == {"agreement"}


def test_refresh_applies_rule_to_stored_corrections(session_factory, tmp_path):
    photo = photo_bytes((0, 0, 200))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        admin_c = add_correction(
            s,
            telegram_id=ADMIN,
            data=photo_bytes((9, 9, 9)),
            data_dir=tmp_path,
            predicted="leg_press",
            label=NOT_EQUIPMENT,
        )
        for user in (5, 6):
            add_correction(
                s, telegram_id=user, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
            )
        counts = review.refresh_review_states(s, {ADMIN}, ReviewPolicy(agreement_users=2))
        assert counts == {"admin": 1, "agreement": 2}
        assert admin_c.review_state == REVIEW_APPROVED
        assert review.count_pending(s) == 0


def test_admin_review_actions(session_factory, tmp_path):
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        a = add_correction(
            s,
            telegram_id=7,
            data=photo_bytes((1, 1, 1)),
            data_dir=tmp_path,
            predicted="leg_press",
            label="power_rack",
        )
        b = add_correction(
            s,
            telegram_id=7,
            data=photo_bytes((2, 2, 2)),
            data_dir=tmp_path,
            predicted="leg_press",
            label="power_rack",
        )
        c = add_correction(
            s,
            telegram_id=7,
            data=photo_bytes((3, 3, 3)),
            data_dir=tmp_path,
            predicted="leg_press",
            label="power_rack",
        )
        assert review.count_pending(s) == 3
        first = review.next_pending(s)
        assert first is not None and first.id == a.id
        nxt = review.next_pending(s, after_id=a.id)
        assert nxt is not None and nxt.id == b.id
        review.approve(s, a.id, ADMIN)
        review.reject(s, b.id, ADMIN)
        review.relabel(s, c.id, "leg_press", ADMIN)
        assert (a.review_state, b.review_state, c.review_state) == (
            REVIEW_APPROVED,
            REVIEW_REJECTED,
            REVIEW_APPROVED,
        )
        assert c.label == "leg_press" and c.reviewed_by_telegram_id == ADMIN
        with pytest.raises(ReviewError):
            review.relabel(s, a.id, "../../etc", ADMIN)
        with pytest.raises(ReviewError):
            review.approve(s, 99999, ADMIN)
        assert {x.id for x in review.training_candidates(s)} == {a.id, c.id}
        assert review.mark_trained(s, [a, c], "v0002") == 2
        assert review.mark_trained(s, [a], "v0003") == 0  # keeps the version that FIRST trained on it
        assert a.trained_in_version is not None and a.trained_in_version.version == "v0002"
        assert review.training_candidates(s) == []


def test_admin_rejection_beats_agreement(session_factory, tmp_path):
    photo = photo_bytes((50, 60, 70))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        first = add_correction(
            s, telegram_id=1, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
        )
        review.reject(s, first.id, ADMIN)
        for user in (2, 3, 4):
            c = add_correction(
                s, telegram_id=user, data=photo, data_dir=tmp_path, predicted="leg_press", label="power_rack"
            )
            assert review.on_new_correction(s, c, by_admin=False, policy=POLICY) == REVIEW_PENDING
