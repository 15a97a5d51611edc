"""IBSI 1 compliance: deepradiomics' classical features against the IBSI consensus reference values.

The Image Biomarker Standardisation Initiative (IBSI, chapter 1) published consensus values, with
tolerances, for a 5x4x4 digital phantom and for a lung cancer CT (the "radiomics phantom") processed
under five configurations A-E (Zwanenburg et al., Radiology 2020;295:328-338; IBSI reference manual,
arXiv:1612.07003, chapter "Reference data sets"). This module runs each configuration through the
normal deepradiomics extraction (:class:`deepradiomics.Extractor`) and compares every value that
PyRadiomics' own IBSI benchmark maps to an IBSI tag (AIM-Harvard/pyradiomics_ibsi-benchmark):

>>> table = compliance_table("../shared/data/ibsi", ["phantom"])  # doctest: +SKIP
>>> summarize(table)  # doctest: +SKIP

What runs
---------
Each configuration's settings follow the manual's table of configurations and the params of
PyRadiomics' benchmark (:data:`CONFIGURATIONS`). A name-table entry ``2D_...`` comes from an extraction
with ``force2D: true`` (IBSI's "2.5D": in-slice neighbours, matrices merged over slices), ``3D_...``
from a volumetric one; ``..._Combined_...`` from one with ``weightingNorm: no_weighting``, which merges
the directional matrices before computing features (IBSI's "comb"; without it PyRadiomics averages the
features over directions, IBSI's "avg"). Each extraction enables exactly the features mapped to it.

Two choices are the project's, not the benchmark's:

- configuration E combines range re-segmentation [-1000, 400] HU with 3-sigma outlier filtering, which
  PyRadiomics' single ``resegmentRange`` cannot express; the benchmark hard-coded [-718, 400]. Here a
  first extraction (firstorder Mean and Variance, same interpolation, range [-1000, 400]) gives mu and
  sigma of the range-re-segmented ROI, and the extraction uses the intersection
  [max(-1000, mu - 3 sigma), min(400, mu + 3 sigma)]. With IBSI's interpolation this reproduces the
  reference re-segmented voxel count (44484) and minimum (-743 HU);
- a value passes when it, or the value rounded to 3 significant digits, lies within the tolerance of
  the reference (:func:`within_tolerance`): the manual's chapter "Benchmarks" says that all contributed
  values were rounded to 3 significant digits before the consensus was formed, and the digital phantom's
  tolerances are 0.

Interpolation
-------------
``interpolation="pyradiomics"`` (the default, what a deepradiomics params file gets) lets PyRadiomics
resample (``resampledPixelSpacing``, ``interpolator``). ``interpolation="ibsi"`` instead interpolates the
image and mask as the manual prescribes (:func:`ibsi_interpolate`) and hands the result to the same
extraction without resampling; it is the evidence for the known deviation "resampling" and a way to get
IBSI-conformant preprocessing. In that mode the extractor's input *is* the interpolated image, so the
name table's ``-interpolated_`` diagnostics are read from that input's ``-original_`` diagnostics, the
``-original_`` ones from an extraction of the initial image, and a mask's mean, minimum and maximum
intensity, which PyRadiomics reports only for a re-segmented mask, from a re-segmentation with an
all-inclusive range (:data:`ALL_INCLUSIVE`), which keeps every voxel.

Known deviations
----------------
:data:`KNOWN_DEVIATIONS` lists, per configuration, every mapped value that fails in the default run and
why (:data:`CAUSES`). Each cause was checked numerically by removing it: :func:`explain_failures` finds,
for each failure, the smallest set of corrections (IBSI's definition, IBSI's interpolation, IBSI's fixed
bin size edges) under which the value passes; ``tests/test_ibsi.py`` and
``benchmarks/ibsi_compare.py --evidence`` check that the list is exactly that. The default features
never change: the IBSI definitions are offered as the extra columns ``ibsi_value`` / ``ibsi_passed``.
"""

from __future__ import annotations

import ast
import csv
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CaseError, ParamsError

logger = logging.getLogger(__name__)

#: configuration names, in the order the manual lists them (the digital phantom first)
CONFIGURATION_NAMES = ("phantom", "A", "B", "C", "D", "E")
#: what computes the features: deepradiomics' Extractor, or PyRadiomics' RadiomicsFeatureExtractor alone
ENGINES = ("deepradiomics", "pyradiomics")
#: who interpolates: PyRadiomics' resampling (default) or the IBSI manual's (``ibsi_interpolate``)
INTERPOLATIONS = ("pyradiomics", "ibsi")
#: precision of the IBSI consensus values (manual, chapter "Benchmarks")
SIGNIFICANT_DIGITS = 3
#: a re-segmentation range that keeps every voxel (PyRadiomics then reports the mask's intensities)
ALL_INCLUSIVE = (-1.0e30, 1.0e30)
#: relative slack on tolerances, for decimal references that are not exact binary floats
_SLACK = 1e-9
#: the shared data folder, relative to the working directory and to the repository
DATA_RELATIVE = Path("..") / "shared" / "data" / "ibsi"


@dataclass(frozen=True)
class IbsiConfiguration:
    """One IBSI configuration: files, PyRadiomics settings and interpolation.

    Attributes
    ----------
    name, description
        ``"phantom"`` or ``"A"``-``"E"``, and the manual's row of the table of configurations.
    image, mask, reference, names
        Paths relative to the IBSI data folder: image, mask, reference values, name table.
    setting
        PyRadiomics settings shared by every extraction of the configuration (no interpolation).
    spacing, interpolator
        Interpolation to this spacing in mm (0 keeps an axis) with this SimpleITK interpolator; None: none.
    outlier_filtering
        Outlier filtering (mean +- 3 sd of the ROI) after the range re-segmentation in ``setting``
        (two extractions, see the module docstring).
    """

    name: str
    description: str
    image: str
    mask: str
    reference: str
    names: str
    setting: Mapping[str, Any] = field(default_factory=dict)
    spacing: tuple[float, float, float] | None = None
    interpolator: str | None = None
    outlier_filtering: bool = False

    def paths(self, data_dir: str | os.PathLike) -> dict[str, Path]:
        """``{role: path}`` of the configuration's four files under ``data_dir``."""
        root = Path(data_dir)
        return {role: root / getattr(self, role) for role in ("image", "mask", "reference", "names")}

    def missing(self, data_dir: str | os.PathLike) -> list[Path]:
        """The configuration's files that are absent under ``data_dir``."""
        return [path for path in self.paths(data_dir).values() if not path.is_file()]

    def pyradiomics_setting(self, interpolation: str) -> dict[str, Any]:
        """The PyRadiomics settings of every extraction; PyRadiomics resamples only in the default mode."""
        setting = dict(self.setting)
        if self.spacing is not None and interpolation == "pyradiomics":
            setting["resampledPixelSpacing"] = list(self.spacing)
            setting["interpolator"] = self.interpolator
        return setting


_CT = {"image": "ct_phantom/image.nii.gz", "mask": "ct_phantom/mask.nii.gz"}

