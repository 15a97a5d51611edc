"""Sums over the few non-zero cells of many small matrices, in numpy's own order of addition.

PyRadiomics reduces dense arrays such as its GLCM, shape (voxels, Ng, Ng, angles), over the grey-level
axes. With more than one angle the reduced axes are not the innermost one, and numpy then adds the
elements of each output in index order, one after the other (checked on numpy 2.x; the engine's tests
compare every map with PyRadiomics'): ``sum(P, (1, 2))`` is ``P[0, 0] + P[0, 1] + ...`` in row-major order.
Adding the zero cells changes nothing, so a sum over a matrix equals the sequential sum of its non-zero
cells taken in the same order. :class:`OrderedSum` computes such sequential sums for many groups at once,
vectorised over the groups: the k-th entries of all groups are added in one step, k = 0, 1, ... This keeps
the rounding of PyRadiomics' sums exactly, which matters where PyRadiomics divides by or takes the root of
a difference that rounding leaves near zero (GLCM ``Correlation``, ``Imc2``, ``MCC``).
"""

from __future__ import annotations

import numpy as np


class OrderedSum:
    """Sequential sums of values grouped by key, each group's entries added in the order they appear.

    Parameters
    ----------
    keys
        Integer key of each entry (its group); the entries of a group, in array order, are the order of
        addition.
    presorted
        The keys are already sorted (skips a stable sort).
    order
        Instead, the order in which to take the entries (``keys[order]`` sorted): the entries of each group
        are added in this order.

    Attributes
    ----------
    keys : numpy.ndarray
        The distinct keys, ascending: the groups, in the order of the sums returned.
    """

    def __init__(self, keys: np.ndarray, presorted: bool = False, order: np.ndarray | None = None) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        self.size = len(keys)
        if order is not None:
            ordered = keys[order]
        elif presorted:
            order = None
            ordered = keys
        else:
            order = np.argsort(keys, kind="stable")
            ordered = keys[order]
        ids, starts = run_ids(ordered)
        self.keys = ordered[starts]
        self.count = len(starts)
        rank = np.arange(self.size) - starts[ids]
        self.depth = int(rank.max()) + 1 if self.size else 0
        by_rank = np.argsort(rank.astype(np.int16 if self.depth < 32767 else np.int64), kind="stable")
        self.entries = by_rank if order is None else order[by_rank]
        self.targets = ids[by_rank]
        self.bounds = np.searchsorted(rank[by_rank], np.arange(self.depth + 1))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """The sum of ``values`` (one per entry) for each group (:attr:`keys` order), added in entry order."""
        values = np.asarray(values)
        out = np.zeros(self.count, dtype=np.result_type(values, np.float64))
        ordered = values[self.entries]
        for k in range(self.depth):
            start, stop = self.bounds[k], self.bounds[k + 1]
            out[self.targets[start:stop]] += ordered[start:stop]  # one entry per group at each step
        return out


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Indices where a sorted key array starts a new run of equal keys."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1))


def run_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a sorted key array: the run index of each entry and the first index of each run."""
    starts = run_starts(keys)
    ids = np.zeros(len(keys), dtype=np.int64)
    if len(starts) > 1:
        ids[starts[1:]] = 1
        ids = np.cumsum(ids)
    return ids, starts
