"""Feature families: named groups of feature columns that a study compares.

A column belongs to a class by its class token (``original_glcm_Contrast`` -> ``glcm``, read through
:mod:`deepradiomics.naming`), and a class to a family by the registry's metadata, never by its name.
Default families:

- ``classical``: every hand-crafted class (``family = "classical"``: PyRadiomics' and third-party ones);
- every learned class (``family = "deep"``) is a family of its own, named by the class;
- ``<class>-<sub>``: the class's declared ``subfamilies`` (regular expressions over the feature token, e.g.
  shallow / mid / deep layers of a network) when they split its columns;
- ``all``: every feature column (when there is more than one family).

A class the registry does not know (a table computed elsewhere) is its own family, with a note. A second
configuration of a class in one params file (``cnnmapped: {class: cnn, ...}``) has a token of its own; its
table records the class (``diagnostics_cnnmapped_Class``, read by :func:`instance_classes`), so it is a
family of its own with the class's metadata (``cnnmapped``, ``cnnmapped-shallow``, ...).
``groups`` replaces these defaults: ``{"name": ["glcm", "glrlm"]}`` or CLI strings ``"name=glcm,glrlm"``;
an item ``cls:REGEX`` takes only the columns of ``cls`` whose feature token matches ``REGEX``
(``deep=cnn:Conv5.*``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence

from .. import naming
from ..errors import ParamsError, PluginError, did_you_mean

logger = logging.getLogger("deepradiomics.study")


def parse_groups(specs: Iterable[str]) -> dict[str, list[str]]:
    """Parse CLI group specifications ``"NAME=cls1,cls2"`` (items may be ``cls:REGEX``) into ``{NAME: [...]}``.

    Examples
    --------
    >>> parse_groups(["texture=glcm,glrlm", "deep=cnn:Conv5.*"])
    {'texture': ['glcm', 'glrlm'], 'deep': ['cnn:Conv5.*']}
    """
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, classes = str(spec).partition("=")
        name = name.strip()
        class_list = [c.strip() for c in classes.split(",") if c.strip()]
        if not sep or not name or not class_list:
            raise ParamsError(f"invalid --groups value {spec!r}: write NAME=class1,class2 (e.g. texture=glcm,glrlm,glszm) or NAME=class:REGEX")
        if name in groups:
            raise ParamsError(f"--groups names family {name!r} twice; give each family one NAME=...")
        groups[name] = class_list
    return groups


def class_metadata(name: str):
    """The registered class of token ``name``, or None when the registry does not know it."""
    from ..registry import get_registry

    registry = get_registry()
    if name not in registry:
        return None
    try:
        return registry.get(name)
    except PluginError:
        return None


def instance_classes(table) -> dict[str, str]:
    """``{token: class}`` of the feature-class tokens that name a configuration of another class.

    Read from the ``diagnostics_<token>_Class`` columns that the Extractor writes for such entries (the
    first non-empty value; a table of a DataFrame or of column names only gives ``{}``).
    """
    columns = getattr(table, "columns", None)
    if columns is None:
        return {}
    out = {}
    for column in columns:
        parts = str(column).split("_")
        if len(parts) == 3 and parts[0] == naming.DIAGNOSTICS_PREFIX and parts[2] == "Class":
            values = [v for v in table[column].tolist() if isinstance(v, str) and v.strip()]
            if values:
                out[parts[1]] = values[0]
    return out


def _match(columns: Sequence[str], cls: str, pattern: str | None, where: str) -> list[str]:
    if pattern is None:
        return [c for c in columns if naming.feature_class_of(c) == cls]
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ParamsError(f"{where}: {pattern!r} is not a valid regular expression ({exc})") from exc
    return [c for c in columns if naming.feature_class_of(c) == cls and regex.fullmatch(naming.FeatureName.parse(c).feature)]


def feature_families(
    columns: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None, classes: Mapping[str, str] | None = None
) -> dict[str, list[str]]:
    """Map family name -> feature columns (in table order).

    Parameters
    ----------
    columns
        Column names of a features table; non-feature columns (diagnostics, pass-through) are ignored.
    groups
        Optional ``{family: [class or class:REGEX, ...]}`` replacing the default families. A class that no
        column carries, or a pattern matching no column, is an error naming the classes present.
    classes
        ``{token: class}`` of tokens that are configurations of another class (:func:`instance_classes`).

    Returns
    -------
    dict
        Non-empty families only: ``classical`` first, then each deep class (and its sub-families) in order
        of first appearance, then ``all``.
    """
    feature_cols = naming.feature_columns([str(c) for c in columns])
    if not feature_cols:
        raise ParamsError(
            "the features table has no feature columns of the form <imageType>_<featureClass>_<Feature>"
            f" (columns: {list(columns)[:10]}{' ...' if len(columns) > 10 else ''}); pass the table"
            " written by `deepradiomics batch`"
        )
    present = list(dict.fromkeys(naming.feature_class_of(c) for c in feature_cols))
    if groups:
        families: dict[str, list[str]] = {}
        for name, items in groups.items():
            chosen: set[str] = set()
            for item in items:
                cls, _, pattern = str(item).partition(":")
                if cls not in present:
                    raise ParamsError(
                        f"family {name!r} names feature class {cls!r}, which no column of the features"
                        f" table carries (classes present: {', '.join(present)})." + did_you_mean(cls, present)
                    )
                matched = _match(feature_cols, cls, pattern or None, f"family {name!r}")
                if not matched:
                    raise ParamsError(f"family {name!r}: pattern {pattern!r} matches no feature of class {cls!r}")
                chosen.update(matched)
            families[name] = [c for c in feature_cols if c in chosen]
        return families

    aliases = dict(classes or {})
    classes = {cls: class_metadata(aliases.get(cls, cls)) for cls in present}
    unknown = [cls for cls, meta in classes.items() if meta is None]
    if unknown:
        logger.info("feature class(es) %s are not registered here: each is studied as a family of its own", ", ".join(unknown))
    families = {}
    classical = [c for c in feature_cols if classes[naming.feature_class_of(c)] is not None and classes[naming.feature_class_of(c)].family == "classical"]
    if classical:
        families["classical"] = classical
    for cls, meta in classes.items():
        if meta is not None and meta.family == "classical":
            continue
        own = [c for c in feature_cols if naming.feature_class_of(c) == cls]
        families[cls] = own
        for suffix, pattern in (getattr(meta, "subfamilies", None) or {}).items():
            part = _match(own, cls, pattern, f"subfamily {cls}-{suffix}")
            if part and len(part) < len(own):
                families[f"{cls}-{suffix}"] = part
    if len(families) != 1:
        families["all"] = list(feature_cols)
    return families


def histogram_groups(columns: Sequence[str], classes: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """``{"<class>-<histogram>": columns}`` of the histogram column groups declared by the classes present.

    A class declares its histograms in its ``histograms`` metadata (e.g. codeword counts); robustness
    reports their difference ratio and the study looks for responsible vectors in them.
    """
    feature_cols = naming.feature_columns([str(c) for c in columns])
    out = {}
    aliases = dict(classes or {})
    for cls in dict.fromkeys(naming.feature_class_of(c) for c in feature_cols):
        meta = class_metadata(aliases.get(cls, cls))
        for name, pattern in (getattr(meta, "histograms", None) or {}).items():
            part = _match(feature_cols, cls, pattern, f"histogram {cls}-{name}")
            if part:
                out[f"{cls}-{name}"] = part
    return out