#: the six configurations (IBSI manual, "Reference data sets"; settings of PyRadiomics' benchmark)
CONFIGURATIONS: dict[str, IbsiConfiguration] = {
    "phantom": IbsiConfiguration(
        "phantom",
        "digital phantom: no interpolation, no re-segmentation, fixed bin size 1 (no discretisation)",
        "digital_phantom/image.nii.gz",
        "digital_phantom/mask.nii.gz",
        "reference_values/ibsi_1_dig_phantom.csv",
        "reference_values/pyradiomics_names_phantom.csv",
        {"binWidth": 1.0},
    ),
    "A": IbsiConfiguration(
        "A",
        "2D, no interpolation, re-segmentation [-500, 400] HU, fixed bin size 25 HU",
        **_CT,
        reference="reference_values/ibsi_1_chest_config_a.csv",
        names="reference_values/pyradiomics_names_config_1.csv",
        setting={"binWidth": 25.0, "resegmentRange": [-500.0, 400.0]},
    ),
    "B": IbsiConfiguration(
        "B",
        "2D, bilinear interpolation to 2 x 2 mm in-plane, re-segmentation [-500, 400] HU, fixed bin number 32",
        **_CT,
        reference="reference_values/ibsi_1_chest_config_b.csv",
        names="reference_values/pyradiomics_names_config_2.csv",
        setting={"binCount": 32, "resegmentRange": [-500.0, 400.0]},
        spacing=(2.0, 2.0, 0.0),
        interpolator="sitkLinear",
    ),
    "C": IbsiConfiguration(
        "C",
        "3D, trilinear interpolation to 2 x 2 x 2 mm, re-segmentation [-1000, 400] HU, fixed bin size 25 HU",
        **_CT,
        reference="reference_values/ibsi_1_chest_config_c.csv",
        names="reference_values/pyradiomics_names_config_3.csv",
        setting={"binWidth": 25.0, "resegmentRange": [-1000.0, 400.0]},
        spacing=(2.0, 2.0, 2.0),
        interpolator="sitkLinear",
    ),
    "D": IbsiConfiguration(
        "D",
        "3D, trilinear interpolation to 2 x 2 x 2 mm, outlier filtering (mean +- 3 sd), fixed bin number 32",
        **_CT,
        reference="reference_values/ibsi_1_chest_config_d.csv",
        names="reference_values/pyradiomics_names_config_4.csv",
        setting={"binCount": 32, "resegmentRange": [-3.0, 3.0], "resegmentMode": "sigma"},
        spacing=(2.0, 2.0, 2.0),
        interpolator="sitkLinear",
    ),
    "E": IbsiConfiguration(
        "E",
        "3D, tricubic spline interpolation to 2 x 2 x 2 mm, re-segmentation [-1000, 400] HU and outlier "
        "filtering (mean +- 3 sd), fixed bin number 32",
        **_CT,
        reference="reference_values/ibsi_1_chest_config_e.csv",
        names="reference_values/pyradiomics_names_config_5.csv",
        setting={"binCount": 32, "resegmentRange": [-1000.0, 400.0]},
        spacing=(2.0, 2.0, 2.0),
        interpolator="sitkBSpline",
        outlier_filtering=True,
    ),
}


# -- known deviations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviationCause:
    """Why PyRadiomics' value differs from IBSI's, and how that was checked."""

    summary: str
    evidence: str


#: cause id -> explanation; every id names a correction that :func:`explain_failures` can apply
CAUSES: dict[str, DeviationCause] = {
    "kurtosis": DeviationCause(
        "PyRadiomics' Kurtosis is the fourth standardised moment m4/m2^2 (3 for a normal distribution); IBSI's "
        "'kurtosis' is the excess kurtosis m4/m2^2 - 3 (documented in PyRadiomics' firstorder.getKurtosisFeatureValue)",
        "the value minus 3 (column ibsi_value) passes",
    ),
    "pca_covariance": DeviationCause(
        "PyRadiomics' principal axis lengths 4 sqrt(lambda) use the covariance of the voxel centres divided by N "
        "(shape.py scales the centred coordinates by 1/sqrt(N)); the IBSI reference values correspond to the "
        "covariance divided by N - 1: on the phantom's 74 voxels numpy.cov(ddof=1) gives 11.40, 9.308, 8.536 mm "
        "(references 11.4, 9.31, 8.54), ddof=0 gives PyRadiomics' 11.33, 9.245, 8.478 mm",
        "the value times sqrt(N / (N - 1)), N the voxel count of the shape mask (column ibsi_value), passes",
    ),
    "not_computed": DeviationCause(
        "PyRadiomics does not report the mean, minimum and maximum intensity of the original mask: "
        "featureextractor.loadImage calls generalinfo.addMaskElements without the image (only 'corrected' and "
        "'resegmented' masks get intensity diagnostics)",
        "the column is absent; where an all-inclusive re-segmentation makes PyRadiomics report the same ROI "
        "(interpolation='ibsi') the value passes",
    ),
    "no_interpolation": DeviationCause(
        "configuration A does not interpolate, and PyRadiomics writes no 'interpolated' diagnostics when it does "
        "not resample; IBSI reports the initial image and ROI for them",
        "the column is absent; read from the initial image's diagnostics (interpolation='ibsi') the value passes",
    ),
    "resampling": DeviationCause(
        "PyRadiomics' resampling (imageoperations.resampleImage) is not IBSI's: it resamples only the ROI's bounding "
        "box plus padDistance (5) voxels instead of the whole image, aligns the new grid with the corner of the "
        "original grid instead of centring it on the image, interpolates the mask by nearest neighbour instead of "
        "trilinearly with a 0.5 partial-volume threshold, and does not round interpolated intensities to integer HU",
        "the value passes when the same extraction runs on the image and mask interpolated as the IBSI manual "
        "prescribes (interpolation='ibsi', ibsi_interpolate)",
    ),
    "fbs_lower_bound": DeviationCause(
        "PyRadiomics' fixed bin size bins start at the largest multiple of binWidth at or below the ROI minimum "
        "(imageoperations.getBinEdges); IBSI's start at the lower bound of the re-segmentation range (-1000 HU in "
        "configuration C). Every grey level is shifted by a constant number of bins (ROI minimum -922.9 HU after "
        "PyRadiomics' resampling: first edge -925, 3 bins; -939 HU after IBSI's interpolation: -950, 2 bins), which "
        "changes the features that depend on grey level values (averages, autocorrelation, low/high grey level "
        "emphases) and none of those that depend only on their differences",
        "the value passes when PyRadiomics' getBinEdges is replaced by IBSI's (ibsi_bin_edges), with PyRadiomics' "
        "resampling when it is the only cause, with IBSI's interpolation when 'resampling' is listed too",
    ),
}

#: corrections that :func:`explain_failures` applies, and the causes each one removes
CORRECTIONS: dict[str, tuple[str, ...]] = {
    "definition": ("kurtosis", "pca_covariance"),
    "interpolation": ("resampling", "not_computed", "no_interpolation"),
    "binning": ("fbs_lower_bound",),
}


