"""Fitted artifacts: the cohort-level state of a fitted feature class, stored as arrays, never pickle.

A folder per fitted class::

    DIR/<class>/state.npz     the fitted arrays (numpy's npz, read with allow_pickle=False)
    DIR/<class>/config.yaml   class name, settings, array shapes/dtypes, sha256 of state.npz,
                              the cases it was fitted on, deepradiomics version

Loading checks the sha256 of ``state.npz`` against ``config.yaml`` before numpy reads it, and the class
name against the class that asks: a tampered or foreign artifact is refused with a ModelError.

Examples
--------
>>> import numpy as np, tempfile
>>> folder = tempfile.mkdtemp()
>>> digest = save_artifact(folder, "codebook", {"centres": np.arange(3.0)}, {"bins": 3})
>>> arrays, config = load_artifact(folder, "codebook")
>>> arrays["centres"].tolist(), config["settings"]
([0.0, 1.0, 2.0], {'bins': 3})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (models and fitted artifacts are checked against it)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

STATE_FILE = "state.npz"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1


def _plain(value: Any) -> Any:
    """YAML-safe copy of settings values (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_artifact(
    folder: str | Path,
    class_name: str,
    arrays: Mapping[str, np.ndarray],
    settings: Mapping[str, Any],
    fitted_on: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write ``state.npz`` + ``config.yaml`` into ``folder``; return the sha256 of ``state.npz``.

    Arrays must be numeric or boolean (object arrays would need pickle and are refused).
    """
    import yaml

    from ._version import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    clean = {}
    for key, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise ModelError(f"fitted state '{key}' of class '{class_name}' has dtype {array.dtype}: only numeric arrays are stored")
        clean[str(key)] = array
    temporary = folder / (STATE_FILE + ".tmp")
    with open(temporary, "wb") as handle:
        np.savez(handle, **clean)
    temporary.replace(folder / STATE_FILE)
    digest = sha256_file(folder / STATE_FILE)
    config = {
        "class": class_name,
        "format_version": FORMAT_VERSION,
        "deepradiomics_version": __version__,
        "settings": _plain(dict(settings)),
        "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in clean.items()},
        "fitted_on": [str(c) for c in fitted_on],
        "state_sha256": digest,
    }
    if extra:
        config["extra"] = _plain(dict(extra))
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    return digest


def read_artifact_config(folder: str | Path, class_name: str | None = None) -> dict[str, Any]:
    """``config.yaml`` of an artifact folder, checked (ModelError naming the file and the fix)."""
    from .yamlio import read_yaml

    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ModelError(
            f"fitted artifact folder '{folder}' does not exist: run `deepradiomics fit PARAMS MANIFEST -o DIR` "
            "and use DIR/params.yaml (relative paths in a params file are relative to that file)"
        )
    if not path.is_file():
        raise ModelError(f"fitted artifact '{folder}' has no {CONFIG_FILE}: re-run `deepradiomics fit`")
    config = read_yaml(path, "fitted-artifact config", ModelError, ": re-run `deepradiomics fit`")
    if not isinstance(config, dict) or "state_sha256" not in config or "class" not in config:
        raise ModelError(f"{path} is not a fitted-artifact config (class, state_sha256 missing): re-run `deepradiomics fit`")
    if class_name is not None and config["class"] != class_name:
        raise ModelError(f"{path} holds the fitted state of class '{config['class']}', not '{class_name}': point the setting to the right folder")
    return config


def load_artifact(folder: str | Path, class_name: str | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, config) of an artifact folder after its sha256 check; ModelError when tampered or malformed."""

    folder = Path(folder)
    config = read_artifact_config(folder, class_name)
    state = folder / STATE_FILE
    if not state.is_file():
        raise ModelError(f"fitted artifact '{folder}' has no {STATE_FILE}: re-run `deepradiomics fit`")
    actual = sha256_file(state)
    if actual != config["state_sha256"]:
        raise ModelError(
            f"{state} has sha256 {actual} but {folder / CONFIG_FILE} records {config['state_sha256']}: the fitted state "
            "was changed or corrupted; re-run `deepradiomics fit`, do not edit it"
        )
    try:
        with np.load(state, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (ValueError, OSError) as exc:
        raise ModelError(f"{state} cannot be read as plain arrays ({exc}): re-run `deepradiomics fit`") from exc
    expected = set((config.get("arrays") or {}).keys())
    if expected and expected != set(arrays):
        raise ModelError(f"{state} holds arrays {sorted(arrays)} but {folder / CONFIG_FILE} lists {sorted(expected)}: re-run `deepradiomics fit`")
    return arrays, config
