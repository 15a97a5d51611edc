"""Studies: compare feature families on a binary label, find responsible codewords, write a report.

Public API
----------
:func:`run_study` -> :class:`StudyResult` (``.write(out_dir)`` writes CSVs, PNGs and report.html);
:func:`feature_families`, :func:`histogram_groups`, :func:`parse_groups`; :func:`cross_validate`, :func:`make_pipeline`;
:func:`responsible_vectors`; statistics :func:`binary_metrics`, :func:`corrected_resampled_ttest`,
:func:`delong_test`, :func:`bootstrap_metrics`, :func:`adjust_pvalues`, :func:`icc`, :func:`kruskal_dunn`,
:func:`firth_logit`; data :func:`prepare_data` -> :class:`LabelledData`; :func:`write_report`.

The names are resolved lazily: scikit-learn, statsmodels and matplotlib load only when a study
function is first used.
"""

import importlib

#: public name -> submodule that defines it (imported on first access, PEP 562, so that importing a
#: sibling such as ``deepradiomics.study.explain`` does not pull in scikit-learn and statsmodels)
_EXPORTS = {
    "MODELS": "classification",
    "TTestFScoreSelector": "classification",
    "UnivariateScreen": "classification",
    "cross_validate": "classification",
    "fisher_score": "classification",
    "make_pipeline": "classification",
    "StudyDataError": "data",
    "case_covariates": "confounds",
    "confound_notes": "confounds",
    "confound_table": "confounds",
    "StudyResult": "core",
    "prepare_data": "data",
    "LabelledData": "data",
    "StudySpec": "core",
    "run_study": "core",
    "feature_families": "families",
    "histogram_groups": "families",
    "parse_groups": "families",
    "write_report": "report",
    "ResponsibleVectors": "responsible",
    "firth_logit": "statistics",
    "penalised_lr_statistics": "statistics",
    "icc": "statistics",
    "icc_many": "statistics",
    "kruskal_dunn": "statistics",
    "responsible_vectors": "responsible",
    "METRICS": "statistics",
    "adjust_pvalues": "statistics",
    "binary_metrics": "statistics",
    "bootstrap_metrics": "statistics",
    "corrected_resampled_ttest": "statistics",
    "delong_test": "statistics",
    "interval_note": "statistics",
    "proportion_ci": "statistics",
    "summarize_resamples": "statistics",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "case_covariates",
    "confound_notes",
    "confound_table",
    "interval_note",
    "penalised_lr_statistics",
    "proportion_ci",
    "METRICS",
    "MODELS",
    "ResponsibleVectors",
    "LabelledData",
    "StudyDataError",
    "StudyResult",
    "StudySpec",
    "TTestFScoreSelector",
    "UnivariateScreen",
    "adjust_pvalues",
    "binary_metrics",
    "bootstrap_metrics",
    "corrected_resampled_ttest",
    "cross_validate",
    "delong_test",
    "feature_families",
    "histogram_groups",
    "firth_logit",
    "icc",
    "icc_many",
    "kruskal_dunn",
    "fisher_score",
    "make_pipeline",
    "parse_groups",
    "prepare_data",
    "responsible_vectors",
    "run_study",
    "summarize_resamples",
    "write_report",
]