def _deviations(spec: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """``{"cause+cause": "tag tag ..."}`` -> ``{tag: (cause, cause)}`` (a compact way to write the list)."""
    out: dict[str, tuple[str, ...]] = {}
    for causes, tags in spec.items():
        for tag in tags.split():
            out[tag] = tuple(causes.split("+"))
    return out


#: configuration -> {IBSI tag -> causes} of every mapped value that fails in the default run
#: (``interpolation="pyradiomics"``, either engine); measured, each cause checked by :func:`explain_failures`
KNOWN_DEVIATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "phantom": _deviations(
        {
            "pca_covariance": "morph_pca_min_axis morph_pca_least_axis",
            "kurtosis": "stat_kurt",
        }
    ),
    "A": _deviations(
        {
            "no_interpolation": (
                "img_dim_x_interp_img img_dim_y_interp_img img_dim_z_interp_img vox_dim_x_interp_img vox_dim_y_interp_img "
                "vox_dim_z_interp_img mean_int_interp_img min_int_interp_img max_int_interp_img int_mask_dim_x_interp_roi "
                "int_mask_dim_y_interp_roi int_mask_dim_z_interp_roi int_mask_bb_dim_x_interp_roi "
                "int_mask_bb_dim_y_interp_roi int_mask_bb_dim_z_interp_roi morph_mask_bb_dim_x_interp_roi "
                "morph_mask_bb_dim_y_interp_roi morph_mask_bb_dim_z_interp_roi int_mask_vox_count_interp_roi "
                "morph_mask_vox_count_interp_roi int_mask_mean_int_interp_roi int_mask_min_int_interp_roi "
                "int_mask_max_int_interp_roi morph_mask_vox_count_reseg_roi"
            ),
            "not_computed": "int_mask_mean_int_init_roi int_mask_min_int_init_roi int_mask_max_int_init_roi",
            "kurtosis": "stat_kurt",
        }
    ),
    "B": _deviations(
        {
            "resampling": (
                "img_dim_x_interp_img img_dim_y_interp_img img_dim_z_interp_img mean_int_interp_img max_int_interp_img "
                "int_mask_dim_x_interp_roi int_mask_dim_y_interp_roi int_mask_dim_z_interp_roi "
                "int_mask_bb_dim_y_interp_roi morph_mask_bb_dim_y_interp_roi int_mask_mean_int_interp_roi "
                "int_mask_min_int_interp_roi int_mask_max_int_interp_roi int_mask_dim_x_reseg_roi "
                "int_mask_dim_y_reseg_roi int_mask_dim_z_reseg_roi int_mask_bb_dim_y_reseg_roi "
                "morph_mask_bb_dim_y_reseg_roi morph_comp_2 morph_pca_flatness stat_p90 ih_entropy ih_uniformity "
                "cm_joint_max_2_5D_avg cm_joint_var_2_5D_avg cm_joint_entr_2_5D_avg cm_diff_avg_2_5D_avg "
                "cm_diff_var_2_5D_avg cm_diff_entr_2_5D_avg cm_sum_var_2_5D_avg cm_sum_entr_2_5D_avg cm_energy_2_5D_avg "
                "cm_contrast_2_5D_avg cm_dissimilarity_2_5D_avg cm_inv_diff_2_5D_avg cm_inv_diff_mom_2_5D_avg "
                "cm_corr_2_5D_avg cm_clust_tend_2_5D_avg cm_clust_shade_2_5D_avg cm_clust_prom_2_5D_avg "
                "cm_info_corr2_2_5D_avg cm_joint_max_2_5D_comb cm_joint_var_2_5D_comb cm_joint_entr_2_5D_comb "
                "cm_diff_avg_2_5D_comb cm_diff_var_2_5D_comb cm_diff_entr_2_5D_comb cm_sum_var_2_5D_comb "
                "cm_sum_entr_2_5D_comb cm_energy_2_5D_comb cm_contrast_2_5D_comb cm_dissimilarity_2_5D_comb "
                "cm_inv_diff_2_5D_comb cm_inv_diff_mom_2_5D_comb cm_corr_2_5D_comb cm_clust_tend_2_5D_comb "
                "cm_clust_shade_2_5D_comb cm_clust_prom_2_5D_comb cm_info_corr2_2_5D_comb rlm_sre_2_5D_avg "
                "rlm_lre_2_5D_avg rlm_lgre_2_5D_avg rlm_srlge_2_5D_avg rlm_lrlge_2_5D_avg rlm_glnu_2_5D_avg "
                "rlm_glnu_norm_2_5D_avg rlm_rlnu_2_5D_avg rlm_rlnu_norm_2_5D_avg rlm_r_perc_2_5D_avg rlm_gl_var_2_5D_avg "
                "rlm_rl_var_2_5D_avg rlm_rl_entr_2_5D_avg rlm_sre_2_5D_comb rlm_lre_2_5D_comb rlm_lgre_2_5D_comb "
                "rlm_srlge_2_5D_comb rlm_lrlge_2_5D_comb rlm_glnu_2_5D_comb rlm_glnu_norm_2_5D_comb rlm_rlnu_2_5D_comb "
                "rlm_rlnu_norm_2_5D_comb rlm_r_perc_2_5D_comb rlm_gl_var_2_5D_comb rlm_rl_var_2_5D_comb szm_lgze_2_5D "
                "szm_szlge_2_5D szm_glnu_2_5D szm_zsnu_2_5D szm_z_perc_2_5D szm_gl_var_2_5D ngt_coarseness_2_5D "
                "ngt_contrast_2_5D ngl_lde_2_5D ngl_hde_2_5D ngl_lgce_2_5D ngl_ldlge_2_5D ngl_glnu_2_5D "
                "ngl_glnu_norm_2_5D ngl_dcnu_2_5D ngl_dcnu_norm_2_5D ngl_gl_var_2_5D ngl_dc_var_2_5D ngl_dc_entr_2_5D"
            ),
            "not_computed": "int_mask_mean_int_init_roi int_mask_min_int_init_roi int_mask_max_int_init_roi",
            "kurtosis": "stat_kurt",
        }
    ),
    "C": _deviations(
        {
            "resampling": (
                "img_dim_x_interp_img img_dim_y_interp_img img_dim_z_interp_img mean_int_interp_img max_int_interp_img "
                "int_mask_dim_x_interp_roi int_mask_dim_y_interp_roi int_mask_dim_z_interp_roi "
                "int_mask_bb_dim_y_interp_roi int_mask_bb_dim_z_interp_roi morph_mask_bb_dim_y_interp_roi "
                "morph_mask_bb_dim_z_interp_roi int_mask_vox_count_interp_roi morph_mask_vox_count_interp_roi "
                "int_mask_mean_int_interp_roi int_mask_min_int_interp_roi int_mask_max_int_interp_roi "
                "int_mask_dim_x_reseg_roi int_mask_dim_y_reseg_roi int_mask_dim_z_reseg_roi int_mask_bb_dim_y_reseg_roi "
                "int_mask_bb_dim_z_reseg_roi morph_mask_bb_dim_y_reseg_roi morph_mask_bb_dim_z_reseg_roi "
                "int_mask_vox_count_reseg_roi morph_mask_vox_count_reseg_roi int_mask_mean_int_reseg_roi "
                "int_mask_min_int_reseg_roi int_mask_max_int_reseg_roi morph_volume morph_vol_approx morph_area_mesh "
                "morph_av morph_comp_1 morph_comp_2 morph_sph_dispr morph_sphericity morph_pca_least_axis "
                "morph_pca_flatness stat_mean stat_var stat_skew stat_median stat_min stat_p10 stat_max stat_iqr "
                "stat_range stat_mad stat_rmad stat_energy stat_rms ih_entropy ih_uniformity cm_joint_var_3D_avg "
                "cm_joint_entr_3D_avg cm_diff_avg_3D_avg cm_diff_entr_3D_avg cm_sum_var_3D_avg cm_sum_entr_3D_avg "
                "cm_energy_3D_avg cm_dissimilarity_3D_avg cm_inv_diff_3D_avg cm_inv_diff_mom_3D_avg cm_inv_var_3D_avg "
                "cm_corr_3D_avg cm_clust_tend_3D_avg cm_clust_shade_3D_avg cm_clust_prom_3D_avg cm_info_corr1_3D_avg "
                "cm_info_corr2_3D_avg cm_joint_var_3D_comb cm_joint_entr_3D_comb cm_sum_var_3D_comb cm_sum_entr_3D_comb "
                "cm_energy_3D_comb cm_inv_diff_3D_comb cm_inv_diff_mom_3D_comb cm_inv_var_3D_comb cm_corr_3D_comb "
                "cm_clust_tend_3D_comb cm_clust_shade_3D_comb cm_clust_prom_3D_comb cm_info_corr1_3D_comb "
                "cm_info_corr2_3D_comb rlm_glnu_3D_avg rlm_glnu_norm_3D_avg rlm_rlnu_3D_avg rlm_gl_var_3D_avg "
                "rlm_rl_entr_3D_avg rlm_glnu_3D_comb rlm_glnu_norm_3D_comb rlm_rlnu_3D_comb rlm_gl_var_3D_comb "
                "rlm_rl_entr_3D_comb szm_sze_3D szm_lze_3D szm_glnu_norm_3D szm_zsnu_norm_3D szm_z_perc_3D szm_zs_var_3D "
                "szm_zs_entr_3D ngt_contrast_3D ngt_complexity_3D ngt_strength_3D ngl_glnu_3D ngl_glnu_norm_3D "
                "ngl_dcnu_3D ngl_dcnu_norm_3D ngl_gl_var_3D ngl_dc_var_3D ngl_dc_entr_3D"
            ),
            "not_computed": "int_mask_mean_int_init_roi int_mask_min_int_init_roi int_mask_max_int_init_roi",
            "kurtosis+resampling": "stat_kurt",
            "fbs_lower_bound": (
                "cm_joint_avg_3D_avg cm_joint_avg_3D_comb rlm_srhge_3D_avg rlm_lrhge_3D_avg rlm_srhge_3D_comb "
                "rlm_lrhge_3D_comb szm_lgze_3D szm_szlge_3D ngl_hgce_3D ngl_ldlge_3D ngl_ldhge_3D ngl_hdlge_3D "
                "ngl_hdhge_3D"
            ),
            "resampling+fbs_lower_bound": (
                "cm_sum_avg_3D_avg cm_auto_corr_3D_avg cm_sum_avg_3D_comb cm_auto_corr_3D_comb rlm_lgre_3D_avg "
                "rlm_hgre_3D_avg rlm_srlge_3D_avg rlm_lrlge_3D_avg rlm_lgre_3D_comb rlm_hgre_3D_comb rlm_srlge_3D_comb "
                "rlm_lrlge_3D_comb szm_hgze_3D szm_szhge_3D szm_lzlge_3D szm_lzhge_3D ngt_busyness_3D ngl_lgce_3D"
            ),
        }
    ),
    "D": _deviations(
        {
            "resampling": (
                "img_dim_x_interp_img img_dim_y_interp_img img_dim_z_interp_img mean_int_interp_img max_int_interp_img "
                "int_mask_dim_x_interp_roi int_mask_dim_y_interp_roi int_mask_dim_z_interp_roi "
                "int_mask_bb_dim_y_interp_roi int_mask_bb_dim_z_interp_roi morph_mask_bb_dim_y_interp_roi "
                "morph_mask_bb_dim_z_interp_roi int_mask_vox_count_interp_roi morph_mask_vox_count_interp_roi "
                "int_mask_mean_int_interp_roi int_mask_min_int_interp_roi int_mask_max_int_interp_roi "
                "int_mask_dim_x_reseg_roi int_mask_dim_y_reseg_roi int_mask_dim_z_reseg_roi int_mask_bb_dim_y_reseg_roi "
                "int_mask_bb_dim_z_reseg_roi morph_mask_bb_dim_y_reseg_roi morph_mask_bb_dim_z_reseg_roi "
                "int_mask_vox_count_reseg_roi morph_mask_vox_count_reseg_roi int_mask_mean_int_reseg_roi "
                "int_mask_min_int_reseg_roi int_mask_max_int_reseg_roi morph_volume morph_vol_approx morph_area_mesh "
                "morph_av morph_comp_1 morph_comp_2 morph_sph_dispr morph_sphericity morph_pca_least_axis "
                "morph_pca_flatness stat_mean stat_var stat_skew stat_median stat_min stat_p10 stat_p90 stat_max stat_mad "
                "stat_rmad stat_energy stat_rms ih_entropy ih_uniformity cm_joint_max_3D_avg cm_joint_avg_3D_avg "
                "cm_joint_var_3D_avg cm_joint_entr_3D_avg cm_diff_avg_3D_avg cm_diff_var_3D_avg cm_diff_entr_3D_avg "
                "cm_sum_avg_3D_avg cm_sum_var_3D_avg cm_sum_entr_3D_avg cm_energy_3D_avg cm_contrast_3D_avg "
                "cm_dissimilarity_3D_avg cm_inv_diff_3D_avg cm_inv_diff_norm_3D_avg cm_inv_diff_mom_3D_avg "
                "cm_inv_var_3D_avg cm_corr_3D_avg cm_auto_corr_3D_avg cm_clust_tend_3D_avg cm_clust_shade_3D_avg "
                "cm_clust_prom_3D_avg cm_info_corr1_3D_avg cm_info_corr2_3D_avg cm_joint_max_3D_comb cm_joint_avg_3D_comb "
                "cm_joint_var_3D_comb cm_joint_entr_3D_comb cm_diff_avg_3D_comb cm_diff_var_3D_comb cm_diff_entr_3D_comb "
                "cm_sum_avg_3D_comb cm_sum_var_3D_comb cm_sum_entr_3D_comb cm_energy_3D_comb cm_contrast_3D_comb "
                "cm_dissimilarity_3D_comb cm_inv_diff_3D_comb cm_inv_diff_norm_3D_comb cm_inv_diff_mom_3D_comb "
                "cm_inv_var_3D_comb cm_corr_3D_comb cm_auto_corr_3D_comb cm_clust_tend_3D_comb cm_clust_shade_3D_comb "
                "cm_clust_prom_3D_comb cm_info_corr1_3D_comb cm_info_corr2_3D_comb rlm_sre_3D_avg rlm_hgre_3D_avg "
                "rlm_srhge_3D_avg rlm_lrhge_3D_avg rlm_glnu_3D_avg rlm_glnu_norm_3D_avg rlm_rlnu_3D_avg "
                "rlm_rlnu_norm_3D_avg rlm_gl_var_3D_avg rlm_rl_var_3D_avg rlm_rl_entr_3D_avg rlm_sre_3D_comb "
                "rlm_hgre_3D_comb rlm_srhge_3D_comb rlm_lrhge_3D_comb rlm_glnu_3D_comb rlm_glnu_norm_3D_comb "
                "rlm_rlnu_3D_comb rlm_rlnu_norm_3D_comb rlm_gl_var_3D_comb rlm_rl_var_3D_comb rlm_rl_entr_3D_comb "
                "szm_sze_3D szm_lze_3D szm_lgze_3D szm_hgze_3D szm_szlge_3D szm_szhge_3D szm_lzlge_3D szm_lzhge_3D "
                "szm_glnu_norm_3D szm_zsnu_3D szm_zsnu_norm_3D szm_z_perc_3D szm_gl_var_3D szm_zs_var_3D szm_zs_entr_3D "
                "ngt_coarseness_3D ngt_contrast_3D ngt_busyness_3D ngl_lde_3D ngl_hgce_3D ngl_ldlge_3D ngl_ldhge_3D "
                "ngl_hdhge_3D ngl_glnu_norm_3D ngl_dcnu_3D ngl_dcnu_norm_3D ngl_gl_var_3D ngl_dc_var_3D ngl_dc_entr_3D"
            ),
            "not_computed": "int_mask_mean_int_init_roi int_mask_min_int_init_roi int_mask_max_int_init_roi",
            "kurtosis+resampling": "stat_kurt",
        }
    ),
    "E": _deviations(
        {
            "resampling": (
                "img_dim_x_interp_img img_dim_y_interp_img img_dim_z_interp_img mean_int_interp_img min_int_interp_img "
                "max_int_interp_img int_mask_dim_x_interp_roi int_mask_dim_y_interp_roi int_mask_dim_z_interp_roi "
                "int_mask_bb_dim_y_interp_roi int_mask_bb_dim_z_interp_roi morph_mask_bb_dim_y_interp_roi "
                "morph_mask_bb_dim_z_interp_roi int_mask_vox_count_interp_roi morph_mask_vox_count_interp_roi "
                "int_mask_mean_int_interp_roi int_mask_min_int_interp_roi int_mask_max_int_interp_roi "
                "int_mask_dim_x_reseg_roi int_mask_dim_y_reseg_roi int_mask_dim_z_reseg_roi int_mask_bb_dim_y_reseg_roi "
                "int_mask_bb_dim_z_reseg_roi morph_mask_bb_dim_y_reseg_roi morph_mask_bb_dim_z_reseg_roi "
                "int_mask_vox_count_reseg_roi morph_mask_vox_count_reseg_roi int_mask_mean_int_reseg_roi "
                "int_mask_min_int_reseg_roi int_mask_max_int_reseg_roi morph_volume morph_vol_approx morph_area_mesh "
                "morph_av morph_comp_1 morph_comp_2 morph_sph_dispr morph_sphericity morph_pca_least_axis "
                "morph_pca_flatness stat_mean stat_var stat_skew stat_median stat_min stat_p10 stat_max stat_mad "
                "stat_rmad stat_energy stat_rms ih_entropy ih_uniformity cm_joint_avg_3D_avg cm_joint_var_3D_avg "
                "cm_joint_entr_3D_avg cm_diff_avg_3D_avg cm_diff_var_3D_avg cm_diff_entr_3D_avg cm_sum_avg_3D_avg "
                "cm_sum_var_3D_avg cm_sum_entr_3D_avg cm_energy_3D_avg cm_contrast_3D_avg cm_dissimilarity_3D_avg "
                "cm_inv_diff_3D_avg cm_inv_diff_norm_3D_avg cm_inv_diff_mom_3D_avg cm_inv_diff_mom_norm_3D_avg "
                "cm_inv_var_3D_avg cm_corr_3D_avg cm_auto_corr_3D_avg cm_clust_tend_3D_avg cm_clust_shade_3D_avg "
                "cm_clust_prom_3D_avg cm_info_corr1_3D_avg cm_info_corr2_3D_avg cm_joint_avg_3D_comb cm_joint_var_3D_comb "
                "cm_joint_entr_3D_comb cm_diff_avg_3D_comb cm_diff_var_3D_comb cm_diff_entr_3D_comb cm_sum_avg_3D_comb "
                "cm_sum_var_3D_comb cm_sum_entr_3D_comb cm_energy_3D_comb cm_contrast_3D_comb cm_dissimilarity_3D_comb "
                "cm_inv_diff_3D_comb cm_inv_diff_norm_3D_comb cm_inv_diff_mom_3D_comb cm_inv_diff_mom_norm_3D_comb "
                "cm_inv_var_3D_comb cm_corr_3D_comb cm_auto_corr_3D_comb cm_clust_tend_3D_comb cm_clust_shade_3D_comb "
                "cm_clust_prom_3D_comb cm_info_corr1_3D_comb cm_info_corr2_3D_comb rlm_sre_3D_avg rlm_lre_3D_avg "
                "rlm_lgre_3D_avg rlm_hgre_3D_avg rlm_srlge_3D_avg rlm_srhge_3D_avg rlm_lrlge_3D_avg rlm_lrhge_3D_avg "
                "rlm_glnu_3D_avg rlm_glnu_norm_3D_avg rlm_rlnu_3D_avg rlm_rlnu_norm_3D_avg rlm_r_perc_3D_avg "
                "rlm_gl_var_3D_avg rlm_rl_var_3D_avg rlm_rl_entr_3D_avg rlm_sre_3D_comb rlm_lre_3D_comb rlm_lgre_3D_comb "
                "rlm_hgre_3D_comb rlm_srlge_3D_comb rlm_srhge_3D_comb rlm_lrlge_3D_comb rlm_lrhge_3D_comb "
                "rlm_glnu_3D_comb rlm_glnu_norm_3D_comb rlm_rlnu_3D_comb rlm_rlnu_norm_3D_comb rlm_r_perc_3D_comb "
                "rlm_gl_var_3D_comb rlm_rl_var_3D_comb rlm_rl_entr_3D_comb szm_sze_3D szm_lze_3D szm_lgze_3D szm_hgze_3D "
                "szm_szlge_3D szm_szhge_3D szm_lzlge_3D szm_lzhge_3D szm_glnu_3D szm_glnu_norm_3D szm_zsnu_3D "
                "szm_zsnu_norm_3D szm_z_perc_3D szm_gl_var_3D szm_zs_var_3D szm_zs_entr_3D ngt_contrast_3D "
                "ngt_busyness_3D ngt_complexity_3D ngt_strength_3D ngl_lde_3D ngl_hde_3D ngl_lgce_3D ngl_hgce_3D "
                "ngl_ldlge_3D ngl_ldhge_3D ngl_hdlge_3D ngl_hdhge_3D ngl_glnu_3D ngl_glnu_norm_3D ngl_dcnu_3D "
                "ngl_dcnu_norm_3D ngl_gl_var_3D ngl_dc_entr_3D"
            ),
            "not_computed": "int_mask_mean_int_init_roi int_mask_min_int_init_roi int_mask_max_int_init_roi",
            "kurtosis+resampling": "stat_kurt",
        }
    ),
}


