"""Confounds: how many features of each family follow the ROI volume or the number of slices.

A feature that correlates strongly with the size of the region of interest or with the number of axial
slices of the image can carry the label through that covariate rather than through the tumour's
appearance. With vqhist ``region: volume`` the codeword counts sum to 64 x the number of slices, so on a
cohort whose volumes have 20 to 88 slices many codewords are slice-count proxies. This module makes that
visible, per feature family, instead of leaving it hidden in the results:

- :func:`case_covariates`: ROI volume (mm^3) and number of slices of every case, read from the batch
  table's ``diagnostics_*`` columns;
- :func:`confound_table`: per family and covariate, how many features have ``|Spearman rho| >= threshold``
  with it, and the most correlated feature;
- :func:`confound_notes`: plain-language caveats for the families where such features are frequent.

Nothing here tests a hypothesis: the counts describe the cohort, and a strongly correlated feature is a
warning to read its results with the covariate in mind, not proof that it is only a proxy.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ParamsError

logger = logging.getLogger("deepradiomics.study")

#: covariate column -> words used in tables and caveats
COVARIATES: dict[str, str] = {
    "roi_volume": "ROI volume",
    "n_slices": "number of slices",
}
#: covariate column -> what a strong correlation with it may mean, for the caveats
_MEANING: dict[str, str] = {
    "roi_volume": "may largely restate the size of the region of interest rather than add information about its content",
    "n_slices": "may reflect how many slices the image has (a property of the acquisition) rather than the tumour",
}

#: diagnostics written by the deepradiomics extractor (preferred)
ROI_VOLUME_COLUMN = "diagnostics_Case_RoiVolume"
SLICES_COLUMN = "diagnostics_Case_Slices"
#: PyRadiomics' diagnostics (fallback)
VOXEL_NUM_COLUMN = "diagnostics_Mask-original_VoxelNum"
SPACING_COLUMN = "diagnostics_Image-original_Spacing"
SIZE_COLUMN = "diagnostics_Image-original_Size"

TABLE_COLUMNS = [
    "family",
    "covariate",
    "n_features",
    "n_constant",
    "n_strong",
    "fraction",
    "top_feature",
    "top_rho",
    "n_cases",
    "threshold",
]

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _vector(value) -> tuple[float, ...] | None:
    """``"(1.0, 1.0, 2.5)"``, a tuple or a list as a tuple of floats; None when missing or unreadable."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, (tuple, list, np.ndarray)):
        numbers = [float(v) for v in value]
    else:
        numbers = [float(v) for v in _NUMBER.findall(str(value))]
    return tuple(numbers) if numbers else None


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def case_covariates(table: pd.DataFrame) -> pd.DataFrame:
    """ROI volume and number of slices of every case, from a batch table's diagnostics columns.

    Parameters
    ----------
    table
        Batch table indexed by case ID (as written by ``deepradiomics batch``), with its ``diagnostics_*``
        columns.

    Returns
    -------
    DataFrame
        Index: the table's case IDs; columns ``roi_volume`` (mm^3) and ``n_slices``, each present only when
        it could be read. ``roi_volume`` comes from ``diagnostics_Case_RoiVolume`` (voxel count x voxel
        volume, written by the extractor), else from PyRadiomics' ``diagnostics_Mask-original_VoxelNum`` x
        the product of ``diagnostics_Image-original_Spacing``; ``n_slices`` from ``diagnostics_Case_Slices``,
        else from the z size (third value) of ``diagnostics_Image-original_Size``. The fallback fills only
        the cases the preferred column leaves blank. A covariate that no column provides is left out and
        explained in ``frame.attrs["notes"]`` (also logged), not raised: the study still runs without it.

    Examples
    --------
    >>> table = pd.DataFrame(
    ...     {"diagnostics_Mask-original_VoxelNum": [1000, 2000],
    ...      "diagnostics_Image-original_Spacing": ["(1.0, 1.0, 2.0)", "(1.0, 1.0, 2.0)"],
    ...      "diagnostics_Image-original_Size": ["(256, 256, 20)", "(256, 256, 40)"]},
    ...     index=pd.Index(["a", "b"], name="ID"))
    >>> case_covariates(table).to_dict("index")
    {'a': {'roi_volume': 2000.0, 'n_slices': 20.0}, 'b': {'roi_volume': 4000.0, 'n_slices': 40.0}}
    """
    out = pd.DataFrame(index=table.index)
    notes: list[str] = []

    volume = _numeric(table[ROI_VOLUME_COLUMN]) if ROI_VOLUME_COLUMN in table.columns else pd.Series(np.nan, index=table.index)
    if volume.isna().any() and VOXEL_NUM_COLUMN in table.columns and SPACING_COLUMN in table.columns:
        voxels = _numeric(table[VOXEL_NUM_COLUMN])
        voxel_volume = table[SPACING_COLUMN].map(lambda v: float(np.prod(s)) if (s := _vector(v)) else np.nan).astype(float)
        volume = volume.fillna(voxels * voxel_volume)
    if volume.notna().any():
        out["roi_volume"] = volume
    else:
        notes.append(
            f"ROI volume not available: the table has neither {ROI_VOLUME_COLUMN} nor {VOXEL_NUM_COLUMN} with"
            f" {SPACING_COLUMN}; its confounding is not assessed"
        )

    slices = _numeric(table[SLICES_COLUMN]) if SLICES_COLUMN in table.columns else pd.Series(np.nan, index=table.index)
    if slices.isna().any() and SIZE_COLUMN in table.columns:
        z_size = table[SIZE_COLUMN].map(lambda v: s[2] if (s := _vector(v)) and len(s) >= 3 else np.nan).astype(float)
        slices = slices.fillna(z_size)
    if slices.notna().any():
        out["n_slices"] = slices
    else:
        notes.append(
            f"number of slices not available: the table has neither {SLICES_COLUMN} nor a 3D {SIZE_COLUMN};"
            " its confounding is not assessed"
        )
    for note in notes:
        logger.info(note)
    out.attrs["notes"] = notes
    return out


