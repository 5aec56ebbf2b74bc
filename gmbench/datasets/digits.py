"""``digits``: scikit-learn's 8x8 handwritten digits, the embedded default (no download)."""

from __future__ import annotations

import numpy as np

from gmbench.datasets.base import Dataset, DatasetInfo, Split

__all__ = ["make_digits"]

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def make_digits() -> Dataset:
    """1797 images ``(1, 8, 8)`` with values 0..16 (17 levels), 10 classes; a fixed seeded,
    class-stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    info = DatasetInfo(name="digits", kind="image", shape=(1, 8, 8), levels=17, num_classes=10)
    return Dataset(info=info, train=Split(x_tr, y_tr), test=Split(x_te, y_te),
                   source="scikit-learn load_digits",
                   description="scikit-learn 8x8 digits, 17 levels, 10 classes (embedded)")
