r"""GLCM voxel maps from the few co-occurrences of each kernel (PyRadiomics 3.0.1's ``RadiomicsGLCM``).

For voxel :math:`v` and angle :math:`a` (PyRadiomics' angles for the ``distances`` setting, one direction
each), :math:`P_{v,a}(i, j)` counts the pairs of valid kernel positions :math:`(x, x + a)` with grey levels
:math:`(i, j)` (``calculate_glcm``); with ``symmetricalGLCM`` (the default) :math:`P + P^T`. A kernel of 27
(125) voxels has at most 18 (100) pairs per angle, so each :math:`P_{v,a}` is held as its non-zero cells
``(segment = v * Na + a, i, j, count)``, sorted by segment then row-major (i, j): PyRadiomics' own order of
addition for its sums over the dense (voxels, Ng, Ng, angles) array (:mod:`.reduce`), so each per-angle
value below is PyRadiomics' to the bit. With :math:`p = P / \sum P` (NaN for an empty matrix),
:math:`p_x(i) = \sum_j p(i,j)`, :math:`p_y(j) = \sum_i p(i,j)`, :math:`\mu_x = \sum i\,p(i,j)`,
:math:`\mu_y = \sum j\,p(i,j)`, :math:`p_{x+y}(k) = \sum_{i+j=k} p(i,j)`, :math:`p_{x-y}(k) = \sum_{|i-j|=k}
p(i,j)`, :math:`HX, HY, HXY, HXY1, HXY2` the entropies of :math:`p_x, p_y, p, p\,\text{vs}\,p_xp_y,
p_xp_y` (with :math:`\epsilon` = ``numpy.spacing(1)`` inside each logarithm), :math:`i, j` the grey levels
present in the ROI and :math:`N_g` the largest, the per-angle values are (PyRadiomics' ``glcm.py``,
operation for operation):

- Autocorrelation :math:`\sum p(i,j)\,ij`; JointAverage :math:`\mu_x`; ClusterProminence, ClusterShade,
  ClusterTendency :math:`\sum p(i,j)(i+j-\mu_x-\mu_y)^{4, 3, 2}`; Contrast :math:`\sum p(i,j)(i-j)^2`;
- Correlation :math:`(\sum p(i,j)(i-\mu_x)(j-\mu_y)) / (\sigma_x\sigma_y + \epsilon)`, 1 where
  :math:`\sigma_x\sigma_y = 0`, with :math:`\sigma_x^2 = \sum p(i,j)(i-\mu_x)^2`,
  :math:`\sigma_y^2 = \sum p(i,j)(j-\mu_y)^2`;
- DifferenceAverage :math:`DA = \sum k\,p_{x-y}(k)`; DifferenceEntropy :math:`-\sum p_{x-y}\log_2(p_{x-y}+\epsilon)`;
  DifferenceVariance :math:`\sum (k-DA)^2 p_{x-y}(k)`;
- JointEnergy :math:`\sum p(i,j)^2`; JointEntropy :math:`HXY`;
- Imc1 :math:`(HXY - HXY1) / \max(HX, HY)`, 0 where the maximum is 0; Imc2
  :math:`\sqrt{1 - e^{-2(HXY2 - HXY)}}`, 0 where :math:`HXY2 = HXY` (NaN where rounding makes it negative);
- Idm :math:`\sum p_{x-y}(k)/(1+k^2)`; Idmn :math:`\sum p_{x-y}(k)/(1+k^2/N_g^2)`; Id
  :math:`\sum p_{x-y}(k)/(1+k)`; Idn :math:`\sum p_{x-y}(k)/(1+k/N_g)`; InverseVariance
  :math:`\sum_{k\ge1} p_{x-y}(k)/k^2`;
- MaximumProbability :math:`\max p(i,j)`; SumAverage :math:`\sum k\,p_{x+y}(k)`; SumEntropy
  :math:`-\sum p_{x+y}\log_2(p_{x+y}+\epsilon)`; SumSquares :math:`\sum p(i,j)(i-\mu_x)^2`;
- MCC :math:`\sqrt{\lambda_2(Q)}`, :math:`Q(i,j) = \sum_k p(i,k)p(j,k) / (p_x(i)p_y(k) + \epsilon)`, the second
  largest eigenvalue from ``numpy.linalg.eigvals`` on PyRadiomics' dense :math:`N_g \times N_g` matrix
  (built here from the non-zero block, the same values, then embedded).

A voxel's feature is ``nanmean`` of its per-angle values (``mean`` for JointAverage, so an empty angle
gives NaN), over the angles not empty in the whole voxel batch (PyRadiomics deletes those).

Batch semantics (PyRadiomics' ``_calculateMatrix`` and ``getMCCFeatureValue``, reproduced per
``voxelBatch``): the empty angles are those of the batch; ``MCC`` fails for the whole batch (its maps keep
``initValue``) as soon as one of its kernels has an empty angle that is not deleted, because
``numpy.linalg.eigvals`` refuses the NaN matrix; otherwise the eigenvalues of the whole batch are real or
complex together (``numpy.linalg.eigvals`` returns a complex array for the batch as soon as one matrix has
a complex eigenvalue), which decides how they are sorted and whether the root of a negative eigenvalue is
NaN or 0. A batch with at most one angle left (a single angle, all but one deleted, or
``weightingNorm``, which sums the angles) is computed on its dense (voxels, Ng, Ng, 1) matrix with
PyRadiomics' own coefficient and feature methods, because numpy then sums those arrays pairwise
instead of in index order.

Deprecated features (Dissimilarity, Homogeneity1, Homogeneity2, SumVariance) raise PyRadiomics'
``DeprecationWarning``: their maps keep ``initValue``, as PyRadiomics'.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .common import call_features, layout_like, quiet_numpy
from .kernels import Kernel, KernelSettings, generate_angles
from .reduce import OrderedSum, run_starts

FEATURES = (
    "Autocorrelation", "ClusterProminence", "ClusterShade", "ClusterTendency", "Contrast", "Correlation",
    "DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Dissimilarity", "Homogeneity1", "Homogeneity2",
    "Id", "Idm", "Idmn", "Idn", "Imc1", "Imc2", "InverseVariance", "JointAverage", "JointEnergy", "JointEntropy",
    "MCC", "MaximumProbability", "SumAverage", "SumEntropy", "SumSquares", "SumVariance",
)  # fmt: skip
#: features whose PyRadiomics method raises DeprecationWarning (never stored: the map keeps initValue)
RAISING = frozenset({"Dissimilarity", "Homogeneity1", "Homogeneity2", "SumVariance"})

EPS = np.spacing(1)

#: pair instances per voxel chunk (bounds the memory of one chunk)
CHUNK_PAIRS = 1_500_000
#: matrices per numpy.linalg.eigvals call
EIG_CHUNK = 2048
#: matrices per padded block computation (HXY2)
BLOCK_CHUNK = 4096
#: dense (voxels x Ng x Ng) elements above which a batch that needs PyRadiomics' dense path is declined
DENSE_LIMIT = 40_000_000

logger = logging.getLogger(__name__)


@dataclass
class Plan:
    """What every voxel chunk needs (picklable, for worker processes)."""

    first: np.ndarray  # kernel position of the first voxel of each pair
    second: np.ndarray  # ... and of its neighbour
    angle: np.ndarray  # angle index of each pair
    na: int
    ng: int  # grey levels present in the ROI
    ng_max: int  # the largest grey level (PyRadiomics' coefficient Ng)
    gray: np.ndarray  # float grey level of each index
    lut: np.ndarray  # grey level -> index (0 for 0)
    symmetric: bool
    features: tuple


def weights(instance, angles: np.ndarray) -> np.ndarray:
    """PyRadiomics' GLCM distance weights per angle (``RadiomicsGLCM._calculateMatrix``), same expressions."""
    norm = instance.weightingNorm
    spacing = instance.inputImage.GetSpacing()[::-1]
    out = np.empty(len(angles))
    for index, a in enumerate(angles):
        if norm == "infinity":
            out[index] = np.exp(-max(np.abs(a) * spacing) ** 2)
        elif norm == "euclidean":
            out[index] = np.exp(-np.sum((np.abs(a) * spacing) ** 2))
        elif norm == "manhattan":
            out[index] = np.exp(-np.sum(np.abs(a) * spacing) ** 2)
        else:  # 'no_weighting', and PyRadiomics' fallback (with its warning) for an unknown norm
            out[index] = 1
    return out


