"""Responsible regions of codewords by feature ablation (Kobayashi et al., Sci Rep 2021).

For a case and a set of codewords of a ``vqhist`` model (everything through the class's public pipeline:
:meth:`VQHistogram.codeword_map`, :meth:`~VQHistogram.preprocess`, :meth:`~VQHistogram.background_codeword`):

1. the case is preprocessed and quantized exactly as ``vqhist`` does, to an (Z, 8, 8) grid of codewords;
2. every latent cell holding a chosen codeword is replaced by the **background codeword**;
3. the original and the ablated grids are decoded, and the per-pixel L1 difference of the logits,
   summed over the classes, :math:`R(p) = \\sum_c |l_c^{abl}(p) - l_c(p)|`, is the *responsible region*;
4. the (Z, S, S) map is resized back (bilinear) to each slice's original grid and written with the
   geometry of the input image.

**Background codeword** (``background``): ``"model"`` (default) is the bundle's recorded background
codeword (the most frequent codeword of all-background input cells over its training slices; for
bundles without that record, the most frequent code of an all-zero slice, which a trained model may
spread over many codewords); ``"case"`` is the most frequent codeword among this case's latent cells
whose input block is zero in every channel; an integer forces a codeword.

Slices in which no chosen codeword occurs are not decoded at all: their response is exactly 0 (the
decoder normalises per sample, so an unchanged slice gives identical logits).

**Cohort level** (the paper's Fig. 7, :func:`explain_cohort`): over the cases of a manifest, the
response of the chosen codewords is summed (the paper's statistic; ``statistic="mean"`` gives the mean per
voxel, which does not grow with the size of a region) within each label of each case's mask (e.g.
BraTS 1 = NET, 2 = ED, 3 = ET; ``include_outside`` adds the foreground outside the mask as a region),
giving **one value per patient and label**; the labels are then compared across patients by a
Kruskal-Wallis test and Dunn's post-hoc test with a multiple-testing correction. The values of one
patient's labels are paired (same patient), which these tests, like the paper's, do not model.

**Per case** (:func:`explain_codewords` with ``labels``): the same tests with voxels or slices of one case
as samples. Neighbouring voxels are not independent: that output is *descriptive* (how separated the
labels' response distributions are in this case), not inference over patients, and is labelled so.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from deepradiomics.batch import BatchTask
from deepradiomics.errors import CaseError, ParamsError
from deepradiomics.study.statistics import kruskal_dunn

from . import VQHistogram

logger = logging.getLogger("deepradiomics_plugins.vqhist.explain")

DESCRIPTIVE_NOTE = (
    "descriptive only: the per-case label tests use {samples}s of one case as samples; neighbouring {samples}s are "
    "correlated, so the p-values describe how separated the labels' response distributions are in this case, not "
    "inference over patients (use the cohort mode, `explain --manifest`, for that)"
)


# ---------------------------------------------------------------------------------------------- setup
def vqhist_class(source, base_dir: str | os.PathLike | None = None) -> VQHistogram:
    """A :class:`VQHistogram` from an instance, a params file or mapping naming it, or its settings mapping."""
    from deepradiomics.params import load_params

    if isinstance(source, VQHistogram):
        return source
    if isinstance(source, Mapping) and "featureClass" not in source:
        return VQHistogram(dict(source), where="vqhist settings", base_dir=base_dir)
    params = load_params(source)
    if VQHistogram.name not in params.plugins:
        raise ParamsError(
            f"{params.source} has no featureClass.{VQHistogram.name} entry: explain needs the vqhist settings, e.g. "
            "featureClass: {vqhist: {model: default}}"
        )
    return VQHistogram(params.plugins[VQHistogram.name], where=f"{params.source}: featureClass.vqhist", base_dir=params.base_dir)


def check_codewords(codewords: Sequence[int], num_embeddings: int, model_name: str = "the model") -> list[int]:
    """Validate codeword indices against K; return them as a sorted list without repeats."""
    if len(codewords) == 0:
        raise ParamsError("no codeword given: pass e.g. --codewords 17,230")
    out = []
    for value in codewords:
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise ParamsError(f"codeword {value!r} is not an integer index") from None
        if index != value and not isinstance(value, str):
            raise ParamsError(f"codeword {value!r} is not an integer index")
        if index < 0 or index >= num_embeddings:
            raise ParamsError(
                f"codeword {index} is out of range: {model_name} has K={num_embeddings} codewords (valid indices 0 to {num_embeddings - 1})"
            )
        out.append(index)
    return sorted(set(out))


def case_background_codeword(vq: VQHistogram, slices, indices) -> int:
    """Most frequent codeword of the case's latent cells whose input block is zero in every channel."""
    import torch

    block = slices.shape[-1] // 8
    empty = torch.nn.functional.max_pool2d(slices.abs().amax(1, keepdim=True), kernel_size=block)[:, 0] == 0
    if not bool(empty.any()):
        fallback = vq.background_codeword()
        logger.info("no all-background latent cell in the case: using the model's background codeword %d", fallback)
        return fallback
    return int(torch.bincount(indices[empty.to(indices.device)].cpu()).argmax())


