"""Feature names: ``<imageType>_<featureClass>_<Feature>``.

PyRadiomics' grammar, kept for every class: three tokens joined by ``_``, no ``_`` inside a token
(``original_glcm_Contrast``, ``log-sigma-1-0-mm-3D_firstorder_Mean``, ``original_vqhist_Codeword017``).
Provenance columns start with ``diagnostics_``. All code builds and reads names through this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIAGNOSTICS_PREFIX = "diagnostics"
#: row layouts: deepradiomics' own (input columns, diagnostics, features; indexed by ID), or exactly
#: PyRadiomics' keys in its order (plus plugin features), as its command line writes them
LAYOUTS = ("deepradiomics", "pyradiomics")
ERROR_COLUMN = "diagnostics_Error"
_TOKEN = re.compile(r"^[A-Za-z0-9\-\.]+$")


def check_token(token: str, what: str = "token") -> str:
    """Return ``token`` if it is a valid name token (no ``_``, not empty), else raise ValueError."""
    if not isinstance(token, str) or not _TOKEN.match(token):
        raise ValueError(
            f"invalid {what} {token!r}: name tokens are non-empty and use letters, digits, '-' or '.'"
            " only (no '_', which separates the tokens of a feature name)"
        )
    return token


@dataclass(frozen=True, order=True)
class FeatureName:
    """One feature column name.

    Examples
    --------
    >>> name = FeatureName.parse("original_glcm_Contrast")
    >>> name.feature_class, name.feature
    ('glcm', 'Contrast')
    >>> str(FeatureName("original", "vqhist", "Codeword017"))
    'original_vqhist_Codeword017'
    """

    image_type: str
    feature_class: str
    feature: str

    def __post_init__(self) -> None:
        check_token(self.image_type, "image type")
        check_token(self.feature_class, "feature class")
        check_token(self.feature, "feature")

    def __str__(self) -> str:
        return f"{self.image_type}_{self.feature_class}_{self.feature}"

    @classmethod
    def parse(cls, name: str) -> FeatureName:
        """Parse a feature column name; raise ValueError for diagnostics or malformed names."""
        parts = name.split("_")
        if len(parts) != 3 or parts[0] == DIAGNOSTICS_PREFIX:
            raise ValueError(
                f"{name!r} is not a feature name of the form <imageType>_<featureClass>_<Feature>"
            )
        return cls(*parts)


def format_name(image_type: str, feature_class: str, feature: str) -> str:
    """Build a feature column name from its three tokens."""
    return str(FeatureName(image_type, feature_class, feature))


def diagnostics_name(group: str, item: str) -> str:
    """Build a provenance column name, e.g. ``diagnostics_Versions_deepradiomics``."""
    return f"{DIAGNOSTICS_PREFIX}_{group}_{item}"


def is_diagnostic(name: str) -> bool:
    """True for ``diagnostics_*`` provenance columns."""
    return name.startswith(DIAGNOSTICS_PREFIX + "_")


def is_feature(name: str) -> bool:
    """True for a well-formed feature column name (not diagnostics, not a pass-through column)."""
    try:
        FeatureName.parse(name)
    except ValueError:
        return False
    return True


def feature_class_of(name: str) -> str:
    """The class token of a feature column, e.g. ``'glcm'`` for ``original_glcm_Contrast``."""
    return FeatureName.parse(name).feature_class


def feature_columns(columns) -> list[str]:
    """The feature columns among ``columns``, in their order."""
    return [c for c in columns if is_feature(str(c))]
