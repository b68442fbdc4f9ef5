"""Datasets and the bottleneck cache: unreadable files are reported by name and skipped; cache hits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classifier.dataset import extract_bottleneck_features, scan_folder_dataset, split_holdout
from tests.classifier.helpers import coloured_image, encode


def test_unreadable_files_are_reported_and_skipped(tiny_env, tmp_path: Path, caplog) -> None:
    from classifier.model import load_backbone

    root = tmp_path / "ds"
    (root / "red_thing").mkdir(parents=True)
    good = root / "red_thing" / "a.png"
    good.write_bytes(encode(coloured_image("red_thing", 1)))
    broken = root / "red_thing" / "b.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    rgba = root / "red_thing" / "c.webp"
    rgba.write_bytes(encode(Image.new("RGBA", (40, 40), (200, 0, 0, 128)), "WEBP"))
    (root / "red_thing" / "notes.txt").write_text("not an image extension: ignored")
    items = scan_folder_dataset(root)
    assert [it.path.name for it in items] == ["a.png", "b.jpg", "c.webp"]

    backbone = load_backbone(str(tiny_env.weights), 32)
    seen: list[Path] = []
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        r = extract_bottleneck_features(
            [it.path for it in items], backbone, cache, progress=False, on_failure=lambda p, _: seen.append(p)
        )
    assert r.index == [0, 2] and r.features.shape == (2, 1, 1, 512) and r.features.dtype == np.float16
    assert list(r.failed) == [str(broken)] and seen == [broken]
    assert "b.jpg" in caplog.text
    # Second run: served from the cache keyed by content hash (same values, nothing recomputed).
    calls: list[int] = []
    original = backbone.features

    def counting(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return original(x)

    backbone.features = counting  # type: ignore[method-assign]
    again = extract_bottleneck_features([it.path for it in items], backbone, cache, progress=False)
    assert calls == [] and np.array_equal(again.features, r.features)
    # A renamed copy of the same bytes is a cache hit too (content hash, not file name).
    copy = tmp_path / "renamed.png"
    copy.write_bytes(good.read_bytes())
    extract_bottleneck_features([copy], backbone, cache, progress=False)
    assert calls == []


def test_split_holdout_is_deterministic(tiny_env) -> None:
    items = scan_folder_dataset(tiny_env.dataset)
    kept, held = split_holdout(items, 0.3, salt="x")
    assert split_holdout(items, 0.3, salt="x") == (kept, held)
    assert len(kept) + len(held) == len(items) and 0 < len(held) < len(items)
    with pytest.raises(ValueError):
        from classifier.dataset import view_augment

        view_augment("sideways")