def known_deviations(configuration: str, interpolation: str = "pyradiomics") -> dict[str, tuple[str, ...]]:
    """``{tag: causes}`` expected to fail for ``configuration`` under ``interpolation``.

    With IBSI's interpolation the causes that it removes (:data:`CORRECTIONS` ``["interpolation"]``) drop
    out; a tag left without a cause is expected to pass.
    """
    _check_choice(interpolation, INTERPOLATIONS, "interpolation")
    listed = KNOWN_DEVIATIONS.get(_configuration(configuration).name, {})
    if interpolation == "pyradiomics":
        return dict(listed)
    removed = set(CORRECTIONS["interpolation"])
    remaining = {tag: tuple(c for c in causes if c not in removed) for tag, causes in listed.items()}
    return {tag: causes for tag, causes in remaining.items() if causes}


# -- reading the reference data -------------------------------------------------------------------
@dataclass(frozen=True)
class MappedValue:
    """One row of a name table: an IBSI tag and where PyRadiomics' value of it is found."""

    tag: str
    extraction: str  # "2D", "3D", "2D_Combined" or "3D_Combined"
    key: str  # PyRadiomics' key in that extraction, e.g. "original_glcm_Contrast"
    index: int | None = None  # element of a tuple-valued diagnostic

    @property
    def is_diagnostic(self) -> bool:
        """Whether the value is one of PyRadiomics' ``diagnostics_*`` (not a feature)."""
        return self.key.startswith("diagnostics_")

    @property
    def column(self) -> str:
        """The column of the extraction's row, with the tuple element when there is one."""
        return self.key if self.index is None else f"{self.key}[{self.index}]"

    @property
    def dimensions(self) -> str:
        """``2D`` (force2D) or ``3D``."""
        return self.extraction[:2]


