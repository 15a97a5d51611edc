"""Synthetic tables for the study tests (mechanics); the real-data test lives in test_real_lgg.py."""

from __future__ import annotations

import numpy as np
import pandas as pd


def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    y = np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(int)
    rng.shuffle(y)
    return y


def noise_table(n: int = 60, p: int = 300, seed: int = 0, feature_class: str = "firstorder"):
    """``p`` columns of pure Gaussian noise and labels independent of them."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        rng.normal(size=(n, p)),
        columns=[f"original_{feature_class}_Noise{i:03d}" for i in range(p)],
        index=pd.Index([f"case{i:03d}" for i in range(n)], name="ID"),
    )
    return X, balanced_labels(n, rng)


def count_table(n: int = 60, k: int = 512, seed: int = 0, planted=None, shift: float = 25.0):
    """Codeword counts shaped like a VQ histogram: most codewords never used, some rarely, ~40 common.

    ``planted``: ``{codeword index: +1 | -1}`` adds ``shift`` counts (Poisson) in the positive (+1) or
    negative (-1) class.
    """
    rng = np.random.default_rng(seed)
    y = balanced_labels(n, rng)
    counts = np.zeros((n, k), dtype=int)
    common = np.arange(0, 80, 2)  # 40 codewords used by everyone
    counts[:, common] = rng.poisson(30, size=(n, len(common)))
    rare = np.arange(200, 220)  # used by 1-2 cases each
    for j in rare:
        counts[rng.choice(n, 2, replace=False), j] = rng.integers(1, 5, 2)
    for j, direction in (planted or {}).items():
        cls = 1 if direction > 0 else 0
        counts[y == cls, j] += rng.poisson(shift, size=int((y == cls).sum()))
    columns = [f"original_vqhist_Codeword{i:03d}" for i in range(k)]
    index = pd.Index([f"case{i:03d}" for i in range(n)], name="ID")
    return pd.DataFrame(counts, columns=columns, index=index), y
