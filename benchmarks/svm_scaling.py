"""How long the DLR pipeline's linear SVM takes on unscaled and on z-scored inputs, per feature family (issue 16).

The DLR paper fed its linear SVM the L2-normalised Fisher vectors unscaled; ``--protocol paper``
(``DLRProtocol(k="all", ttest="student", scaling="auto")``) does so for L2-normalised rows and z-scores any
other family, which the paper did not have. This benchmark is the measurement behind that choice: on the
fixed table ``examples/lgg/features.csv`` (63 TCGA-LGG patients; classical, vqhist, cnn families as in
``examples/lgg_study.py``; fisher is fold-wise, see benchmarks/near_constant.py), for each target (grade,
IDH) and family, the first ``--folds-timed`` training folds of the study's own splits (stratified 5-fold,
seed 0) are fitted with the paper's settings and each SVM input scaling:

- ``none``: every column as it is (``--svm-scaling none``);
- ``zscore``: z-scored and clipped at 5 inside the training fold (``--svm-scaling zscore``, the default's);
- ``auto``: the paper protocol's (``none`` when every training row has unit L2 norm, else ``zscore``).

Each fit runs in a forked child process, stopped after ``--timeout`` seconds (then reported as ``> T s``,
not finished). Printed per fit: wall time, features reaching the SVM, libsvm's iterations when it
finished, whether ``auto`` scaled, and how far apart the family's column magnitudes are on the training
rows (log10 of the largest over the smallest standard deviation of its non-constant columns). The load average is printed before and after.

    python benchmarks/svm_scaling.py                       # both targets, every family, 1 fold, 300 s cap
    python benchmarks/svm_scaling.py --target idh_mutant --family classical --timeout 900
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from near_constant import DATA, GROUPS, TARGETS, markdown  # noqa: E402  (the same families, labels and table)

SCALINGS = ("none", "zscore", "auto")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=list(TARGETS), action="append", help="target(s) (default both)")
    parser.add_argument("--family", choices=list(GROUPS), action="append", help="families (default all of the table's)")
    parser.add_argument("--scaling", choices=SCALINGS, action="append", help="scalings (default all three)")
    parser.add_argument("--folds-timed", type=int, default=1, help="training folds fitted per (target, family, scaling); default 1")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a fit is stopped (default 300)")
    return parser.parse_args(argv)


def _fit(X, y, scaling, queue) -> None:
    """Child process: fit the paper's DLR pipeline with ``scaling`` and report what it did."""
    from deepradiomics.study.classification import dlr_protocol, make_pipeline, selection_counts

    start = time.perf_counter()
    pipeline = make_pipeline("dlr", protocol=dlr_protocol("paper", scaling=scaling)).fit(X, y)
    seconds = time.perf_counter() - start
    counts = selection_counts(pipeline)
    iterations = int(np.sum(getattr(pipeline[-1], "n_iter_", [0])))
    queue.put({"seconds": seconds, "selected": counts["n_selected"], "scaled": counts["scaled"], "iterations": iterations})


def magnitude_orders(X) -> float:
    """log10 of the largest over the smallest standard deviation of the non-constant columns of ``X``."""
    from deepradiomics.study.classification import column_sd

    sd = column_sd(np.nan_to_num(X, nan=np.nanmedian(X)))
    sd = sd[sd > 0]
    return float(np.log10(sd.max() / sd.min())) if len(sd) else float("nan")


def timed_fit(X, y, scaling: str, timeout: float) -> dict:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_fit, args=(X, y, scaling, queue))
    start = time.perf_counter()
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.terminate()
        child.join()
        return {"seconds": time.perf_counter() - start, "finished": False}
    if child.exitcode != 0 or queue.empty():
        return {"seconds": time.perf_counter() - start, "finished": False, "error": f"exit {child.exitcode}"}
    return {**queue.get(), "finished": True}


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    from sklearn.model_selection import RepeatedStratifiedKFold

    from deepradiomics.study import feature_families, prepare_data

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for target in args.target or list(TARGETS):
        data = prepare_data(Path("examples") / "lgg" / "features.csv", DATA / "cases.csv", target, TARGETS[target])
        families = feature_families(data.features.columns, GROUPS)
        y = np.asarray(data.y).astype(int)
        # the study's splits (cross_validate: RepeatedStratifiedKFold, seed 0); its first repeat
        splits = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=1, random_state=0).split(np.zeros((len(y), 1)), y))
        for family in args.family or list(families):
            X_all = data.features[families[family]].to_numpy(dtype=float)
            for fold, (train, _) in enumerate(splits[: args.folds_timed]):
                for scaling in args.scaling or SCALINGS:
                    out = timed_fit(X_all[train], y[train], scaling, args.timeout)
                    orders = magnitude_orders(X_all[train])
                    time_text = f"{out['seconds']:.2f} s" if out["finished"] else f"> {args.timeout:.0f} s (stopped)"
                    rows.append(
                        {
                            "target": target,
                            "family": family,
                            "fold": fold,
                            "scaling": scaling,
                            "fit": time_text if "error" not in out else out["error"],
                            "features to SVM": out.get("selected", ""),
                            "auto scaled": {1: "yes", 0: "no"}.get(out.get("scaled"), "") if scaling == "auto" else "",
                            "SVM iterations": out.get("iterations", ""),
                            "family's column sd, log10 max/min": f"{orders:.1f}",
                        }
                    )
                    print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    import pandas as pd

    print("\n" + markdown(pd.DataFrame(rows)))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
