"""Regression tests from the breaker review: user photos never reach Ghostscript."""

from __future__ import annotations

import io

import pytest
from PIL import EpsImagePlugin, Image

from classifier.preprocess import decode_image
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
