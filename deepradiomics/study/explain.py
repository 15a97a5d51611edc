"""Responsible regions of codewords by feature ablation (Kobayashi et al., Sci Rep 2021).

For a case and a set of codewords of the ``vqhist`` model:

1. the case's modalities are preprocessed exactly as ``vqhist`` does (modalities in the order of the
   params' ``featureClass.vqhist.modalities``, else the bundle's; each volume z-scored over its voxels
   > 0, background set to 0, axial slices resized to the model's S x S; see
   :mod:`deepradiomics.nets.preprocess`) and quantized to an (Z, 8, 8) grid of codeword indices;
2. every latent cell holding a chosen codeword is replaced by the **background codeword**;
3. the original and the ablated grids are decoded, and the per-pixel L1 difference of the logits,
   summed over the classes, :math:`R(p) = \\sum_c |l_c^{abl}(p) - l_c(p)|`, is the *responsible region*;
4. the (Z, S, S) map is resized back (bilinear) to each slice's original in-plane grid and written with
   the geometry of the input image.

**Background codeword.** By default (``background="model"``) it is the most frequent codeword of the
model's :meth:`~deepradiomics.nets.vqseg.VQSegNet.background_indices`, i.e. of the 8 x 8 latent grid of an
all-zero (all-background) input slice, which is what the network sees outside the body after
preprocessing; it does not depend on the case. ``background="case"`` takes instead the most frequent
codeword among this case's latent cells whose (S/8) x (S/8) input block is zero in every channel (it
falls back to the model's answer when the case has no such cell); an integer forces a codeword.

Slices in which no chosen codeword occurs are not decoded at all: their response is exactly 0 (the
decoder normalises per sample, so an unchanged slice gives identical logits).

With a label map (e.g. BraTS ``seg``: 1 = NET, 2 = ED, 3 = ET), the response is summarised per label
and compared across labels by a Kruskal-Wallis test and Dunn's post-hoc test with Holm-adjusted
p-values (scikit-posthocs). The samples are either the response of every voxel of a label
(``samples="voxel"``, default) or the summed response of a label within each slice where it is present
(``samples="slice"``). Neighbouring voxels (and slices) are not independent samples: with tens of
thousands of voxels every difference is "significant", so read the p-values as a description of how
separated the label distributions are, not as inference over patients.

Examples
--------
>>> from deepradiomics.case import Case
>>> case = Case({"Image": "flair.nii.gz", "t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz"}, "mask.nii.gz")  # doctest: +SKIP
>>> result = explain_codewords(case, "params/deep.yaml", [17, 230])  # doctest: +SKIP
>>> result.summary  # doctest: +SKIP
>>> result.write("explain_out/", overlay_on="Image")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import CaseError, ModelError, ParamsError

logger = logging.getLogger("deepradiomics.study.explain")

#: latent regions understood when counting codewords (the ``region`` setting of vqhist)
REGIONS = ("volume", "roi")


# ---------------------------------------------------------------------------------------------- setup
def vqhist_settings(params: str | os.PathLike | Mapping) -> dict[str, Any]:
    """The ``featureClass.vqhist`` mapping of a params file or mapping, validated by the vqhist class.

    A mapping without a ``featureClass`` key is taken as the vqhist settings themselves.

    Raises
    ------
    ParamsError
        The file is missing or invalid, or has no ``featureClass.vqhist`` entry.
    """
    from ..featureclass import build_settings
    from ..params import load_params

    if isinstance(params, Mapping) and "featureClass" not in params:
        build_settings(_vqhist_settings_class(), dict(params), "<dict>")
        return dict(params)
    loaded = load_params(params)
    if "vqhist" not in loaded.deep:
        raise ParamsError(
            f"{loaded.source} has no featureClass.vqhist entry: explain and robustness need the vqhist settings, e.g. "
            "featureClass: {vqhist: {model: default, modalities: [t1, Image, t1ce]}}"
        )
    return dict(loaded.deep["vqhist"])


def _vqhist_settings_class():
    """vqhist's Settings dataclass (a PluginError if the plugin cannot be loaded)."""
    from ..registry import get_registry

    return get_registry().get("vqhist").Settings


def resolved_vqhist_settings(settings: Mapping, where: str = "featureClass.vqhist") -> dict[str, Any]:
    """vqhist settings with the plugin's defaults filled in (``model``, ``modalities``, ``region``, ...)."""
    import dataclasses

    from ..featureclass import build_settings

    return dataclasses.asdict(build_settings(_vqhist_settings_class(), dict(settings), where))