def _rank_correlations(values: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """Spearman rho of every column of ``values`` with ``covariate`` (per column, the cases where both are
    finite; NaN for a column with fewer than 3 such cases or no spread)."""
    rhos = np.full(values.shape[1], np.nan)
    complete = np.isfinite(values).all(axis=0)
    if complete.any():
        # one matrix product for the columns without gaps: Pearson correlation of the (average) ranks
        ranks = stats.rankdata(values[:, complete], axis=0)
        ranks -= ranks.mean(axis=0)
        cov_rank = stats.rankdata(covariate)
        cov_rank -= cov_rank.mean()
        denom = np.sqrt((ranks**2).sum(axis=0) * (cov_rank**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            rhos[complete] = (cov_rank @ ranks) / denom
    for j in np.flatnonzero(~complete):
        ok = np.isfinite(values[:, j])
        if ok.sum() > 2 and np.ptp(values[ok, j]) > 0 and np.ptp(covariate[ok]) > 0:
            rhos[j] = float(stats.spearmanr(values[ok, j], covariate[ok]).statistic)
    return rhos


def confound_table(
    features: pd.DataFrame,
    covariates: pd.DataFrame,
    families: Mapping[str, Sequence[str]],
    threshold: float = 0.5,
) -> pd.DataFrame:
    """How many features of each family correlate strongly with each covariate.

    Parameters
    ----------
    features
        Feature columns, indexed by case ID.
    covariates
        Output of :func:`case_covariates` (joined on the case ID; cases missing there are left out).
    families
        ``{family: [feature columns]}``, e.g. from :func:`~deepradiomics.study.families.feature_families`.
    threshold
        A feature is "strongly correlated" when ``|Spearman rho| >= threshold`` with the covariate.

    Returns
    -------
    DataFrame
        One row per (family, covariate), columns ``TABLE_COLUMNS``: ``n_features`` (columns of the family),
        ``n_constant`` (constant over the cases used: no correlation is defined, so they are counted
        here and left out of the rest), ``n_strong``, ``fraction`` (``n_strong`` / the non-constant
        features), ``top_feature`` and ``top_rho`` (the largest ``|rho|``, with its sign), ``n_cases`` (cases
        with a finite covariate) and ``threshold``. A covariate that is constant over the cases gets
        ``n_strong`` = 0 and NaN correlations.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cov = pd.DataFrame({"n_slices": rng.integers(20, 89, 40).astype(float)})
    >>> feats = pd.DataFrame({"original_vqhist_Codeword000": 64 * cov["n_slices"] + rng.normal(0, 50, 40),
    ...                       "original_vqhist_Codeword001": rng.normal(size=40)})
    >>> row = confound_table(feats, cov, {"vqhist": list(feats.columns)}).iloc[0]
    >>> int(row["n_strong"]), row["top_feature"]
    (1, 'original_vqhist_Codeword000')
    """
    if not 0 < threshold <= 1:
        raise ParamsError(f"confound threshold must be in (0, 1] (got {threshold}); 0.5 flags |Spearman rho| >= 0.5")
    numeric = features.apply(pd.to_numeric, errors="coerce").astype(float)
    rows = []
    for covariate in covariates.columns:
        values = pd.to_numeric(covariates[covariate], errors="coerce").astype(float)
        shared = numeric.index.intersection(values.index[np.isfinite(values.to_numpy())])
        cov = values.loc[shared].to_numpy()
        for family, columns in families.items():
            block = numeric.loc[shared, list(columns)].to_numpy()
            finite = np.isfinite(block)
            with np.errstate(invalid="ignore"):
                low = np.where(finite, block, np.inf).min(axis=0, initial=np.inf)
                high = np.where(finite, block, -np.inf).max(axis=0, initial=-np.inf)
            constant = ~(high > low)  # one distinct value (or none) over the cases: no correlation defined
            rho = np.full(len(columns), np.nan)
            if len(cov) and np.ptp(cov) > 0 and (~constant).any():
                rho[~constant] = _rank_correlations(block[:, ~constant], cov)
            strong = int(np.sum(np.abs(rho) >= threshold))
            tested = int((~constant).sum())
            if np.isfinite(rho).any():
                top = int(np.nanargmax(np.abs(rho)))
                top_feature, top_rho = str(list(columns)[top]), float(rho[top])
            else:
                top_feature, top_rho = "", np.nan
            rows.append(
                {
                    "family": family,
                    "covariate": covariate,
                    "n_features": len(columns),
                    "n_constant": int(constant.sum()),
                    "n_strong": strong,
                    "fraction": strong / tested if tested else np.nan,
                    "top_feature": top_feature,
                    "top_rho": top_rho,
                    "n_cases": len(shared),
                    "threshold": float(threshold),
                }
            )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _records(table) -> list[dict]:
    if isinstance(table, pd.DataFrame):
        return table.to_dict("records")
    return [dict(r) for r in table]


def confound_notes(table: pd.DataFrame | Iterable[Mapping], fraction: float = 0.1) -> list[str]:
    """Plain-language caveats for every family/covariate whose share of strongly correlated features is
    at least ``fraction``.

    Parameters
    ----------
    table
        Output of :func:`confound_table`, as a DataFrame or as its list of records.
    fraction
        Minimal share of the (non-constant) features of a family with ``|rho| >= threshold``.

    Examples
    --------
    >>> records = [{"family": "vqhist", "covariate": "n_slices", "n_features": 512, "n_constant": 32,
    ...             "n_strong": 96, "fraction": 0.2, "top_feature": "original_vqhist_Codeword012",
    ...             "top_rho": 0.83, "n_cases": 63, "threshold": 0.5}]
    >>> print(confound_notes(records)[0])  # doctest: +NORMALIZE_WHITESPACE
    vqhist: 96 of 480 non-constant features (20%) have |Spearman rho| >= 0.5 with the number of slices
    (strongest: original_vqhist_Codeword012, rho 0.83, 63 cases). Results of this family, including any
    feature found responsible, may reflect how many slices the image has (a property of the acquisition)
    rather than the tumour.
    """
    notes = []
    for r in _records(table):
        share = r.get("fraction")
        if share is None or not np.isfinite(share) or share < fraction or not r.get("n_strong"):
            continue
        what = COVARIATES.get(str(r["covariate"]), str(r["covariate"]))
        tested = int(r["n_features"]) - int(r["n_constant"])
        notes.append(
            f"{r['family']}: {int(r['n_strong'])} of {tested} non-constant features ({share:.0%}) have |Spearman rho| >="
            f" {float(r['threshold']):g} with the {what} (strongest: {r['top_feature']}, rho {float(r['top_rho']):.2f},"
            f" {int(r['n_cases'])} cases). Results of this family, including any feature found responsible,"
            f" {_MEANING.get(str(r['covariate']), f'may reflect the {what} rather than the tumour')}."
        )
    return notes


__all__ = ["COVARIATES", "TABLE_COLUMNS", "case_covariates", "confound_notes", "confound_table"]
