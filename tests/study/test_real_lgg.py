"""End to end on real data: PyRadiomics firstorder + shape features of the 63 TCGA-LGG cases.

The features are computed once per session with PyRadiomics itself (about 40 s on one core), so this
module is marked slow.
"""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def lgg_features(tmp_path_factory) -> tuple[Path, Path]:
    manifest = LGG / "cases.csv"
    if not manifest.exists():
        pytest.skip(f"real LGG data not found at {manifest} (the shared data folder sits beside the repository)")
    import radiomics
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    extractor = RadiomicsFeatureExtractor()
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("firstorder")
    extractor.enableFeatureClassByName("shape")
    cases = pd.read_csv(manifest)
    rows = {}
    for case in cases.itertuples():
        # float image: PyRadiomics' bin edges overflow on uint8 input (maximum + 2 * binWidth wraps past 255)
        image = sitk.Cast(sitk.ReadImage(str(LGG / case.Image)), sitk.sitkFloat32)
        result = extractor.execute(image, sitk.ReadImage(str(LGG / case.Mask)))
        rows[case.ID] = {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}
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
