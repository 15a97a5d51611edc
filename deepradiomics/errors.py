"""Exception hierarchy.

Every error raised on purpose by deepradiomics derives from :class:`DeepRadiomicsError`, so a caller
can catch one type: ``ParamsError``, ``CaseError``, ``FeatureError``, ``ModelError``, ``NotFittedError``,
``PluginError``, ``StudyError`` (with ``StudyDataError`` and ``RobustnessDataError``), ``PyRadiomicsNotInstalledError``.
Every exception class of the package is defined here. Messages name the file, the key or the value at fault and what to do about it.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable


class DeepRadiomicsError(Exception):
    """Base class of all deepradiomics errors."""


class ParamsError(DeepRadiomicsError, ValueError):
    """A parameter file or settings mapping is invalid (unknown class or key, bad value)."""


class CaseError(DeepRadiomicsError, ValueError):
    """A case cannot be used: missing or unreadable file, geometry mismatch, empty mask, ..."""


class FeatureError(DeepRadiomicsError, RuntimeError):
    """A feature class failed to compute its features on a valid case."""


class ModelError(DeepRadiomicsError, RuntimeError):
    """A model bundle or fitted artifact is missing, malformed or fails its sha256 check, or a statistical model
    fit came out inconsistent (e.g. a negative likelihood-ratio statistic: a bug to report)."""


class PluginError(DeepRadiomicsError, RuntimeError):
    """A plugin (entry point) cannot be loaded or does not follow the FeatureClass contract."""


class StudyError(DeepRadiomicsError, ValueError):
    """A study, robustness or explanation analysis cannot be run on the data given."""


class StudyDataError(StudyError):
    """The features or labels table cannot be used for a study (missing column, no overlap, one class, ...)."""


class RobustnessDataError(StudyError):
    """The cases or labels cannot support the requested robustness analysis (too few cases, one class, ...)."""


class NotFittedError(DeepRadiomicsError, ValueError, AttributeError):
    """A fitted feature class (``requires_fit``) was used before ``fit`` or without its fitted artifact.

    Like scikit-learn's ``NotFittedError`` it is both a ValueError and an AttributeError.
    """


#: what ``pip install 'deepradiomics[pyradiomics]'`` installs (setup.py's extra): PyRadiomics 3.0.1's code, built
#: by pip on Python 3.11 with numpy 2; the same ``radiomics`` package as PyRadiomics 3.0.1, which ``make install`` builds
PYRADIOMICS_REQUIREMENT = "pyradiomics-bhklab==3.1.4"
#: the modules of PyRadiomics (and of its parameter validator) that deepradiomics imports
PYRADIOMICS_MODULES = ("radiomics", "pykwalify")


class PyRadiomicsNotInstalledError(DeepRadiomicsError, ModuleNotFoundError):
    """PyRadiomics (``radiomics``, or its ``pykwalify``) cannot be imported: it is an extra of ``pip install``.

    Also a :class:`ModuleNotFoundError`, so code that handles a missing optional module keeps working;
    ``name`` is the missing module.
    """

    def __init__(self, missing: str = "radiomics") -> None:
        super().__init__(
            f"PyRadiomics is not installed (no module named '{missing}'); deepradiomics computes its classical "
            f"classes and checks params with it: pip install '{PYRADIOMICS_REQUIREMENT}' (what the [pyradiomics] "
            "extra of deepradiomics installs), or `make install` in a clone of the repository",
            name=missing,
        )

    def __reduce__(self):  # pickled (from a batch worker) as the missing module, rebuilt with the same message
        return type(self), (self.name,)


def pyradiomics_missing(exc: ModuleNotFoundError) -> ModuleNotFoundError:
    """``exc`` as a :class:`PyRadiomicsNotInstalledError` when the missing module is PyRadiomics', else ``exc``.

    For ``except ModuleNotFoundError as exc: raise pyradiomics_missing(exc) from None`` around an import of
    ``radiomics``: a missing PyRadiomics reads as one line with the install command, any other missing
    module (a broken PyRadiomics install) stays as Python reported it.
    """
    import importlib.util

    missing = (exc.name or "").split(".")[0]
    if missing not in PYRADIOMICS_MODULES:
        return exc
    # without PyRadiomics its pykwalify is usually missing too: name the package the user has to install
    return PyRadiomicsNotInstalledError("radiomics" if importlib.util.find_spec("radiomics") is None else missing)


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and transpositions."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, char_b in enumerate(b, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            if i > 1 and j > 1 and char_a == b[j - 2] and a[i - 2] == char_b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def did_you_mean(value: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close.

    Closeness is the case-insensitive edit distance counting a swap of two neighbours as one edit
    (``glmc`` -> ``glcm``), accepted up to a third of the word's length.

    Examples
    --------
    >>> did_you_mean("glmc", ["glcm", "gldm"])
    " Did you mean 'glcm'?"
    """
    candidates = list(candidates)
    if not candidates:
        return ""
    scored = sorted(
        candidates,
        key=lambda c: (_edit_distance(value.lower(), c.lower()), -difflib.SequenceMatcher(None, value, c).ratio()),
    )
    best = scored[0]
    if _edit_distance(value.lower(), best.lower()) <= max(1, len(value) // 3):
        return f" Did you mean '{best}'?"
    return ""


class ParamsFileNotFoundError(FileNotFoundError, ParamsError):
    """A params file that does not exist.

    PyRadiomics raises ``IOError`` there; this error is both a :class:`FileNotFoundError` (so ``except
    IOError`` / ``except OSError`` code written for PyRadiomics catches it) and a :class:`ParamsError`.
    Build it as ``ParamsFileNotFoundError(errno.ENOENT, message, path)``; ``str()`` is the message.
    """

    def __str__(self) -> str:
        return self.strerror if self.strerror else super().__str__()


def __getattr__(name: str) -> type:
    """Exception classes that derive from an optional library's, built on first use (PEP 562).

    ``ParamsSchemaError`` derives from pykwalify's ``SchemaError`` (what PyRadiomics raises for an
    invalid params file), so that ``from deepradiomics.errors import ParamsSchemaError`` imports
    pykwalify only when that class is asked for, and ``import deepradiomics.errors`` stays light.
    """
    if name == "ParamsSchemaError":
        return _params_schema_error_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache  # one class object, so that isinstance checks and pickling see the same class every time
def _params_schema_error_class() -> type:
    from pykwalify.errors import PyKwalifyException, SchemaError, retnames

    class ParamsSchemaError(ParamsError, SchemaError):
        """Invalid parameters, catchable both as :class:`ParamsError` and as pykwalify's ``SchemaError``.

        PyRadiomics validates params with pykwalify and raises ``pykwalify.errors.SchemaError``; the
        PyRadiomics-compatible extractor (:mod:`deepradiomics.compat`) raises this class instead, so
        that code catching either type keeps working. ``str()`` is the one-line message.
        """

        def __init__(self, message: str = "", path: str = "/") -> None:
            ParamsError.__init__(self, message)
            # SchemaError.__init__ calls super(self.__class__, self).__init__, which recurses in any subclass:
            # set pykwalify's fields (msg, retcode, path) through its base class instead.
            PyKwalifyException.__init__(self, msg=message, retcode=retnames["schemaerror"], path=path)

        def __str__(self) -> str:
            return str(self.args[0]) if self.args else ""

        __repr__ = Exception.__repr__

    ParamsSchemaError.__module__ = __name__
    ParamsSchemaError.__qualname__ = "ParamsSchemaError"  # pickled by reference as deepradiomics.errors.ParamsSchemaError
    return ParamsSchemaError
