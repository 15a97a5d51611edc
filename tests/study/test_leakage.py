"""A fixed table whose fitted class was fitted on the study's own patients is not called leakage-free."""

from __future__ import annotations

import json

import pandas as pd

from deepradiomics.study import run_study

from ._synthetic import noise_table


def _labels(X, y):
    return pd.DataFrame({"ID": X.index, "label": y})


def test_a_table_fitted_on_its_own_patients_is_flagged_in_notes_caveats_and_methods(tmp_path):
    X, y = noise_table(n=40, p=20, feature_class="fisher")
    table = X.copy()
    table["diagnostics_fisher_FittedOn"] = json.dumps(list(X.index[:30]))  # the GMM saw 30 of these 40 patients
    result = run_study(table, labels=_labels(X, y), target="label", models=["logistic"], folds=2, repeats=1, responsible=False)
    assert result.info["leakage"] == {"fisher": sorted(X.index[:30])}
    assert result.caveats[0].startswith("NOT leakage-free") and "fisher (30 of 40 cases)" in result.caveats[0]
    assert any("fitted on 30 of the study's 40 cases" in note for note in result.info["notes"])
    html = (result.write(tmp_path / "report")).read_text()
    assert "NOT leakage-free" in html and "no information from the test patients leaked" not in html


def test_a_table_fitted_on_other_patients_is_leakage_free(tmp_path):
    X, y = noise_table(n=40, p=20, feature_class="fisher")
    table = X.copy()
    table["diagnostics_fisher_FittedOn"] = json.dumps(["someone", "else"])
    result = run_study(table, labels=_labels(X, y), target="label", models=["logistic"], folds=2, repeats=1, responsible=False)
    assert "leakage" not in result.info and not result.caveats
    assert "no information from the test patients leaked" in (result.write(tmp_path / "report")).read_text()