@dataclass
class VQSetup:
    """A loaded vqhist model and the way a case is fed to it (vqhist's settings)."""

    bundle: Any
    modalities: tuple[str, ...]
    region: str = "volume"
    batch_size: int = 32
    normalize: str = "counts"

    @property
    def model(self):
        return self.bundle.model

    @property
    def num_embeddings(self) -> int:
        return int(self.bundle.num_embeddings)

    @property
    def input_size(self) -> int:
        return int(self.bundle.input_size)


def vq_setup(params: str | os.PathLike | Mapping, bundle=None) -> VQSetup:
    """Load the vqhist model named by ``params`` (or use ``bundle``) and fix the modality order.

    ``params`` is a params file, a params mapping or a vqhist settings mapping (see :func:`vqhist_settings`);
    missing settings take vqhist's defaults (e.g. ``modalities: [t1, Image, t1ce]``).
    """
    settings = resolved_vqhist_settings(vqhist_settings(params))
    if bundle is None:
        from ..models import load_bundle

        bundle = load_bundle(settings.get("model", "default"), device=settings.get("device", "cpu"))
    modalities = tuple(settings.get("modalities") or bundle.modalities)
    in_channels = int(bundle.config["architecture"]["in_channels"])
    if len(modalities) != in_channels:
        raise ModelError(
            f"vqhist lists {len(modalities)} modalities ({', '.join(modalities)}) but model '{bundle.name}' takes "
            f"{in_channels} input channels ({', '.join(bundle.modalities)}): list {in_channels} modalities in "
            "featureClass.vqhist.modalities, in the model's order"
        )
    region = str(settings.get("region", "volume"))
    if region not in REGIONS:
        raise ParamsError(f"featureClass.vqhist.region '{region}' is not one of {', '.join(REGIONS)}")
    return VQSetup(
        bundle=bundle,
        modalities=modalities,
        region=region,
        batch_size=int(settings.get("batch_size", 32)),
        normalize=str(settings.get("normalize", "counts")),
    )


def case_arrays(case, modalities: Sequence[str]) -> list[np.ndarray]:
    """The case's modality volumes (z, y, x), in the model's order."""
    return [np.asarray(case.array(name)) for name in modalities]


def case_slices(case, setup: VQSetup):
    """Network input (Z, C, S, S) of a case, preprocessed as vqhist does."""
    from ..nets.preprocess import volume_to_slices

    return volume_to_slices(case_arrays(case, setup.modalities), setup.input_size)


def case_codewords(model, slices, batch_size: int = 32):
    """Codeword indices (Z, 8, 8) on the CPU, as vqhist computes them."""
    return model.volume_codeword_indices(slices, batch_size=batch_size).cpu()


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
                f"codeword {index} is out of range: {model_name} has K={num_embeddings} codewords "
                f"(valid indices 0 to {num_embeddings - 1})"
            )
        out.append(index)
    return sorted(set(out))


def background_codeword(model, slices=None, how: str | int = "model", indices=None) -> int:
    """The background codeword (see the module docstring for ``how``: "model", "case" or an index)."""
    import torch

    if not isinstance(how, str):
        return int(how)
    background = model.background_indices().flatten()
    from_model = int(torch.bincount(background.cpu()).argmax())
    if how == "model":
        return from_model
    if how != "case":
        raise ParamsError(f"background '{how}' is not one of: model, case, or a codeword index")
    if slices is None:
        raise ParamsError("background='case' needs the case's slices")
    size = slices.shape[-1]
    block = size // 8
    empty = torch.nn.functional.max_pool2d(slices.abs().amax(1, keepdim=True), kernel_size=block)[:, 0] == 0
    if not bool(empty.any()):
        logger.info("no all-background latent cell in the case: using the model's background codeword %d", from_model)
        return from_model
    if indices is None:
        indices = case_codewords(model, slices)
    return int(torch.bincount(indices[empty.to(indices.device)].cpu()).argmax())


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