def read_name_table(path: str | os.PathLike) -> list[MappedValue]:
    """The IBSI tag -> PyRadiomics name table of PyRadiomics' IBSI benchmark (``tag,pyradiomics_feature[,idx]``)."""
    mapped = []
    for line, row in enumerate(_read_csv(path, ","), start=2):
        name, tag = (row.get("pyradiomics_feature") or "").strip(), (row.get("tag") or "").strip()
        dimensions, _, rest = name.partition("_")
        if not tag or dimensions not in ("2D", "3D") or not rest:
            raise CaseError(f"name table '{path}', line {line}: {name!r} is not '2D_<key>' or '3D_<key>': give PyRadiomics' benchmark table")
        extraction = dimensions
        if rest.startswith("Combined_"):
            extraction, rest = f"{dimensions}_Combined", rest[len("Combined_"):]
        if not (rest.startswith("original_") or rest.startswith("diagnostics_")):
            raise CaseError(f"name table '{path}', line {line}: {name!r} names neither an original feature nor a diagnostic")
        index = (row.get("idx") or "").strip()
        mapped.append(MappedValue(tag, extraction, rest, int(index) if index else None))
    if not mapped:
        raise CaseError(f"name table '{path}' maps no IBSI tag: give PyRadiomics' benchmark table")
    return mapped


