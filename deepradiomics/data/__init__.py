"""Data shipped inside the package: model bundles (``models/``) and two small real example cases.

Like PyRadiomics' ``radiomics.getTestCase``, but with nothing to download:

>>> from deepradiomics.data import example_case
>>> case = example_case("lgg")  # doctest: +SKIP
>>> case["Image"], case["Mask"], case["t1"], case["t1ce"]  # doctest: +SKIP

``lgg``: one TCGA lower-grade glioma case (FLAIR as ``Image``, T1, T1-Gd, manual mask; CC BY-NC-SA 4.0);
``brain1``: PyRadiomics' brain MRI test case (BSD-3-Clause). Each folder holds an ``ATTRIBUTION.md``.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"

#: name -> {role: file name}; roles other than Image and Mask are modality names (``-m NAME=PATH``)
EXAMPLE_FILES: dict[str, dict[str, str]] = {
    "lgg": {"Image": "flair.nii.gz", "Mask": "mask.nii.gz", "t1": "t1.nii.gz", "t1ce": "t1ce.nii.gz"},
    "brain1": {"Image": "image.nrrd", "Mask": "label.nrrd"},
}


def example_names() -> list[str]:
    """Names of the shipped example cases."""
    return list(EXAMPLE_FILES)


def example_case(name: str = "lgg") -> dict[str, Path]:
    """Paths of a shipped example case: ``{"Image": ..., "Mask": ..., <modality>: ...}``.

    Raises
    ------
    ParamsError
        For an unknown name (with a did-you-mean), or when the package was installed without its data.
    """
    from ..errors import ParamsError, did_you_mean

    if name not in EXAMPLE_FILES:
        raise ParamsError(f"no example case '{name}'.{did_you_mean(name, EXAMPLE_FILES)} Shipped: {', '.join(EXAMPLE_FILES)}")
    paths = {role: EXAMPLES_DIR / name / file for role, file in EXAMPLE_FILES[name].items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ParamsError(f"example case '{name}' is incomplete ({missing[0]} is missing): reinstall deepradiomics")
    return paths


def example_manifest(path: str | Path) -> Path:
    """Write a batch manifest (absolute paths) of every shipped example case to ``path``; return it."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cases = {name: example_case(name) for name in EXAMPLE_FILES}
    modalities = sorted({role for files in cases.values() for role in files} - {"Image", "Mask"})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "Image", "Mask", *[f"Image_{m}" for m in modalities]])
        for name, files in cases.items():
            writer.writerow([name, files["Image"], files["Mask"], *[files.get(m, "") for m in modalities]])
    return path


# ---------------------------------------------------------------------------------------------- params
#: the shipped params files a command names by file name (training configs are for `train`, not extraction)
PARAMS_SUFFIX = ".yaml"


def params_dir() -> Path:
    """The folder of the shipped params files: ``deepradiomics.data.params`` (the repository's ``params/``)."""
    import importlib.util

    spec = importlib.util.find_spec("deepradiomics.data.params")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[2] / "params"  # a source tree that was never installed


def shipped_params() -> list[str]:
    """Names of the shipped params files (``classical``, ``deep``, ...), sorted."""
    folder = params_dir()
    return sorted(p.stem for p in folder.glob(f"*{PARAMS_SUFFIX}")) if folder.is_dir() else []


def shipped_params_file(name: str) -> Path | None:
    """The shipped params file called ``name`` (``classical`` or ``classical.yaml``), or None."""
    stem = name[: -len(PARAMS_SUFFIX)] if name.endswith(PARAMS_SUFFIX) else name
    if not stem or "/" in stem or "\\" in stem:
        return None
    path = params_dir() / f"{stem}{PARAMS_SUFFIX}"
    return path if path.is_file() else None