def resolve_background(vq: VQHistogram, how: str | int, slices=None, indices=None) -> int:
    """The background codeword: ``"model"``, ``"case"`` (needs the case's slices and indices) or an index."""
    if not isinstance(how, str):
        check_codewords([how], vq.num_embeddings, f"model '{vq.bundle.name}' (background codeword)")
        return int(how)
    if how == "model":
        return vq.background_codeword()
    if how == "case":
        return case_background_codeword(vq, slices, indices)
    raise ParamsError(f"background '{how}' is not one of: model, case, or a codeword index")


def ablation_response(model, indices, ablated, batch_size: int = 16, original_logits: dict | None = None):
    """Per-pixel L1 logit difference (Z, S, S), summed over classes, between decoding ``ablated`` and ``indices``.

    Slices where the two grids are equal are not decoded and get exactly 0. ``original_logits`` is an
    optional cache ``{slice index: logits (num_classes, S, S)}`` of the unablated decoding, filled as
    slices are decoded, so that several ablations of one case decode each original slice once.
    """
    import torch

    z = indices.shape[0]
    size = int(model.input_size)
    out = torch.zeros(z, size, size, dtype=torch.float32)
    cache = {} if original_logits is None else original_logits
    changed = torch.nonzero((indices != ablated).flatten(1).any(1)).flatten()
    with torch.inference_mode():
        for start in range(0, len(changed), batch_size):
            rows = changed[start : start + batch_size]
            missing = [int(r) for r in rows if int(r) not in cache]
            if missing:
                decoded = model.decode(model.quantizer.embed(indices[missing])).float().cpu()
                cache.update(zip(missing, decoded))
            original = torch.stack([cache[int(r)] for r in rows])
            replaced = model.decode(model.quantizer.embed(ablated[rows])).float().cpu()
            out[rows] = (replaced - original).abs().sum(1)
    return out


def ablate(indices, codewords: Sequence[int], background: int):
    """``indices`` with every cell holding one of ``codewords`` replaced by ``background``."""
    import torch

    where = torch.isin(indices, torch.as_tensor(list(codewords), dtype=indices.dtype))
    return torch.where(where, torch.full_like(indices, background), indices), where


