"""A small fitted feature class for the platform's tests: a k-means codebook over ROI voxel intensities.

``describe`` samples ROI intensities of a case; ``fit_descriptors`` learns K centres (k-means, seeded) on the
pooled training samples; ``encode`` gives the fraction of the case's ROI voxels nearest to each centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepradiomics.featureclass import FeatureClass


@dataclass(frozen=True)
class CodebookSettings:
    clusters: int = 4
    samples: int = 2000
    seed: int = 0
    fitted: str | None = None

    def __post_init__(self) -> None:
        if int(self.clusters) < 2:
            raise ValueError(f"clusters: {self.clusters} must be >= 2")


class IntensityCodebook(FeatureClass):
    """Fraction of ROI voxels nearest to each of K intensity centres learned on a cohort.

    .. math:: \\text{Bin}k = \\frac{1}{N_p} \\sum_{i \\in \\text{ROI}} [\\arg\\min_j |x_i - c_j| = k]
    """

    name = "codebook"
    family = "classical"
    Settings = CodebookSettings
    requires_fit = True

    def feature_names(self) -> list[str]:
        return [f"Bin{k}" for k in range(int(self.settings.clusters))]

    def describe(self, case) -> dict[str, np.ndarray]:
        values = np.asarray(case.array(), dtype=np.float64)[case.mask_array()]
        rng = np.random.default_rng(self.settings.seed)
        sample = rng.choice(values, size=min(len(values), int(self.settings.samples)), replace=False)
        return {"intensities": np.sort(sample)}

    def fit_descriptors(self, descriptors, case_ids=()):
        from sklearn.cluster import KMeans

        pooled = np.concatenate([d["intensities"] for d in descriptors])[:, None]
        model = KMeans(n_clusters=int(self.settings.clusters), n_init=4, random_state=self.settings.seed).fit(pooled)
        self.centres_ = np.sort(model.cluster_centers_[:, 0])
        return self

    def encode(self, descriptors) -> dict[str, float]:
        values = descriptors["intensities"]
        nearest = np.abs(values[:, None] - self.centres_[None, :]).argmin(axis=1)
        counts = np.bincount(nearest, minlength=len(self.centres_)) / len(values)
        return dict(zip(self.feature_names(), (float(c) for c in counts)))

    def fitted_state(self):
        centres = getattr(self, "centres_", None)
        return None if centres is None else {"centres": centres}

    def set_fitted_state(self, arrays) -> None:
        self.centres_ = np.asarray(arrays["centres"], dtype=np.float64)

    def diagnostics(self) -> dict[str, object]:
        return {"Clusters": int(self.settings.clusters)}


#: the conformance checks a fitted class goes through, in order (deepradiomics.testing.check_feature_class)
FITTED_CLASS_CHECKS = [
    "contract",
    "init_stores_settings",
    "refuses_compute_before_fit",
    "names_valid",
    "computes",
    "deterministic",
    "pickles",
    "save_load_round_trip",
    "loads_from_params",
]
