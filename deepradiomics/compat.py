"""Drop-in for ``radiomics.featureextractor.RadiomicsFeatureExtractor``.

An existing PyRadiomics pipeline swaps one import and gains the deep classes of its params file::

    # from radiomics.featureextractor import RadiomicsFeatureExtractor
    from deepradiomics.compat import RadiomicsFeatureExtractor

    extractor = RadiomicsFeatureExtractor("params/combined.yaml")
    result = extractor.execute("flair.nii.gz", "mask.nii.gz", label=1)   # OrderedDict, as PyRadiomics

Deep classes read extra modalities; give them with ``modalities={"t1": path, ...}`` on ``execute``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from .extractor import Extractor
from .params import load_params


class RadiomicsFeatureExtractor:
    """PyRadiomics' extractor interface over a deepradiomics :class:`~deepradiomics.extractor.Extractor`.

    Parameters are PyRadiomics': a params file path or dict as first argument, and/or settings as
    keyword arguments (``binWidth=25``). Methods not defined here (``enableFeatureClassByName``,
    ``settings``, ...) are PyRadiomics' own, acting on the classical part.
    """

    def __init__(self, *args, **kwargs) -> None:
        source = args[0] if args else {}
        # No params: PyRadiomics' defaults (original image, all classical classes).
        params = load_params(dict(source) if isinstance(source, Mapping) else source)
        if kwargs:
            params = params.with_settings(kwargs)
        from .classical import PyRadiomicsBackend

        self._extractor = Extractor(params)
        # One PyRadiomics extractor, shared with the Extractor's backend, so that PyRadiomics' own methods
        # (enableFeatureClassByName, settings[...]) change what execute() computes.
        self._extractor._backend = PyRadiomicsBackend(params.to_pyradiomics())
        self._pyradiomics = self._extractor._backend.extractor

    def __getattr__(self, name):
        # Everything else (settings, enabledFeatures, enable*/disable*) is PyRadiomics' own.
        return getattr(self.__dict__["_pyradiomics"], name)

    def execute(self, imageFilepath, maskFilepath, label=None, label_channel=None, voxelBased=False, modalities=None):
        """Features of one case as an ``OrderedDict`` (PyRadiomics' return type), deep classes included."""
        if voxelBased:
            raise NotImplementedError("voxel-based extraction: use radiomics.featureextractor directly")
        extractor = self._extractor
        case = extractor.make_case(imageFilepath, maskFilepath, modalities, label if label is not None else self._pyradiomics.settings.get("label", 1))
        return OrderedDict(extractor.compute(case))