# ---------------------------------------------------------------------------------------------- statistics
def label_statistics(
    response: np.ndarray,
    labels: np.ndarray,
    samples: str = "voxel",
    names: Mapping[int, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Response per label of one case, Kruskal-Wallis across labels and Dunn's test (Holm): descriptive.

    ``samples="voxel"``: one sample per voxel of a label; ``"slice"``: one per slice where the label is
    present, the sum of the response over the label's voxels in that slice. Returns ``per_label`` (voxels,
    slices, sum, mean, median, sd, fraction of the total response, samples), ``dunn`` (columns
    ``label_a``, ``label_b``, ..., ``p_holm``) and ``kruskal`` (NaN when fewer than two labels or every sample
    is equal, e.g. an all-zero map: then ``dunn`` is empty).
    """
    if samples not in ("voxel", "slice"):
        raise ParamsError(f"samples '{samples}' is not one of: voxel, slice")
    response = np.asarray(response, dtype=np.float64)
    labels = np.asarray(labels)
    if response.shape != labels.shape:
        raise CaseError(f"label map shape {labels.shape} differs from the response map {response.shape}")
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise CaseError("the label map has no non-zero label: give a segmentation with labels > 0")
    names = {int(k): str(v) for k, v in (names or {}).items()}
    total = float(response.sum())
    rows, groups = [], {}
    for value in values:
        inside = labels == value
        voxel_values = response[inside]
        if samples == "voxel":
            group = voxel_values
        else:
            present = np.nonzero(inside.any(axis=(1, 2)))[0]
            group = np.array([response[z][inside[z]].sum() for z in present])
        name = names.get(value, str(value))
        groups[name] = group
        rows.append(
            {
                "label": value,
                "name": name,
                "n_voxels": int(inside.sum()),
                "n_slices": int(inside.any(axis=(1, 2)).sum()),
                "sum": float(voxel_values.sum()),
                "mean": float(voxel_values.mean()),
                "median": float(np.median(voxel_values)),
                "sd": float(voxel_values.std(ddof=1)) if voxel_values.size > 1 else float("nan"),
                "fraction_of_total": float(voxel_values.sum() / total) if total > 0 else float("nan"),
                "samples": f"{samples}s of one case (descriptive)",
                "n_samples": int(group.size),
                "sample_median": float(np.median(group)),
            }
        )
    per_label = pd.DataFrame(rows)
    kruskal, dunn = kruskal_dunn(groups, "holm")
    if not np.isfinite(kruskal["statistic"]):
        logger.warning("Kruskal-Wallis not computed: %s", "fewer than two labels" if len(groups) < 2 else "every sample is equal")
    per_label["kruskal_H"] = kruskal["statistic"]
    per_label["kruskal_p"] = kruskal["p_value"]
    dunn = dunn.rename(columns={"group_a": "label_a", "group_b": "label_b", "p_adjusted": "p_holm"})
    return per_label, dunn, {"statistic": kruskal["statistic"], "p_value": kruskal["p_value"], "n_labels": len(groups)}


# ---------------------------------------------------------------------------------------------- one case
@dataclass
class Explanation:
    """Result of :func:`explain_codewords`.

    Attributes
    ----------
    response
        Responsible region of all chosen codewords ablated together, float32 (z, y, x) on the input grid.
    per_codeword
        Responsible region of each codeword ablated alone.
    summary
        One row per codeword and a last row ``all``: occurrences (latent cells in the whole volume and
        overlapping the mask), slices where it occurs, total response, response inside the mask, max.
    background
        The background codeword used, and how it was chosen.
    notes
        Messages for the user (absent codewords, ablating the background codeword itself).
    """

    response: np.ndarray
    per_codeword: dict[int, np.ndarray]
    summary: pd.DataFrame
    background: int
    background_method: str
    reference: Any = field(repr=False)
    case: Any = field(repr=False)
    indices: Any = field(repr=False)
    notes: list[str] = field(default_factory=list)
    per_label: pd.DataFrame | None = None
    dunn: pd.DataFrame | None = None
    kruskal: dict | None = None
    codewords: list[int] = field(default_factory=list)

    def response_image(self, array: np.ndarray | None = None):
        """The response map as a ``SimpleITK.Image`` with the input image's geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.asarray(self.response if array is None else array, dtype=np.float32))
        image.CopyInformation(self.reference)
        return image

    def write(self, out_dir: str | os.PathLike, overlay_on: str | None = None, n_slices: int = 3) -> Path:
        """Write ``response.nii.gz`` (+ ``response_cwNNN.nii.gz`` per codeword when several), PNG overlays,
        ``summary.csv``, ``notes.txt`` and, with labels, ``labels_descriptive.csv`` and ``dunn_descriptive.csv``."""
        import SimpleITK as sitk

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(self.response_image(), str(out / "response.nii.gz"))
        if len(self.per_codeword) > 1:
            for codeword, array in self.per_codeword.items():
                sitk.WriteImage(self.response_image(array), str(out / f"response_cw{codeword:03d}.nii.gz"))
        self.summary.to_csv(out / "summary.csv", index=False)
        if self.per_label is not None:
            self.per_label.to_csv(out / "labels_descriptive.csv", index=False)
            self.dunn.to_csv(out / "dunn_descriptive.csv", index=False)
        (out / "notes.txt").write_text("\n".join(self.notes) + ("\n" if self.notes else ""))
        name = overlay_on or _default_overlay(self.case)
        write_overlays(
            self.response,
            np.asarray(self.case.array(name)),
            out,
            mask=np.asarray(self.case.mask_array()),
            n_slices=n_slices,
            title=f"codewords {','.join(str(c) for c in self.codewords)} on {name}",
        )
        return out


def _default_overlay(case) -> str:
    from deepradiomics.case import MAIN_IMAGE

    return MAIN_IMAGE if MAIN_IMAGE in case.modalities else next(iter(case.modalities))


def write_overlays(response: np.ndarray, image: np.ndarray, out: Path, mask=None, n_slices: int = 3, title: str = "") -> list[Path]:
    """PNG overlays of ``response`` on ``image``: the ``n_slices`` slices with most response and a montage."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    per_slice = response.reshape(response.shape[0], -1).sum(1)
    vmax = float(response.max()) if response.max() > 0 else 1.0
    ranked = [int(z) for z in np.argsort(-per_slice, kind="stable") if per_slice[z] > 0]
    if not ranked:  # nothing to show: still draw the slice with most mask, so the user sees the case
        ranked = [int(np.argmax(mask.reshape(mask.shape[0], -1).sum(1)))] if mask is not None else [response.shape[0] // 2]
    paths = []

    def draw(ax, z):
        ax.imshow(image[z], cmap="gray", interpolation="nearest")
        shown = np.ma.masked_where(response[z] <= 0, response[z])
        ax.imshow(shown, cmap="hot", alpha=0.6, vmin=0, vmax=vmax, interpolation="nearest")
        if mask is not None and mask[z].any():
            ax.contour(mask[z].astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
        ax.set_title(f"slice {z}: {per_slice[z]:.3g}", fontsize=7)
        ax.axis("off")

    for rank, z in enumerate(ranked[:n_slices], 1):
        fig, ax = plt.subplots(1, 1, figsize=(4, 4), dpi=100)
        draw(ax, z)
        fig.suptitle(f"{title} (response, mask in cyan)", fontsize=8)
        path = out / f"overlay_top{rank}_slice{z:03d}.png"
        fig.savefig(path, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    chosen = sorted(ranked[:16])
    cols = min(4, len(chosen))
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, z in zip(axes.flat, chosen):
        draw(ax, z)
    fig.suptitle(f"{title}: slices with most response", fontsize=8)
    path = out / "montage.png"
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths


def _read_label_map(labels, case, reference_name: str) -> np.ndarray:
    import SimpleITK as sitk

    from deepradiomics.case import read_image, same_geometry

    label_image = read_image(labels, "label map")
    mismatch = same_geometry(label_image, case.image(reference_name))
    if mismatch:
        where = "<in-memory>" if isinstance(labels, sitk.Image) else str(labels)
        raise CaseError(
            f"label map '{where}' and the image '{case.source(reference_name)}' of case '{case.case_id}' differ in "
            f"geometry ({mismatch}): resample the label map onto the image grid"
        )
    return sitk.GetArrayFromImage(label_image).astype(np.int64)


def explain_codewords(
    case,
    vq,
    codewords: Sequence[int],
    *,
    labels=None,
    label_names: Mapping[int, str] | None = None,
    samples: str = "voxel",
    background: str | int = "model",
    batch_size: int = 16,
    per_codeword: bool = True,
) -> Explanation:
    """Responsible regions of ``codewords`` in ``case`` by ablation (see the module docstring).

    Parameters
    ----------
    case
        A :class:`~deepradiomics.case.Case` holding the vqhist modalities and a mask.
    vq
        A :class:`VQHistogram`, or a params file / mapping naming it, or its settings mapping.
    codewords
        Codeword indices to ablate (0 <= c < K).
    labels, label_names, samples
        Optional label map (same geometry as the case) for the descriptive per-case label statistics.
    background
        ``"model"`` (default), ``"case"`` or a codeword index (see the module docstring).
    per_codeword
        Also ablate each codeword alone; ``False`` ablates only all chosen codewords together.

    Raises
    ------
    ParamsError
        A codeword is out of range (>= K) or the params lack vqhist settings.
    CaseError
        A modality is missing or the label map does not match the case geometry.
    """

    vq = vqhist_class(vq)
    model = vq.bundle.model
    spec = vq.bundle.preprocessing
    chosen = check_codewords(codewords, vq.num_embeddings, f"model '{vq.bundle.name}'")
    if samples not in ("voxel", "slice"):
        raise ParamsError(f"samples '{samples}' is not one of: voxel, slice")
    if not isinstance(background, str):
        check_codewords([background], vq.num_embeddings, f"model '{vq.bundle.name}' (background codeword)")
    reference_name = _default_overlay(case)
    reference = case.image(reference_name)
    label_array = _read_label_map(labels, case, reference_name) if labels is not None else None  # checked before any network work
    slices = vq.preprocess(case)
    indices = model.volume_codeword_indices(slices, batch_size=int(vq.settings.batch_size)).cpu()
    bg = resolve_background(vq, background, slices, indices)
    shape = case.array(vq.modalities[0]).shape
    in_mask = vq.latent_roi(case).cpu()
    mask = np.asarray(case.mask_array())
    notes: list[str] = []
    maps: dict[int, np.ndarray] = {}
    original_logits: dict = {}  # each original slice is decoded once for all ablations
    rows = []

    def to_volume(slice_maps):
        return np.clip(spec.to_volume(slice_maps, shape).astype(np.float32), 0.0, None)  # clip float noise only

    def row_for(name, where, volume):
        return {
            "codeword": name,
            "occurrences": int(where.sum()),
            "occurrences_in_mask": int((where & in_mask).sum()),
            "slices_with_codeword": int(where.flatten(1).any(1).sum()),
            "total_response": float(volume.sum(dtype=np.float64)) if volume is not None else float("nan"),
            "response_in_mask": float(volume[mask].sum(dtype=np.float64)) if volume is not None else float("nan"),
            "max_response": float(volume.max()) if volume is not None else float("nan"),
        }

    for codeword in chosen:
        ablated, where = ablate(indices, [codeword], bg)
        volume = None
        if per_codeword or len(chosen) == 1:
            volume = to_volume(ablation_response(model, indices, ablated, batch_size, original_logits))
            maps[codeword] = volume
        row = row_for(str(codeword), where, volume)
        if row["occurrences"] == 0:
            row["note"] = "absent from the case: map all zero"
            notes.append(f"codeword {codeword} does not occur in case '{case.case_id}': its responsible region is empty (all-zero map)")
        elif codeword == bg:
            row["note"] = "is the background codeword: ablation changes nothing"
            notes.append(f"codeword {codeword} is the background codeword itself: replacing it by the background changes nothing")
        else:
            row["note"] = ""
        rows.append(row)
    ablated_all, where_all = ablate(indices, chosen, bg)
    response = maps[chosen[0]] if len(chosen) == 1 else to_volume(ablation_response(model, indices, ablated_all, batch_size, original_logits))
    all_row = row_for("all", where_all, response)
    all_row["note"] = "" if all_row["occurrences"] else "no chosen codeword occurs: map all zero"
    rows.append(all_row)
    summary = pd.DataFrame(rows)
    summary["background_codeword"] = bg
    result = Explanation(
        response=response,
        per_codeword=maps,
        summary=summary,
        background=bg,
        background_method=background if isinstance(background, str) else "given",
        reference=reference,
        case=case,
        indices=indices,
        notes=notes,
        codewords=chosen,
    )
    for note in notes:
        logger.info(note)  # the notes travel with the result (notes.txt); the CLI prints them
    if label_array is not None:
        result.per_label, result.dunn, result.kruskal = label_statistics(response, label_array, samples, label_names)
        notes.append(DESCRIPTIVE_NOTE.format(samples=samples))
        if not np.isfinite(result.kruskal["statistic"]):
            notes.append("Kruskal-Wallis/Dunn not computed: fewer than two labels or every sample equal (e.g. an all-zero map)")
    return result


# ---------------------------------------------------------------------------------------------- cohort
@dataclass
class _CohortTask(BatchTask):
    """Per-case work of :func:`explain_cohort` (a batch task, run in batch workers): one row per label region."""

    vq: VQHistogram
    codewords: tuple[int, ...]
    background: str | int
    include_outside: bool
    label_names: dict
    result_kind: ClassVar[str] = "any"

    def compute(self, case) -> list[dict]:
        import SimpleITK as sitk

        result = explain_codewords(case, self.vq, self.codewords, background=self.background, per_codeword=False)
        regions = sitk.GetArrayFromImage(case.mask_image()).astype(np.int64)
        out = []
        values = [int(v) for v in np.unique(regions) if v != 0]
        masks = {self.label_names.get(v, str(v)): regions == v for v in values}
        if self.include_outside:
            foreground = np.asarray(case.array(_default_overlay(case))) > 0
            masks["outside"] = foreground & (regions == 0)
        for name, inside in masks.items():
            n = int(inside.sum())
            if n == 0:
                continue
            total = float(result.response[inside].sum(dtype=np.float64))
            out.append({"ID": case.case_id, "region": name, "n_voxels": n, "sum": total, "mean": total / n, "background_codeword": result.background})
        return out


@dataclass
class CohortExplanation:
    """Result of :func:`explain_cohort`: one value per patient and region, and the tests across patients."""

    per_patient: pd.DataFrame
    summary: pd.DataFrame
    kruskal: dict
    dunn: pd.DataFrame
    statistic: str
    codewords: list[int]
    failed: list[tuple[str, str]]
    notes: list[str] = field(default_factory=list)

    def write(self, out_dir: str | os.PathLike) -> Path:
        """``per_patient.csv``, ``regions.csv`` (summary and Kruskal-Wallis), ``dunn.csv``, ``notes.txt``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.per_patient.to_csv(out / "per_patient.csv", index=False)
        self.summary.assign(kruskal_H=self.kruskal["statistic"], kruskal_p=self.kruskal["p_value"]).to_csv(out / "regions.csv", index=False)
        self.dunn.to_csv(out / "dunn.csv", index=False)
        (out / "notes.txt").write_text("\n".join(self.notes) + "\n")
        return out


def explain_cohort(
    manifest,
    vq,
    codewords: Sequence[int],
    *,
    label_names: Mapping[int, str] | None = None,
    include_outside: bool = False,
    statistic: str = "sum",
    correction: str = "holm",
    background: str | int = "model",
    jobs: int = 1,
    base_dir: str | os.PathLike | None = None,
) -> CohortExplanation:
    """Responsible regions of ``codewords`` over the cases of ``manifest``, tested across patients.

    Each case's mask gives its regions (every non-zero label value; names from ``label_names``), plus the
    foreground outside the mask with ``include_outside``. ``statistic``: ``"sum"`` (the paper's) or
    ``"mean"`` (per voxel) of the response in each region; one value per patient and region goes into
    Kruskal-Wallis and Dunn's test (``correction``). Cases are processed in parallel over ``jobs`` workers;
    a failing case is reported and left out.
    """
    from deepradiomics.batch import BatchRun, run_tasks
    from deepradiomics.study.statistics import adjust_pvalues

    if statistic not in ("sum", "mean"):
        raise ParamsError(f"statistic '{statistic}' is not one of: sum, mean")
    adjust_pvalues([0.5], correction)  # validates the name before any work
    vq = vqhist_class(vq)
    chosen = check_codewords(codewords, vq.num_embeddings, f"model '{vq.bundle.name}'")
    task = _CohortTask(vq, tuple(chosen), background, include_outside, {int(k): str(v) for k, v in (label_names or {}).items()})
    run = BatchRun()
    frame, _, results = run_tasks(task, manifest, jobs=jobs, base_dir=base_dir, run=run, desc="explain")
    failed = run.failed
    errors = {case_id for case_id, _ in failed}
    rows = [row for case_id in frame["ID"] if case_id not in errors for row in results[case_id]]
    per_patient = pd.DataFrame(rows, columns=["ID", "region", "n_voxels", "sum", "mean", "background_codeword"])
    order = list(dict.fromkeys(per_patient["region"]))
    groups = {name: per_patient.loc[per_patient["region"] == name, statistic].to_numpy() for name in order}
    kruskal, dunn = kruskal_dunn(groups, correction)
    summary = (
        per_patient.groupby("region", sort=False)[statistic]
        .agg(n_patients="count", mean="mean", sd="std", median="median")
        .reset_index()
    )
    notes = [
        f"one value per patient and region: the {statistic} of the response of codewords {chosen} (ablated together) in the region",
        f"Kruskal-Wallis across regions and Dunn's pairwise test ({correction}-adjusted), as in the paper; a patient's regions "
        "are paired samples, which these tests do not model",
    ]
    if statistic == "sum":
        notes.append("sums grow with the size of a region: compare with statistic='mean' (per voxel) before reading a region as preferred")
    if failed:
        notes.append(f"{len(failed)} case(s) failed and are left out: " + "; ".join(f"{i}: {m}" for i, m in failed[:5]))
    if not np.isfinite(kruskal["statistic"]):
        notes.append("Kruskal-Wallis/Dunn not computed: fewer than two regions with values, or every value equal")
    return CohortExplanation(per_patient, summary, kruskal, dunn, statistic, chosen, failed, notes)
