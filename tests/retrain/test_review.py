"""The review rule: admins at once; others need an admin or N different users agreeing on the same image."""

from __future__ import annotations

import pytest

from db import review
from db.models import NOT_EQUIPMENT, REVIEW_APPROVED, REVIEW_PENDING, REVIEW_REJECTED
from db.repositories.corrections import corrections_for_training, count_pending, review_correction
from db.review import ReviewPolicy, Vote, agreed_labels
from db.session import session_scope
from tests.retrain.conftest import add_correction, add_equipment, photo_bytes

ADMIN = 1000


def test_agreed_labels_pure():
    v = [Vote(1, "a", REVIEW_PENDING, False), Vote(2, "a", REVIEW_PENDING, False)]
    assert agreed_labels(v, 3) == set()
    assert agreed_labels([*v, Vote(3, "a", REVIEW_PENDING, False)], 3) == {"a"}
    # the same user five times counts once
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
            is_admin=True,
        )
        assert c.review_state == REVIEW_APPROVED and c.approval_source == "admin"
        assert [x.correction_id for x in corrections_for_training(s)] == [c.id]


def test_one_user_repeating_cannot_poison_but_distinct_users_agree(session_factory, tmp_path):
    photo = photo_bytes((0, 120, 0))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        kw = {"data_dir": tmp_path, "predicted": "leg_press", "label": "power_rack"}
        first = add_correction(s, telegram_id=1, data=photo, **kw)
        # the same user sends the same photo five more times and corrects each: still pending
        for i in range(5):
            c = add_correction(s, telegram_id=1, data=photo, message_id=10 + i, **kw)
            assert c.review_state == REVIEW_PENDING
        assert review.refresh_review_states(s, {ADMIN}, ReviewPolicy(3)) == {"admin": 0, "agreement": 0}
        # a different image from user 2 does not count for this one
        other = add_correction(s, telegram_id=2, data=photo_bytes((1, 2, 3)), **kw)
        second = add_correction(s, telegram_id=2, data=photo, **kw)
        assert second.review_state == REVIEW_PENDING and corrections_for_training(s) == []
        third = add_correction(s, telegram_id=3, data=photo, **kw)
        assert third.review_state == REVIEW_APPROVED
        approved = {x.correction_id for x in corrections_for_training(s)}
        assert other.id not in approved and {first.id, second.id, third.id} <= approved
        assert review.agreeing_users(s, first) == 3


def test_refresh_applies_todays_rule_to_stored_corrections(session_factory, tmp_path):
    photo = photo_bytes((0, 0, 200))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        # stored while user 1000 was not an admin yet, and under a threshold of 5
        admin_c = add_correction(
            s,
            telegram_id=ADMIN,
            data=photo_bytes((9, 9, 9)),
            data_dir=tmp_path,
            predicted="leg_press",
            label=NOT_EQUIPMENT,
            agreement=5,
        )
        for user in (5, 6):
            add_correction(
                s,
                telegram_id=user,
                data=photo,
                data_dir=tmp_path,
                predicted="leg_press",
                label="power_rack",
                agreement=5,
            )
        assert count_pending(s) == 3
        counts = review.refresh_review_states(s, {ADMIN}, ReviewPolicy(agreement_users=2))
        assert counts == {"admin": 1, "agreement": 2}
        assert admin_c.review_state == REVIEW_APPROVED
        assert count_pending(s) == 0


def test_admin_rejection_beats_agreement(session_factory, tmp_path):
    photo = photo_bytes((50, 60, 70))
    with session_scope(session_factory) as s:
        add_equipment(s, ["leg_press", "power_rack"])
        kw = {"data_dir": tmp_path, "predicted": "leg_press", "label": "power_rack", "agreement": 99}
        first = add_correction(s, telegram_id=1, data=photo, **kw)
        review_correction(s, first.id, reviewer_telegram_id=ADMIN, action="reject")
        for user in (2, 3, 4):
            add_correction(s, telegram_id=user, data=photo, **kw)
        counts = review.refresh_review_states(s, {ADMIN}, ReviewPolicy(agreement_users=3))
        assert counts["agreement"] == 0 and count_pending(s) == 3
        assert first.review_state == REVIEW_REJECTED
        assert review.approved_image_labels(s) == set()
