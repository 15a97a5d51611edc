"""Feature-class registry.

PyRadiomics' classes are registered explicitly (family ``classical``); every other class, first-party
deep ones included, comes from the entry-point group ``deepradiomics.feature_classes``::

    # setup.py / pyproject of a third-party distribution
    entry_points={"deepradiomics.feature_classes": ["maskvolume = mypkg.features:MaskVolume"]}

Entry points are read once and loaded lazily: a class is imported only when a params file names it or
``deepradiomics plugins`` lists it. A broken plugin is reported with its distribution's name and never
breaks the other classes.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import PluginError, did_you_mean
from .naming import check_token

ENTRY_POINT_GROUP = "deepradiomics.feature_classes"
CLASSICAL_SOURCE = "pyradiomics"


@dataclass
class RegistryEntry:
    """One registered class: its name, where it comes from, and how to load it."""

    name: str
    source: str
    loader: Callable[[], type]
    family_hint: str | None = None
    _cls: type | None = field(default=None, repr=False)
    _error: PluginError | None = field(default=None, repr=False)

    def load(self) -> type:
        """The class of this entry (its entry point loaded and checked on first use)."""
        if self._cls is None:
            if self._error is not None:
                raise self._error
            try:
                cls = self.loader()
            except Exception as exc:
                self._error = PluginError(
                    f"feature class '{self.name}' from distribution '{self.source}' failed to load: "
                    f"{type(exc).__name__}: {exc}. Reinstall or upgrade '{self.source}', or remove it from your params file"
                )
                raise self._error from exc
            _check_class(cls, self)
            self._cls = cls
        return self._cls

    @property
    def family(self) -> str:
        """The class's family (``classical`` or ``deep``), without loading a PyRadiomics class."""
        if self.family_hint:
            return self.family_hint
        return self.load().family

    @property
    def computed_by_pyradiomics(self) -> bool:
        """True for PyRadiomics' own classes: the backend computes them in one PyRadiomics call per case."""
        return self.source == CLASSICAL_SOURCE


def _check_class(cls: type, entry: RegistryEntry) -> None:
    from .featureclass import contract_problems

    problems = contract_problems(cls)
    if not problems and cls.name != entry.name:
        problems = [f"its class attribute name={cls.name!r} differs from the entry-point name '{entry.name}'"]
    if problems:
        raise PluginError(f"feature class '{entry.name}' from distribution '{entry.source}' is invalid: {'; '.join(problems)}")


class FeatureRegistry:
    """Name -> feature class, from PyRadiomics and the ``deepradiomics.feature_classes`` entry points.

    Examples
    --------
    >>> registry = FeatureRegistry()
    >>> "glcm" in registry
    True
    >>> registry.entry("glcm").family
    'classical'
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP, *, include_classical: bool = True) -> None:
        self.group = group
        self._entries: dict[str, RegistryEntry] = {}
        self.problems: list[str] = []
        if include_classical:
            from .classical import CLASSICAL_CLASS_NAMES, classical_class

            for name in CLASSICAL_CLASS_NAMES:
                self._entries[name] = RegistryEntry(
                    name, CLASSICAL_SOURCE, functools.partial(classical_class, name), family_hint="classical"
                )
        self._discover()

    def _discover(self) -> None:
        for entry_point in importlib.metadata.entry_points(group=self.group):
            distribution = entry_point.dist.name if entry_point.dist is not None else "unknown distribution"
            try:
                check_token(entry_point.name, "feature class name")
            except ValueError as exc:
                self.problems.append(f"distribution '{distribution}': {exc}")
                continue
            if entry_point.name in self._entries:
                other = self._entries[entry_point.name].source
                if other == distribution:
                    continue  # the same distribution seen twice on sys.path (e.g. an editable install)
                self.problems.append(
                    f"feature class '{entry_point.name}' from distribution '{distribution}' is ignored: "
                    f"'{other}' already provides a class of that name"
                )
                continue
            self._entries[entry_point.name] = RegistryEntry(entry_point.name, distribution, entry_point.load)

    def register(self, cls: type, source: str = "local") -> type:
        """Register a FeatureClass subclass directly (for notebooks and tests). Returns ``cls``."""
        entry = RegistryEntry(cls.name, source, lambda: cls)
        _check_class(cls, entry)
        self._entries[cls.name] = entry
        return cls

    def unregister(self, name: str) -> None:
        """Remove a class registered with :meth:`register` (entry-point classes cannot be removed)."""
        entry = self._entries.get(name)
        if entry is not None and entry.source not in (CLASSICAL_SOURCE,) and not any(ep.name == name for ep in importlib.metadata.entry_points(group=self.group)):
            del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self, family: str | None = None) -> list[str]:
        """Registered names, optionally only those of one family (loads plugins to learn theirs)."""
        if family is None:
            return list(self._entries)
        names = []
        for name, entry in self._entries.items():
            try:
                if entry.family == family:
                    names.append(name)
            except PluginError:
                continue
        return names

    def entry(self, name: str) -> RegistryEntry:
        """The :class:`RegistryEntry` of class ``name`` (PluginError with a did-you-mean when unknown)."""
        try:
            return self._entries[name]
        except KeyError:
            raise PluginError(
                f"no feature class '{name}'.{did_you_mean(name, self._entries)} Available: {', '.join(self._entries)}"
            ) from None

    def get(self, name: str) -> type:
        """The class registered as ``name`` (imported on first use)."""
        return self.entry(name).load()


@functools.lru_cache(maxsize=1)
def get_registry() -> FeatureRegistry:
    """The process-wide registry (entry points are scanned once; call ``get_registry.cache_clear()`` to rescan)."""
    return FeatureRegistry()
