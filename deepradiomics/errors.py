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


def did_you_mean(value: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close.

    Examples
    --------
    >>> did_you_mean("glmc", ["glcm", "glrlm"])
    " Did you mean 'glcm'?"
    """
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    if value.lower() in lowered:
        return f" Did you mean '{lowered[value.lower()]}'?"
    close = difflib.get_close_matches(value, candidates, n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
