"""Studies from images: fitted classes (fisher's GMM) refitted inside every training fold, never on a test patient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.model_selection import LeaveOneOut, RepeatedStratifiedKFold

from deepradiomics.cli import main
from deepradiomics.errors import ParamsError
from deepradiomics.featureclass import FeatureClass
from deepradiomics.registry import get_registry
from deepradiomics.study import cross_validate, run_study
from deepradiomics.study.core import StudyDataError
from deepradiomics.study.foldwise import FixedFeatures
from tests.fitted_class import IntensityCodebook
from tests.plugins.test_fisher import COHORT, FAST, tiny_dlr_bundle, write_manifest

#: four more small-ROI LGG cases (2 wild-type, 2 mutant) for an external test set
TEST_COHORT = ["TCGA_FG_7643_20021104", "TCGA_DU_6405_19851005", "TCGA_HT_7877_19980917", "TCGA_FG_6690_20020226"]


class RoiMean(FeatureClass):
    """A cheap hand-crafted class (no fit): the mean and the spread of the main image over the ROI."""

    name = "roimean"
    family = "classical"

    def feature_names(self) -> list[str]:
        return ["Mean", "Std"]

    def compute(self, case) -> dict[str, float]:
        values = np.asarray(case.array(), dtype=np.float64)[case.mask_array()]
        return {"Mean": float(values.mean()), "Std": float(values.std())}


class SpyCodebook(IntensityCodebook):
    """The test codebook, recording the cases it describes and the training cases of every fit."""

    name = "spycodebook"
    family = "deep"  # a family of its own, next to classical and all
    described: list[str] = []
    fitted_on: list[tuple[str, ...]] = []

    def describe(self, case):
        type(self).described.append(case.case_id)
        return super().describe(case)

    def fit_descriptors(self, descriptors, case_ids=()):
        type(self).fitted_on.append(tuple(sorted(case_ids)))
        return super().fit_descriptors(descriptors, case_ids)


@pytest.fixture(autouse=True)
def spy(one_torch_thread):
    registry = get_registry()
    registry.register(SpyCodebook, source="tests")
    registry.register(RoiMean, source="tests")
    SpyCodebook.described, SpyCodebook.fitted_on = [], []
    yield SpyCodebook
    registry.unregister(SpyCodebook.name)
    registry.unregister(RoiMean.name)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, lgg_manifest) -> Path:
    return write_manifest(tmp_path_factory.mktemp("study") / "cases.csv", lgg_manifest, COHORT)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_dlr_bundle(tmp_path_factory.mktemp("bundle") / "tiny-dlr")


def _labels(manifest: Path) -> np.ndarray:
    return pd.read_csv(manifest)["idh_mutant"].to_numpy().astype(int)


def test_a_fixed_source_gives_the_table_results():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(24, 6)), columns=[f"original_firstorder_F{i}" for i in range(6)])
    y = np.r_[np.zeros(12), np.ones(12)].astype(int)
    X["original_firstorder_F0"] += y
    for model in ("logistic", "dlr", "dlr-loo"):
        a = cross_validate(X, y, model, folds=3, repeats=2, seed=1, n_boot=100)
        b = cross_validate(FixedFeatures(X), y, model, folds=3, repeats=2, seed=1, n_boot=100)
        np.testing.assert_array_equal(a.scores, b.scores)
        pd.testing.assert_frame_equal(a.summary, b.summary)


def test_fitted_classes_are_fitted_on_the_training_folds_only(cohort, spy, tmp_path):
    """Every fit is on exactly the training cases of one split (never on a held-out case), one fit per split
    whatever the number of families using the class, and each case is described once."""
    params = {"featureClass": {"roimean": {}, "spycodebook": {"clusters": 3}}}
    result = run_study(manifest=cohort, params=params, target="idh_mutant", models=["dlr", "dlr-loo"], folds=2, repeats=2, seed=3, n_boot=100, cache_dir=tmp_path / "cache")
    ids = pd.read_csv(cohort)["ID"].astype(str).to_numpy()
    y = _labels(cohort)
    kfold = [tuple(sorted(ids[train])) for train, _ in RepeatedStratifiedKFold(n_splits=2, n_repeats=2, random_state=3).split(ids, y)]
    loo = [tuple(sorted(ids[train])) for train, _ in LeaveOneOut().split(ids)]
    assert sorted(spy.fitted_on) == sorted(set(kfold + loo))  # no fit on all cases, none on a test case
    assert result.info["foldwise"]["fits"] == len(set(kfold + loo)) and result.info["foldwise"]["reused_fits"] > 0
    # every fit reports whether its EM converged; the study counts those that did not
    assert 0 <= result.info["foldwise"]["fits_not_converged"] <= result.info["foldwise"]["fits"]
    assert sorted(spy.described) == sorted(ids)
    assert set(result.metrics["family"]) == {"classical", "spycodebook", "all"}
    # a second study on the same cache describes nothing again (descriptors cached on disk, keyed on the inputs)
    spy.described.clear()
    run_study(manifest=cohort, params=params, target="idh_mutant", models=["dlr"], folds=2, repeats=1, seed=3, cache_dir=tmp_path / "cache")
    assert spy.described == []


def test_fisher_study_from_images_with_external_test(cohort, bundle, tmp_path, lgg_manifest):
    params = tmp_path / "fisher.yaml"
    params.write_text(
        yaml.safe_dump({"setting": {"binWidth": 25.0}, "featureClass": {"roimean": {}, "fisher": {"model": str(bundle), **FAST, "gmm_patients": 5}}})
    )
    test = write_manifest(tmp_path / "test.csv", lgg_manifest, TEST_COHORT)
    result = run_study(manifest=cohort, params=params, target="idh_mutant", models=["dlr"], folds=2, repeats=2, n_boot=100, test=test, cache_dir=tmp_path / "cache")
    auc = result.metrics[result.metrics["metric"] == "AUC"]
    assert set(auc["family"]) == {"classical", "fisher", "all"} and set(auc["model"]) == {"dlr"}
    assert {"AUC", "accuracy", "sensitivity", "specificity", "PPV", "NPV", "MCC"} <= set(result.metrics["metric"])
    # 2 x 2 folds + one fit on every training case for the test set; every family shares them
    assert result.info["foldwise"]["fits"] == 4 + 1
    assert result.external is not None and result.info["n_test"] == len(TEST_COHORT)
    # paired: every family is scored on the same splits
    folds = result.fold_metrics.groupby("family")[["repeat", "fold", "n_test"]].apply(lambda f: tuple(map(tuple, f.to_numpy())))
    assert folds.nunique() == 1
    assert any("refitted inside every training fold" in note for note in result.info["notes"])


def test_foldwise_features_differ_from_a_fit_on_every_case(cohort, bundle, tmp_path):
    """The held-out case's fisher features come from a GMM that never saw it, not from the all-case GMM."""
    from deepradiomics.study.foldwise import prepare_images

    params = {"featureClass": {"fisher": {"model": str(bundle), **FAST}}}
    data, source = prepare_images(cohort, params, target="idh_mutant")
    assert list(data.features.columns) == [] and len(source.columns) == 2 * 2 * 8
    everyone = source.full_table()
    train, test = np.arange(1, len(COHORT)), np.array([0])
    X_train, X_test = source.split(train, test)
    assert np.abs(X_test[0] - everyone.iloc[0].to_numpy()).max() > 1e-6
    # the same split again is served from the per-training-set cache
    fits = source.stats.fits
    again_train, again_test = source.split(train, test)
    assert source.stats.fits == fits
    np.testing.assert_array_equal(again_test, X_test)
    np.testing.assert_allclose(np.linalg.norm(X_train, axis=1), 1.0)


