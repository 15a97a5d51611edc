"""Feature families: named groups of feature columns that a study compares.

A family is chosen by the *class token* of each column name (``original_glcm_Contrast`` -> ``glcm``),
read through :mod:`deepradiomics.naming`. By default:

- ``classical``: the PyRadiomics classes (firstorder, shape, shape2D, glcm, glrlm, glszm, gldm, ngtdm);
- every other (deep) class is a family of its own (``vqhist``, ``fisher``, ``cnn``, ...);
- ``all``: every feature column.

``groups`` (``{"name": ["cls1", "cls2"]}`` or CLI strings ``"name=cls1,cls2"``) replaces these defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .. import naming
from ..errors import ParamsError, did_you_mean

#: the feature classes computed by PyRadiomics itself
CLASSICAL_CLASSES: tuple[str, ...] = (
    "firstorder",
    "shape",
    "shape2D",
    "glcm",
    "glrlm",
    "glszm",
    "gldm",
    "ngtdm",
)


def parse_groups(specs: Iterable[str]) -> dict[str, list[str]]:
    """Parse CLI group specifications ``"NAME=cls1,cls2"`` into ``{NAME: [cls1, cls2]}``.

    Examples
    --------
    >>> parse_groups(["texture=glcm,glrlm", "deep=vqhist"])
    {'texture': ['glcm', 'glrlm'], 'deep': ['vqhist']}
    """
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, classes = str(spec).partition("=")
        name = name.strip()
        class_list = [c.strip() for c in classes.split(",") if c.strip()]
        if not sep or not name or not class_list:
            raise ParamsError(f"invalid --groups value {spec!r}: write NAME=class1,class2 (e.g. texture=glcm,glrlm,glszm)")
        if name in groups:
            raise ParamsError(f"--groups names family {name!r} twice; give each family one NAME=...")
        groups[name] = class_list
    return groups


def feature_families(columns: Sequence[str], groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Map family name -> feature columns (in table order).

    Parameters
    ----------
    columns
        Column names of a features table; non-feature columns (diagnostics, pass-through) are ignored.
    groups
        Optional ``{family: [feature classes]}`` that replaces the default families. A class that no
        column carries is an error naming the classes present (with a did-you-mean).

    Returns
    -------
    dict
        Non-empty families only; with default families, ``classical`` first, then each deep class in
        order of first appearance, then ``all`` (only when it differs from the single other family).
    """
    feature_cols = naming.feature_columns([str(c) for c in columns])
    if not feature_cols:
        raise ParamsError(
            "the features table has no feature columns of the form <imageType>_<featureClass>_<Feature>"
            f" (columns: {list(columns)[:10]}{' ...' if len(columns) > 10 else ''}); pass the table"
            " written by `deepradiomics batch`"
        )
    class_of = {c: naming.feature_class_of(c) for c in feature_cols}
    present = list(dict.fromkeys(class_of.values()))

    if groups:
        families: dict[str, list[str]] = {}
        for name, classes in groups.items():
            for cls in classes:
                if cls not in present:
                    raise ParamsError(
                        f"family {name!r} names feature class {cls!r}, which no column of the features"
                        f" table carries (classes present: {', '.join(present)})." + did_you_mean(cls, present)
                    )
            wanted = set(classes)
            families[name] = [c for c in feature_cols if class_of[c] in wanted]
        return families

    families = {}
    classical = [c for c in feature_cols if class_of[c] in CLASSICAL_CLASSES]
    if classical:
        families["classical"] = classical
    for cls in present:
        if cls not in CLASSICAL_CLASSES:
            families[cls] = [c for c in feature_cols if class_of[c] == cls]
    if len(families) != 1:
        families["all"] = list(feature_cols)
    return families
