"""Manifests: PyRadiomics' batch CSV (``ID``, ``Image``, ``Mask``, optional ``Label``, ``Image_<name>``).

Paths are relative to the manifest's folder; other columns (labels, age, ...) pass through to the output.
:func:`read_manifest` checks the file before any case runs; :func:`case_from_row` turns one row into a
:class:`~deepradiomics.case.Case`; :func:`input_identity` is what the resume cache keys a case's files on.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..case import MAIN_IMAGE, Case
from ..errors import CaseError, ParamsError, did_you_mean
from ..naming import is_diagnostic, is_feature

REQUIRED_COLUMNS = ("ID", "Image", "Mask")
MODALITY_PREFIX = "Image_"


def read_manifest(manifest, base_dir: str | os.PathLike | None = None):
    """Read and check a manifest; return ``(DataFrame, base_dir)`` with paths still as written.

    Raises
    ------
    ParamsError
        When the file is missing, unreadable or not a CSV, a required column is absent (with a
        did-you-mean), a column is named like an output column, or IDs are blank or repeat.
    """
    import pandas as pd

    if isinstance(manifest, pd.DataFrame):
        frame, where = manifest.copy(), "the manifest DataFrame"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        path = Path(manifest)
        where = f"manifest '{path}'"
        if not path.is_file():
            raise ParamsError(f"{where} does not exist: give a CSV with columns ID, Image, Mask")
        frame = _read_csv_text(path, where)
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    if "ID" not in frame.columns and frame.index.name == "ID":
        frame = frame.reset_index()
    frame.columns = [str(c) for c in frame.columns]
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise ParamsError(
                f"{where} has no '{column}' column.{did_you_mean(column, map(str, frame.columns))} "
                f"Required: {', '.join(REQUIRED_COLUMNS)}; found: {', '.join(map(str, frame.columns))}"
            )
    reserved = [c for c in frame.columns if is_diagnostic(c) or is_feature(c)]
    if reserved:
        raise ParamsError(
            f"{where}: column '{reserved[0]}' is named like an output column (diagnostics or a feature name) and "
            "would be overwritten by the results: rename it"
        )
    frame["ID"] = frame["ID"].fillna("").astype(str)
    blank = frame.index[frame["ID"].str.strip() == ""]
    if len(blank):
        raise ParamsError(f"{where}: row {int(blank[0]) + 2} has a blank ID: give every case an ID")
    duplicated = frame["ID"][frame["ID"].duplicated()].unique()
    if len(duplicated):
        raise ParamsError(f"{where}: IDs must be unique; repeated: {', '.join(duplicated[:5])}")
    return frame, base


def _read_csv_text(path: Path, where: str):
    import pandas as pd

    head = path.read_bytes()[:4096]
    if not head.strip():
        raise ParamsError(f"{where} is empty: give a CSV with a header line 'ID,Image,Mask' and one row per case")
    if b"\x00" in head:
        raise ParamsError(f"{where} is a binary file, not a CSV: give a text CSV with columns ID, Image, Mask")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(f"{where} cannot be read as a CSV ({first}): give a text CSV with columns ID, Image, Mask") from exc


def resolve_path(value: Any, base: Path) -> Any:
    """A manifest cell's path resolved against the manifest's folder (non-text values unchanged)."""
    if not isinstance(value, str):
        return value
    path = Path(value)
    return str(path if path.is_absolute() else base / path)


def is_blank(value: Any) -> bool:
    """True for an empty manifest cell (None, NaN, or text of white space only)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def case_from_row(row: dict, base: Path, default_label: int = 1, transforms: Sequence = ()) -> Case:
    """Build the :class:`Case` of one manifest row (paths resolved against ``base``)."""
    case_id = str(row["ID"])
    for column in ("Image", "Mask"):
        if is_blank(row.get(column)):
            raise CaseError(f"case '{case_id}': the manifest's '{column}' cell is blank: give the path of the {column.lower()} file")
    modalities = {MAIN_IMAGE: resolve_path(row["Image"], base)}
    for column, value in row.items():
        if str(column).startswith(MODALITY_PREFIX) and not is_blank(value):
            modalities[str(column)[len(MODALITY_PREFIX):]] = resolve_path(value, base)
    label = row.get("Label", "")
    label = default_label if is_blank(label) else parse_label(label, f"case '{case_id}': Label")
    return Case(modalities, resolve_path(row["Mask"], base), label=label, case_id=case_id, transforms=tuple(transforms))


def parse_label(value: Any, where: str) -> int:
    """A label value as an int: whole numbers only (``2``, ``"2"``, ``2.0``), 1 to 2**31 - 1."""
    try:
        number = float(str(value).strip())
    except ValueError:
        raise CaseError(f"{where} {value!r} is not an integer label value") from None
    if not number.is_integer():
        raise CaseError(f"{where} {value!r} is not a whole number: give the integer label value of the region")
    label = int(number)
    if not 1 <= label <= 2**31 - 1:
        raise CaseError(f"{where} {label} is out of range: label values are 1 to 2147483647 (0 is the background)")
    return label


def input_identity(case: Case) -> list:
    """``[role, resolved path, size, mtime_ns]`` of every input file of ``case`` (folders: every file in them)."""
    out = []
    for role, value in [*case.modalities.items(), ("mask", case.mask)]:
        if not isinstance(value, (str, os.PathLike)):
            out.append([role, f"<in-memory {role}>", None, None])
            continue
        path = Path(value).resolve()
        if path.is_dir():
            for child in sorted(p for p in path.iterdir() if p.is_file()):
                stat = child.stat()
                out.append([role, str(child), stat.st_size, stat.st_mtime_ns])
        elif path.exists():
            stat = path.stat()
            out.append([role, str(path), stat.st_size, stat.st_mtime_ns])
        else:
            out.append([role, str(path), None, None])
    return out


def input_bytes(row: dict, base: Path) -> int:
    """Total size of a row's input files (the largest-first scheduling key); 0 for what is missing."""
    total = 0
    for column, value in row.items():
        if (column in ("Image", "Mask") or str(column).startswith(MODALITY_PREFIX)) and isinstance(value, str) and value.strip():
            path = Path(resolve_path(value, base))
            try:
                total += sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
            except OSError:
                pass
    return total
