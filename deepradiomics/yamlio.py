"""The one YAML reader of deepradiomics: safe, YAML 1.2, as PyRadiomics reads its params files.

PyRadiomics validates params through pykwalify, which reads YAML with ruamel's safe loader (YAML 1.2,
``YAML(typ="safe", pure=True)``). Reading every YAML file the same way (params files, PyRadiomics' own
schema, training configs, bundle and artifact configs, ``-s KEY=VALUE`` overrides) means one file means
one thing everywhere: in YAML 1.2 ``1e-4`` is a number and ``yes``/``on`` are text, where PyYAML's YAML 1.1
reads the first as text and the others as booleans. The safe loader builds only plain data (mappings,
lists, text, numbers, booleans, null): nothing in a file runs code or imports anything.

Writing stays with PyYAML's ``safe_dump``, whose output (``1.0e-05``, ``.nan``, quoted ``'yes'``) reads back
identically here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DeepRadiomicsError, ParamsError


def _loader():
    from ruamel.yaml import YAML

    # a new loader per call: ruamel's loader objects keep parser state and are not safe to share between threads
    return YAML(typ="safe", pure=True)


def load_yaml(text: str, where: str = "YAML text", error: type[DeepRadiomicsError] = ParamsError, fix: str = "") -> Any:
    """Plain data from YAML 1.2 ``text``; ``error`` (ParamsError) naming ``where`` when it is not valid YAML.

    ``fix`` is appended to the message (what to do), e.g. ``": re-train the bundle"``.
    """
    from ruamel.yaml import YAMLError

    try:
        return _loader().load(text)
    except YAMLError as exc:
        message = " ".join(str(exc).split())
        raise error(f"{where} is not valid YAML: {message}{fix}") from exc


def read_yaml(path: str | os.PathLike, what: str = "YAML file", error: type[DeepRadiomicsError] = ParamsError, fix: str = "") -> Any:
    """Plain data from the YAML 1.2 file ``path``; ``error`` naming the file when it is unreadable or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise error(f"{what} '{path}' cannot be read as UTF-8 text ({type(exc).__name__}){fix or ': give a YAML file'}") from exc
    return load_yaml(text, f"{what} '{path}'", error, fix)
