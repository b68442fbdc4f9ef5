"""How many synthetic images to add to a class when retraining: the top-up rule measured in issue 5.

Measured (docs/experiments.md, "Synthetic photos", experiment 2) on the real photos of ../shared/data with
grouped 4-fold cross-validation of the two thin classes (9-16 real training photos each) and the fixed
validation split of the ten others:

* thin classes gain from synthetic top-up, monotonically up to the largest ratio tried: plyo box recall
  0.53 -> 0.75 at 8 synthetic images per real one; hyperextension bench, whose two product shots look little
  like its photos, barely moves (0.15 -> 0.19);
* classes with 53-67 real training photos (bench press, power rack) do not gain from their own top-up and
  it costs the other classes 0.6-1.5 points, so only thin classes are topped up (thin-only top-up costs the
  others about half a point with the orig view alone, nothing with flip views + test-time augmentation);
* synthetic images alone are not evidence enough to create a class (experiment 1: 57% balanced accuracy on
  in-context photos of the five original classes), so a class with no real photo gets none.
"""

from __future__ import annotations

#: Synthetic images per real training photo for a thin class (best of 0.5, 1, 2, 4, 8 measured).
SYNTHETIC_PER_REAL = 8
#: A class is "thin" below this many real training photos (measured: 9-16 gain, 53-67 do not).
THIN_BELOW = 30
#: Never more synthetic images than this per class (the largest pool measured was 200).
MAX_SYNTHETIC_PER_CLASS = 200


def topup_count(
    n_real: int,
    ratio: float = SYNTHETIC_PER_REAL,
    thin_below: int = THIN_BELOW,
    max_per_class: int = MAX_SYNTHETIC_PER_CLASS,
) -> int:
    """Number of synthetic images to add to a class that has `n_real` real training photos.

    n_real: real (and user-corrected) training photos of the class, >= 0.
    Returns 0 for a class with no real photo or with at least `thin_below` of them, else
    min(round(ratio * n_real), max_per_class). Raises ValueError for a negative count or ratio.
    """
    if n_real < 0 or ratio < 0:
        raise ValueError(f"n_real and ratio must be >= 0, got {n_real}, {ratio}")
    if n_real == 0 or n_real >= thin_below:
        return 0
    return min(round(ratio * n_real), max_per_class)


def synthetic_count(n_real: int) -> int:
    """Alias of `topup_count` with the measured defaults."""
    return topup_count(n_real)
