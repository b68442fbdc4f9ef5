"""The catalog seed: complete, faithful to ../shared/catalog/tutorials.tsv, idempotent, and respectful of
admins' edits."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db import repositories as repo
from db.models import VIDEO_UNVERIFIED, Equipment, Tutorial
from db.seed import DEFAULT_SEED_PATH, SeedError, apply_seed, load_seed
from db.session import session_scope
from tests.conftest import SHARED
from tests.fakes.classifier import LABELS


def _counts(session: Session) -> tuple[int, int]:
    return (
        session.scalar(select(func.count(Equipment.id))) or 0,
        session.scalar(select(func.count(Tutorial.id))) or 0,
    )


def test_seed_lists_every_label_with_two_line_description() -> None:
    seed = load_seed()
    assert sorted(e.slug for e in seed.equipment) == LABELS
    orders = [e.sort_order for e in seed.equipment]
    assert len(set(orders)) == len(orders)
    for entry in seed.equipment:
        assert entry.display_name and entry.aliases
        lines = entry.description.split("\n")
        assert len(lines) == 2 and all(len(line) > 20 for line in lines), entry.slug
    for tutorial in seed.tutorials:
        assert tutorial.women_led and tutorial.status == VIDEO_UNVERIFIED
        assert tutorial.found_in


@pytest.mark.real_data
def test_seed_copies_every_tutorial_of_the_shared_catalog() -> None:
    tsv = SHARED / "catalog" / "tutorials.tsv"
    if not tsv.is_file():
        pytest.skip("../shared/catalog/tutorials.tsv is not present")
    with tsv.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    seeded = {t.youtube_id: t for t in load_seed().tutorials}
    assert set(seeded) == {row["youtube_id"] for row in rows}
    for row in rows:
        t = seeded[row["youtube_id"]]
        assert t.equipment == row["equipment"]
        assert (t.title or "") == row["title"]
        assert t.channel == row["channel"]
        assert t.presenter == row["presenter"]
        assert (t.curator_note or "") == row["content_if_no_title"]
        assert t.source_confidence == row["confidence"]
        assert t.found_in == row["found_in"]


def test_seed_twice_never_duplicates(factory: sessionmaker[Session]) -> None:
    seed = load_seed()
    with session_scope(factory) as session:
        first = apply_seed(session, seed)
    with session_scope(factory) as session:
        second = apply_seed(session, seed)
        assert _counts(session) == (12, len(seed.tutorials))
    assert (first.equipment_inserted, first.tutorials_inserted) == (12, len(seed.tutorials))
    assert (second.equipment_inserted, second.tutorials_inserted, second.equipment_updated) == (0, 0, 0)
    assert (second.equipment_unchanged, second.tutorials_unchanged) == (12, len(seed.tutorials))


def test_admin_edits_survive_a_reseed_and_untouched_rows_follow_the_seed(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_scope(factory) as session:
        apply_seed(session, load_seed())
    with session_scope(factory) as session:  # an admin edits, removes and adds
        leg_press = repo.get_equipment(session, "leg_press")
        assert leg_press is not None
        leg_press.description = "Admin's own words.\nSecond line."
        bench_video = repo.get_tutorial(session, "7GtUE1MAniY")
        assert bench_video is not None
        bench_video.title = "Admin's better title"
        repo.remove_tutorial(session, "8q9LVgN2RD4", removed_by_telegram_id=42)
        repo.add_tutorial(
            session,
            equipment_slug="smith_machine",
            youtube_id="AAAAAAAAAAA",
            added_by_telegram_id=42,
            title="X",
        )
    # the seed file changes afterwards: every equipment's first line and every tutorial's presenter
    text = DEFAULT_SEED_PATH.read_text(encoding="utf-8")
    changed = text.replace('trains = "', 'trains = "Updated: ').replace(
        'presenter = "', 'presenter = "Updated '
    )
    path = tmp_path / "catalog.toml"
    path.write_text(changed, encoding="utf-8")
    with session_scope(factory) as session:
        report = apply_seed(session, load_seed(path))
        assert (report.equipment_updated, report.equipment_kept) == (11, 1)
        assert report.tutorials_kept == 2 and report.tutorials_updated == len(load_seed().tutorials) - 2
        assert any("8q9LVgN2RD4: removed" in line for line in report.kept_details)
        leg_press = repo.get_equipment(session, "leg_press")
        assert leg_press is not None and leg_press.description == "Admin's own words.\nSecond line."
        treadmill = repo.get_equipment(session, "treadmill")
        assert treadmill is not None and treadmill.description.startswith("Updated: ")
        bench_video = repo.get_tutorial(session, "7GtUE1MAniY")
        assert bench_video is not None and bench_video.title == "Admin's better title"
        assert bench_video.presenter is not None and not bench_video.presenter.startswith("Updated")
        removed = repo.get_tutorial(session, "8q9LVgN2RD4")
        assert removed is not None and removed.removed_at is not None
        assert "8q9LVgN2RD4" not in {t.youtube_id for t in repo.tutorials_for(session, "plyo_box", limit=10)}
        untouched = repo.get_tutorial(session, "vN8xskk-7G8")
        assert untouched is not None and untouched.presenter == "Updated Heather Robertson"
        assert repo.get_tutorial(session, "AAAAAAAAAAA") is not None
    with session_scope(factory) as session:  # and once more: nothing left to change
        again = apply_seed(session, load_seed(path))
        assert again.equipment_updated == again.tutorials_updated == again.tutorials_inserted == 0


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[equipment]]\nslug = "Leg Press"\nname = "x"\ntrains = "a"\nsetup = "b"\n', "slug must be"),
        ('[[equipment]]\nslug = "not_equipment"\nname = "x"\ntrains = "a"\nsetup = "b"\n', "slug must be"),
        ('[[equipment]]\nslug = "a_b"\nname = "x"\ntrains = "a"\n', "`setup` is required"),
        (
            '[[equipment]]\nslug = "a_b"\nname = "x"\ntrains = "a"\nsetup = "b"\n'
            '[[equipment]]\nslug = "a_b"\nname = "y"\ntrains = "a"\nsetup = "b"\n',
            "duplicate slug",
        ),
        ('[[tutorials]]\nequipment = "a_b"\nyoutube_id = "short"\ntitle = "t"\n', "11-character"),
        (
            '[[tutorials]]\nequipment = "nope"\nyoutube_id = "AAAAAAAAAAA"\ntitle = "t"\n',
            "not an [[equipment]]",
        ),
        ('[[equipment]]\nslug = "a_b"\nname = "x"\ntrains = "a"\nsetup = "b"\norder = "1"\n', "integer"),
        ("this is not toml", "catalog.toml"),
    ],
)
def test_malformed_seed_is_refused_with_its_entry_named(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(SeedError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_seed(path)
