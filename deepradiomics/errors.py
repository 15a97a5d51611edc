"""Exception hierarchy.

Every error raised on purpose by deepradiomics derives from :class:`DeepRadiomicsError`, so a caller
can catch one type. Messages name the file, the key or the value at fault and what to do about it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class DeepRadiomicsError(Exception):
    """Base class of all deepradiomics errors."""


class ParamsError(DeepRadiomicsError, ValueError):
    """A parameter file or settings mapping is invalid (unknown class or key, bad value)."""


class CaseError(DeepRadiomicsError, ValueError):
    """A case cannot be used: missing or unreadable file, geometry mismatch, empty mask, ..."""


class FeatureError(DeepRadiomicsError, RuntimeError):
    """A feature class failed to compute its features on a valid case."""


class ModelError(DeepRadiomicsError, RuntimeError):
    """A model bundle is missing, malformed or fails its sha256 check."""


class PluginError(DeepRadiomicsError, RuntimeError):
    """A plugin (entry point) cannot be loaded or does not follow the FeatureClass contract."""


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and transpositions."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def did_you_mean(value: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close.

    Closeness is the case-insensitive edit distance counting a swap of two neighbours as one edit
    (``glmc`` -> ``glcm``), accepted up to a third of the word's length.

    Examples
    --------
    >>> did_you_mean("glmc", ["glcm", "gldm"])
    " Did you mean 'glcm'?"
    """
    candidates = list(candidates)
    if not candidates:
        return ""
    scored = sorted(
        candidates,
        key=lambda c: (_edit_distance(value.lower(), c.lower()), -difflib.SequenceMatcher(None, value, c).ratio()),
    )
    best = scored[0]
    if _edit_distance(value.lower(), best.lower()) <= max(1, len(value) // 3):
        return f" Did you mean '{best}'?"
    return ""
