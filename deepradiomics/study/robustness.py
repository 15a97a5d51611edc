"""Robustness of deep (vqhist) and classical features to intensity scale and shift (Kobayashi et al. 2021).

What a perturbation of level ``s`` means
----------------------------------------
The deep input is z-scored per volume over its foreground (voxels > 0), so a global scale or shift of
the raw image would be undone by the normalisation. Both families therefore receive the *same relative
change*, expressed in units of the volume's foreground statistics:

- **deep (vqhist)**: each modality is preprocessed as vqhist does (z-score over voxels > 0, background
  set to 0), then over the foreground voxels ``x' = x * (1 + s)`` (*scale*) or ``x' = x + s`` (*shift*,
  in foreground standard deviations); background voxels stay 0; then the slices are resized and
  quantized. At ``s = 0`` this is exactly vqhist's input. The histogram is computed here (model,
  preprocessing and the model's ``volume_codeword_indices``), not by the plugin, so no plugin code is
  patched; tests check it equals vqhist's own histogram at level 0.
- **classical (PyRadiomics, the ``Image`` modality)**: with the foreground mean ``mu`` and standard
  deviation ``sd`` of the raw volume (voxels > 0, as the z-score uses), over the foreground
  ``I' = mu + (1 + s) (I - mu)`` (*scale*, i.e. ``z' = z (1 + s)``) or ``I' = I + s * sd`` (*shift*, i.e.
  ``z' = z + s``). The mask is unchanged. Shape classes are left out: they do not read intensities.
  Every level, 0 included, is computed on a float32 copy of the image (see :func:`perturb_raw` for the
  PyRadiomics uint8 overflow this avoids), so level 0 can differ from a plain extraction of a uint8 image.

Measures
--------
- deep: the histogram difference ratio ``sum_k |h_k - h0_k| / sum_k h0_k`` per case and level (h0: the
  unperturbed histogram), with its mean and sd over cases;
- classical: per feature, ICC(2,1) (two-way random effects, absolute agreement, single measurement;
  Shrout & Fleiss 1979) over the cases (targets) x perturbation levels (raters), level 0 included.
  Absolute agreement is the headline because a perturbation that moves a feature by the same amount
  in every case is a real loss of reproducibility, which the consistency form ICC(3,1) ignores;
  ICC(3,1) is reported beside it. Per level, the ICC(2,1) of (level 0, level s) is also given;
- classification (with labels): a standardised L2 logistic regression (C = 1) per family is trained in
  stratified k-fold cross-validation (k = min(5, smaller class)) on *unperturbed* features, then
  scores the held-out cases' *perturbed* features; the pooled out-of-fold AUC per level and its change
  from level 0 measure the degradation.

Examples
--------
>>> result = run_robustness("params/combined.yaml", "cases.csv", limit=5)  # doctest: +SKIP
>>> result.deep_summary  # doctest: +SKIP
>>> result.write("robustness_out/")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DeepRadiomicsError, ParamsError
from ..naming import feature_class_of, is_feature

logger = logging.getLogger("deepradiomics.study.robustness")

KINDS = ("scale", "shift")
#: the paper's levels: 0.0 to 1.0 in steps of 0.1
DEFAULT_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))
#: classes that do not read intensities and are left out of the classical sweep
INTENSITY_FREE_CLASSES = ("shape", "shape2D")


class RobustnessDataError(DeepRadiomicsError, ValueError):
    """The cases or labels cannot support the requested analysis (too few cases, one class, ...)."""


# ---------------------------------------------------------------------------------------------- ICC
def icc(ratings) -> dict[str, float]:
    """Intraclass correlations of an (n targets x k raters) matrix from the two-way ANOVA.

    With the mean squares between targets (BMS), between raters (JMS), residual (EMS) and within
    targets (WMS)::

        ICC(1,1) = (BMS - WMS) / (BMS + (k-1) WMS)
        ICC(2,1) = (BMS - EMS) / (BMS + (k-1) EMS + k (JMS - EMS) / n)
        ICC(3,1) = (BMS - EMS) / (BMS + (k-1) EMS)

    Returns ``icc11``, ``icc21``, ``icc31`` and the mean squares; an ICC whose denominator is 0
    (no variance at all) is NaN.

    Examples
    --------
    >>> r = icc([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    >>> round(r["icc21"], 2), round(r["icc31"], 2)  # Shrout & Fleiss (1979), Table 4
    (0.29, 0.71)
    """
    values = np.asarray(ratings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(f"ICC needs an (n targets x k raters) matrix with n, k >= 2; got shape {values.shape}")
    out = icc_many(values[:, :, None])
    return {key: float(value[0]) for key, value in out.items()}


def icc_many(values: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`icc` for F features at once: ``values`` is (n targets, k raters, F)."""
    y = np.asarray(values, dtype=np.float64)
    n, k = y.shape[:2]
    grand = y.mean(axis=(0, 1))
    row_means = y.mean(axis=1)
    col_means = y.mean(axis=0)
    ss_rows = k * ((row_means - grand) ** 2).sum(0)
    ss_cols = n * ((col_means - grand) ** 2).sum(0)
    ss_total = ((y - grand) ** 2).sum(axis=(0, 1))
    ss_err = np.maximum(ss_total - ss_rows - ss_cols, 0.0)
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    return {
        "icc11": ratio(bms - wms, bms + (k - 1) * wms),
        "icc21": ratio(bms - ems, bms + (k - 1) * ems + k * (jms - ems) / n),
        "icc31": ratio(bms - ems, bms + (k - 1) * ems),
        "bms": bms,
        "jms": jms,
        "ems": ems,
        "wms": wms,
    }


# ---------------------------------------------------------------------------------------------- perturbations
def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ParamsError(f"perturbation '{kind}' is not one of {', '.join(KINDS)}")


def perturb_normalized(volume: np.ndarray, kind: str, level: float) -> np.ndarray:
    """vqhist's normalised input of ``volume`` with the perturbation applied over its foreground (> 0)."""
    from ..nets.preprocess import zscore_foreground

    _check_kind(kind)
    z = zscore_foreground(volume)
    if level == 0:
        return z
    foreground = np.asarray(volume) > 0
    if kind == "scale":
        z[foreground] = z[foreground] * np.float32(1.0 + level)
    else:
        z[foreground] = z[foreground] + np.float32(level)
    return z


def perturb_raw(image, kind: str, level: float):
    """A ``SimpleITK.Image`` with the raw-unit equivalent of the perturbation over its foreground (> 0).

    ``scale``: ``I' = mu + (1+s)(I - mu)``; ``shift``: ``I' = I + s sd`` (``mu``, ``sd``: foreground mean and
    standard deviation). Every level, 0 included, is returned as float32, so that all levels go through
    the same PyRadiomics code path: on uint8 images PyRadiomics 3.0.1 computes the top bin edge
    ``max + 2 * binWidth`` in uint8, which wraps around when the ROI maximum exceeds 255 - 2 binWidth and
    puts the whole ROI into one bin (seen on LGG case TCGA_HT_7616_19940813: glcm Contrast 0 instead of 1.14).
    """
    import SimpleITK as sitk

    _check_kind(kind)
    if level == 0:
        return sitk.Cast(image, sitk.sitkFloat32)
    raw = sitk.GetArrayFromImage(image).astype(np.float64)
    foreground = raw > 0
    if not foreground.any():
        raise RobustnessDataError("the image has no voxel > 0: the foreground statistics are undefined")
    values = raw[foreground]
    mean, sd = float(values.mean()), float(values.std())
    sd = sd if sd > 0 else 1.0
    if kind == "scale":
        raw[foreground] = mean + (1.0 + level) * (values - mean)
    else:
        raw[foreground] = values + level * sd
    out = sitk.GetImageFromArray(raw.astype(np.float32))
    out.CopyInformation(image)
    return out


def codeword_histogram(
    case, setup, kind: str = "scale", level: float = 0.0, arrays: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Codeword counts (K,) of ``case`` with a perturbation of the normalised input (see the module docstring).

    ``setup`` is a :class:`~deepradiomics.study.explain.VQSetup`; its ``region`` decides which latent cells
    count, as in vqhist: ``volume`` every cell of every slice, ``roi`` the cells whose (S/8) x (S/8) block
    of the resized slice holds a mask voxel. Counts are returned (vqhist's ``normalize`` is not applied).
    """
    from ..nets.preprocess import volume_to_slices
    from ..registry import get_registry
    from .explain import case_arrays, case_codewords

    if arrays is None:
        arrays = case_arrays(case, setup.modalities)
    normalised = [perturb_normalized(a, kind, level) for a in arrays]
    slices = volume_to_slices(normalised, setup.input_size, normalize=False)
    indices = case_codewords(setup.model, slices, setup.batch_size)
    mask = np.asarray(case.mask_array()) if setup.region == "roi" else None
    counts = get_registry().get("vqhist").count_codewords(indices, mask, setup.bundle, setup.region)
    return counts.numpy()


def histogram_ratio(h, h0) -> float:
    """``sum |h - h0| / sum h0``."""
    h, h0 = np.asarray(h, dtype=np.float64), np.asarray(h0, dtype=np.float64)
    total = h0.sum()
    if total <= 0:
        raise RobustnessDataError("the unperturbed histogram is empty: no latent cell was counted")
    return float(np.abs(h - h0).sum() / total)


# ---------------------------------------------------------------------------------------------- params
def split_params(params: str | os.PathLike | Mapping) -> tuple[dict | None, Any]:
    """(vqhist settings or None, classical-only :class:`~deepradiomics.params.Params` or None).

    Shape classes are dropped from the classical part (intensity perturbations cannot change them).
    """
    from ..params import load_params

    loaded = load_params(params)
    deep = dict(loaded.deep["vqhist"]) if "vqhist" in loaded.deep else None
    classical_classes = {k: v for k, v in loaded.classical.items() if k not in INTENSITY_FREE_CLASSES}
    classical = None
    if classical_classes:
        classical_data = loaded.to_pyradiomics()
        classical_data["featureClass"] = classical_classes
        classical = load_params(classical_data, name=loaded.source)
    if deep is None and classical is None:
        raise ParamsError(f"{loaded.source}: no vqhist and no intensity-based classical class: nothing to perturb")
    return deep, classical


def parse_levels(text: str | Sequence[float]) -> list[float]:
    """``"0,0.1,0.5"`` -> [0.0, 0.1, 0.5]; 0 is added when absent; levels must be > -1 and distinct."""
    if isinstance(text, str):
        try:
            levels = [float(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ParamsError(f"levels '{text}' are not comma-separated numbers, e.g. 0,0.1,0.2") from None
    else:
        levels = [float(t) for t in text]
    if any(level <= -1 for level in levels):
        raise ParamsError(f"levels {levels}: a level must be > -1 (scale 1 + s must stay positive)")
    levels = sorted(set(levels) | {0.0})
    if len(levels) < 2:
        raise ParamsError("give at least one non-zero level, e.g. --levels 0,0.1,0.2")
    return levels


# ---------------------------------------------------------------------------------------------- result
@dataclass
class RobustnessResult:
    """Tables of :func:`run_robustness` (see :meth:`write` for the files)."""

    levels: list[float]
    deep_ratios: pd.DataFrame | None
    deep_summary: pd.DataFrame | None
    classical_features: pd.DataFrame | None
    classical_icc: pd.DataFrame | None
    classical_pairwise: pd.DataFrame | None
    classification: pd.DataFrame | None
    combined: pd.DataFrame
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """``deep_robustness.csv``, ``deep_ratios.csv``, ``classical_icc.csv``, ``classical_features.csv``,
        ``classification.csv`` (with labels), ``robustness.csv``, ``robustness.png``, ``timing.csv``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.deep_summary is not None:
            self.deep_summary.to_csv(out / "deep_robustness.csv", index=False)
            self.deep_ratios.to_csv(out / "deep_ratios.csv", index=False)
        if self.classical_icc is not None:
            self.classical_icc.to_csv(out / "classical_icc.csv", index=False)
            self.classical_features.to_csv(out / "classical_features.csv", index=False)
        if self.classification is not None:
            self.classification.to_csv(out / "classification.csv", index=False)
        self.combined.to_csv(out / "robustness.csv", index=False)
        pd.DataFrame([self.timing]).to_csv(out / "timing.csv", index=False)
        (out / "notes.txt").write_text("\n".join(self.notes) + ("\n" if self.notes else ""))
        plot_robustness(self, out / "robustness.png")
        return out


def plot_robustness(result: RobustnessResult, path: str | os.PathLike) -> Path:
    """Deep histogram ratio vs level (scale, shift), classical ICC(2,1) distribution, AUC vs level."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = 2 + (result.classification is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), dpi=110)
    ax = axes[0]
    if result.deep_summary is not None:
        for kind, frame in result.deep_summary.groupby("kind", sort=False):
            ax.errorbar(frame["level"], frame["ratio_mean"], yerr=frame["ratio_sd"], marker="o", ms=3, capsize=2, label=kind)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no vqhist in params", ha="center", transform=ax.transAxes)
    ax.set_xlabel("perturbation level s")
    ax.set_ylabel("sum|h - h0| / sum h0 (mean ± sd)")
    ax.set_title("deep: codeword histogram change", fontsize=9)
    ax = axes[1]
    if result.classical_icc is not None:
        data, names = [], []
        for kind, frame in result.classical_icc.groupby("kind", sort=False):
            values = frame["icc21"].dropna().to_numpy()
            data.append(values)
            names.append(f"{kind}\n(n={values.size})")
        ax.boxplot(data)
        ax.set_xticks(range(1, len(names) + 1), names)
        ax.axhline(0.9, color="grey", linestyle="--", linewidth=0.8)
        ax.axhline(0.75, color="grey", linestyle=":", linewidth=0.8)
    else:
        ax.text(0.5, 0.5, "no classical class in params", ha="center", transform=ax.transAxes)
    ax.set_ylabel("ICC(2,1) across levels")
    ax.set_title("classical: per-feature ICC", fontsize=9)
    if result.classification is not None:
        ax = axes[2]
        for (family, kind), frame in result.classification.groupby(["family", "kind"], sort=False):
            ax.plot(frame["level"], frame["auc"], marker="o", ms=3, label=f"{family} {kind}")
        ax.set_xlabel("perturbation level s")
        ax.set_ylabel("out-of-fold AUC")
        ax.set_title("classification on perturbed features", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- main
def _classification(
    deep_hist: dict, classical_rows: pd.DataFrame | None, labels: pd.Series, levels: Sequence[float], seed: int = 0
) -> pd.DataFrame:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cases = [c for c in labels.index]
    y = labels.to_numpy().astype(int)
    smaller = int(min(y.sum(), len(y) - y.sum()))
    if smaller < 2:
        raise RobustnessDataError(
            f"classification needs at least 2 cases of each class among the {len(y)} labelled cases "
            f"(smaller class: {smaller}): raise --limit or choose another target"
        )
    folds = StratifiedKFold(n_splits=min(5, smaller), shuffle=True, random_state=seed)
    families: dict[str, Any] = {}
    if deep_hist:
        families["vqhist"] = lambda kind, level: np.stack([deep_hist[(c, kind, level)] for c in cases])
    if classical_rows is not None:
        feature_cols = [c for c in classical_rows.columns if c not in ("ID", "kind", "level")]
        indexed = classical_rows.set_index(["ID", "kind", "level"])[feature_cols]
        finite = np.isfinite(indexed.to_numpy(dtype=np.float64)).all(0)
        usable = [c for c, ok in zip(feature_cols, finite) if ok]

        def classical_matrix(kind, level):
            return indexed.loc[[(c, kind, level) for c in cases], usable].to_numpy(dtype=np.float64)

        families["classical"] = classical_matrix
    rows = []
    for family, matrix in families.items():
        base = matrix("scale", 0.0)
        scores = {(kind, level): np.zeros(len(y)) for kind in KINDS for level in levels}
        for train, test in folds.split(base, y):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
            model.fit(base[train], y[train])
            for kind in KINDS:
                for level in levels:
                    scores[(kind, level)][test] = model.predict_proba(matrix(kind, level)[test])[:, 1]
        for kind in KINDS:
            auc0 = roc_auc_score(y, scores[(kind, 0.0)])
            for level in levels:
                auc = roc_auc_score(y, scores[(kind, level)])
                rows.append(
                    {
                        "family": family,
                        "kind": kind,
                        "level": level,
                        "auc": auc,
                        "auc_change": auc - auc0,
                        "n_cases": len(y),
                        "folds": folds.n_splits,
                    }
                )
    return pd.DataFrame(rows)


def _labels_for(labels, target: str, positive: str | None, case_ids: Sequence[str]) -> tuple[pd.Series, list[str]]:
    from ..errors import did_you_mean

    if isinstance(labels, pd.DataFrame):
        frame = labels.reset_index() if "ID" not in labels.columns and labels.index.name == "ID" else labels
    else:
        if not Path(labels).is_file():
            raise ParamsError(f"labels file '{labels}' does not exist: give a CSV with an ID column and the target column")
        frame = pd.read_csv(labels, dtype=str, keep_default_na=False)
    if "ID" not in frame.columns:
        raise ParamsError(
            f"labels '{labels}' have no 'ID' column.{did_you_mean('ID', map(str, frame.columns))} Columns: {', '.join(map(str, frame.columns))}"
        )
    frame = frame.astype({"ID": str})
    if target not in frame.columns:
        raise ParamsError(
            f"labels '{labels}' have no column '{target}'.{did_you_mean(target, frame.columns)} Columns: {', '.join(frame.columns)}"
        )
    series = frame.set_index("ID")[target].astype(str).str.strip()
    series = series.reindex(list(case_ids))
    notes = []
    blank = series.isna() | series.isin(["", "nan", "NaN", "None"])
    if blank.any():
        notes.append(
            f"{int(blank.sum())} case(s) without a '{target}' value left out of the classification: {', '.join(series.index[blank][:10])}"
        )
    series = series[~blank]
    classes = sorted(series.unique())
    if len(classes) != 2:
        raise RobustnessDataError(
            f"target '{target}' has {len(classes)} classes among the cases used ({', '.join(classes)}); exactly 2 are needed"
        )
    if positive is None:
        positive = classes[1]
    elif positive not in classes:
        raise ParamsError(f"positive class '{positive}' is not a value of '{target}' ({', '.join(classes)})")
    notes.append(f"classification target '{target}', positive class '{positive}'")
    return (series == positive).astype(int), notes


def run_robustness(
    params: str | os.PathLike | Mapping,
    manifest,
    *,
    levels: Sequence[float] | str = DEFAULT_LEVELS,
    limit: int | None = None,
    labels=None,
    target: str | None = None,
    positive: str | None = None,
    bundle=None,
    progress: bool = False,
) -> RobustnessResult:
    """Scale and shift sweeps of every case of ``manifest`` (see the module docstring).

    Parameters
    ----------
    params
        Params file or mapping naming ``vqhist`` and/or classical classes.
    manifest
        Batch manifest (CSV path or DataFrame): ``ID``, ``Image``, ``Mask``, ``Image_<name>``.
    levels
        Perturbation levels s (0 is always included).
    limit
        Use only the first ``limit`` cases.
    labels, target, positive
        A manifest-like CSV holding ``ID`` and the binary ``target`` column (e.g. the same cases.csv and
        ``grade``), and the positive class (default: the second value in sorted order).
    bundle
        A loaded model bundle to use instead of vqhist's ``model`` setting.
    """
    from ..batch import case_from_row, read_manifest
    from .explain import case_arrays, vq_setup

    levels = parse_levels(levels) if isinstance(levels, str) else parse_levels(list(levels))
    if (labels is None) != (target is None):
        raise ParamsError("give both --labels and --target for the classification, or neither")
    deep_settings, classical_params = split_params(params)
    setup = vq_setup(deep_settings, bundle) if deep_settings is not None else None
    backend = None
    if classical_params is not None:
        from ..classical import PyRadiomicsBackend

        backend = PyRadiomicsBackend(classical_params.to_pyradiomics())
    frame, base = read_manifest(manifest)
    if limit is not None:
        if limit < 2:
            raise ParamsError(f"--limit {limit}: at least 2 cases are needed for an ICC")
        frame = frame.iloc[:limit]
    if len(frame) < 2:
        raise RobustnessDataError(f"the manifest holds {len(frame)} case(s): at least 2 are needed")
    label = classical_params.label if classical_params is not None else 1
    deep_hist: dict[tuple[str, str, float], np.ndarray] = {}
    ratio_rows, classical_rows, notes = [], [], []
    timing = {
        "cases": 0,
        "deep_seconds": 0.0,
        "classical_seconds": 0.0,
        "perturbations_per_case": 1 + len(KINDS) * (len(levels) - 1),
    }
    rows = frame.to_dict("records")
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="robustness", unit="case", file=None)
    for row in iterator:
        case = case_from_row(row, base, label)
        case_id = case.case_id
        if setup is not None:
            start = time.perf_counter()
            arrays = case_arrays(case, setup.modalities)
            h0 = codeword_histogram(case, setup, "scale", 0.0, arrays)
            for kind in KINDS:
                for level in levels:
                    h = h0 if level == 0 else codeword_histogram(case, setup, kind, level, arrays)
                    deep_hist[(case_id, kind, level)] = h
                    ratio_rows.append({"ID": case_id, "kind": kind, "level": level, "ratio": histogram_ratio(h, h0)})
            timing["deep_seconds"] += time.perf_counter() - start
        if backend is not None:
            from ..case import Case

            start = time.perf_counter()
            image, mask = case.image(), case.mask_image()
            f0 = backend.execute(Case({"Image": perturb_raw(image, "scale", 0.0)}, mask, label=case.label, case_id=case_id))
            for kind in KINDS:
                for level in levels:
                    if level == 0:
                        values = f0
                    else:
                        perturbed = Case({"Image": perturb_raw(image, kind, level)}, mask, label=case.label, case_id=case_id)
                        values = backend.execute(perturbed)
                    features = {k: v for k, v in values.items() if not k.startswith("diagnostics_")}
                    classical_rows.append({"ID": case_id, "kind": kind, "level": level, **features})
            timing["classical_seconds"] += time.perf_counter() - start
        timing["cases"] += 1
    case_ids = [str(r["ID"]) for r in rows]

    deep_ratios = deep_summary = None
    if setup is not None:
        deep_ratios = pd.DataFrame(ratio_rows)
        deep_summary = (
            deep_ratios.groupby(["kind", "level"], sort=False)["ratio"]
            .agg(ratio_mean="mean", ratio_sd="std", ratio_max="max", n_cases="count")
            .reset_index()
        )
    classical_features = classical_icc = classical_pairwise = None
    if backend is not None:
        classical_features = pd.DataFrame(classical_rows)
        feature_cols = [c for c in classical_features.columns if c not in ("ID", "kind", "level")]
        icc_rows, pair_rows = [], []
        for kind in KINDS:
            sub = classical_features[classical_features["kind"] == kind]
            cube = np.stack(
                [
                    sub[sub["level"] == level].set_index("ID").loc[case_ids, feature_cols].to_numpy(dtype=np.float64)
                    for level in levels
                ],
                axis=1,
            )  # (cases, levels, features)
            finite = np.isfinite(cube).all(axis=(0, 1))
            result = icc_many(np.where(np.isfinite(cube), cube, 0.0))
            for j, name in enumerate(feature_cols):
                note = ""
                if not finite[j]:
                    note = "non-finite values"
                elif not np.isfinite(result["icc21"][j]):
                    note = "no variance across cases and levels"
                icc_rows.append(
                    {
                        "feature": name,
                        "class": feature_class_of(name) if is_feature(name) else "",
                        "kind": kind,
                        "icc21": float(result["icc21"][j]) if finite[j] else float("nan"),
                        "icc31": float(result["icc31"][j]) if finite[j] else float("nan"),
                        "n_cases": len(case_ids),
                        "n_levels": len(levels),
                        "note": note,
                    }
                )
            for i, level in enumerate(levels):
                if level == 0:
                    continue
                pair = icc_many(cube[:, [0, i], :][:, :, finite])
                with np.errstate(invalid="ignore", divide="ignore"):
                    rel = np.abs(cube[:, i, :][:, finite] - cube[:, 0, :][:, finite]) / np.abs(cube[:, 0, :][:, finite])
                icc21 = pair["icc21"]
                pair_rows.append(
                    {
                        "kind": kind,
                        "level": level,
                        "classical_icc21_median": float(np.nanmedian(icc21)),
                        "classical_fraction_icc21_ge_0.9": float(np.mean(icc21[np.isfinite(icc21)] >= 0.9)),
                        "classical_relchange_median": float(np.nanmedian(np.where(np.isfinite(rel), rel, np.nan))),
                    }
                )
        classical_icc = pd.DataFrame(icc_rows)
        classical_pairwise = pd.DataFrame(pair_rows)

    classification = None
    if labels is not None:
        y, label_notes = _labels_for(labels, target, positive, case_ids)
        notes.extend(label_notes)
        kept = set(y.index)
        kept_rows = classical_features[classical_features["ID"].isin(kept)] if classical_features is not None else None
        kept_hist = {k: v for k, v in deep_hist.items() if k[0] in kept}
        if setup is not None and setup.normalize == "frequency":  # the classifier sees what vqhist outputs
            kept_hist = {k: v / v.sum() for k, v in kept_hist.items()}
        classification = _classification(kept_hist, kept_rows, y, levels)

    combined = pd.DataFrame([{"kind": kind, "level": level} for kind in KINDS for level in levels])
    if deep_summary is not None:
        combined = combined.merge(
            deep_summary.rename(columns={"ratio_mean": "deep_ratio_mean", "ratio_sd": "deep_ratio_sd"})[
                ["kind", "level", "deep_ratio_mean", "deep_ratio_sd"]
            ],
            on=["kind", "level"],
            how="left",
        )
    if classical_pairwise is not None:
        combined = combined.merge(classical_pairwise, on=["kind", "level"], how="left")
        overall = classical_icc.groupby("kind")["icc21"].median().rename("classical_icc21_median_all_levels")
        combined = combined.merge(overall, left_on="kind", right_index=True, how="left")
    if classification is not None:
        wide = classification.pivot_table(index=["kind", "level"], columns="family", values=["auc", "auc_change"])
        wide.columns = [f"{family}_{metric}" for metric, family in wide.columns]
        combined = combined.merge(wide.reset_index(), on=["kind", "level"], how="left")
    timing["seconds_per_case"] = (timing["deep_seconds"] + timing["classical_seconds"]) / max(1, timing["cases"])
    return RobustnessResult(
        levels=levels,
        deep_ratios=deep_ratios,
        deep_summary=deep_summary,
        classical_features=classical_features,
        classical_icc=classical_icc,
        classical_pairwise=classical_pairwise,
        classification=classification,
        combined=combined,
        timing=timing,
        notes=notes,
    )