def read_reference(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{tag: (reference value, tolerance)}`` of an IBSI reference table (``reference value;tolerance;tag``)."""
    values = {}
    for line, row in enumerate(_read_csv(path, ";"), start=2):
        text, tolerance = (row.get("reference value") or "").strip(), (row.get("tolerance") or "").strip()
        if not text:
            continue  # tags without a consensus value
        try:
            values[row["tag"].strip()] = (float(text), float(tolerance or 0.0))
        except (ValueError, KeyError, AttributeError) as exc:
            raise CaseError(f"reference table '{path}', line {line}: {row!r} is not 'value;tolerance;tag' ({exc})") from exc
    return values


def _read_csv(path: str | os.PathLike, delimiter: str) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle, delimiter=delimiter))
    except OSError as exc:
        raise CaseError(f"cannot read '{path}': {exc.strerror or exc}: check --data (the IBSI data folder)") from exc


# -- comparison -----------------------------------------------------------------------------------
def round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0, NaN and infinities unchanged)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits - 1}e}")


def within_tolerance(value: float, reference: float, tolerance: float) -> bool:
    """Whether ``value`` matches an IBSI reference: it, or it rounded to 3 significant digits, is within tolerance.

    The IBSI consensus values are 3-significant-digit roundings of the contributed values (manual,
    chapter "Benchmarks"), so a tolerance of 0 means "equal after that rounding"; exact diagnostics with
    more digits (e.g. a maximum of 3065 HU) match unrounded. A relative slack of 1e-9 absorbs the binary
    representation of decimal references. NaN (a value not computed) never matches.

    Examples
    --------
    >>> within_tolerance(2.2046, 2.2, 0.0), within_tolerance(3065.0, 3065.0, 0.0), within_tolerance(9.245, 9.31, 0.06)
    (True, True, False)
    """
    if not math.isfinite(value):
        return False
    bound = tolerance * (1 + _SLACK) + _SLACK * 1e-3 * abs(reference)
    return abs(value - reference) <= bound or abs(round_significant(value) - reference) <= bound


# -- IBSI preprocessing and binning ---------------------------------------------------------------
def ibsi_interpolate(
    image,
    mask,
    spacing: Sequence[float],
    interpolator: str = "sitkLinear",
    label: int = 1,
    *,
    mask_interpolator: str = "sitkLinear",
    round_intensities: bool = True,
):
    """Interpolate ``image`` and ``mask`` as the IBSI manual prescribes; returns ``(image, mask)`` (SimpleITK).

    IBSI manual, "Image processing" > "Interpolation": the image is converted to 32-bit float and rounded;
    the new grid has ``ceil(n_a s_a / s_b)`` points per axis and is centred on the original grid (origin
    ``x_a + (s_a (n_a - 1) - s_b (n_b - 1)) / 2``); intensities outside the original grid take the nearest
    boundary value; interpolated intensities are rounded to the nearest integer (CT in HU); the mask of
    ``label`` is interpolated trilinearly and kept where the fraction is at least 0.5 (partial volume
    threshold). A spacing of 0 keeps an axis as it is (2D interpolation, configuration B).

    Parameters
    ----------
    image, mask
        ``SimpleITK.Image`` or paths.
    spacing
        New spacing in mm per axis (x, y, z); 0 keeps the axis.
    interpolator
        SimpleITK interpolator name for the image: ``sitkLinear`` (trilinear) or ``sitkBSpline`` (cubic
        B-spline, IBSI's "tricubic spline").
    label
        Label value of the region of interest in ``mask``; the returned mask holds it where kept.
    mask_interpolator, round_intensities
        The mask's interpolator (the manual allows ``sitkNearestNeighbor`` too; its configurations use
        trilinear) and whether interpolated intensities are rounded (CT): options for measuring what each
        step of PyRadiomics' resampling changes (benchmarks/ibsi_compare.py --resampling-steps).
    """
    import numpy as np
    import SimpleITK as sitk

    image = sitk.ReadImage(str(image)) if isinstance(image, (str, os.PathLike)) else image
    mask = sitk.ReadImage(str(mask)) if isinstance(mask, (str, os.PathLike)) else mask
    method, mask_method = _interpolator(interpolator), _interpolator(mask_interpolator)
    old_spacing = np.asarray(image.GetSpacing(), dtype=float)
    old_size = np.asarray(image.GetSize(), dtype=float)
    wanted = np.asarray(spacing, dtype=float)
    if wanted.shape != old_spacing.shape or np.any(wanted < 0):
        raise ParamsError(f"spacing {list(spacing)} must give one non-negative value per image axis ({len(old_spacing)})")
    new_spacing = np.where(wanted > 0, wanted, old_spacing)
    # rounded before the ceiling so that 60 x 3.0 / 2.0 stays 90 whatever the float error
    new_size = np.ceil(np.round(old_size * old_spacing / new_spacing, 6)).astype(int)
    origin_index = 0.5 * (old_size - 1 - new_spacing / old_spacing * (new_size - 1))
    resample = sitk.ResampleImageFilter()
    resample.SetOutputOrigin(image.TransformContinuousIndexToPhysicalPoint(origin_index.tolist()))
    resample.SetOutputSpacing(new_spacing.tolist())
    resample.SetSize([int(n) for n in new_size])
    resample.SetOutputDirection(image.GetDirection())
    resample.SetOutputPixelType(sitk.sitkFloat32)
    resample.SetUseNearestNeighborExtrapolator(True)
    resample.SetInterpolator(method)
    interpolated = resample.Execute(sitk.Round(sitk.Cast(image, sitk.sitkFloat32)))
    if round_intensities:
        interpolated = sitk.Round(interpolated)
    resample.SetInterpolator(mask_method)
    fraction = resample.Execute(sitk.Cast(mask == label, sitk.sitkFloat32))
    roi = sitk.Cast(fraction >= 0.5, sitk.sitkUInt8) * label
    return interpolated, roi


def _interpolator(name: str) -> int:
    """SimpleITK's interpolator enum for a name such as ``sitkLinear``."""
    import SimpleITK as sitk

    method = getattr(sitk, str(name), None)
    if not isinstance(method, int) or not str(name).startswith("sitk"):
        raise ParamsError(f"interpolator '{name}' is not a SimpleITK interpolator: give e.g. sitkLinear, sitkBSpline or sitkNearestNeighbor")
    return method


def ibsi_bin_edges(parameterValues, **kwargs):  # noqa: N803 (PyRadiomics' signature)
    """IBSI's bin edges, a stand-in for PyRadiomics' ``imageoperations.getBinEdges``.

    IBSI manual, "Intensity discretisation" > "Fixed bin size": ``X_d = floor((X - X_min) / w_b) + 1`` with
    ``X_min`` the lower bound of the re-segmentation range (an absolute ``resegmentRange``), else the ROI
    minimum; the edges start at ``X_min`` and step by ``binWidth`` past the maximum. With ``binCount`` the
    edges are PyRadiomics' (``numpy.histogram`` edges, the last one raised by 1 so that the maximum falls in
    the top bin), which is IBSI's fixed bin number. deepradiomics never installs this function: the
    evidence for the known deviation "fbs_lower_bound" replaces PyRadiomics' for one run
    (tests/test_ibsi.py, benchmarks/ibsi_compare.py).
    """
    import numpy as np

    values = np.asarray(parameterValues, dtype=float)
    if kwargs.get("binCount") is not None:
        edges = np.histogram(values, int(kwargs["binCount"]))[1]
        edges[-1] += 1
        return edges
    width = float(kwargs.get("binWidth", 25))
    bounds = kwargs.get("resegmentRange")
    absolute = bounds is not None and kwargs.get("resegmentMode", "absolute") == "absolute"
    low = float(min(bounds)) if absolute else float(values.min())
    count = int(math.floor((values.max() - low) / width)) + 2
    return low + width * np.arange(count)


# -- running a configuration ----------------------------------------------------------------------
def configuration_params(
    configuration: str,
    mapped: Iterable[MappedValue],
    extraction: str,
    interpolation: str = "pyradiomics",
    resegment_range: Sequence[float] | None = None,
) -> dict[str, Any]:
    """The params (a params-file mapping) of one extraction of an IBSI configuration.

    ``extraction`` is ``2D``/``3D`` (``force2D``), with ``_Combined`` for ``weightingNorm: no_weighting``;
    the feature classes are exactly the features ``mapped`` to that extraction (firstorder Mean when only
    its diagnostics are mapped). ``resegment_range`` replaces the configuration's range (configuration E's
    computed one).
    """
    config = _configuration(configuration)
    setting = config.pyradiomics_setting(interpolation)
    if resegment_range is not None:
        setting["resegmentRange"] = [float(v) for v in resegment_range]
        setting.pop("resegmentMode", None)
    setting["force2D"] = extraction.startswith("2D")
    if extraction.endswith("_Combined"):
        setting["weightingNorm"] = "no_weighting"
    classes: dict[str, list[str]] = {}
    for value in mapped:
        if value.extraction != extraction or value.is_diagnostic:
            continue
        feature_class, feature = value.key[len("original_"):].split("_", 1)
        features = classes.setdefault(feature_class, [])
        if feature not in features:
            features.append(feature)
    return {"setting": setting, "imageType": {"Original": {}}, "featureClass": classes or {"firstorder": ["Mean"]}}


def run_configuration(
    configuration: str,
    data_dir: str | os.PathLike,
    *,
    engine: str = "deepradiomics",
    interpolation: str = "pyradiomics",
):
    """The compliance table of one configuration (see :func:`compliance_table` for the columns).

    Raises
    ------
    CaseError
        A file of the configuration is missing or unreadable (the message names it).
    """
    import pandas as pd

    config = _configuration(configuration)
    _check_choice(engine, ENGINES, "engine")
    _check_choice(interpolation, INTERPOLATIONS, "interpolation")
    missing = config.missing(data_dir)
    if missing:
        raise CaseError(f"IBSI configuration {config.name}: '{missing[0]}' not found: give the IBSI data folder with --data")
    paths = config.paths(data_dir)
    mapped = read_name_table(paths["names"])
    reference = read_reference(paths["reference"])
    absent = [m.tag for m in mapped if m.tag not in reference]
    if absent:
        raise CaseError(f"reference table '{paths['reference']}' has no value for '{absent[0]}' (mapped in '{paths['names']}')")
    image, mask = _inputs(config, paths, interpolation)
    resegment_range = None
    if config.outlier_filtering:
        resegment_range = _outlier_range(config, mapped, image, mask, engine, interpolation)
        logger.info("IBSI configuration %s: re-segmentation range %s (range then mean +- 3 sd)", config.name, resegment_range)
    rows = {}
    for extraction in dict.fromkeys(m.extraction for m in mapped):
        params = configuration_params(config.name, mapped, extraction, interpolation, resegment_range)
        rows[extraction] = _extract(params, image, mask, engine)
    auxiliary = _auxiliary_rows(config, mapped, paths, image, mask, engine) if interpolation == "ibsi" else {}
    records = []
    expected = known_deviations(config.name, interpolation)
    for value in mapped:
        raw = _lookup(value, rows, auxiliary, interpolation)
        number = _number(raw, value)
        corrected = _ibsi_definition(value, number, rows[value.extraction])
        reference_value, tolerance = reference[value.tag]
        records.append(
            _record(config.name, value, number, corrected, reference_value, tolerance, expected.get(value.tag, ()), engine, interpolation)
        )
    return pd.DataFrame.from_records(records, columns=TABLE_COLUMNS)


#: columns of a compliance table
TABLE_COLUMNS = (
    "configuration",
    "tag",
    "extraction",
    "column",
    "value",
    "reference",
    "tolerance",
    "passed",
    "ibsi_value",
    "ibsi_passed",
    "status",
    "known_deviation",
    "cause",
    "engine",
    "interpolation",
)


def _record(configuration, value, number, corrected, reference_value, tolerance, causes, engine, interpolation) -> dict:
    passed = within_tolerance(number, reference_value, tolerance)
    if passed:
        status = "listed but passes" if causes else "pass"
    else:
        status = "known" if causes else "unexplained"
    return {
        "configuration": configuration,
        "tag": value.tag,
        "extraction": value.extraction,
        "column": value.column,
        "value": number,
        "reference": reference_value,
        "tolerance": tolerance,
        "passed": passed,
        "ibsi_value": corrected,
        "ibsi_passed": within_tolerance(corrected, reference_value, tolerance),
        "status": status,
        "known_deviation": "+".join(causes),
        "cause": "; ".join(CAUSES[c].summary for c in causes),
        "engine": engine,
        "interpolation": interpolation,
    }


def compliance_table(
    data_dir: str | os.PathLike,
    configurations: Iterable[str] = CONFIGURATION_NAMES,
    *,
    engine: str = "deepradiomics",
    interpolation: str = "pyradiomics",
):
    """The compliance table of several configurations (a pandas DataFrame, one row per mapped IBSI value).

    Columns: ``configuration``, ``tag`` (IBSI), ``extraction`` (``2D``/``3D``[``_Combined``]), ``column``
    (the deepradiomics/PyRadiomics column of that extraction's row, ``[i]`` for a tuple element),
    ``value``, ``reference``, ``tolerance``, ``passed``, ``ibsi_value`` (the value with IBSI's definition
    where a known deviation is one of definition, else the value) and ``ibsi_passed``, ``status``
    (``pass``, ``known``, ``unexplained``, or ``listed but passes``: a known deviation that no longer
    fails), ``known_deviation`` (cause ids) and ``cause`` (their explanation), ``engine``, ``interpolation``.

    A configuration whose files are missing is skipped with a warning naming the file; CaseError when
    none can run.
    """
    import pandas as pd

    tables, problems = [], []
    names = [_configuration(name).name for name in configurations]
    for name in names:
        missing = CONFIGURATIONS[name].missing(data_dir)
        if missing:
            message = f"skipped IBSI configuration {name}: '{missing[0]}' not found"
            logger.warning("%s", message)
            problems.append(message)
            continue
        tables.append(run_configuration(name, data_dir, engine=engine, interpolation=interpolation))
    if not tables:
        raise CaseError(f"no IBSI configuration could run from '{data_dir}' ({problems[0].split(': ', 1)[1]}): give the IBSI data folder with --data")
    return pd.concat(tables, ignore_index=True)


def summarize(table):
    """Per configuration: mapped values, passed, failed with a known cause, failed unexplained, etc.

    ``listed_but_passing`` counts known deviations that pass (the list is out of date);
    ``passed_ibsi_definition`` counts passes with the IBSI definitions (``ibsi_passed``).
    """
    import pandas as pd

    rows = []
    for name in dict.fromkeys(table["configuration"]):
        part = table[table["configuration"] == name]
        rows.append(
            {
                "configuration": name,
                "mapped": len(part),
                "passed": int(part["passed"].sum()),
                "failed_known": int((part["status"] == "known").sum()),
                "failed_unexplained": int((part["status"] == "unexplained").sum()),
                "listed_but_passing": int((part["status"] == "listed but passes").sum()),
                "passed_ibsi_definition": int(part["ibsi_passed"].sum()),
            }
        )
    return pd.DataFrame(rows).set_index("configuration")


def explain_failures(runs: Mapping[frozenset, Any]):
    """The smallest set of corrections under which each failure of the default run passes.

    Parameters
    ----------
    runs
        Compliance tables of one configuration keyed by the corrections applied to the run:
        ``frozenset()`` (the default run), ``{"interpolation"}`` (``interpolation="ibsi"``),
        ``{"binning"}`` and ``{"interpolation", "binning"}`` (PyRadiomics' getBinEdges replaced by
        :func:`ibsi_bin_edges`); the correction ``"definition"`` is read from each run's ``ibsi_passed``.

    Returns
    -------
    DataFrame
        One row per failure of the default run: ``tag``, ``corrections`` (e.g. ``interpolation+binning``,
        empty when no combination of the given runs makes it pass), ``causes`` (what those corrections
        remove and the tag is subject to), ``listed`` (the causes in :data:`KNOWN_DEVIATIONS`) and
        ``alternatives`` (other correction sets of the same size that also make it pass; the first set
        in the order definition, interpolation, binning is the one reported).
    """
    import itertools

    import pandas as pd

    default = runs[frozenset()]
    name = str(default["configuration"].iloc[0])
    listed = KNOWN_DEVIATIONS.get(name, {})
    tables = {key: table.set_index("tag") for key, table in runs.items()}
    names = ("definition", "interpolation", "binning")
    records = []
    for tag in default.loc[~default["passed"], "tag"]:
        minimal: list[tuple[str, ...]] = []
        for size in range(1, len(names) + 1):
            for combination in itertools.combinations(names, size):
                run = frozenset(c for c in combination if c != "definition")
                if run in tables and _passes(tables[run].loc[tag], "definition" in combination):
                    minimal.append(combination)
            if minimal:
                break
        found = minimal[0] if minimal else ()
        records.append(
            {
                "configuration": name,
                "tag": tag,
                "corrections": "+".join(found),
                "causes": "+".join(_causes_removed(tag, found, default)),
                "listed": "+".join(listed.get(tag, ())),
                "alternatives": " | ".join("+".join(c) for c in minimal[1:]),
            }
        )
    return pd.DataFrame(records, columns=["configuration", "tag", "corrections", "causes", "listed", "alternatives"])


def _passes(row, with_definition: bool) -> bool:
    return bool(row["ibsi_passed"] if with_definition else row["passed"])


def _causes_removed(tag: str, corrections: Sequence[str], default) -> list[str]:
    """The cause, among those each correction removes, that applies to ``tag`` in the default run."""
    row = default.set_index("tag").loc[tag]
    causes = []
    for correction in corrections:
        if correction == "definition":
            causes.append("kurtosis" if tag == "stat_kurt" else "pca_covariance")
        elif correction == "binning":
            causes.append("fbs_lower_bound")
        elif math.isnan(row["value"]):  # interpolation: a value PyRadiomics did not write
            causes.append("not_computed" if row["column"] in _UNREPORTED else "no_interpolation")
        else:
            causes.append("resampling")
    return causes


# -- internals ------------------------------------------------------------------------------------
def _configuration(name: str) -> IbsiConfiguration:
    key = str(name).strip()
    key = key if key == "phantom" else key.upper()
    if key not in CONFIGURATIONS:
        raise ParamsError(f"unknown IBSI configuration '{name}': give one of {', '.join(CONFIGURATION_NAMES)}")
    return CONFIGURATIONS[key]


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise ParamsError(f"{what} '{value}' is not one of {', '.join(choices)}")


def _inputs(config: IbsiConfiguration, paths: Mapping[str, Path], interpolation: str):
    """What the extractions read: the files, or the image and mask interpolated as IBSI prescribes."""
    if interpolation == "ibsi" and config.spacing is not None:
        return ibsi_interpolate(paths["image"], paths["mask"], config.spacing, config.interpolator or "sitkLinear")
    return str(paths["image"]), str(paths["mask"])


def _extract(params: Mapping[str, Any], image, mask, engine: str) -> dict[str, Any]:
    """One row: through deepradiomics' Extractor, or PyRadiomics' RadiomicsFeatureExtractor alone (same params)."""
    import copy

    # PyRadiomics warns, on every run, about what the IBSI settings ask for on purpose (the deprecated
    # Compactness1/2 and SphericalDisproportion that IBSI maps, a fixed bin count, the symmetrical GLCM):
    # those notices only are dropped, for the duration of this extraction
    names = ["featureextractor", *params["featureClass"]]
    loggers = [logging.getLogger(f"radiomics.{name}") for name in names]
    for feature_logger in loggers:
        feature_logger.addFilter(_drop_expected_notices)
    try:
        if engine == "deepradiomics":
            from .extractor import Extractor

            return dict(Extractor.from_dict(params).execute(image, mask, case_id="ibsi"))
        from radiomics import featureextractor

        return dict(featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(dict(params))).execute(image, mask))
    finally:
        for feature_logger in loggers:
            feature_logger.removeFilter(_drop_expected_notices)


