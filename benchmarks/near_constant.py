"""Near-constant columns, Fisher-vector dust and the DLR protocol on the 63 TCGA-LGG patients (issue 16).

Four parts (``--part``, default all), every one on grade (G3 vs G2) and IDH (mutant vs wild-type), labels
from ``../shared/data/lgg/cases.csv``, 5 x 5-fold CV with seed 0 (``cross_validate``, the study's own
function and splits: every option below is evaluated on the same 25 splits, so differences are paired):

``floor``
    The ``fisher`` class's GMM (params/fisher.yaml: 64 components on 30 patients drawn with seed 0) fitted
    on the descriptors of the 62 patients with a grade; every case encoded with and without the encoder floors
    (``encoding.POSTERIOR_FLOOR``, ``encoding.GRADIENT_FLOOR``). Prints the distribution of the posteriors,
    of the gradient entries, of the GMM means, and for each encoding: dimensions exactly constant on the 30
    GMM patients, dimensions non-zero but under 1e-12 there, how many of those are >= 1e-4 for another
    patient, the largest |z| of the other patients when standardised on the 30, and the largest change
    the floors make to a Fisher-vector value.
``table``
    The fixed table ``examples/lgg/features.csv`` (classical, vqhist counts / frequencies, cnn random and
    its depths, cnn mapped, all of them), models ``logistic`` and ``dlr``, under each common-part option
    of ``tamings()`` (no taming = the pipeline before; a relative variance floor; floor + z-score or
    robust scaling clipped at 3, 5, 8).
``fisher``
    The fold-wise ``fisher`` family (a study from images: ``prepare_images`` with params/fisher.yaml, the
    GMM refitted on the training patients of every split; one fit per split serves both encodings), with
    the encoder floors and without them, under the same options.
``protocol``
    DLR protocols (``protocols()``: the default, the paper's, and one change at a time) on
    fisher (floored) and the table families, with the default common part: AUC and the number of features
    the selection kept per fold.

Each row: AUC (mean over the 25 fold AUCs, Nadeau-Bengio corrected 95% t-interval), its reading (an
interval including 0.5 is no evidence), the paired difference to the first option with the corrected
resampled t-test p, and per fold (median [min-max] over the 25 fits): columns dropped as (near-)constant,
columns with a clipped training value, columns with a clipped test value, the largest |z| of a test
value on a selected column, features passing the t-test, features reaching the classifier. Tables are
written as CSV under ``--out``.

    python benchmarks/near_constant.py --jobs 2                       # everything (about 2 h on 2 cores)
    python benchmarks/near_constant.py --part floor --part table      # the quick parts
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = Path("..") / "shared" / "data" / "lgg"
TARGETS = {"grade": "G3", "idh_mutant": "1"}
PARTS = ("floor", "table", "fisher", "protocol")
CLASSICAL = ["firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"]
#: the families of examples/lgg_study.py that the fixed table holds (fisher is fold-wise, part ``fisher``)
GROUPS = {
    "classical": CLASSICAL,
    "vqhist-counts": [r"vqhist:Codeword\d+"],
    "vqhist-frequency": [r"vqhist:Frequency\d+"],
    "cnn-random": [r"cnn:Conv\d\d.*"],
    "cnn-random-shallow": [r"cnn:Conv[12]\d.*"],
    "cnn-random-mid": [r"cnn:Conv[34]\d.*"],
    "cnn-random-deep": [r"cnn:Conv5\d.*"],
    "cnn-mapped": [r"cnn:(?:Stem|Block\d|Head).*"],
    "all": [*CLASSICAL, r"vqhist:Frequency\d+", "cnn"],
}
MODELS = ("logistic", "dlr")


def tamings():
    from deepradiomics.study.classification import NO_TAMING, Taming

    options = {"none": NO_TAMING, "floor": Taming(floor=1e-9, scaler="zscore", clip=None)}
    for scaler, short in (("zscore", "z"), ("robust", "robust")):
        for clip in (3.0, 5.0, 8.0):
            options[f"floor+{short}{clip:g}"] = Taming(floor=1e-9, scaler=scaler, clip=clip)
    return options


def protocols():
    from deepradiomics.study.classification import dlr_protocol

    # the paper's and the default, then one change at a time from each
    return {
        "default": dlr_protocol("default"),
        "paper": dlr_protocol("paper"),
        "paper,k=auto": dlr_protocol("paper", k="auto"),
        "paper,k=10": dlr_protocol("paper", k=10),
        "paper,k=50": dlr_protocol("paper", k=50),
        "paper,welch": dlr_protocol("paper", ttest="welch"),
        "paper,zscore": dlr_protocol("paper", scaling="zscore"),
        "default,k=10": dlr_protocol("default", k=10),
        "default,k=50": dlr_protocol("default", k=50),
        "default,k=all": dlr_protocol("default", k="all"),
        "default,student": dlr_protocol("default", ttest="student"),
        "default,auto": dlr_protocol("default", scaling="auto"),
    }


# ------------------------------------------------------------------------------------------- helpers
def spread(values) -> str:
    v = np.asarray(list(values), dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return "-"
    fmt = (lambda x: f"{x:.0f}") if np.all(v == np.round(v)) and np.abs(v).max() < 1e6 else (lambda x: f"{x:.3g}")
    return f"{fmt(np.median(v))} [{fmt(v.min())}-{fmt(v.max())}]"


def reading(low: float, high: float) -> str:
    if low > 0.5:
        return "evidence above chance"
    if high < 0.5:
        return "below chance"
    return "no evidence (CI includes 0.5)"


def row_of(res, reference, **labels) -> dict:
    """One line of a results table: AUC with its interval, the paired difference to ``reference``, selection counts."""
    from deepradiomics.study.statistics import corrected_resampled_ttest

    auc = res.summary.loc["AUC"]
    diff = res.fold_metrics["AUC"].to_numpy() - reference.fold_metrics["AUC"].to_numpy()
    _, p = corrected_resampled_ttest(diff, res.test_fraction)
    sel = res.selection
    return {
        **labels,
        "auc": round(float(auc["mean"]), 3),
        "ci_low": round(float(auc["ci_low"]), 3),
        "ci_high": round(float(auc["ci_high"]), 3),
        "reading": reading(float(auc["ci_low"]), float(auc["ci_high"])),
        "diff_vs_first": round(float(np.nanmean(diff)), 3),
        "p_vs_first": round(float(p), 3) if np.isfinite(p) else np.nan,
        "dropped": spread(sel["n_dropped_constant"]),
        "clipped_train": spread(sel["n_clipped_train"]),
        "clipped_test": spread(sel["n_clipped_test"]),
        "max_abs_z_test": spread(sel["max_abs_z_test"]),
        "passed_ttest": spread(sel["n_passed_ttest"]),
        "selected": spread(sel["n_selected"]),
    }


def markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def emit(frame: pd.DataFrame, out: Path, name: str, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out / f"{name}.csv", index=False)
    print(f"\n## {title}\n\n{markdown(frame)}\n", flush=True)


def evaluate_options(source, y, family: str, options: dict, args, protocol=None, taming=None, vary: str = "taming") -> list[dict]:
    """Cross-validate ``family`` under each option (``vary``: "taming" or "protocol"), both models for tamings."""
    from deepradiomics.study.classification import cross_validate

    rows = []
    models = MODELS if vary == "taming" else ("dlr",)
    for model in models:
        first = None
        for name, option in options.items():
            kwargs = {"taming": option, "protocol": protocol} if vary == "taming" else {"taming": taming, "protocol": option}
            res = cross_validate(source, y, model, family, args.folds, args.repeats, args.seed, n_boot=200, **kwargs)
            first = first or res
            rows.append(row_of(res, first, family=family, model=model, option=name))
    return rows


# ----------------------------------------------------------------------------------------- fisher source
class FisherTables:
    """Fold-wise fisher columns: one GMM fit per training set (the study's own, through ``FoldwiseFeatures.fitted_class``),
    every case encoded with the encoder floors and without them; ``view(floors)`` is a per-fold source for ``cross_validate``."""

    def __init__(self, source, folder: Path | None = None) -> None:
        self.source = source
        self.folder = folder  # per-split tables kept as .npz, so that a later part reuses the GMM fits
        self.entry = source.fitted[0]
        self.ids = [str(i) for i in source.index]
        self.cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.fit_seconds = 0.0
        self.encode_seconds = 0.0

    def tables(self, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from deepradiomics_plugins.fisher import encoding

        key = tuple(sorted(self.ids[i] for i in train))
        path = self._path(key)
        if key not in self.cache and path is not None and path.is_file():
            with np.load(path) as saved:
                if saved["ids"].tolist() == self.ids:
                    self.cache[key] = (saved["floored"], saved["plain"])
        if key not in self.cache:
            start = time.perf_counter()
            fitted = self.source.fitted_class(self.entry.name, key)
            self.fit_seconds += time.perf_counter() - start
            start = time.perf_counter()
            gmm = (fitted.weights_, fitted.means_, fitted.variances_)
            arrays = [self.entry.descriptors[i]["descriptors"] for i in self.ids]
            floored = np.array([encoding.fisher_vector(a, *gmm) for a in arrays])
            plain = np.array([encoding.fisher_vector(a, *gmm, posterior_floor=0.0, gradient_floor=0.0) for a in arrays])
            self.encode_seconds += time.perf_counter() - start
            self.cache[key] = (floored, plain)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.savez(path, floored=floored, plain=plain, ids=np.array(self.ids))
            print(f"  fisher split {len(self.cache)}: fit {self.fit_seconds:.0f} s, encode {self.encode_seconds:.0f} s so far", file=sys.stderr, flush=True)
        return self.cache[key]

    def _path(self, key: tuple[str, ...]) -> Path | None:
        """The .npz of one training set: keyed on params/fisher.yaml, the encoder floors and the training IDs."""
        import hashlib

        from deepradiomics_plugins.fisher import encoding

        if self.folder is None:
            return None
        text = "\n".join([(Path("params") / "fisher.yaml").read_text(), repr((encoding.POSTERIOR_FLOOR, encoding.GRADIENT_FLOOR)), *key])
        return self.folder / f"{hashlib.sha256(text.encode()).hexdigest()[:20]}.npz"

    def view(self, floors: bool):
        tables = self

        class _View:
            def split(self, train, test):
                table = tables.tables(train)[0 if floors else 1]
                return table[train], table[test]

        return _View()


def fisher_source(target: str, args):
    from deepradiomics.study.foldwise import prepare_images

    data, source = prepare_images(DATA / "cases.csv", Path("params") / "fisher.yaml", target=target, positive=TARGETS[target], jobs=args.jobs, cache_dir=args.cache_dir, progress=False)
    return data, FisherTables(source, Path(args.cache_dir) / "fold_tables")


# ---------------------------------------------------------------------------------------------- parts
def part_floor(args) -> None:
    """Posteriors, gradients and GMM means on real descriptors; dust with and without the encoder floors."""
    from deepradiomics_plugins.fisher import encoding

    from deepradiomics.study.classification import column_sd

    _, tables = fisher_source("grade", args)  # the descriptors of the 62 cases with a grade (cached)
    source = tables.source
    entry = source.fitted[0]
    ids = sorted(entry.descriptors)
    start = time.perf_counter()
    fitted = source.fitted_class(entry.name, ids)  # as `deepradiomics fit` does: 30 patients drawn with the seed
    print(f"GMM fitted on {len(fitted.gmm_cases_)} of {len(ids)} patients in {time.perf_counter() - start:.0f} s")
    w, m, v = fitted.weights_, fitted.means_, fitted.variances_
    edges = np.array([-np.inf, -300, -200, -100, -30, np.log10(encoding.POSTERIOR_FLOOR), -8, -4, -2, 0.1])
    counts = np.zeros(len(edges) - 1)
    zeros = total = 0
    floored, plain = [], []
    for i in ids:
        X = entry.descriptors[i]["descriptors"]
        for start_row in range(0, len(X), encoding.CHUNK):
            g = encoding.posteriors(np.asarray(X[start_row : start_row + encoding.CHUNK], dtype=np.float64), w, m, v)
            total += g.size
            zeros += int((g == 0).sum())
            counts += np.histogram(np.log10(g[g > 0]), bins=edges)[0]
        floored.append(encoding.fisher_vector(X, w, m, v))
        plain.append(encoding.fisher_vector(X, w, m, v, posterior_floor=0.0, gradient_floor=0.0))
    print(f"\nposteriors of {len(ids)} cases x {len(w)} components: {total:,} values, {zeros / total:.2%} exactly 0")
    for lo, hi, c in zip(edges[:-1], edges[1:], counts):
        print(f"  log10 gamma in [{lo:.3g}, {hi:.3g}): {c / total:.2%}")
    a = np.abs(m)
    print(f"GMM means: {int((a == 0).sum())} of {a.size} exactly 0, {int(((a > 0) & (a < 1e-30)).sum())} non-zero under 1e-30 (smallest {a[a > 0].min():.2g})")
    gmm_rows = np.isin(ids, [ids[j] for j in fitted.gmm_cases_]) if len(fitted.gmm_cases_) else np.ones(len(ids), bool)
    rows = []
    for name, fv in (("without floors", np.array(plain)), ("with floors", np.array(floored))):
        train, other = fv[gmm_rows], fv[~gmm_rows]
        peak = np.abs(train).max(axis=0)
        constant = np.ptp(train, axis=0) == 0
        dust = (peak > 0) & (peak < 1e-12)
        awake = (peak < 1e-12) & (np.abs(other).max(axis=0) >= 1e-4)
        varying = ~constant
        sd = column_sd(train[:, varying])  # scaled first: the sd of 1e-162 values would underflow to 0
        z = np.abs((other[:, varying] - train[:, varying].mean(axis=0)) / np.where(sd > 0, sd, np.nan))
        worst = np.nanmax(z, axis=0)
        nonzero = np.abs(fv[fv != 0])
        rows.append(
            {
                "encoding": name,
                "constant_on_gmm_patients": int(constant.sum()),
                "nonzero_under_1e-12_there": int(dust.sum()),
                "of_these_or_constant_>=1e-4_elsewhere": int(awake.sum()),
                "max_abs_z_other_patients": f"{np.nanmax(worst):.3g}",
                "columns_with_abs_z_over_100": int((worst > 100).sum()),
                "columns_with_abs_z_over_1e6": int((worst > 1e6).sum()),
                "smallest_nonzero_value": f"{nonzero.min():.3g}",
            }
        )
    change = np.abs(np.array(floored) - np.array(plain)).max()
    emit(pd.DataFrame(rows), args.out, "floor", f"Fisher vectors of {len(ids)} cases, GMM on {int(gmm_rows.sum())}; largest change by the floors: {change:.3g}")


def part_table(args) -> None:
    from deepradiomics.study import feature_families, prepare_data

    rows = []
    for target in TARGETS:
        data = prepare_data(Path("examples") / "lgg" / "features.csv", DATA / "cases.csv", target, TARGETS[target])
        families = feature_families(data.features.columns, GROUPS)
        for family, cols in families.items():
            start = time.perf_counter()
            for row in evaluate_options(data.features[cols], data.y, family, tamings(), args):
                rows.append({"target": target, **row})
            print(f"  {target} {family}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    emit(pd.DataFrame(rows), args.out, "table", "Common-part options on examples/lgg/features.csv")


def part_fisher(args, tamings_too: bool, protocols_too: bool) -> None:
    from deepradiomics.study.classification import DEFAULT_TAMING

    rows, protocol_rows = [], []
    for target in TARGETS:
        data, tables = fisher_source(target, args)
        if tamings_too:
            for floors in (True, False):
                label = "fisher" if floors else "fisher (no encoder floors)"
                for row in evaluate_options(tables.view(floors), data.y, label, tamings(), args):
                    rows.append({"target": target, **row})
        if protocols_too:
            for row in evaluate_options(tables.view(True), data.y, "fisher", protocols(), args, taming=DEFAULT_TAMING, vary="protocol"):
                protocol_rows.append({"target": target, **row})
        print(f"  {target}: {len(tables.cache)} GMM fits, {tables.fit_seconds:.0f} s fitting, {tables.encode_seconds:.0f} s encoding (both encodings)", flush=True)
        del tables
    if tamings_too:
        emit(pd.DataFrame(rows), args.out, "fisher", "Common-part options on fold-wise fisher, with and without the encoder floors")
    if protocols_too:
        emit(pd.DataFrame(protocol_rows), args.out, "protocol_fisher", "DLR protocols on fold-wise fisher (default common part)")


def part_protocol_table(args) -> None:
    from deepradiomics.study import feature_families, prepare_data
    from deepradiomics.study.classification import DEFAULT_TAMING

    rows = []
    for target in TARGETS:
        data = prepare_data(Path("examples") / "lgg" / "features.csv", DATA / "cases.csv", target, TARGETS[target])
        for family, cols in feature_families(data.features.columns, GROUPS).items():
            for row in evaluate_options(data.features[cols], data.y, family, protocols(), args, taming=DEFAULT_TAMING, vary="protocol"):
                rows.append({"target": target, **row})
    emit(pd.DataFrame(rows), args.out, "protocol_table", "DLR protocols on the table families (default common part)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", choices=PARTS, help="parts to run (repeatable; default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes describing the cases")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs") / "near_constant_cache", help="descriptors are kept here")
    parser.add_argument("--out", type=Path, default=Path("runs") / "near_constant", help="CSV tables are written here")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.chdir(REPO)
    parts = args.part or list(PARTS)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}")
    print(f"parts: {', '.join(parts)}; {args.folds}-fold CV x {args.repeats} repeats, seed {args.seed}", flush=True)
    start = time.perf_counter()
    if "floor" in parts:
        part_floor(args)
    if "table" in parts:
        part_table(args)
    if "fisher" in parts or "protocol" in parts:
        part_fisher(args, tamings_too="fisher" in parts, protocols_too="protocol" in parts)
    if "protocol" in parts:
        part_protocol_table(args)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
