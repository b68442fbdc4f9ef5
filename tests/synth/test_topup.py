"""The measured top-up rule (synth.topup)."""

from __future__ import annotations

import pytest

from synth.topup import MAX_SYNTHETIC_PER_CLASS, SYNTHETIC_PER_REAL, THIN_BELOW, synthetic_count, topup_count


@pytest.mark.parametrize(
    ("n_real", "expected"),
    [
        (0, 0),  # no real photo: synthetic alone does not make a class
        (1, SYNTHETIC_PER_REAL),
        (9, 9 * SYNTHETIC_PER_REAL),  # hyperextension bench's training photos
        (THIN_BELOW - 1, min((THIN_BELOW - 1) * SYNTHETIC_PER_REAL, MAX_SYNTHETIC_PER_CLASS)),
        (THIN_BELOW, 0),  # not thin: no top-up
        (400, 0),
    ],
)
def test_rule(n_real: int, expected: int) -> None:
    assert topup_count(n_real) == expected
    assert synthetic_count(n_real) == expected


def test_cap_and_parameters() -> None:
    assert topup_count(20, ratio=100, thin_below=50, max_per_class=150) == 150
    assert topup_count(10, ratio=0.5) == 5
    assert topup_count(10, ratio=0) == 0
    assert all(topup_count(n) <= MAX_SYNTHETIC_PER_CLASS for n in range(0, 500))


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        topup_count(-1)
    with pytest.raises(ValueError):
        topup_count(3, ratio=-1)
