"""Regression tests from the breaker review: odd `generate` arguments are refused before OUT is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.__main__ import main
from synth.generate import generate
from tests.synth.helpers import write_inputs


@pytest.mark.parametrize("classes", [["../escape"], ["alpha", "../../escape"], ["nosuchclass"], ["."]])
def test_classes_must_be_class_folders(tmp_path: Path, classes: list[str]) -> None:
    fg, bg = write_inputs(tmp_path)
    out = tmp_path / "work" / "out"
    with pytest.raises(ValueError, match="unknown class"):
        generate(fg, bg, out, seed=0, per_foreground=1, size=40, classes=classes, progress=False)
    assert not (tmp_path / "work" / "escape").exists() and not (tmp_path / "escape").exists()
    assert not out.exists()


def test_a_class_only_in_real_photos_is_allowed(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    real = tmp_path / "real"
    (real / "gamma").mkdir(parents=True)
    report = generate(
        fg, bg, tmp_path / "out", seed=0, per_foreground=1, size=40, classes=["gamma"], real_dir=real
    )
    assert [r.label for r in report.classes] == ["gamma"]


@pytest.mark.parametrize("size", [20000, 0])
def test_cli_refuses_output_sizes_out_of_range_in_one_line(
    tmp_path: Path, size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    fg, bg = write_inputs(tmp_path)
    out = tmp_path / "out"
    args = ["generate", "--foregrounds", str(fg), "--backgrounds", str(bg), "--per-foreground", "1"]
    assert main([*args, "--out", str(out), "--seed", "0", "--size", str(size), "--quiet"]) == 2
    assert "output size must be 32-4096 px" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("damage", ['{"bad json\n', '{"label": "alpha"}\n', '{"file": 7}\n', "[1, 2]\n"])
def test_a_damaged_manifest_in_out_is_named_and_nothing_is_deleted(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fg, bg = write_inputs(tmp_path)
    out = tmp_path / "out"
    generate(fg, bg, out, seed=0, per_foreground=1, size=40, progress=False)
    images = sorted(out.rglob("*.jpg"))
    manifest = out / "manifest.jsonl"
    manifest.write_text(manifest.read_text() + damage)
    args = ["generate", "--foregrounds", str(fg), "--backgrounds", str(bg), "--per-foreground", "1"]
    assert main([*args, "--out", str(out), "--seed", "0", "--size", "40", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "manifest.jsonl line" in err and "Traceback" not in err
    assert sorted(out.rglob("*.jpg")) == images and manifest.exists()


def test_a_foregrounds_folder_without_class_folders_is_an_error_not_zero_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """E.g. --foregrounds pointing at one class's folder: it used to write 0 images and exit 0."""
    fg, bg = write_inputs(tmp_path)
    one_class = fg / "alpha"
    out = tmp_path / "out"
    args = ["generate", "--foregrounds", str(one_class), "--backgrounds", str(bg), "--per-foreground", "1"]
    assert main([*args, "--out", str(out), "--seed", "0", "--size", "40", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no class folders" in err and "pass its parent folder" in err
    assert not out.exists()
