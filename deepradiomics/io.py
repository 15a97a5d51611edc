"""Writing feature tables: CSV (default), JSON or Parquet, chosen by the output file's extension."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import ParamsError

FORMATS = (".csv", ".json", ".parquet")


def write_table(table, path: str | Path | None) -> None:
    """Write ``table`` (indexed by ID) to ``path``, or as CSV to stdout when ``path`` is None or '-'."""
    if path is None or str(path) == "-":
        table.to_csv(sys.stdout)
        return
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ParamsError(f"output '{path}': unknown extension '{suffix}'; use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path)
    elif suffix == ".json":
        table.to_json(path, orient="index", indent=1, double_precision=15)
    else:
        # Parquet needs one type per column: diagnostics are text, features float64.
        frame = table.copy()
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].map(lambda v: None if v is None else str(v))
        frame.to_parquet(path)


def read_table(path: str | Path):
    """Read a table written by :func:`write_table` (indexed by ID)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"features table '{path}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".json":
        table = pd.read_json(path, orient="index")
        table.index.name = "ID"
        return table
    table = pd.read_csv(path, index_col=0)
    table.index = table.index.astype(str)
    table.index.name = "ID"
    return table
