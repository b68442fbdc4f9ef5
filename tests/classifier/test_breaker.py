"""Regression tests from the breaker review: user photos never reach Ghostscript; the champion pointer is
readable by everyone."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from PIL import EpsImagePlugin, Image

from classifier.preprocess import decode_image
from classifier.registry import CHAMPION_FILE, REQUIRED_FILES, Registry
from classifier.types import ImageDecodeError

EPS = (
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n"
    b"newpath 0 0 moveto 10 10 lineto stroke\nshowpage\n%%EOF\n"
)


def test_an_eps_file_sent_as_a_photo_is_refused_without_running_ghostscript(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[object] = []

    def fake_ghostscript(*args: object, **kwargs: object) -> None:
        ran.append(args)
        raise AssertionError("Ghostscript ran on user input")

    # Pretend Ghostscript is installed, as on many servers.
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fake_ghostscript)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "gs")
    monkeypatch.setattr(EpsImagePlugin, "gs_windows_binary", False)
    with pytest.raises(ImageDecodeError, match="not an image format"):
        decode_image(EPS)
    assert ran == []


def test_phone_multi_picture_jpegs_still_decode() -> None:
    frames = [Image.new("RGB", (40, 30), (200, 20, 20)), Image.new("RGB", (40, 30), (20, 20, 200))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    assert decode_image(buffer.getvalue()).size == (40, 30)


def test_the_champion_pointer_is_readable_by_everyone_like_the_versions(tmp_path: Path) -> None:
    """mkstemp creates 0600 files: after a promotion (or /rollback) by a maintainer, a bot running as another
    user could no longer read CHAMPION and would refuse to start ("no champion model")."""
    registry = Registry(tmp_path / "models")

    def write(folder: Path) -> None:
        for name in REQUIRED_FILES:
            (folder / name).write_text("[]" if name.endswith(".json") else "card", encoding="utf-8")

    version = registry.create_version(write)
    registry.promote(version, reason="test")
    mode = stat.S_IMODE((tmp_path / "models" / CHAMPION_FILE).stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)
    assert registry.champion() == version
