r"""GLRLM voxel maps from the runs of each kernel (PyRadiomics 3.0.1's ``RadiomicsGLRLM`` in voxel mode).

For voxel :math:`v` and angle :math:`a` (PyRadiomics' 13 angles at distance 1, 4 with ``force2D``),
:math:`P_{v,a}(i, j)` counts the runs of :math:`j` consecutive valid kernel voxels of grey level :math:`i`
along the lines of the kernel box in direction :math:`a` (``calculate_glrlm``: a run ends at a voxel of
another level or outside the mask); an angle along which no line holds two valid voxels is emptied
(PyRadiomics' ``multiElement`` rule). A run is at most :math:`2r + 1` long, so the run-length axis of the
matrix is that short here, where PyRadiomics allocates ``max(image shape)`` run lengths and deletes the
empty ones afterwards.

The runs are traced for all voxels at once (:meth:`.Kernel.lines`: per line length, the starts and ends of
runs in a (voxels, lines, length) array), counted into the batch's matrix laid out as PyRadiomics' C code
writes it, and then PyRadiomics' own Python takes over: the statements of ``_calculateMatrix`` after the C
call (grey levels absent from the ROI deleted, ``weightingNorm``, :math:`N_r`, empty angles of the batch
deleted), its ``_calculateCoefficients`` (empty run lengths of the batch deleted) and its feature
methods, so every value is PyRadiomics': ShortRunEmphasis :math:`\frac{1}{N_r}\sum p_r(j)/j^2`,
LongRunEmphasis :math:`\frac{1}{N_r}\sum p_r(j)j^2`, GrayLevelNonUniformity(Normalized)
:math:`\sum p_g(i)^2 / N_r\,(N_r^2)`, RunLengthNonUniformity(Normalized) :math:`\sum p_r(j)^2 / N_r\,(N_r^2)`,
RunPercentage :math:`N_r / N_p`, GrayLevelVariance, RunVariance, RunEntropy
:math:`-\sum p\log_2(p+\epsilon)`, Low/HighGrayLevelRunEmphasis :math:`\frac{1}{N_r}\sum p_g(i)\,i^{\mp2}`
and the four Short/LongRun Low/HighGrayLevel emphases :math:`\frac{1}{N_r}\sum P(i,j)\,i^{\mp2}j^{\mp2}`,
each averaged over the angles (``nanmean``). With ``weightingNorm`` the matrix is built over the full
run-length axis PyRadiomics uses (its sums over that axis are then not integer-valued and numpy adds them
pairwise), laid out as PyRadiomics' (:func:`probe_weighted_layout`).
"""

from __future__ import annotations

import numpy as np

from .common import absent_levels, call_features, layout_like, memory_order, quiet_numpy, store
from .kernels import Kernel, KernelSettings, generate_angles

FEATURES = (
    "GrayLevelNonUniformity", "GrayLevelNonUniformityNormalized", "GrayLevelVariance", "HighGrayLevelRunEmphasis",
    "LongRunEmphasis", "LongRunHighGrayLevelEmphasis", "LongRunLowGrayLevelEmphasis", "LowGrayLevelRunEmphasis",
    "RunEntropy", "RunLengthNonUniformity", "RunLengthNonUniformityNormalized", "RunPercentage", "RunVariance",
    "ShortRunEmphasis", "ShortRunHighGrayLevelEmphasis", "ShortRunLowGrayLevelEmphasis",
)  # fmt: skip
RAISING: frozenset = frozenset()

#: kernel line positions per voxel chunk
CHUNK_POSITIONS = 3_000_000


def weights(instance, angles: np.ndarray) -> np.ndarray:
    """PyRadiomics' GLRLM angle weights (``RadiomicsGLRLM._calculateMatrix``; not the GLCM's)."""
    norm = instance.weightingNorm
    spacing = instance.inputImage.GetSpacing()[::-1]
    out = np.empty(len(angles))
    for index, a in enumerate(angles):
        if norm == "infinity":
            out[index] = max(np.abs(a) * spacing)
        elif norm == "euclidean":
            out[index] = np.sqrt(np.sum((np.abs(a) * spacing) ** 2))
        elif norm == "manhattan":
            out[index] = np.sum(np.abs(a) * spacing)
        else:  # 'no_weighting', and PyRadiomics' fallback (with its warning) for an unknown norm
            out[index] = 1
    return out


