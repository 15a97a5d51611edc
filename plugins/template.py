"""Template for a third-party feature class: copy this file into your own distribution.

Register the class through the entry-point group ``deepradiomics.feature_classes``::

    # pyproject.toml of your distribution
    [project.entry-points."deepradiomics.feature_classes"]
    modalitymeans = "mypackage.features:ModalityMeans"

then name it in a params file like any other class::

    featureClass:
      modalitymeans: {modalities: [t1, t1ce]}

and check it with ``deepradiomics.testing.check_feature_class(ModalityMeans)`` in your tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepradiomics.featureclass import ComputeResult, FeatureClass


@dataclass(frozen=True)
class ModalityMeansSettings:
    """Settings are a frozen dataclass: unknown keys in a params file are rejected with a suggestion."""

    modalities: tuple[str, ...] = ("Image",)

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ValueError("modalities: give at least one modality name")


class ModalityMeans(FeatureClass):
    """Mean intensity of each named modality inside the region of interest.

    .. math:: \\text{Mean}_m = \\frac{1}{N_p} \\sum_{i \\in \\text{ROI}} X_m(i)

    Examples
    --------
    >>> from deepradiomics.testing import synthetic_case
    >>> result = ModalityMeans().compute(synthetic_case())
    >>> list(result.features), list(result.diagnostics)
    (['MeanImage'], ['RoiVoxels'])
    """

    name = "modalitymeans"
    family = "classical"  # hand-crafted, though not computed by PyRadiomics
    Settings = ModalityMeansSettings

    def feature_names(self) -> list[str]:
        """``Mean<modality>`` per modality."""
        return [f"Mean{m}" for m in self.settings.modalities]

    def compute(self, case) -> ComputeResult:
        """The mean of each modality in the ROI; the case's diagnostics: its ROI voxel count."""
        # the features, and what is particular to this case (its diagnostics): nothing is left on the instance
        roi = case.mask_array()
        features = {f"Mean{m}": float(np.asarray(case.array(m), dtype=np.float64)[roi].mean()) for m in self.settings.modalities}
        return ComputeResult(features, {"RoiVoxels": int(roi.sum())})

    def diagnostics(self) -> dict[str, object]:
        """The modalities read."""
        return {"Modalities": ",".join(self.settings.modalities)}
