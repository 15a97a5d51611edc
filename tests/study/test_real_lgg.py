"""End to end on real data: PyRadiomics firstorder + shape features of the 63 TCGA-LGG cases.

The features are computed once per session with PyRadiomics itself (about 25 s of one idle core without
PyRadiomics' diagnostics, 40 s with them), spread over two processes, so this module is marked slow.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepradiomics.study import run_study

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LGG = DATA / "lgg"
CAVEAT = "volumes are stacks of preprocessed 8-bit axial slices; voxel spacing unknown (set to 1 mm)"


@functools.lru_cache(maxsize=1)
def _extractor():
    import radiomics
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    # additionalInfo off: no diagnostics (image and mask hashes, statistics), which the study never reads; the
    # features are the same to the bit (checked on all 63 cases), in ~60% of the time
    extractor = RadiomicsFeatureExtractor(additionalInfo=False)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("firstorder")
    extractor.enableFeatureClassByName("shape")
    return extractor


def _case_features(paths: tuple[str, str]) -> dict[str, float]:
    """PyRadiomics' firstorder and shape features of one case (image path, mask path), diagnostics left out."""
    import SimpleITK as sitk

    image, mask = paths
    # float image: PyRadiomics' bin edges overflow on uint8 input (maximum + 2 * binWidth wraps past 255)
    result = _extractor().execute(sitk.Cast(sitk.ReadImage(image), sitk.sitkFloat32), sitk.ReadImage(mask))
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


@pytest.fixture(scope="session")
def lgg_features(tmp_path_factory) -> tuple[Path, Path]:
    manifest = LGG / "cases.csv"
    if not manifest.exists():
        pytest.skip(f"real LGG data not found at {manifest} (the shared data folder sits beside the repository)")
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    cases = pd.read_csv(manifest)
    paths = [(str(LGG / case.Image), str(LGG / case.Mask)) for case in cases.itertuples()]
    # the cases over two fresh (spawned) processes: each case is computed alone, so the table is a serial run's
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = dict(zip(cases.ID, pool.map(_case_features, paths, chunksize=4)))
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "ID"
    path = tmp_path_factory.mktemp("lgg") / "features.csv"
    table.to_csv(path)
    return path, manifest


def test_grade_study_on_real_features(lgg_features, tmp_path):
    features, manifest = lgg_features
    result = run_study(
        features,
        labels=manifest,
        target="grade",
        positive="G3",
        groups={"firstorder": ["firstorder"], "shape": ["shape"], "classical": ["firstorder", "shape"]},
        caveats=[CAVEAT],
        n_boot=500,
    )
    assert result.info["n_cases"] == 62 and result.info["n_dropped_blank"] == 1  # one case has no grade
    assert (result.info["n_positive"], result.info["n_negative"]) == (32, 30)
    assert result.info["families"] == {"firstorder": 18, "shape": 14, "classical": 32}
    auc = result.metrics[result.metrics.metric == "AUC"]
    assert len(auc) == 6 and auc["mean"].between(0, 1).all() and auc["sd"].gt(0).all()
    assert len(result.fold_metrics) == 6 * 25
    report = result.write(tmp_path / "grade")
    page = report.read_text()
    assert CAVEAT in page and "G3 vs G2" in page


def test_idh_is_predictable_from_classical_features(lgg_features):
    """IDH wild-type lower-grade gliomas look different on FLAIR; firstorder + shape features pick it up
    (measured: logistic 5x5-fold AUC 0.81, 95% CI 0.62-0.99 on 59 labelled cases)."""
    features, manifest = lgg_features
    result = run_study(features, labels=manifest, target="idh_mutant", positive=0, models=["logistic"])
    assert result.info["n_cases"] == 59 and result.info["positive"] == "0"
    auc = result.metrics.query("metric == 'AUC'").iloc[0]
    assert auc["mean"] > 0.65 and np.isfinite(auc["ci_low"])