#: the start of PyRadiomics' messages about settings that the IBSI configurations choose on purpose
_EXPECTED_NOTICES = ("Feature %s is deprecated", "Fixed bin Count enabled", "GLCM is symmetrical")


def _drop_expected_notices(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_EXPECTED_NOTICES)


def _outlier_range(config, mapped, image, mask, engine: str, interpolation: str) -> list[float]:
    """Configuration E: the range re-segmentation, intersected with mean +- 3 sd of the ROI it keeps."""
    low, high = (float(v) for v in config.setting["resegmentRange"])
    dimensions = mapped[0].dimensions
    params = configuration_params(config.name, [], dimensions, interpolation, (low, high))
    params["featureClass"] = {"firstorder": ["Mean", "Variance"]}
    row = _extract(params, image, mask, engine)
    mean = float(_number(row["original_firstorder_Mean"], None))
    sd = math.sqrt(float(_number(row["original_firstorder_Variance"], None)))
    return [max(low, mean - 3 * sd), min(high, mean + 3 * sd)]


def _auxiliary_rows(config, mapped, paths, image, mask, engine: str) -> dict[str, dict]:
    """With IBSI's interpolation: diagnostics of the initial and of the interpolated image and mask."""
    diagnostics = [m for m in mapped if m.is_diagnostic]
    if not diagnostics:
        return {}
    # a fixed bin number: with an all-inclusive range, IBSI's fixed bin size edges would start at -1e30
    setting = {"resegmentRange": list(ALL_INCLUSIVE), "binCount": 32, "force2D": diagnostics[0].dimensions == "2D"}
    params = {"setting": setting, "imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean"]}}
    initial = _extract(params, str(paths["image"]), str(paths["mask"]), engine)
    interpolated = initial if config.spacing is None else _extract(params, image, mask, engine)
    return {"initial": initial, "interpolated": interpolated}