# ---------------------------------------------------------------------------------------------- labels
def label_statistics(
    response: np.ndarray,
    labels: np.ndarray,
    samples: str = "voxel",
    names: Mapping[int, str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Response per label, Kruskal-Wallis across labels and Dunn's post-hoc test (Holm).

    Parameters
    ----------
    response
        Response map (z, y, x).
    labels
        Integer label map of the same shape; 0 is ignored.
    samples
        ``"voxel"``: one sample per voxel of a label; ``"slice"``: one sample per slice where the label is
        present, the sum of the response over the label's voxels in that slice.
    names
        Optional names of the label values, e.g. ``{1: "NET", 2: "ED", 3: "ET"}``.

    Returns
    -------
    per_label, dunn, kruskal
        ``per_label``: one row per label (voxels, slices, sum, mean, median, sd of the voxel response,
        fraction of the total response, number and median of the samples); ``dunn``: one row per pair
        (Holm-adjusted p); ``kruskal``: ``{"statistic", "p_value", "n_labels"}`` (NaN when fewer than two
        labels or when every sample is equal, e.g. an all-zero map: then ``dunn`` is empty).
    """
    import scikit_posthocs as sp
    from scipy import stats

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
                "samples": samples,
                "n_samples": int(group.size),
                "sample_median": float(np.median(group)),
            }
        )
    per_label = pd.DataFrame(rows)
    pooled = np.concatenate(list(groups.values()))
    kruskal = {"statistic": float("nan"), "p_value": float("nan"), "n_labels": len(groups)}
    dunn_rows = []
    if len(groups) >= 2 and np.ptp(pooled) > 0 and all(g.size > 0 for g in groups.values()):
        h, p = stats.kruskal(*groups.values())
        kruskal.update(statistic=float(h), p_value=float(p))
        frame = pd.DataFrame({"value": pooled, "group": np.repeat(list(groups), [g.size for g in groups.values()])})
        frame["rank"] = stats.rankdata(frame["value"])
        mean_rank = frame.groupby("group", sort=False)["rank"].mean()
        matrix = sp.posthoc_dunn(frame, val_col="value", group_col="group", p_adjust="holm")
        names_order = list(groups)
        for i, a in enumerate(names_order):
            for b in names_order[i + 1 :]:
                dunn_rows.append(
                    {
                        "label_a": a,
                        "label_b": b,
                        "mean_rank_a": float(mean_rank[a]),
                        "mean_rank_b": float(mean_rank[b]),
                        "median_a": float(np.median(groups[a])),
                        "median_b": float(np.median(groups[b])),
                        "p_holm": float(matrix.loc[a, b]),
                    }
                )
    else:
        logger.warning("Kruskal-Wallis not computed: %s", "fewer than two labels" if len(groups) < 2 else "every sample is equal")
    per_label["kruskal_H"] = kruskal["statistic"]
    per_label["kruskal_p"] = kruskal["p_value"]
    dunn = pd.DataFrame(dunn_rows, columns=["label_a", "label_b", "mean_rank_a", "mean_rank_b", "median_a", "median_b", "p_holm"])
    return per_label, dunn, kruskal


# ---------------------------------------------------------------------------------------------- result
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
        ``summary.csv`` and, with labels, ``labels.csv`` and ``dunn.csv``; return the folder."""
        import SimpleITK as sitk

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(self.response_image(), str(out / "response.nii.gz"))
        if len(self.per_codeword) > 1:
            for codeword, array in self.per_codeword.items():
                sitk.WriteImage(self.response_image(array), str(out / f"response_cw{codeword:03d}.nii.gz"))
        self.summary.to_csv(out / "summary.csv", index=False)
        if self.per_label is not None:
            self.per_label.to_csv(out / "labels.csv", index=False)
            self.dunn.to_csv(out / "dunn.csv", index=False)
        (out / "notes.txt").write_text("\n".join(self.notes) + ("\n" if self.notes else ""))
        name = overlay_on or _default_overlay(self.case)
        write_overlays(
            self.response,
            np.asarray(self.case.array(name)),
            out,
            mask=np.asarray(self.case.mask_array()),
            n_slices=n_slices,
            title=f"codewords {self._codeword_text()} on {name}",
        )
        return out

    def _codeword_text(self) -> str:
        return ",".join(str(c) for c in self.codewords)


def _default_overlay(case) -> str:
    from ..case import MAIN_IMAGE

    return MAIN_IMAGE if MAIN_IMAGE in case.modalities else next(iter(case.modalities))


def write_overlays(
    response: np.ndarray, image: np.ndarray, out: Path, mask=None, n_slices: int = 3, title: str = ""
) -> list[Path]:
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


# ---------------------------------------------------------------------------------------------- main
def explain_codewords(
    case,
    params: str | os.PathLike | Mapping,
    codewords: Sequence[int],
    *,
    labels=None,
    label_names: Mapping[int, str] | None = None,
    samples: str = "voxel",
    background: str | int = "model",
    bundle=None,
    batch_size: int = 16,
    per_codeword: bool = True,
) -> Explanation:
    """Responsible regions of ``codewords`` in ``case`` by ablation (see the module docstring).

    Parameters
    ----------
    case
        A :class:`~deepradiomics.case.Case` holding the vqhist modalities and a mask (files or
        in-memory SimpleITK images).
    params
        Params file or mapping with ``featureClass.vqhist`` (or the vqhist settings mapping itself).
    codewords
        Codeword indices to ablate (0 <= c < K).
    labels
        Optional label map (path or SimpleITK image, same geometry as the case) for per-label statistics.
    label_names
        Names of label values for the tables, e.g. ``{1: "NET", 2: "ED", 3: "ET"}``.
    samples
        ``"voxel"`` or ``"slice"`` samples for the label tests (see :func:`label_statistics`).
    background
        ``"model"`` (default), ``"case"`` or a codeword index (see the module docstring).
    bundle
        A loaded model bundle to use instead of the params' ``model``.
    per_codeword
        Also ablate each codeword alone (its own map and summary row); ``False`` ablates only all
        chosen codewords together (the summary rows of single codewords then carry occurrences only).

    Raises
    ------
    ParamsError
        A codeword is out of range (>= K) or the params lack vqhist settings.
    CaseError
        A modality is missing or the label map does not match the case geometry.
    """
    import torch

    from ..case import read_image, same_geometry
    from ..nets.preprocess import mask_to_latent, slices_to_volume

    setup = vq_setup(params, bundle)
    model = setup.model
    chosen = check_codewords(codewords, setup.num_embeddings, f"model '{setup.bundle.name}'")
    if samples not in ("voxel", "slice"):
        raise ParamsError(f"samples '{samples}' is not one of: voxel, slice")
    if not isinstance(background, str):
        check_codewords([background], setup.num_embeddings, f"model '{setup.bundle.name}' (background codeword)")
    reference_name = _default_overlay(case) if _default_overlay(case) in case.modalities else setup.modalities[0]
    reference = case.image(reference_name)
    label_array = None
    if labels is not None:  # check the label map before any network work
        import SimpleITK as sitk

        label_image = read_image(labels, "label map")
        mismatch = same_geometry(label_image, reference)
        if mismatch:
            where = "<in-memory>" if isinstance(labels, sitk.Image) else str(labels)
            raise CaseError(
                f"label map '{where}' and the image '{case.source(reference_name)}' of case '{case.case_id}' differ in "
                f"geometry ({mismatch}): resample the label map onto the image grid"
            )
        label_array = sitk.GetArrayFromImage(label_image).astype(np.int64)
    arrays = case_arrays(case, setup.modalities)
    shape = arrays[0].shape
    from ..nets.preprocess import volume_to_slices

    slices = volume_to_slices(arrays, setup.input_size)
    indices = case_codewords(model, slices, setup.batch_size)
    bg = background_codeword(model, slices, background, indices)
    method = background if isinstance(background, str) else "given"
    in_mask = mask_to_latent(np.asarray(case.mask_array()), setup.input_size).cpu()
    mask = np.asarray(case.mask_array())
    notes: list[str] = []
    maps: dict[int, np.ndarray] = {}
    original_logits: dict = {}  # each original slice is decoded once for all ablations
    rows = []

    def to_volume(slice_maps):
        volume = slices_to_volume(slice_maps, shape).astype(np.float32)
        return np.clip(volume, 0.0, None)  # bilinear weights are >= 0; clip float noise only

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
        where = indices == codeword
        if per_codeword or len(chosen) == 1:
            ablated = torch.where(where, torch.full_like(indices, bg), indices)
            volume = to_volume(ablation_response(model, indices, ablated, batch_size, original_logits))
            maps[codeword] = volume
            row = row_for(str(codeword), where, volume)
        else:
            row = row_for(str(codeword), where, None)  # not ablated alone: response columns NaN
        if row["occurrences"] == 0:
            row["note"] = "absent from the case: map all zero"
            notes.append(
                f"codeword {codeword} does not occur in case '{case.case_id}': its responsible region is empty (all-zero map)"
            )
        elif codeword == bg:
            row["note"] = "is the background codeword: ablation changes nothing"
            notes.append(f"codeword {codeword} is the background codeword itself: replacing it by the background changes nothing")
        else:
            row["note"] = ""
        rows.append(row)
    where_all = torch.isin(indices, torch.tensor(chosen))
    if len(chosen) == 1:
        response = maps[chosen[0]]
    else:
        ablated = torch.where(where_all, torch.full_like(indices, bg), indices)
        response = to_volume(ablation_response(model, indices, ablated, batch_size, original_logits))
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
        background_method=method,
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
        if samples == "voxel":
            notes.append(
                "label tests use voxels as samples; neighbouring voxels are correlated, so the p-values describe "
                "how separated the labels' response distributions are in this case, not inference over patients"
            )
        if not np.isfinite(result.kruskal["statistic"]):
            notes.append("Kruskal-Wallis/Dunn not computed: fewer than two labels or every sample equal (e.g. an all-zero map)")
    return result
