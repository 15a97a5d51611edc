"""Studies: compare feature families on a binary label, find responsible codewords, write a report.

Public API
----------
:func:`run_study` -> :class:`StudyResult` (``.write(out_dir)`` writes CSVs, PNGs and report.html);
:func:`feature_families`, :func:`parse_groups`; :func:`cross_validate`, :func:`make_pipeline`;
:func:`responsible_vectors`; statistics :func:`binary_metrics`, :func:`corrected_resampled_ttest`,
:func:`delong_test`, :func:`bootstrap_metrics`, :func:`adjust_pvalues`; :func:`write_report`.

scikit-learn, statsmodels and matplotlib are imported only when these modules are used (this package
is imported by nothing at ``deepradiomics`` import time).
"""

from .classification import (
    MODELS,
    TTestFScoreSelector,
    UnivariateScreen,
    cross_validate,
    fisher_score,
    make_pipeline,
)
from .core import StudyDataError, StudyResult, prepare_data, run_study
from .families import CLASSICAL_CLASSES, feature_families, parse_groups
from .report import write_report
from .responsible import ResponsibleVectors, firth_logit, responsible_vectors
from .statistics import (
    METRICS,
    adjust_pvalues,
    binary_metrics,
    bootstrap_metrics,
    corrected_resampled_ttest,
    delong_test,
    summarize_resamples,
)

__all__ = [
    "CLASSICAL_CLASSES",
    "METRICS",
    "MODELS",
    "ResponsibleVectors",
    "StudyDataError",
    "StudyResult",
    "TTestFScoreSelector",
    "UnivariateScreen",
    "adjust_pvalues",
    "binary_metrics",
    "bootstrap_metrics",
    "corrected_resampled_ttest",
    "cross_validate",
    "delong_test",
    "feature_families",
    "firth_logit",
    "fisher_score",
    "make_pipeline",
    "parse_groups",
    "prepare_data",
    "responsible_vectors",
    "run_study",
    "summarize_resamples",
    "write_report",
]
