"""A fast voxel-based feature engine: PyRadiomics 3.0.1's voxel mode from the few cells of each kernel.

PyRadiomics' voxel mode (``RadiomicsFeatureExtractor.execute(image, mask, voxelBased=True)``) builds, for
every voxel of the region of interest, dense texture matrices of its kernel (``kernelRadius``): Ng x Ng x
13 angles for a GLCM, although a kernel of 27 (125) voxels fills at most a few hundred cells. This engine
computes the same maps from what each kernel holds, vectorised over the voxels with numpy and scipy (no
compiled code of its own), for every class PyRadiomics computes voxel-wise: first order, GLCM, GLRLM,
GLSZM, GLDM and NGTDM, every feature of each (the deprecated ones included), and every voxel setting.

API
---
Lowest level, one feature class instance (:mod:`.core`)::

    compute_class(instance, mapper=map) -> ClassVoxels
    class_maps(instance, values: dict) -> OrderedDict[str, SimpleITK.Image]

``instance`` is built exactly as PyRadiomics' extractor builds it in voxel mode (``cls(image, mask,
voxelBased=True, **settings)``, then ``enableFeatureByName`` / ``enableAllFeatures``), as
``deepradiomics.voxel._ParallelVoxelExtractor.computeFeatures`` does. :class:`ClassVoxels` has
``values`` (``{feature: 1-D float64 array at instance.labelledVoxelCoordinates}``, enabled features in
PyRadiomics' order, ``initValue`` where PyRadiomics keeps it) and ``reason``: ``None``, or why the engine
declines (``values`` is then None and PyRadiomics' own engine must compute the class); ``supported`` is
``reason is None``. :func:`class_maps` turns ``values`` into the maps PyRadiomics' ``execute()`` returns
(the instance's grid, ``initValue`` outside the ROI). ``mapper`` may be a process pool's ``map`` for the
per-chunk work.

Extractor level (:mod:`.extractor`), the mirror of :func:`deepradiomics.voxel.compute_voxel_features`::

    compute_voxel_features_fast(extractor, image, mask, label=None, label_channel=None, jobs=1)
        -> (OrderedDict, OrderedDict)
    engine_diagnostic(record) -> str

PyRadiomics' whole pipeline (loading, normalisation, resampling, mask checks, filters such as LoG and
wavelet, cropping) runs in :class:`.extractor.FastVoxelExtractor`, a ``RadiomicsFeatureExtractor``
subclass whose ``computeFeatures`` in voxel mode computes each class with :func:`compute_class` (PyRadiomics'
own ``execute()`` for a class the engine declines). It returns PyRadiomics' ``OrderedDict`` (its
``diagnostics_*``, then one ``SimpleITK.Image`` per feature, same keys, order and geometry) and the engine
record ``{"<imageType>_<class>": "voxelengine" | "pyradiomics (<reason>)"}``; :func:`engine_diagnostic`
formats it in one line for a diagnostics column (``"voxelengine"`` when no class fell back). The image is
handed to PyRadiomics as :func:`deepradiomics.classical.pyradiomics_input` does (an 8-bit image whose bin
edges would overflow is widened), as :func:`deepradiomics.voxel.compute_voxel_features` does. ``jobs``
worker processes share the classes (of every image type), GLCM first; the maps do not depend on it.

Values
------
Every map equals PyRadiomics' own voxel mode for the same settings: in the tests
(``tests/test_voxelengine.py``: brain1, breast1 with LoG and wavelet images, an LGG FLAIR, synthetic edge
cases; ``voxelBatch`` of 1, 17, 40, 70, 1000, unset) to relative 1e-9 (absolute 1e-12 near zero), NaN
exactly where PyRadiomics has NaN, and in practice to the bit: every map of brain1 at ``kernelRadius`` 1
and 2 is bit for bit PyRadiomics'. How:

- PyRadiomics' values depend on its voxel batches (``voxelBatch``; one batch when unset): a GLCM angle, a
  GLRLM angle or run length, a GLSZM zone size, a GLDM dependence or an NGTDM grey level empty over the
  whole batch is deleted, and ``MCC`` fails (keeps ``initValue``) for every voxel of a batch in which one
  kernel has an empty GLCM angle; with ``MCC`` computed, the batch's eigenvalues are real or complex
  together. The engine cuts the same batches and applies the same rules per batch.
- GLCM (:mod:`.glcm`): the per-(voxel, angle) values are computed from the matrices' non-zero cells,
  added in the order numpy adds PyRadiomics' dense arrays (:mod:`.reduce`); that order follows the arrays'
  memory layouts, which depend on how many grey levels and angles PyRadiomics deletes, so they are read
  off PyRadiomics' own statements evaluated on a 2-voxel array (:func:`.glcm.probe_layout`). A batch left
  with one angle (``weightingNorm``, or all but one angle empty) runs PyRadiomics' own methods on its dense
  (voxels, Ng, Ng, 1) matrix, laid out as PyRadiomics'.
- GLRLM, GLSZM, GLDM, NGTDM: runs, zones (``scipy.ndimage.label`` on the kernels laid side by side),
  dependences and neighbourhood differences are computed for all voxels at once; the batch's matrix is
  then PyRadiomics' (only its size axis cut to the sizes a kernel can reach, with two empty columns so
  numpy deletes the empty ones the same way), and PyRadiomics' own Python code computes the features.
- First order (:mod:`.firstorder`): PyRadiomics' expressions on all kernels at once (each voxel's row is
  reduced on its own), the histogram by ``bincount`` and the percentiles vectorised.

What the engine declines (``reason``; PyRadiomics then computes the class): another PyRadiomics version
than 3.0.1; a feature class that is not PyRadiomics' own (or deepradiomics.voxel's value-identical
subclasses), since a subclass may change a formula; a feature name it does not know; an instance not
built for voxel mode; settings PyRadiomics itself rejects or crashes on (``kernelRadius`` < 1,
``voxelBatch`` 0 or not an integer, distances < 1, ``force2Ddimension`` not 0-2); an image that is not 3-D;
a class without any angle for its image; and a GLCM batch that needs PyRadiomics' dense matrix (one angle
left, or ``weightingNorm``) with more than 40 million voxel x Ng x Ng elements (set a smaller
``voxelBatch``). An unexpected error inside the engine also falls back, with a logged warning and the
error as the reason.

Speed
-----
``benchmarks/voxel_speed.py`` (brain1, 4137 ROI voxels, every class, PyRadiomics' voxel example settings
with binWidth 25): see its output and the report of this engine's change for measured figures.

References
----------
van Griethuysen JJM et al. Computational radiomics system to decode the radiographic phenotype. Cancer Res
2017;77(21):e104-e107 (PyRadiomics; its voxel-based extraction, version 3.0.1, is the reference here).
"""

from .core import ClassVoxels, class_maps, compute_class
from .extractor import FastVoxelExtractor, compute_voxel_features_fast, engine_diagnostic

__all__ = ["ClassVoxels", "FastVoxelExtractor", "class_maps", "compute_class", "compute_voxel_features_fast", "engine_diagnostic"]
