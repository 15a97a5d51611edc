"""A scikit-learn transformer: rows of image/mask paths in, radiomics features out.

Examples
--------
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> model = make_pipeline(RadiomicsTransformer("params/classical.yaml"), LogisticRegression())  # doctest: +SKIP
>>> model.fit(manifest[["ID", "Image", "Mask"]], manifest["grade"])  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .errors import FeatureError
from .naming import feature_columns


class RadiomicsTransformer(TransformerMixin, BaseEstimator):
    """Extract features for each row of a manifest-like DataFrame (``Image``, ``Mask``, ``Image_<name>``).

    Parameters
    ----------
    params
        Params file path or mapping.
    jobs
        Worker processes for extraction.
    base_dir
        Folder that relative paths in ``X`` are relative to (default: the working directory).
    on_error
        ``"raise"`` (default) or ``"nan"`` to keep failed cases as NaN rows.
    """

    def __init__(self, params="params/classical.yaml", jobs: int = 1, base_dir=None, on_error: str = "raise") -> None:
        self.params = params
        self.jobs = jobs
        self.base_dir = base_dir
        self.on_error = on_error

    def _table(self, X):
        import pandas as pd

        frame = X.copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=["Image", "Mask"])
        if "ID" not in frame.columns:
            frame.insert(0, "ID", [str(i) for i in range(len(frame))] if frame.index.name != "ID" else frame.index.astype(str))
        table = self.extractor_.execute_batch(frame, jobs=self.jobs, base_dir=self.base_dir)
        from .batch import failures

        failed = failures(table)
        if failed and self.on_error == "raise":
            case_id, message = failed[0]
            raise FeatureError(f"{len(failed)} case(s) failed, first '{case_id}': {message} (use on_error='nan' to keep NaN rows)")
        return table

    def fit(self, X, y=None):
        """Build the extractor (and fit cohort-level classes); records ``feature_names_out_``."""
        from .batch import case_from_row, read_manifest
        from .extractor import Extractor

        self.extractor_ = Extractor(self.params)
        if self.extractor_.fitted_classes:
            frame, base = read_manifest(X, self.base_dir)
            self.extractor_.fit([case_from_row(r, base) for r in frame.to_dict(orient="records")])
        table = self._table(X)
        self.feature_names_out_ = np.array(feature_columns(table.columns), dtype=object)
        self._fit_table = table
        return self

    def transform(self, X):
        """Feature matrix (n_cases, n_features) in ``get_feature_names_out()`` order."""
        if not hasattr(self, "extractor_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("RadiomicsTransformer is not fitted: call fit first")
        table = self._table(X)
        return table.reindex(columns=list(self.feature_names_out_)).to_numpy(dtype=np.float64)

    def fit_transform(self, X, y=None, **fit_params):
        """``fit(X)`` then ``transform(X)`` (the cases are extracted once)."""
        self.fit(X, y)
        table = self._fit_table
        del self._fit_table
        return table.reindex(columns=list(self.feature_names_out_)).to_numpy(dtype=np.float64)

    def get_feature_names_out(self, input_features=None):
        """The feature column names, in the order of ``transform``'s columns."""
        return self.feature_names_out_.copy()