def chunk_runs(levels: np.ndarray, lines: list, na: int) -> tuple[np.ndarray, ...]:
    """The runs of a chunk of voxels: ``(voxel, angle, grey level, run length)`` per run.

    Runs along angles whose lines all hold at most one valid voxel (for that voxel's kernel) are dropped,
    as PyRadiomics empties such an angle.
    """
    nv = len(levels)
    multi = np.zeros((nv, na), dtype=bool)
    parts = []
    for positions, owners in lines:
        nl, length = positions.shape
        lev = levels[:, positions]  # (voxels, lines, length)
        valid = lev > 0
        elements = valid.sum(axis=2)
        for a in np.unique(owners):
            multi[:, a] |= (elements[:, owners == a] > 1).any(axis=1)
        same_before = np.zeros_like(valid)
        same_before[:, :, 1:] = lev[:, :, 1:] == lev[:, :, :-1]
        same_after = np.zeros_like(valid)
        same_after[:, :, :-1] = lev[:, :, :-1] == lev[:, :, 1:]
        starts = np.flatnonzero(valid & ~same_before)
        ends = np.flatnonzero(valid & ~same_after)  # the k-th run of a line starts at starts[k], ends at ends[k]
        voxel = starts // (nl * length)
        line = (starts // length) % nl
        parts.append((voxel, owners[line], lev.ravel()[starts], ends - starts + 1))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    voxel, angle, level, run = (np.concatenate(p) for p in zip(*parts))
    keep = np.flatnonzero(multi[voxel, angle])
    keep = keep[np.argsort(voxel[keep], kind="stable")]  # by voxel, for the batches
    return voxel[keep], angle[keep], level[keep], run[keep]


def _runs_job(args):
    levels, lines, na = args
    return chunk_runs(levels, lines, na)


def probe_weighted_layout(shape, absent: np.ndarray, angle_weights: np.ndarray) -> tuple:
    """Memory order of PyRadiomics' weighted ``P_glrlm`` (2 voxels): delete absent levels, weight, sum."""
    dummy = np.ones((2,) + tuple(shape[1:]))
    dummy = np.delete(dummy, absent - 1, 1)
    return memory_order(np.sum(dummy * angle_weights[None, None, None, :], 3, keepdims=True))


class GLRLMEngine:
    """GLRLM voxel values for a PyRadiomics ``RadiomicsGLRLM`` instance built for voxel mode."""

    name = "glrlm"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        settings = KernelSettings.from_settings(instance.settings)
        self.kernel = Kernel(instance.imageArray, instance.maskArray, instance.labelledVoxelCoordinates, settings)
        self.angles = generate_angles(instance.imageArray.shape, [1], False, settings)
        self.lines = self.kernel.lines(self.angles)
        self.na = len(self.angles)
        self.ng_max = int(instance.coefficients["Ng"])
        self.nr_full = int(np.max(instance.imageArray.shape))  # PyRadiomics' run-length axis
        longest = max((positions.shape[1] for positions, _ in self.lines), default=1)
        # two always-empty run lengths beyond the longest possible run make numpy's delete take the same
        # (fancy-indexing) path as on PyRadiomics' full axis, so the arrays are laid out alike
        self.nr = self.nr_full if self.nr_full <= longest + 2 else longest + 2
        self.weighted = instance.weightingNorm is not None
        per_voxel = sum(positions.size for positions, _ in self.lines)
        self.chunk = max(64, CHUNK_POSITIONS // max(1, per_voxel))
        self.absent = absent_levels(instance)

    def unsupported(self, bounds) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        if self.na == 0:
            return "no GLRLM angle for this image size"
        return None

    def runs(self, mapper=map) -> tuple[np.ndarray, ...]:
        """The runs of every voxel's kernel, ``(voxel, angle, grey level, length)``, sorted by voxel."""
        count = self.kernel.count
        spans = [(s, min(s + self.chunk, count)) for s in range(0, count, self.chunk)]
        jobs = [(self.kernel.levels(s, e), self.lines, self.na) for s, e in spans]
        parts = [(v + s, a, g, r) for (s, _), (v, a, g, r) in zip(spans, mapper(_runs_job, jobs))]
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        return tuple(np.concatenate(p) for p in zip(*parts))

    def raw_matrix(self, runs, start: int, stop: int) -> np.ndarray:
        """The batch's matrix as PyRadiomics' C code returns it: (voxels, Ng, run lengths, angles), C order."""
        voxel, angle, level, run = runs
        lo, hi = np.searchsorted(voxel, [start, stop])
        nb = stop - start
        key = (((voxel[lo:hi] - start) * self.ng_max + (level[lo:hi] - 1)) * self.nr + (run[lo:hi] - 1)) * self.na + angle[lo:hi]
        counts = np.bincount(key, minlength=nb * self.ng_max * self.nr * self.na).astype(np.float64)
        return counts.reshape(nb, self.ng_max, self.nr, self.na)

    def matrix(self, runs, start: int, stop: int) -> np.ndarray:
        """PyRadiomics' ``P_glrlm`` of the batch, ``coefficients['Nr']`` set (``_calculateMatrix`` after C)."""
        instance = self.instance
        P_glrlm = self.raw_matrix(runs, start, stop)
        P_glrlm = np.delete(P_glrlm, self.absent - 1, 1)
        if self.weighted:
            w = weights(instance, self.angles)
            compact = np.sum(P_glrlm * w[None, None, None, :], 3, keepdims=True)
            # PyRadiomics weights the full run-length axis: its sums below run over all of it
            shape = compact.shape[:2] + (self.nr_full, 1)
            P_glrlm = layout_like(shape, probe_weighted_layout((2, self.ng_max, self.nr_full, self.na), self.absent, w))
            P_glrlm[:, :, : self.nr, :] = compact
        Nr = np.sum(P_glrlm, (1, 2))
        if P_glrlm.shape[3] > 1:
            emptyAngles = np.where(np.sum(Nr, 0) == 0)
            if len(emptyAngles[0]) > 0:
                P_glrlm = np.delete(P_glrlm, emptyAngles, 3)
                Nr = np.delete(Nr, emptyAngles, 1)
        Nr[Nr == 0] = np.nan
        instance.coefficients["Nr"] = Nr
        return P_glrlm

    def run(self, bounds, initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` with PyRadiomics' per-batch semantics."""
        out = {name: np.full(self.kernel.count, initial, dtype=float) for name in self.features}
        runs = self.runs(mapper)
        instance = self.instance
        with quiet_numpy():
            for start, stop in bounds:
                instance.P_glrlm = self.matrix(runs, start, stop)
                instance._calculateCoefficients()
                store(out, start, stop, call_features(instance, self.features))
        return out