def _lookup(value: MappedValue, rows: Mapping[str, dict], auxiliary: Mapping[str, dict], interpolation: str):
    """The raw value of a mapped entry (None when the column is absent)."""
    if not value.is_diagnostic or interpolation == "pyradiomics":
        return rows[value.extraction].get(value.key)
    what, _, name = value.key[len("diagnostics_"):].partition("_")
    kind, _, stage = what.partition("-")
    if stage == "resegmented":
        return rows[value.extraction].get(value.key)
    source = auxiliary["initial" if stage == "original" else "interpolated"]
    if kind == "Mask" and name in ("Mean", "Minimum", "Maximum"):
        return source.get(f"diagnostics_Mask-resegmented_{name}")
    return source.get(f"diagnostics_{kind}-original_{name}")


def _number(raw, value: MappedValue | None) -> float:
    """A float from a row value: deepradiomics writes tuples as text, PyRadiomics returns tuples and 0-d arrays."""
    import numpy as np

    if raw is None:
        return math.nan
    index = None if value is None else value.index
    if index is not None:
        sequence = ast.literal_eval(raw) if isinstance(raw, str) else raw
        return float(sequence[index])
    return float(np.asarray(raw, dtype=float))


#: diagnostics that PyRadiomics never reports (intensities of the original mask)
_UNREPORTED = tuple(f"diagnostics_Mask-original_{name}" for name in ("Mean", "Minimum", "Maximum"))
#: tags whose IBSI definition differs from PyRadiomics' by a known correction
_PCA_AXES = ("morph_pca_maj_axis", "morph_pca_min_axis", "morph_pca_least_axis")


def _ibsi_definition(value: MappedValue, number: float, row: Mapping[str, Any]) -> float:
    """``number`` under IBSI's definition: excess kurtosis; principal axes from the N - 1 covariance."""
    if value.tag == "stat_kurt":
        return number - 3.0
    if value.tag in _PCA_AXES:
        count = row.get("diagnostics_Mask-interpolated_VoxelNum", row.get("diagnostics_Mask-original_VoxelNum"))
        voxels = _number(count, None)
        return number * math.sqrt(voxels / (voxels - 1)) if voxels > 1 else math.nan
    return number


def find_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The IBSI data folder: ``data_dir``, else ``../shared/data/ibsi`` from the working directory or the repository.

    Raises CaseError naming the folders looked at when none exists.
    """
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise CaseError(f"IBSI data folder '{path}' not found: give the folder holding digital_phantom/, ct_phantom/ and reference_values/")
        return path
    candidates = [Path.cwd() / DATA_RELATIVE, Path(__file__).resolve().parents[1] / DATA_RELATIVE]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    looked = " or ".join(f"'{c}'" for c in dict.fromkeys(str(c) for c in candidates))
    raise CaseError(f"IBSI data folder not found at {looked}: give it with --data")