def test_study_command_from_images_and_its_errors(cohort, bundle, tmp_path):
    params = tmp_path / "fisher.yaml"
    params.write_text(yaml.safe_dump({"featureClass": {"fisher": {"model": str(bundle), **FAST}}}))
    runner = CliRunner()
    out = tmp_path / "report"
    args = ["--manifest", str(cohort), "--params", str(params), "--target", "idh_mutant", "--model", "dlr", "--folds", "2", "--repeats", "1"]
    result = runner.invoke(main, ["study", *args, "--cache-dir", str(tmp_path / "cache"), "-q", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "report.html")
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["family"]) == {"fisher"}
    assert "refitted inside every training fold" in (out / "report.html").read_text()
    neither = runner.invoke(main, ["study", "--target", "idh_mutant", "-o", str(tmp_path / "x")])
    assert neither.exit_code == 2 and "--manifest and --params" in neither.output
    half = runner.invoke(main, ["study", "--manifest", str(cohort), "--target", "idh_mutant", "-o", str(tmp_path / "x")])
    assert half.exit_code == 2 and "needs both --manifest and --params" in half.output

    # a fixed table beside the images: its columns join the fold-wise ones; a case without a row is dropped
    ids = pd.read_csv(cohort)["ID"].astype(str).tolist()
    fixed = pd.DataFrame({"ID": ids[1:], "original_firstorder_Mean": np.arange(len(ids) - 1, dtype=float)})
    fixed["diagnostics_Case_Slices"] = np.arange(len(ids) - 1) + 20.0  # its diagnostics come along (confounds)
    fixed.to_csv(tmp_path / "fixed.csv", index=False)
    both = runner.invoke(main, ["study", str(tmp_path / "fixed.csv"), *args, "--cache-dir", str(tmp_path / "cache"), "-q", "-o", str(tmp_path / "y")])
    assert both.exit_code == 0, both.output
    joined = pd.read_csv(tmp_path / "y" / "metrics.csv")
    assert {"fisher", "classical"} <= set(joined["family"])
    assert "dropped 1 case(s)" in (tmp_path / "y" / "report.html").read_text()
    assert "<h2>Confounds" in (tmp_path / "y" / "report.html").read_text()
    clash = pd.DataFrame({"ID": ids, "original_fisher_Mu00d000": 1.0})
    with pytest.raises(StudyDataError, match="fisher, which the params file extracts too"):
        run_study(clash, manifest=cohort, params=params, target="idh_mutant", cache_dir=tmp_path / "cache")
    with pytest.raises(ParamsError, match="needs both a manifest"):
        run_study(manifest=cohort, target="idh_mutant")
