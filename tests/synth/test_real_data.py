"""On the shared product shots and photos: the thin classes' cut-outs work, their real photos are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth.alpha import cut_out, mask_report
from synth.generate import list_images, open_image

THIN = ("hyperextension_bench", "plyo_box")


@pytest.mark.real_data
@pytest.mark.slow
@pytest.mark.parametrize("label", THIN)
def test_thin_class_product_shots_cut_out_and_real_photos_are_refused(shared_data: Path, label: str) -> None:
    shots = list_images(shared_data / "white_bg" / label)
    assert shots, label
    for path in shots:
        image = open_image(path)
        assert mask_report(image).reliable, path.name
        cut = cut_out(image)
        assert cut.mode == "RGBA" and cut.width <= image.width and cut.height <= image.height
        assert cut.getchannel("A").getextrema() == (0, 255), "a real cut-out: transparent and opaque parts"
    photos = list_images(shared_data / "real" / label)
    assert photos
    assert not [p.name for p in photos if mask_report(open_image(p)).reliable]
