"""generate(): folder-per-class JPEGs, manifest, determinism, thin classes, unreadable files, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from synth.__main__ import main
from synth.generate import counts_per_foreground, generate, read_manifest
from tests.synth.helpers import product_shot, textured_photo, write_inputs


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_sizes_modes_and_manifest(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    report = generate(fg, bg, tmp_path / "out", seed=3, per_foreground=2, size=64, progress=False)
    out = tmp_path / "out"
    assert report.total_images == 6
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "beta", "manifest.jsonl"]
    jpgs = sorted(out.rglob("*.jpg"))
    assert len(jpgs) == 6
    for path in jpgs:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 64)
    records = read_manifest(out)
    assert len(records) == 6
    assert {r["file"] for r in records} == {str(p.relative_to(out)) for p in jpgs}
    first = records[0]
    assert first["label"] == "alpha" and str(first["file"]).startswith("alpha/")
    assert first["foreground"] in ("alpha/a1.jpg", "alpha/a2.png")
    assert first["foreground_kind"] == "product_shot"
    assert first["background"] in ("gym1.jpg", "gym2.png")
    assert first["seed"] == 3 and first["size"] == 64
    for key in (
        "object_scale",
        "object_x",
        "object_y",
        "crop_left",
        "crop_side",
        "brightness",
        "contrast",
        "saturation",
        "shadow",
        "shadow_opacity",
        "blur_radius",
        "flip_object",
        "index",
    ):
        assert key in first, key
    assert {r["foreground"] for r in records if r["label"] == "beta"} == {"beta/b1.png"}
    assert [c.images for c in report.classes] == [4, 2]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    a = generate(fg, bg, tmp_path / "a", seed=11, per_foreground=2, size=48, progress=False).out_dir
    b = generate(fg, bg, tmp_path / "b", seed=11, per_foreground=2, size=48, progress=False).out_dir
    c = generate(fg, bg, tmp_path / "c", seed=12, per_foreground=2, size=48, progress=False).out_dir
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_rerun_replaces_previous_images_but_not_other_files(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    out = tmp_path / "out"
    generate(fg, bg, out, seed=1, per_foreground=3, size=40, progress=False)
    (out / "notes.txt").write_text("mine")
    generate(fg, bg, out, seed=1, per_foreground=1, size=40, progress=False)
    assert len(list(out.rglob("*.jpg"))) == 3
    assert (out / "notes.txt").read_text() == "mine"


def test_per_class_spreads_over_foregrounds_and_classes_filter(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    report = generate(fg, bg, tmp_path / "o", seed=0, per_class=5, size=40, classes=["alpha"], progress=False)
    assert [(c.label, c.images) for c in report.classes] == [("alpha", 5)]
    fgs = [r["foreground"] for r in read_manifest(tmp_path / "o")]
    assert sorted(fgs) == ["alpha/a1.jpg"] * 3 + ["alpha/a2.png"] * 2
    assert counts_per_foreground(3, None, 7) == [3, 2, 2]
    assert counts_per_foreground(2, 4, None) == [4, 4]
    assert counts_per_foreground(0, None, 7) == []
    with pytest.raises(ValueError):
        counts_per_foreground(2, 1, 1)
    with pytest.raises(ValueError):
        counts_per_foreground(2, -1, None)


def test_unreadable_foreground_is_skipped_and_named(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    (fg / "alpha" / "broken.jpg").write_bytes(b"not an image")
    report = generate(fg, bg, tmp_path / "o", seed=0, per_foreground=1, size=40, progress=False)
    alpha = report.classes[0]
    assert alpha.unusable == ["broken.jpg"] and alpha.images == 2
    assert "broken.jpg" in alpha.summary(5, None)


def test_thin_class_cuts_objects_only_from_real_photos_with_a_reliable_mask(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    real = tmp_path / "real" / "beta"
    real.mkdir(parents=True)
    product_shot((90, 90), (20, 20, 160)).save(real / "catalogue_like.jpg", quality=95)
    textured_photo((90, 90), 5).save(real / "in_the_gym.jpg", quality=95)
    report = generate(
        fg, bg, tmp_path / "o", seed=0, per_foreground=1, size=40, real_dir=tmp_path / "real", progress=False
    )
    beta = report.classes[1]
    assert beta.real_scanned == 2 and beta.real_accepted == ["catalogue_like.jpg"]
    kinds = {
        r["foreground"]: r["foreground_kind"] for r in read_manifest(tmp_path / "o") if r["label"] == "beta"
    }
    assert kinds == {"beta/b1.png": "product_shot", "real:beta/catalogue_like.jpg": "real_photo"}
    (real / "catalogue_like.jpg").unlink()
    report = generate(
        fg, bg, tmp_path / "o2", seed=0, per_foreground=1, size=40, real_dir=tmp_path / "real", progress=False
    )
    text = report.classes[1].summary(5, tmp_path / "real")
    assert "none of the 1 real photos has a reliable mask" in text and "cannot cut objects" in text


def test_missing_inputs_raise(tmp_path: Path) -> None:
    fg, bg = write_inputs(tmp_path)
    with pytest.raises(FileNotFoundError):
        generate(tmp_path / "nope", bg, tmp_path / "o", seed=0, per_foreground=1, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable background"):
        generate(fg, empty, tmp_path / "o", seed=0, per_foreground=1, progress=False)


def test_cli_generate_and_preview_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fg, bg = write_inputs(tmp_path)
    out = tmp_path / "synthetic"
    argv = [
        "generate",
        "--foregrounds",
        str(fg),
        "--backgrounds",
        str(bg),
        "--per-foreground",
        "2",
        "--out",
        str(out),
        "--seed",
        "5",
        "--size",
        "48",
        "--quiet",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "alpha: 4 images from 2 product shots" in text
    assert "WARNING thin class" in text and "--real" in text  # beta has 1 product shot
    assert "wrote 6 images" in text
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6 and json.loads(lines[0])["seed"] == 5

    sheet = tmp_path / "sheet.png"
    assert main(["preview", "--out", str(sheet), "--from", str(out), "--per-class", "2"]) == 0
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width >= 2 * 64
    sheet2 = tmp_path / "sheet2.png"
    argv = [
        "preview",
        "--out",
        str(sheet2),
        "--foregrounds",
        str(fg),
        "--backgrounds",
        str(bg),
        "--per-class",
        "2",
        "--size",
        "48",
    ]
    assert main(argv) == 0
    with Image.open(sheet2) as im:
        assert im.size[1] >= 2 * 100  # two class rows


def test_cli_reports_bad_input_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "generate",
        "--foregrounds",
        str(tmp_path / "x"),
        "--backgrounds",
        str(tmp_path),
        "--per-class",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--seed",
        "0",
    ]
    assert main(argv) == 2
    assert "error: not a folder" in capsys.readouterr().err


def test_same_bytes_across_processes_and_hash_seeds(tmp_path: Path) -> None:
    """Two separate interpreter runs (different PYTHONHASHSEED) of the CLI write identical files."""
    import os
    import subprocess
    import sys

    fg, bg = write_inputs(tmp_path)
    root = Path(__file__).resolve().parents[2]
    outs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"run{hash_seed}"
        argv = [
            sys.executable,
            "-m",
            "synth",
            "generate",
            "--foregrounds",
            str(fg),
            "--backgrounds",
            str(bg),
            "--per-class",
            "3",
            "--out",
            str(out),
            "--seed",
            "9",
            "--size",
            "40",
            "--quiet",
        ]
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True, timeout=120)
        outs.append(_digest(out))
    assert outs[0] == outs[1] and len(outs[0]) == 7  # 6 images + manifest
