"""Feature tables in and out: CSV (default), JSON or Parquet, chosen by the file's extension.

Every command reads and writes tables through :func:`read_table` and :func:`write_table`, so a table
written by ``batch -o features.parquet`` is read by ``study`` like a CSV. JSON keeps float64 values
exactly (shortest round-trip representation); CSV does too (pandas writes 17 significant digits when
needed). :func:`check_output` (tables), :func:`check_image_output` (images) and
:func:`check_writable_folder` (report and artifact folders) validate an output before any work is done.

Examples
--------
>>> import pandas as pd, tempfile, os
>>> table = pd.DataFrame({"original_firstorder_Mean": [0.1 + 0.2]}, index=pd.Index(["a"], name="ID"))
>>> path = os.path.join(tempfile.mkdtemp(), "t.json")
>>> write_table(table, path)
>>> read_table(path).loc["a", "original_firstorder_Mean"] == 0.1 + 0.2
True
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from .errors import ParamsError

FORMATS = (".csv", ".json", ".parquet")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ParamsError(f"table '{path}': unknown extension '{suffix or '(none)'}'; use one of {', '.join(FORMATS)}")
    return suffix


def check_output(path: str | Path | None, kind: str = "output") -> None:
    """Refuse an output path that cannot be written, before any work is done.

    Checks the extension, that no part of the parent path is a file, and that the nearest existing
    folder is writable (so the folder can be created). ``None`` or ``-`` (stdout) are always fine.
    """
    if path is None or str(path) == "-":
        return
    path = Path(path)
    _suffix(path)
    check_writable_folder(path.parent, f"{kind} '{path}'")
    if path.is_dir():
        raise ParamsError(f"{kind} '{path}' is a folder: give a file name ending in {', '.join(FORMATS)}")


#: image formats SimpleITK writes that hold a 3D label map with its geometry (for ``segment -o``)
IMAGE_FORMATS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def check_image_output(path: str | Path, kind: str = "output") -> None:
    """Refuse an output image path before any work: an extension SimpleITK cannot write, or an unwritable folder."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(IMAGE_FORMATS):
        raise ParamsError(f"{kind} '{path}': unknown image extension; use one of {', '.join(IMAGE_FORMATS)}")
    check_writable_folder(path.parent, f"{kind} '{path}'")
    if path.is_dir():
        raise ParamsError(f"{kind} '{path}' is a folder: give a file name ending in {', '.join(IMAGE_FORMATS)}")


def check_writable_folder(folder: str | Path, what: str) -> None:
    """ParamsError unless ``folder`` exists as a writable folder or can be created."""
    folder = Path(folder)
    probe = folder.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ParamsError(f"{what}: '{probe}' is a file, so the folder '{folder}' cannot be created: choose another path")
    if not os.access(probe, os.W_OK | os.X_OK) or str(probe).startswith(("/proc", "/sys")):
        raise ParamsError(f"{what}: the folder '{probe}' is not writable: choose a folder you can write to")


def write_table(table, path: str | Path | None, index: bool = True) -> None:
    """Write ``table`` (indexed by ID) to ``path``, or as CSV to stdout when ``path`` is None or '-'.

    ``index=False`` writes no index (PyRadiomics' layout): CSV without it, JSON as a list of row objects
    (PyRadiomics' JSON output); Parquet always keeps the table as it is.
    """
    if path is None or str(path) == "-":
        table.to_csv(sys.stdout, index=index)
        return
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, index=index)
    elif suffix == ".json" and not index:
        rows = [{str(k): _json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
        path.write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(_json_records(table), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    else:
        # Parquet needs one type per column: diagnostics are text, features float64.
        frame = table.copy()
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        frame.to_parquet(path)


def _json_value(value):
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _json_records(table) -> dict:
    """``{ID: {column: value}}`` with Python floats, which ``json`` writes in their shortest exact form."""
    index_name = table.index.name or "ID"
    return {
        "index": index_name,
        "columns": [str(c) for c in table.columns],
        "rows": {str(i): [_json_value(v) for v in row] for i, row in zip(table.index, table.itertuples(index=False, name=None))},
    }


def read_table(path: str | Path, what: str = "features table"):
    """Read a table written by :func:`write_table` (or any CSV/Parquet/JSON with an ID first column), indexed by ID.

    IDs are read as text (``001`` stays ``001``). Raises ParamsError naming the file when it is missing
    or unreadable.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{what} '{path}' does not exist: give a table written by `deepradiomics batch`")
    suffix = _suffix(path)
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
            if table.index.name is None and len(table.columns) and str(table.columns[0]) == "ID":
                table = table.set_index("ID")
        elif suffix == ".json":
            table = _read_json(path)
        else:
            header = pd.read_csv(path, nrows=0).columns
            if not len(header):
                raise ValueError("no columns")
            table = pd.read_csv(path, index_col=0, dtype={header[0]: str})
    except (OSError, ValueError, UnicodeDecodeError, KeyError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(f"cannot read {what} '{path}' as {suffix[1:].upper()} ({first})") from exc
    table.index = table.index.astype(str)
    table.index.name = table.index.name or "ID"
    return table


def _read_json(path: Path):
    import numpy as np
    import pandas as pd

    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and {"columns", "rows"} <= set(data):
        infinities = {"Infinity": np.inf, "-Infinity": -np.inf}
        rows = {i: [infinities.get(v, v) if isinstance(v, str) else v for v in values] for i, values in data["rows"].items()}
        table = pd.DataFrame.from_dict(rows, orient="index", columns=data["columns"])
        table.index.name = data.get("index") or "ID"
        return table.infer_objects()
    # pandas' own orient="index" layout (tables written by earlier versions)
    return pd.read_json(path, orient="index", precise_float=True)
