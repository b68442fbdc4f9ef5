"""Registry: numbered immutable versions, atomic creation, champion pointer, history and rollback target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.registry import CHAMPION_FILE, Registry, RegistryError


def _write(labels: list[str]):
    def write(tmp: Path) -> None:
        (tmp / "labels.json").write_text(json.dumps(labels))
        (tmp / "metrics.json").write_text(json.dumps({"top1": 0.5}))
        (tmp / "model_card.md").write_text("# card\n")

    return write


def test_round_trip_numbering_and_promotion(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    assert reg.versions() == [] and reg.champion() is None and reg.previous_champion() is None
    v1 = reg.create_version(_write(["a", "b"]))
    v2 = reg.create_version(_write(["a", "b", "c"]))
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.versions() == ["v0001", "v0002"]
    assert reg.labels(v2) == ["a", "b", "c"]
    assert reg.read_json(v1, "metrics.json") == {"top1": 0.5}
    reg.promote(v1)
    assert reg.champion() == "v0001" and reg.previous_champion() is None
    reg.promote(v2, reason="better")
    assert reg.champion() == "v0002" and reg.previous_champion() == "v0001"
    history = reg.history()
    assert [h["version"] for h in history] == ["v0001", "v0002"]
    assert history[1]["previous"] == "v0001" and history[1]["reason"] == "better"
    # A fresh Registry object sees the same state (it is all on disk).
    assert Registry(tmp_path / "models").champion() == "v0002"
    assert (tmp_path / "models" / CHAMPION_FILE).read_text() == "v0002\n"


def test_failed_write_leaves_nothing_and_keeps_champion(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.promote(reg.create_version(_write(["a"])))

    def crash(tmp: Path) -> None:
        (tmp / "labels.json").write_text("[]")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        reg.create_version(crash)
    with pytest.raises(RegistryError):
        reg.create_version(lambda tmp: None)  # incomplete version is refused
    assert reg.versions() == ["v0001"] and reg.champion() == "v0001"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".incoming")] == []


def test_incomplete_or_hidden_folders_are_not_versions(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    (tmp_path / "v0007").mkdir()  # half-written by hand: no metrics/labels
    (tmp_path / ".incoming-x").mkdir()
    assert reg.versions() == []
    assert reg.next_version() == "v0008"  # numbers are never reused
    (tmp_path / CHAMPION_FILE).write_text("v0007\n")
    assert reg.champion() is None


@pytest.mark.parametrize("name", ["../etc", "v1", "latest", "v0001/../v0002"])
def test_invalid_version_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(RegistryError):
        Registry(tmp_path).promote(name)


def test_promote_unknown_version_keeps_pointer(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.promote(reg.create_version(_write(["a"])))
    with pytest.raises(RegistryError):
        reg.promote("v0009")
    assert reg.champion() == "v0001"
