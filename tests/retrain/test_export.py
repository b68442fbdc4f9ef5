"""Export of corrections into the feedback set: validated labels, content-hash names, nothing overwritten."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from classifier.dataset import OTHER_LABEL
from classifier.retrain import (
    FeedbackItem,
    active_classes,
    class_folder,
    export_feedback,
    forget_feedback,
    is_holdout,
    prune_feedback,
    scan_feedback,
)
from tests.retrain.conftest import photo_bytes, store_photo

KNOWN = {"leg_press", "power_rack", "not_equipment"}


def _item(tmp_path: Path, cid: int, label: str, colour: tuple[int, int, int]) -> FeedbackItem:
    sha, path = store_photo(tmp_path, photo_bytes(colour))
    return FeedbackItem(cid, label, sha, str(path))


@pytest.mark.parametrize(
    "label", ["../etc", "..", "a/b", "/abs", "Leg_Press", "", "leg press", "x" * 41, "__other__"]
)
def test_labels_that_could_be_paths_are_rejected(label):
    with pytest.raises(ValueError):
        class_folder(label)


def test_export_names_by_hash_and_validates(tmp_path):
    feedback = tmp_path / "feedback"
    good = _item(tmp_path, 1, "leg_press", (10, 20, 30))
    other = _item(tmp_path, 2, "not_equipment", (40, 50, 60))
    traversal = FeedbackItem(3, "../../evil", good.image_sha256, good.image_path)
    unknown = _item(tmp_path, 4, "smith_machine", (70, 80, 90))
    report = export_feedback([good, other, traversal, unknown], feedback, KNOWN, tmp_path / "photos")
    assert (feedback / "leg_press" / f"{good.image_sha256}.jpg").read_bytes() == Path(
        good.image_path
    ).read_bytes()
    assert (feedback / OTHER_LABEL / f"{other.image_sha256}.jpg").is_file()
    assert set(report.invalid) == {3, 4} and report.included == [1, 2]
    assert not (tmp_path / "evil").exists() and not any(tmp_path.glob("**/evil*"))


def test_nothing_is_overwritten_and_conflicts_are_skipped(tmp_path):
    feedback = tmp_path / "feedback"
    item = _item(tmp_path, 1, "leg_press", (1, 2, 3))
    target = feedback / "leg_press" / f"{item.image_sha256}.jpg"
    export_feedback([item], feedback, KNOWN)
    before = target.stat().st_mtime_ns
    again = export_feedback([item], feedback, KNOWN)
    assert again.exported == [] and again.present == [target] and target.stat().st_mtime_ns == before
    # the same image relabelled by someone else: never a second copy under another class
    conflict = FeedbackItem(2, "power_rack", item.image_sha256, item.image_path)
    report = export_feedback([conflict], feedback, KNOWN)
    assert 2 in report.conflicts and not (feedback / "power_rack").exists()


def test_tampered_or_missing_photos_are_not_exported(tmp_path):
    feedback = tmp_path / "feedback"
    item = _item(tmp_path, 1, "leg_press", (5, 5, 5))
    Path(item.image_path).write_bytes(photo_bytes((6, 6, 6)))  # bytes no longer match the recorded hash
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(photo_bytes((7, 7, 7)))
    sneaky = FeedbackItem(2, "leg_press", hashlib.sha256(outside.read_bytes()).hexdigest(), str(outside))
    gone = FeedbackItem(3, "leg_press", "a" * 64, str(tmp_path / "photos" / ("a" * 64 + ".jpg")))
    heic = FeedbackItem(4, "leg_press", "b" * 64, str(tmp_path / "photos" / ("b" * 64 + ".heic")))
    report = export_feedback([item, sneaky, gone, heic], feedback, KNOWN, tmp_path / "photos")
    assert set(report.missing) == {1, 3} and set(report.invalid) == {2, 4}
    assert report.exported == []


def test_holdout_is_deterministic_by_hash_and_kept_out_of_training(tmp_path):
    feedback = tmp_path / "feedback"
    items = [_item(tmp_path, i, "leg_press", (6 * i, 255 - 6 * i, (37 * i) % 256)) for i in range(1, 40)]
    export_feedback(items, feedback, KNOWN)
    train, held = scan_feedback(feedback, 20)
    assert {p.path for p in train}.isdisjoint({p.path for p in held})
    assert len(train) + len(held) == 39 and 0 < len(held) < 20
    assert all(is_holdout(p.path.stem, 20) for p in held)
    assert scan_feedback(feedback, 20) == (train, held)  # same split every run
    assert scan_feedback(feedback, 0)[1] == []


def test_prune_and_forget(tmp_path):
    feedback = tmp_path / "feedback"
    items = [_item(tmp_path, i, "leg_press", (40 * i, 9, 200 - 30 * i)) for i in range(1, 6)]
    export_feedback(items, feedback, KNOWN)
    supported = {(i.image_sha256, "leg_press") for i in items[1:]}
    assert [p.stem for p in prune_feedback(feedback, supported)] == [items[0].image_sha256]
    # a database that supports almost nothing (wrong DATABASE_URL?) prunes nothing
    assert prune_feedback(feedback, set()) == []
    assert forget_feedback(tmp_path, [items[1].image_sha256, "../../x"]) == 1
    assert len(scan_feedback(feedback, 0)[0]) == 3


def test_new_class_needs_enough_images():
    from classifier.dataset import LabelledImage

    fb = [LabelledImage(Path(f"/f/new_thing/{i}.jpg"), "new_thing") for i in range(3)]
    fb += [LabelledImage(Path("/f/unknown/1.jpg"), "not_in_catalog")] * 9
    classes, waiting = active_classes(["a", "b"], fb, {"a", "b", "new_thing"}, 4)
    assert classes == ["a", "b"] and waiting == {"new_thing": 3}
    classes, waiting = active_classes(["a", "b"], [*fb, fb[0]], {"a", "b", "new_thing"}, 4)
    assert classes == ["a", "b", "new_thing"] and waiting == {}


def test_photos_stored_without_a_known_extension_are_exported_by_their_content(tmp_path):
    """The bot stores formats it does not sniff (e.g. PPM, sent as a file) as <sha256>.img."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(buffer, format="PPM")
    data = buffer.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    stored = tmp_path / "photos" / f"{sha}.img"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(data)
    junk = tmp_path / "photos" / ("c" * 64 + ".img")
    junk.write_bytes(b"not an image at all")
    items = [
        FeedbackItem(1, "leg_press", sha, str(stored)),
        FeedbackItem(2, "leg_press", "c" * 64, str(junk)),
    ]
    report = export_feedback(items, tmp_path / "feedback", KNOWN, tmp_path / "photos")
    assert (tmp_path / "feedback" / "leg_press" / f"{sha}.ppm").read_bytes() == data
    assert report.included == [1] and "not used for training" in report.invalid[2]
