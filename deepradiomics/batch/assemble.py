"""Batch results as one table: deepradiomics' layout (indexed by ID) or PyRadiomics' command-line layout."""

from __future__ import annotations

from pathlib import Path

from ..naming import ERROR_COLUMN, is_diagnostic, is_feature
from .manifest import resolve_path


def assemble_pyradiomics(frame, results: dict[str, dict], base: Path):
    """PyRadiomics' command-line table: the manifest's columns (Image and Mask as absolute paths) then the
    result keys, first case's order first and later keys sorted after (as its CLI does); no index.
    A failed case keeps only its manifest columns, as in PyRadiomics' output (the error goes to the log)."""
    import pandas as pd

    rows, first, extra = [], None, set()
    for record in frame.to_dict(orient="records"):
        row = dict(record)
        for column in ("Image", "Mask"):
            row[column] = str(Path(resolve_path(record[column], base)).absolute())
        result = results.get(record["ID"], {})
        if ERROR_COLUMN not in result:
            row.update(result)
            if first is None:
                first = list(row)
            else:
                extra |= set(row) - set(first)
        rows.append(row)
    columns = (first or list(frame.columns)) + sorted(extra)
    return pd.DataFrame(rows, columns=columns)


def assemble(frame, results: dict[str, dict], numeric: bool = True):
    """One table: manifest columns, then diagnostics, then features (first-seen order), indexed by ID.

    Feature columns are float64 (``numeric=False`` keeps them as they are, e.g. map file paths)."""
    import numpy as np
    import pandas as pd

    diagnostics: dict[str, None] = {}
    features: dict[str, None] = {}
    for record in frame.to_dict(orient="records"):
        for key in results.get(record["ID"], {}):
            if key == ERROR_COLUMN:
                continue
            (features if is_feature(key) and not is_diagnostic(key) else diagnostics)[key] = None
    passthrough = [c for c in frame.columns if c != "ID"]
    rows = []
    for record in frame.to_dict(orient="records"):
        result = results.get(record["ID"], {ERROR_COLUMN: "not computed"})
        row = {c: record[c] for c in passthrough}
        row.update({k: result.get(k) for k in diagnostics})
        row[ERROR_COLUMN] = result.get(ERROR_COLUMN, "")
        row.update({k: result.get(k, np.nan) for k in features})
        rows.append(row)
    table = pd.DataFrame(rows, index=pd.Index(frame["ID"].tolist(), name="ID"))
    if features and numeric:
        table[list(features)] = table[list(features)].astype(np.float64)
    return table


def failures(table) -> list[tuple[str, str]]:
    """``(ID, message)`` of the failed rows of a batch table."""
    if ERROR_COLUMN not in table.columns:
        return []
    failed = table[table[ERROR_COLUMN].astype(str).str.len() > 0]
    return list(zip(failed.index, failed[ERROR_COLUMN]))
