"""deepradiomics: classical (PyRadiomics) and deep radiomics feature classes in one table.

Public API: :class:`Extractor`, :func:`load_params`, :class:`FeatureClass`, :func:`get_registry`,
``__version__``. Heavy dependencies (torch, PyRadiomics) are imported only when used.
"""

from ._version import __version__

__all__ = ["Extractor", "FeatureClass", "Case", "load_params", "get_registry", "__version__"]


def __getattr__(name):  # PEP 562: keep `import deepradiomics` light
    if name == "Extractor":
        from .extractor import Extractor

        return Extractor
    if name == "FeatureClass":
        from .featureclass import FeatureClass

        return FeatureClass
    if name == "Case":
        from .case import Case

        return Case
    if name == "load_params":
        from .params import load_params

        return load_params
    if name == "get_registry":
        from .registry import get_registry

        return get_registry
    raise AttributeError(f"module 'deepradiomics' has no attribute {name!r}")