# -- numpy's order of addition for PyRadiomics' arrays ------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How numpy adds PyRadiomics' GLCM arrays of one batch (found by :func:`probe_layout`).

    ``orders``: for each reduction over the grey-level axes (1, 2), ``"row"`` (i outer: row-major) or
    ``"col"``; ``inner``: for each per-angle array PyRadiomics averages over angles, whether its angle axis is
    innermost in memory (numpy then sums it pairwise, otherwise in index order); ``axes``: the memory order of
    ``P_glcm`` (outermost first); ``pairwise``: some grey-level reduction runs over the innermost axis, where
    numpy sums pairwise: such a batch is computed on PyRadiomics' dense arrays instead.
    """

    orders: dict
    inner: dict
    axes: tuple
    pairwise: bool


def _order(x: np.ndarray, axes=(1, 2)) -> str:
    """'row', 'col' or 'pairwise': how numpy adds the elements of ``x`` reduced over ``axes``."""
    strides = [abs(s) if n > 1 else None for s, n in zip(x.strides, x.shape)]
    present = [s for s in strides if s is not None]
    if present and any(strides[a] is not None and strides[a] == min(present) for a in axes):
        return "pairwise"  # a reduced axis is the innermost: numpy's pairwise summation
    if len(axes) == 1 or strides[1] is None or strides[2] is None:
        return "row"
    return "row" if strides[1] > strides[2] else "col"


def _inner(x: np.ndarray) -> bool:
    """Whether the angle axis (last) of a per-angle array is innermost in memory (or the order is moot)."""
    if x.shape[0] < 2 or x.shape[-1] < 2:
        return True
    return abs(x.strides[-1]) < abs(x.strides[0])


def probe_layout(gray: np.ndarray, ng_max: int, na: int, empty_angles: tuple, voxels: int, symmetric: bool, angle_weights) -> Layout:
    """PyRadiomics' GLCM arrays for a batch, on 2 voxels of random values: their memory layouts.

    numpy's ``delete`` returns differently laid out arrays depending on how many indices it removes (one: a
    C-ordered copy; none or several: fancy indexing, which moves that axis outermost), and each ufunc and
    reduction lays out its result after its operands; the order in which numpy then adds the cells of a
    matrix follows. This evaluates the statements of ``RadiomicsGLCM`` (``_calculateMatrix`` after the C
    call, ``_calculateCoefficients``, the feature methods) on a (2, Ng, Ng, angles) array with the batch's
    empty angles and ROI grey levels, so the layouts are those of PyRadiomics' arrays for that batch.
    """
    orders, inner = {}, {}
    rng = np.random.default_rng(0)
    P = rng.random((min(voxels, 2), ng_max, ng_max, na)) + 0.5
    P[..., list(empty_angles)] = 0
    empty_levels = np.array(sorted(set(range(1, ng_max + 1)) - {int(g) for g in gray}), dtype=int)
    P = np.delete(P, empty_levels - 1, 1)
    P = np.delete(P, empty_levels - 1, 2)
    if symmetric:
        P += np.transpose(P, (0, 2, 1, 3)).copy()
    if angle_weights is not None:
        P = np.sum(P * angle_weights[None, None, None, :], 3, keepdims=True)
    total = np.sum(P, (1, 2))
    if P.shape[3] > 1:
        empty = np.where(np.sum(total, 0) == 0)
        if len(empty[0]) > 0:
            P = np.delete(P, empty, 3)
            total = np.delete(total, empty, 1)
    P /= total[:, None, None, :]
    axes = tuple(int(a) for a in np.argsort([-abs(s) for s in P.strides], kind="stable"))
    i, j = np.meshgrid(gray.astype(float), gray.astype(float), indexing="ij", sparse=True)
    px, py = P.sum(2, keepdims=True), P.sum(1, keepdims=True)
    pairwise = _order(P, (2,)) == "pairwise" or _order(P, (1,)) == "pairwise"

    def reduce(name, x, keepdims=False):
        orders[name] = _order(x)
        return np.sum(x, (1, 2), keepdims=keepdims)

    ux = reduce("ux", i[None, :, :, None] * P, True)
    uy = reduce("uy", j[None, :, :, None] * P, True)
    inner["JointAverage"] = _inner(ux)
    hxy = (-1) * reduce("hxy", P * np.log2(P + EPS))
    inner["JointEntropy"] = _inner(hxy)
    inner["Autocorrelation"] = _inner(reduce("ac", P * (i * j)[None, :, :, None]))
    for power, name in ((4, "ClusterProminence"), (3, "ClusterShade"), (2, "ClusterTendency")):
        inner[name] = _inner(reduce(name, P * (((i + j)[None, :, :, None] - ux - uy) ** power)))
    inner["Contrast"] = _inner(reduce("contrast", P * ((np.abs(i - j))[None, :, :, None] ** 2)))
    sigx = reduce("sigx", P * ((i[None, :, :, None] - ux) ** 2), True) ** 0.5
    sigy = reduce("sigy", P * ((j[None, :, :, None] - uy) ** 2), True) ** 0.5
    corm = reduce("corm", P * (i[None, :, :, None] - ux) * (j[None, :, :, None] - uy), True)
    inner["Correlation"] = _inner(corm / (sigx * sigy + EPS))
    inner["JointEnergy"] = _inner(reduce("energy", P**2))
    hx_terms, hy_terms = px * np.log2(px + EPS), py * np.log2(py + EPS)
    pairwise |= _order(hx_terms, (1,)) == "pairwise" or _order(hy_terms, (2,)) == "pairwise"
    hxy1 = (-1) * reduce("hxy1", P * np.log2(px * py + EPS))
    inner["Imc1"] = _inner(hxy - hxy1)  # then divided in place by max(HX, HY)
    hxy2 = (-1) * reduce("hxy2", (px * py) * np.log2(px * py + EPS))
    inner["Imc2"] = _inner((1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5)
    inner["MaximumProbability"] = _inner(np.amax(P, (1, 2)))
    inner["SumSquares"] = _inner(reduce("ss", P * ((i[None, :, :, None] - ux) ** 2)))
    kd = np.arange(0, ng_max, dtype="float")
    ks = np.arange(2, (ng_max * 2) + 1, dtype="float")
    pd = np.array([np.sum(P[:, np.abs(i - j) == k, :], 1) for k in kd]).transpose((1, 0, 2))
    pa = np.array([np.sum(P[:, i + j == k, :], 1) for k in ks]).transpose((1, 0, 2))
    pairwise |= _order(pd, (1,)) == "pairwise" or _order(pa, (1,)) == "pairwise"
    da = np.sum(kd[None, :, None] * pd, 1, keepdims=True)
    finals = {
        "DifferenceAverage": np.sum(kd[None, :, None] * pd, 1),
        "DifferenceEntropy": (-1) * np.sum(pd * np.log2(pd + EPS), 1),
        "DifferenceVariance": np.sum(pd * ((kd[None, :, None] - da) ** 2), 1),
        "Idm": np.sum(pd / (1 + (kd[None, :, None] ** 2)), 1),
        "Idmn": np.sum(pd / (1 + ((kd[None, :, None] ** 2) / (ng_max**2))), 1),
        "Id": np.sum(pd / (1 + kd[None, :, None]), 1),
        "Idn": np.sum(pd / (1 + (kd[None, :, None] / ng_max)), 1),
        "InverseVariance": np.sum(pd[:, 1:, :] / kd[None, 1:, None] ** 2, 1),
        "SumAverage": np.sum(ks[None, :, None] * pa, 1),
        "SumEntropy": (-1) * np.sum(pa * np.log2(pa + EPS), 1),
    }
    inner.update({name: _inner(value) for name, value in finals.items()})
    inner["MCC"] = True  # numpy.sqrt of a slice of eigvals' C-ordered output
    pairwise |= any(order == "pairwise" for order in orders.values())
    return Layout(orders, inner, axes, pairwise)


# -- the co-occurrences of a chunk of voxels ------------------------------------------------------------
class Cells:
    """Non-zero GLCM cells of a chunk of voxels: (segment, i, j, count), sorted by segment then (i, j)."""

    def __init__(self, levels: np.ndarray, plan: Plan) -> None:
        nv = len(levels)
        ng, na = plan.ng, plan.na
        first, second = levels[:, plan.first], levels[:, plan.second]
        valid = (first > 0) & (second > 0)
        gi, gj = plan.lut[first], plan.lut[second]
        span = na * ng * ng
        dtype = np.int32 if span < 2**31 - 1 else np.int64
        base = (plan.angle * (ng * ng)).astype(dtype)[None, :]
        code = base + gi.astype(dtype) * ng + gj
        if plan.symmetric:  # P + P^T per angle: each pair counts (i, j) and (j, i)
            code = np.concatenate([code, base + gj.astype(dtype) * ng + gi], axis=1)
            valid = np.concatenate([valid, valid], axis=1)
        code = np.where(valid, code, dtype(span))
        code.sort(axis=1)
        flat = (code.astype(np.int64) + (np.arange(nv, dtype=np.int64) * (span + 1))[:, None]).ravel()
        starts = run_starts(flat)
        counts = np.diff(np.append(starts, len(flat)))
        keys = flat[starts]
        local = keys % (span + 1)
        keep = local != span
        keys, local, counts = keys[keep], local[keep], counts[keep]
        self.nv, self.na, self.ng = nv, na, ng
        self.nseg = nv * na
        self.seg = (keys // (span + 1)) * na + local // (ng * ng)
        self.i = (local // ng) % ng
        self.j = local % ng
        self.count = counts.astype(np.float64)
        self.total = np.bincount(self.seg, weights=self.count, minlength=self.nseg)  # sum of P per (voxel, angle)


def pair_totals(levels: np.ndarray, plan: Plan) -> np.ndarray:
    """Number of co-occurrences per (voxel, angle) (the matrix sum, unnormalised), shape (voxels, angles)."""
    valid = (levels[:, plan.first] > 0) & (levels[:, plan.second] > 0)
    totals = np.zeros((len(levels), plan.na))
    for a in range(plan.na):
        totals[:, a] = valid[:, plan.angle == a].sum(axis=1)
    return totals * (2 if plan.symmetric else 1)


class _AngleValues:
    """Per-(voxel, angle) values of the GLCM features for one chunk: PyRadiomics' expressions on the cells.

    ``orders`` (from :func:`probe_layout`) says, for each reduction over the grey-level axes, whether numpy
    adds PyRadiomics' cells row-major or column-major; the cells are summed in that order.
    """

    def __init__(self, cells: Cells, plan: Plan) -> None:
        self.c = cells
        self.plan = plan
        c = cells
        self.p = c.count / c.total[c.seg]
        self.iv = plan.gray[c.i]
        self.jv = plan.gray[c.j]
        self._sums = {"row": OrderedSum(c.seg, presorted=True)}
        self._cache: dict = {}

    def _full(self, plan_sum: OrderedSum, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.c.nseg)
        out[plan_sum.keys] = plan_sum(values)
        return out

    def seg(self, values: np.ndarray, order: str) -> np.ndarray:
        """Sum of per-cell ``values`` over each (voxel, angle) matrix, in ``order``; 0 for empty matrices."""
        if order not in self._sums:  # column-major: the cells of each matrix by (j, i)
            c = self.c
            self._sums[order] = OrderedSum(c.seg, order=np.argsort((c.seg * c.ng + c.j) * c.ng + c.i, kind="stable"))
        return self._full(self._sums[order], values)

    def cached(self, key, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    # -- coefficients (RadiomicsGLCM._calculateCoefficients) ------------------------------------------
    def rows(self):
        """Row groups (segment, i) and p_x: each row summed over j ascending."""

        def compute():
            c = self.c
            s = OrderedSum(c.seg * c.ng + c.i, presorted=True)
            return s, s(self.p)

        return self.cached("rows", compute)

    def cols(self):
        """Column groups (segment, j) and p_y: each column summed over i ascending."""

        def compute():
            if self.plan.symmetric:
                # p(i, j) = p(j, i): column j summed over i ascending is row j summed over its columns
                return self.rows()
            c = self.c
            s = OrderedSum(c.seg * c.ng + c.j)
            return s, s(self.p)

        return self.cached("cols", compute)

    def px_cell(self):
        rows, px = self.rows()
        return self.cached("px_cell", lambda: px[np.searchsorted(rows.keys, self.c.seg * self.c.ng + self.c.i)])

    def py_cell(self):
        cols, py = self.cols()
        return self.cached("py_cell", lambda: py[np.searchsorted(cols.keys, self.c.seg * self.c.ng + self.c.j)])

    def ux(self, orders):
        o = orders["ux"]
        return self.cached(("ux", o), lambda: self.seg(self.iv * self.p, o))

    def uy(self, orders):
        o = orders["uy"]
        return self.cached(("uy", o), lambda: self.seg(self.jv * self.p, o))

    def hxy(self, orders):
        o = orders["hxy"]
        return self.cached(("hxy", o), lambda: (-1) * self.seg(self.p * np.log2(self.p + EPS), o))

    def sum_groups(self):
        """p_{x+y}: per (segment, k = i + j), the cells summed in row-major order (PyRadiomics' mask order)."""

        def compute():
            c = self.c
            width = 2 * self.plan.ng_max + 2
            ks = (self.iv + self.jv).astype(np.int64)
            s = OrderedSum(c.seg * width + ks)
            return s, s(self.p), (s.keys % width).astype(np.float64), width

        return self.cached("sum_groups", compute)

    def diff_groups(self):
        """p_{x-y}: per (segment, k = |i - j|), the cells summed in row-major order."""

        def compute():
            c = self.c
            width = self.plan.ng_max + 1
            kd = np.abs(self.iv - self.jv).astype(np.int64)
            s = OrderedSum(c.seg * width + kd)
            return s, s(self.p), (s.keys % width).astype(np.float64), width

        return self.cached("diff_groups", compute)

    def k_sum(self, groups: OrderedSum, width: int, values: np.ndarray, select=None) -> np.ndarray:
        """Sum over k of per-(segment, k) values, k ascending (PyRadiomics' sum over its k axis)."""
        segs = groups.keys // width
        if select is not None:
            segs, values = segs[select], values[select]
        return self._full(OrderedSum(segs, presorted=True), values)

    def sigx2(self, orders):
        o, ux = orders["ss"], self.ux(orders)[self.c.seg]
        return self.cached(("ss", o, orders["ux"]), lambda: self.seg(self.p * ((self.iv - ux) ** 2), o))

    def entropies(self):
        """HX, HY: the marginal entropies, summed over the grey levels in ascending order."""

        def compute():
            c = self.c
            rows, px = self.rows()
            cols, py = self.cols()
            hx = (-1) * self._full(OrderedSum(rows.keys // c.ng, presorted=True), px * np.log2(px + EPS))
            hy = (-1) * self._full(OrderedSum(cols.keys // c.ng, presorted=True), py * np.log2(py + EPS))
            return hx, hy

        return self.cached("entropies", compute)

    def hxy2(self, orders):
        """HXY2 = -sum p_x(i) p_y(j) log2(p_x(i) p_y(j) + eps) over the rows and columns present (the other
        products are 0), added in PyRadiomics' order (row- or column-major)."""
        o = orders["hxy2"]

        def compute():
            c = self.c
            rows, px = self.rows()
            cols, py = self.cols()
            out = np.zeros(c.nseg)
            px_block, row_segs = _blocks(rows.keys // c.ng, px, c.nseg)
            py_block, col_segs = _blocks(cols.keys // c.ng, py, c.nseg)
            segs = np.intersect1d(row_segs, col_segs)
            row_at = np.searchsorted(row_segs, segs)
            col_at = np.searchsorted(col_segs, segs)
            for begin in range(0, len(segs), BLOCK_CHUNK):
                r, k = row_at[begin : begin + BLOCK_CHUNK], col_at[begin : begin + BLOCK_CHUNK]
                pxpy = px_block[r][:, :, None] * py_block[k][:, None, :]  # zero where padded
                if o == "col":
                    pxpy = pxpy.transpose(0, 2, 1)
                terms = np.ascontiguousarray(pxpy * np.log2(pxpy + EPS)).reshape(len(r), -1)
                # sequential sum along each row (add.accumulate adds in order; padded zeros change nothing)
                out[segs[begin : begin + BLOCK_CHUNK]] = np.add.accumulate(terms, axis=1)[:, -1]
            return (-1) * out

        return self.cached(("hxy2", o), compute)

    # -- per-angle feature values ------------------------------------------------------------------
    def feature(self, name: str, orders: dict) -> np.ndarray:  # noqa: C901 (one branch per feature, as PyRadiomics' methods)
        p, iv, jv, c = self.p, self.iv, self.jv, self.c
        if name == "Autocorrelation":
            return self.seg(p * (iv * jv), orders["ac"])
        if name == "JointAverage":
            return self.ux(orders)
        if name in ("ClusterProminence", "ClusterShade", "ClusterTendency"):
            ux, uy = self.ux(orders)[c.seg], self.uy(orders)[c.seg]
            power = {"ClusterProminence": 4, "ClusterShade": 3, "ClusterTendency": 2}[name]
            return self.seg(p * ((((iv + jv) - ux) - uy) ** power), orders[name])
        if name == "Contrast":
            return self.seg(p * (np.abs(iv - jv) ** 2), orders["contrast"])
        if name == "Correlation":
            ux, uy = self.ux(orders)[c.seg], self.uy(orders)[c.seg]
            sigx = self.seg(p * ((iv - ux) ** 2), orders["sigx"]) ** 0.5
            sigy = self.seg(p * ((jv - uy) ** 2), orders["sigy"]) ** 0.5
            corm = self.seg(p * (iv - ux) * (jv - uy), orders["corm"])
            corr = corm / (sigx * sigy + EPS)
            corr[sigx * sigy == 0] = 1
            return corr
        if name in _DIFFERENCE:
            return self._difference_feature(name)
        if name in ("SumAverage", "SumEntropy"):
            groups, pa, k, width = self.sum_groups()
            if name == "SumAverage":
                return self.k_sum(groups, width, k * pa)
            return (-1) * self.k_sum(groups, width, pa * np.log2(pa + EPS))
        if name == "JointEnergy":
            return self.seg(p**2, orders["energy"])
        if name == "JointEntropy":
            return self.hxy(orders)
        if name == "Imc1":
            hx, hy = self.entropies()
            hxy1 = (-1) * self.seg(p * np.log2(self.px_cell() * self.py_cell() + EPS), orders["hxy1"])
            div = np.fmax(hx, hy)
            imc1 = self.hxy(orders) - hxy1
            imc1[div != 0] /= div[div != 0]
            imc1[div == 0] = 0
            return imc1
        if name == "Imc2":
            hxy, hxy2 = self.hxy(orders), self.hxy2(orders)
            imc2 = (1 - np.e ** (-2 * (hxy2 - hxy))) ** 0.5
            imc2[hxy2 == hxy] = 0
            return imc2
        if name == "MaximumProbability":
            out = np.zeros(c.nseg)
            starts = run_starts(c.seg)
            if len(starts):
                out[c.seg[starts]] = np.maximum.reduceat(p, starts)
            return out
        if name == "SumSquares":
            return self.sigx2(orders)
        raise KeyError(name)

    def _difference_feature(self, name: str) -> np.ndarray:
        groups, pd, k, width = self.diff_groups()
        ng = self.plan.ng_max
        if name == "DifferenceAverage":
            return self.k_sum(groups, width, k * pd)
        if name == "DifferenceEntropy":
            return (-1) * self.k_sum(groups, width, pd * np.log2(pd + EPS))
        if name == "DifferenceVariance":
            average = self.k_sum(groups, width, k * pd)[groups.keys // width]
            return self.k_sum(groups, width, pd * ((k - average) ** 2))
        if name == "Idm":
            return self.k_sum(groups, width, pd / (1 + (k**2)))
        if name == "Idmn":
            return self.k_sum(groups, width, pd / (1 + ((k**2) / (ng**2))))
        if name == "Id":
            return self.k_sum(groups, width, pd / (1 + k))
        if name == "Idn":
            return self.k_sum(groups, width, pd / (1 + (k / ng)))
        above = k >= 1  # InverseVariance: PyRadiomics skips k = 0
        return self.k_sum(groups, width, pd / k**2, select=above)

    # -- MCC --------------------------------------------------------------------------------------
    def mcc_eigen(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Second largest eigenvalue of PyRadiomics' Q for the selected (non-empty) segments.

        Q is built on each matrix's block of present rows and columns with PyRadiomics' expression and
        order of addition over k (absent k add exact zeros), embedded in the dense Ng x Ng matrix PyRadiomics
        passes to ``numpy.linalg.eigvals``. Returns ``(real-sorted, complex-sorted, has a complex eigenvalue)``
        per selected segment: which of the two PyRadiomics uses depends on the whole batch.
        """
        c, ng = self.c, self.c.ng
        n = len(selected)
        second_real = np.full(n, np.nan)
        second_complex = np.full(n, np.nan, dtype=np.complex128)
        imaginary = np.zeros(n, dtype=bool)
        if n == 0 or ng < 2:
            return second_real, second_complex, imaginary
        rows, px = self.rows()
        cols, py = self.cols()
        row_seg, col_seg = rows.keys // ng, cols.keys // ng
        row_level = rows.keys % ng
        row_start = np.searchsorted(row_seg, np.arange(c.nseg))
        col_start = np.searchsorted(col_seg, np.arange(c.nseg))
        row_count = np.bincount(row_seg, minlength=c.nseg)
        col_count = np.bincount(col_seg, minlength=c.nseg)
        cell_r = np.searchsorted(rows.keys, c.seg * ng + c.i) - row_start[c.seg]  # block row of each cell
        cell_c = np.searchsorted(cols.keys, c.seg * ng + c.j) - col_start[c.seg]  # block column
        position = np.full(c.nseg, -1)
        position[selected] = np.arange(n)
        order = selected[np.argsort(row_count[selected], kind="stable")]  # similar block sizes together
        for begin in range(0, n, EIG_CHUNK):
            chunk = order[begin : begin + EIG_CHUNK]
            q = self._q_blocks(chunk, cell_r, cell_c, px, py, row_seg, col_seg, row_start, col_start, row_count, col_count)
            m_r = q.shape[1]
            local_row = np.arange(m_r)[None, :]
            present = local_row < row_count[chunk][:, None]
            level = np.where(present, row_level[np.minimum(row_start[chunk][:, None] + local_row, len(row_level) - 1)], 0)
            tt, aa, bb = np.nonzero(present[:, :, None] & present[:, None, :])
            dense = np.zeros((len(chunk), ng, ng))
            dense[tt, level[tt, aa], level[tt, bb]] = q[tt, aa, bb]
            w = np.linalg.eigvals(dense).astype(np.complex128)
            at = position[chunk]
            second_real[at] = np.sort(w.real, axis=1)[:, -2]
            second_complex[at] = np.sort(w, axis=1)[:, -2]
            imaginary[at] = (w.imag != 0).any(axis=1)
        return second_real, second_complex, imaginary

    def _q_blocks(self, chunk, cell_r, cell_c, px, py, row_seg, col_seg, row_start, col_start, row_count, col_count) -> np.ndarray:
        """Q on each selected segment's block: sum over k of p(i,k) p(j,k) / (p_x(i) p_y(k) + eps), k ascending."""
        c = self.c
        m_r, m_c = int(row_count[chunk].max()), int(col_count[chunk].max())
        local = np.full(c.nseg, -1)
        local[chunk] = np.arange(len(chunk))
        take = local[c.seg] >= 0
        block = np.zeros((len(chunk), m_r, m_c))
        block[local[c.seg[take]], cell_r[take], cell_c[take]] = self.p[take]
        bpx = np.zeros((len(chunk), m_r))
        rsel = np.flatnonzero(local[row_seg] >= 0)
        bpx[local[row_seg[rsel]], rsel - row_start[row_seg[rsel]]] = px[rsel]
        bpy = np.zeros((len(chunk), m_c))
        csel = np.flatnonzero(local[col_seg] >= 0)
        bpy[local[col_seg[csel]], csel - col_start[col_seg[csel]]] = py[csel]
        q = np.zeros((len(chunk), m_r, m_r))
        for k in range(m_c):
            q += (block[:, :, None, k] * block[:, None, :, k]) / (bpx[:, :, None] * bpy[:, k][:, None, None] + EPS)
        return q


def _blocks(segments: np.ndarray, values: np.ndarray, nseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment values (sorted by segment) as a zero-padded (segments present, longest) array."""
    present, starts = np.unique(segments, return_index=True)
    counts = np.diff(np.append(starts, len(segments)))
    block = np.zeros((len(present), int(counts.max()) if len(counts) else 0))
    owner = np.repeat(np.arange(len(present)), counts)
    block[owner, np.arange(len(segments)) - starts[owner]] = values
    return block, present


_DIFFERENCE = frozenset({"DifferenceAverage", "DifferenceEntropy", "DifferenceVariance", "Idm", "Idmn", "Id", "Idn", "InverseVariance"})


def chunk_values(levels: np.ndarray, plan: Plan, layouts: list, mcc_voxels: np.ndarray) -> dict:
    """Per-(voxel, angle) values of the enabled features for a chunk of voxels (PyRadiomics' per-angle arrays).

    Parameters
    ----------
    levels
        Kernel grey levels of the chunk's voxels (:meth:`Kernel.levels`).
    plan
        The class's pairs and grey levels.
    layouts
        The ``orders`` of each batch layout the chunk's voxels need.
    mcc_voxels
        Voxels whose batch computes MCC (their eigenvalues are computed).

    Returns
    -------
    dict
        ``{(layout index, feature): (voxels, angles)}`` (NaN for an empty matrix, except InverseVariance with
        a single grey level: 0, as PyRadiomics' empty sum), ``"_total"`` (co-occurrences per matrix) and, for
        MCC, ``"_mcc_real"``, ``"_mcc_complex"``, ``"_mcc_imaginary"``.
    """
    cells = Cells(levels, plan)
    values = _AngleValues(cells, plan)
    nv, na = len(levels), plan.na
    empty = (cells.total == 0).reshape(nv, na)
    out: dict = {"_total": cells.total.reshape(nv, na)}
    with np.errstate(divide="ignore", invalid="ignore"):
        for index, orders in enumerate(layouts):
            for name in plan.features:
                if name in RAISING or name == "MCC":
                    continue
                if name == "InverseVariance" and plan.ng_max == 1:
                    out[index, name] = np.zeros((nv, na))  # PyRadiomics sums over an empty k >= 1 axis: 0
                    continue
                array = values.feature(name, orders).reshape(nv, na).copy()
                array[empty] = np.nan
                out[index, name] = array
        if "MCC" in plan.features and mcc_voxels.any():
            selected = np.flatnonzero(np.repeat(mcc_voxels, na) & (cells.total > 0))
            real, comp, imag = values.mcc_eigen(selected)
            for key, data, fill in (("_mcc_real", real, np.nan), ("_mcc_complex", comp, np.nan), ("_mcc_imaginary", imag, False)):
                array = np.full(nv * na, fill, dtype=data.dtype)
                array[selected] = data
                out[key] = array.reshape(nv, na)
    return out


def _chunk_job(args):
    levels, plan, layouts, wanted = args
    return chunk_values(levels, plan, layouts, wanted)


# -- the class over its voxel batches -------------------------------------------------------------------
@dataclass
class _Batch:
    start: int
    stop: int
    kept: np.ndarray  # angles PyRadiomics keeps
    layout: Layout
    dense: bool


class GLCMEngine:
    """GLCM voxel values for a PyRadiomics ``RadiomicsGLCM`` instance built for voxel mode."""

    name = "glcm"

    def __init__(self, instance, features: list[str]) -> None:
        self.instance = instance
        self.features = features
        settings = instance.settings
        self.kernel_settings = KernelSettings.from_settings(settings)
        self.kernel = Kernel(instance.imageArray, instance.maskArray, instance.labelledVoxelCoordinates, self.kernel_settings)
        self.angles = generate_angles(instance.imageArray.shape, settings.get("distances", [1]), False, self.kernel_settings)
        gray = np.asarray(instance.coefficients["grayLevels"])
        lut = np.zeros(int(gray.max()) + 1, dtype=np.int64)
        lut[gray.astype(np.int64)] = np.arange(len(gray))
        first, second, angle = self.kernel.pairs(self.angles)
        self.plan = Plan(first, second, angle, len(self.angles), len(gray), int(instance.coefficients["Ng"]), gray.astype(float), lut,
                         bool(instance.symmetricalGLCM), tuple(features))  # fmt: skip
        self.weighted = instance.weightingNorm is not None
        self.angle_weights = weights(instance, self.angles) if self.weighted else None
        self.chunk = max(64, CHUNK_PAIRS // max(1, 2 * len(first)))
        self._layouts: dict = {}
        self._totals = None

    def layout(self, empty_angles: tuple, voxels: int) -> Layout:
        """The (cached) layout of PyRadiomics' arrays for a batch with these empty angles and voxels."""
        key = (empty_angles, min(voxels, 2))
        if key not in self._layouts:
            plan = self.plan
            self._layouts[key] = probe_layout(plan.gray, plan.ng_max, plan.na, empty_angles, voxels, plan.symmetric, self.angle_weights)
        return self._layouts[key]

    def batches(self, bounds: list[tuple[int, int]]) -> list[_Batch]:
        """PyRadiomics' treatment of each batch: the angles it keeps, its arrays' layout, dense or sparse."""
        totals = self.totals()
        out = []
        for start, stop in bounds:
            if self.weighted or self.plan.na == 1:
                kept, empty = np.arange(self.plan.na), ()
            else:
                angle_sum = totals[start:stop].sum(axis=0)
                kept, empty = np.flatnonzero(angle_sum != 0), tuple(int(a) for a in np.flatnonzero(angle_sum == 0))
            layout = self.layout(empty, stop - start)
            dense = self.weighted or len(kept) <= 1 or layout.pairwise
            out.append(_Batch(start, stop, kept, layout, dense))
        return out

    def unsupported(self, bounds: list[tuple[int, int]]) -> str | None:
        """Why this engine cannot reproduce PyRadiomics here (None when it can)."""
        if len(self.angles) == 0:
            return "no GLCM angle for this image size and distances"
        sizes = [b.stop - b.start for b in self.batches(bounds) if b.dense]
        if sizes and max(sizes) * self.plan.ng**2 > DENSE_LIMIT:
            return f"a voxel batch needs PyRadiomics' dense GLCM ({max(sizes)} voxels x {self.plan.ng}^2 grey levels): set a smaller voxelBatch"
        return None

    def totals(self) -> np.ndarray:
        """Co-occurrences per (voxel, angle), all voxels."""
        if self._totals is None:
            parts = [pair_totals(self.kernel.levels(s, s + self.chunk), self.plan) for s in range(0, self.kernel.count, self.chunk)]
            self._totals = np.concatenate(parts) if parts else np.zeros((0, self.plan.na))
        return self._totals

    def run(self, bounds: list[tuple[int, int]], initial: float, mapper=map) -> dict[str, np.ndarray]:
        """``{feature: values at instance.labelledVoxelCoordinates}`` with PyRadiomics' per-batch semantics."""
        out = {name: np.full(self.kernel.count, initial, dtype=float) for name in self.features}
        batches = self.batches(bounds)
        sparse = [b for b in batches if not b.dense]
        if sparse:
            self._run_sparse(sparse, out, mapper)
        for batch in batches:
            if batch.dense:
                self._run_dense(batch, out)
        return out

    def _run_sparse(self, sparse: list[_Batch], out: dict, mapper) -> None:
        totals = self.totals()
        count = self.kernel.count
        layouts: list[Layout] = []
        voxel_layout = np.full(count, -1)
        wanted = np.zeros(count, dtype=bool)
        for b in sparse:
            if b.layout not in layouts:
                layouts.append(b.layout)
            voxel_layout[b.start : b.stop] = layouts.index(b.layout)
            if "MCC" in self.features and (totals[b.start : b.stop][:, b.kept] > 0).all():
                wanted[b.start : b.stop] = True  # otherwise eigvals refuses the batch's NaN matrix: no eigenvalues needed
        jobs, spans = [], []
        for s in range(0, count, self.chunk):
            e = min(s + self.chunk, count)
            used = np.unique(voxel_layout[s:e])
            used = used[used >= 0]
            if len(used):
                spans.append((s, e, used))
                jobs.append((self.kernel.levels(s, e), self.plan, [layouts[u].orders for u in used], wanted[s:e]))
        per_angle: dict = {}
        for (s, e, used), part in zip(spans, mapper(_chunk_job, jobs)):
            for key, array in part.items():
                if isinstance(key, tuple):
                    key = (int(used[key[0]]), key[1])
                if key not in per_angle:
                    per_angle[key] = np.full((count, self.plan.na), False if array.dtype == bool else np.nan, dtype=array.dtype)
                per_angle[key][s:e] = array
        with quiet_numpy():
            for b in sparse:
                self._finish_batch(per_angle, layouts.index(b.layout), b, totals, out)

    def _finish_batch(self, per_angle: dict, index: int, b: _Batch, totals: np.ndarray, out: dict) -> None:
        """PyRadiomics' averages over the kept angles, on arrays laid out as PyRadiomics' (numpy's order)."""
        nb, na = b.stop - b.start, len(b.kept)
        for name in self.features:
            if name in RAISING:
                continue
            if name == "MCC":
                value = self._batch_mcc(per_angle, b, totals)
                if value is not None:
                    out[name][b.start : b.stop] = value
                continue
            values = _laid_out(per_angle[index, name][b.start : b.stop][:, b.kept], b.layout.inner[name])
            if name == "JointAverage":
                out[name][b.start : b.stop] = values.reshape(nb, 1, 1, na).mean((1, 2, 3))
            elif name == "Correlation":
                out[name][b.start : b.stop] = np.nanmean(values.reshape(nb, 1, 1, na), (1, 2, 3))
            else:
                out[name][b.start : b.stop] = np.nanmean(values, 1)
        self._log_batch_warnings()

    def _batch_mcc(self, per_angle: dict, b: _Batch, totals: np.ndarray):
        if not (totals[b.start : b.stop][:, b.kept] > 0).all():
            self.instance.logger.error("FAILED: MCC, voxels %d-%d: numpy.linalg.LinAlgError: Array must not contain infs or NaNs", b.start, b.stop - 1)
            return None  # PyRadiomics: eigvals raises for the batch, which keeps initValue
        if self.plan.ng < 2:
            return 1.0  # PyRadiomics' "flat region"
        if per_angle["_mcc_imaginary"][b.start : b.stop][:, b.kept].any():
            eig = np.ascontiguousarray(per_angle["_mcc_complex"][b.start : b.stop][:, b.kept])
        else:
            eig = np.ascontiguousarray(per_angle["_mcc_real"][b.start : b.stop][:, b.kept])
        return np.nanmean(np.sqrt(eig), 1).real

    def _log_batch_warnings(self) -> None:
        log = self.instance.logger
        if "JointAverage" in self.features and not self.plan.symmetric:
            log.warning("The formula for GLCM - Joint Average assumes that the GLCM is symmetrical, but this is not the case.")
        if "SumAverage" in self.features and self.plan.symmetric:
            log.warning("GLCM is symmetrical, therefore Sum Average = 2 * Joint Average, only 1 needs to be calculated")
        if "SumSquares" in self.features and not self.plan.symmetric:
            log.warning("The formula for GLCM - Sum of Squares assumes that the GLCM is symmetrical, but this is not the case.")

    # -- batches computed on PyRadiomics' dense arrays ------------------------------------------------
    def _run_dense(self, b: _Batch, out: dict) -> None:
        instance = self.instance
        instance.P_glcm = self.dense_matrix(b)
        instance._calculateCoefficients()
        with quiet_numpy():
            for name, success, value in call_features(instance, self.features):
                if success:
                    out[name][b.start : b.stop] = value

    def dense_matrix(self, b: _Batch) -> np.ndarray:
        """PyRadiomics' normalised ``P_glcm`` of a batch (``_calculateMatrix`` after the C call), laid out as
        PyRadiomics' (so that numpy adds it in the same order)."""
        plan = self.plan
        nb, ng, na = b.stop - b.start, plan.ng, plan.na
        cells = Cells(self.kernel.levels(b.start, b.stop), plan)
        v, a = cells.seg // na, cells.seg % na
        kept = b.kept
        if self.weighted:
            key = (v * ng + cells.i) * ng + cells.j
            ids, starts = _run_ids_sorted(key)
            per_angle = np.zeros((len(starts), na))
            per_angle[ids, a] = cells.count
            values = np.sum(per_angle * self.angle_weights[None, :], 1)  # PyRadiomics' sum over its angle axis
            shape = (nb, ng, ng, 1)
            index = (v[starts], cells.i[starts], cells.j[starts], np.zeros(len(starts), dtype=np.int64))
        else:
            column = np.full(na, -1)
            column[kept] = np.arange(len(kept))
            keep = column[a] >= 0
            shape = (nb, ng, ng, len(kept))
            index = (v[keep], cells.i[keep], cells.j[keep], column[a[keep]])
            values = cells.count[keep]
        matrix = layout_like(shape, b.layout.axes)
        matrix[index] = values
        total = np.sum(matrix, (1, 2))
        total[total == 0] = np.nan
        with np.errstate(invalid="ignore"):
            matrix /= total[:, None, None, :]
        return matrix


def _run_ids_sorted(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group index of each entry of ``key`` (grouped by equal value; entries sorted by segment first) and
    the first entry of each group, for keys that are sorted within their runs."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts_sorted = run_starts(sorted_key)
    ids_sorted = np.zeros(len(key), dtype=np.int64)
    if len(starts_sorted) > 1:
        ids_sorted[starts_sorted[1:]] = 1
        ids_sorted = np.cumsum(ids_sorted)
    ids = np.empty(len(key), dtype=np.int64)
    ids[order] = ids_sorted
    return ids, order[starts_sorted]


def _laid_out(values: np.ndarray, angle_inner: bool) -> np.ndarray:
    """``values`` (voxels, angles) in memory with the angle axis innermost (C order) or outermost."""
    if angle_inner:
        return np.ascontiguousarray(values)
    return np.asfortranarray(values)
