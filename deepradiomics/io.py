"""Feature tables in and out: CSV (default), JSON or Parquet, chosen by the file's extension.

Every command reads and writes tables through :func:`read_table` and :func:`write_table`, so a table
written by ``batch -o features.parquet`` is read by ``study`` like a CSV. :func:`check_output` (tables),
:func:`check_image_output` (images) and :func:`check_writable_folder` (report and artifact folders)
validate an output before any work is done.

Exactness. Every float64 value comes back bit for bit in every format, NaN, +-inf and -0.0 included:
CSV and JSON hold each value's shortest decimal form that reads back as the same double (Python's
``repr``, David Gay's correctly rounded ``dtoa`` [1]_; the same text numpy's ``astype(str)`` gives, which
is what ``pandas.DataFrame.to_csv`` wrote before, so CSV files are byte-identical to earlier ones); they
are read back with correctly rounded conversions (Python's ``float``). Parquet stores the doubles
themselves. The ID index is always text (``001`` stays ``001``) and column order is kept.

Layouts.

- CSV: what ``DataFrame.to_csv`` writes (NaN as an empty field, +-inf as ``inf``/``-inf``). Read it with
  ``pd.read_csv(path, index_col=0, dtype={"ID": str})``. CSV holds no types: a text column whose every
  value looks like a number (``1.0``) reads back as numbers, here as in pandas; use JSON or Parquet to keep
  such columns as text.
- JSON: pandas' ``orient="table"`` layout (a Table Schema [2]_ ``schema`` with the index as
  ``primaryKey``, then ``data``, one object per row), read by pandas with::

      pd.read_json(path, orient="table", precise_float=True)

  which gives the same table as :func:`read_table`, exactly. JSON has no NaN or infinity: NaN is written
  as ``null``, +inf and -inf as the strings ``"INF"`` and ``"-INF"`` (Table Schema's spelling for those
  number values), and the rare subnormal numbers (0 < ``|x|`` < 2.2250738585072014e-308) as their shortest
  form in a string (``"5e-324"``), because the C parser behind ``precise_float=True`` refuses them as out of
  range. pandas turns those strings into the numbers again when it casts each ``number`` field to float64;
  so does any reader that applies the schema. ``precise_float=True`` matters: without it pandas parses
  most 17-digit values one unit in the last place off. Unlike ``orient="split"`` this layout keeps the
  index name and the column types. Files written by earlier versions (``{"index", "columns", "rows"}``,
  and pandas' ``orient="index"``) are still read.
- JSON with ``index=False``: PyRadiomics' layout, a list of row objects (NaN as ``null``, +-inf as the
  strings ``"Infinity"``/``"-Infinity"``).
- Parquet: what ``DataFrame.to_parquet`` writes (pandas metadata included), read with
  ``pd.read_parquet(path)``; columns of Python objects are written as text.

Speed. A batch table is a few text columns and tens of thousands of float64 ones (63 x 24,000 for
classical + vqhist + cnn + fisher). pandas formats, parses and converts such a table one column at a
time (``to_csv`` and ``read_csv`` build a Series or block per column and per chunk of four rows, and a
table assembled column by column holds one block per column, which multiplies that work), so here the
float64 columns are formatted, parsed and converted as one block, and only the other columns go through
pandas. ``benchmarks/table_io.py`` measures it.

References
----------
.. [1] D. M. Gay, "Correctly rounded binary-decimal and decimal-binary conversions", Numerical Analysis
   Manuscript 90-10, AT&T Bell Laboratories, 1990 (the algorithm of Python's ``float.__repr__`` and
   ``float()``).
.. [2] Frictionless Data, "Table Schema" specification (field types, ``primaryKey``, the number values
   ``NaN``, ``INF`` and ``-INF``), https://specs.frictionlessdata.io/table-schema/; pandas' use of it:
   ``pandas.io.json.build_table_schema``.

Examples
--------
>>> import pandas as pd, tempfile, os
>>> table = pd.DataFrame({"original_firstorder_Mean": [0.1 + 0.2]}, index=pd.Index(["001"], name="ID"))
>>> path = os.path.join(tempfile.mkdtemp(), "t.json")
>>> write_table(table, path)
>>> bool(read_table(path).loc["001", "original_firstorder_Mean"] == 0.1 + 0.2)
True
>>> bool(pd.read_json(path, orient="table", precise_float=True).loc["001", "original_firstorder_Mean"] == 0.1 + 0.2)
True
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import re
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Output:
    """What a command writes, for :func:`check_outputs_not_inputs`.

    ``option`` names it in messages (``-o``, ``--out-dir``); ``path`` is a file, or a folder when ``writes``
    lists the names (``fnmatch`` patterns, e.g. ``roc_*.png``) of what the command writes inside it
    (``("*",)``: anything). ``path`` None or ``-`` (stdout) writes no file.
    """

    option: str
    path: str | os.PathLike | None
    writes: tuple[str, ...] | None = None


def check_outputs_not_inputs(outputs, inputs) -> None:
    """Refuse, before any work, an output that would overwrite or write into one of the command's inputs.

    ``outputs`` are :class:`Output`; ``inputs`` are ``(what, path)`` pairs, a folder standing for every file
    in it (a DICOM series, a model bundle). Paths are compared resolved (``~``, ``..`` and symbolic links
    followed; an existing file also by identity, so a hard link counts). Refused: a file output that is an
    input or lies inside an input folder; a folder output that is an input, lies inside an input folder, or
    holds an input where the command writes (``Output.writes``).

    Raises
    ------
    ParamsError
        Naming the output (option and path), the input (what and path) and the fix.
    """
    sources = []
    for what, given in inputs:
        if given is None or not str(given).strip() or str(given) == "-":
            continue
        sources.append((what, given, _resolved(given)))
    for output in outputs:
        if output.path is None or not str(output.path).strip() or str(output.path) == "-":
            continue
        target = _resolved(output.path)
        for what, given, source in sources:
            clash = _clash(target, output.writes, source)
            if clash:
                raise ParamsError(
                    f"{output.option} '{output.path}' {clash.replace('{input}', f'{what} {str(given)!r}').replace('{source}', str(source))}: "
                    "the command would overwrite or change its own input; write the output elsewhere"
                )


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.expanduser(str(path))).resolve()


def _clash(target: Path, writes: tuple[str, ...] | None, source: Path) -> str | None:
    """How output ``target`` (a file when ``writes`` is None, else a folder writing ``writes``) meets input ``source``."""
    import fnmatch

    if target == source:
        return "is {input} (both resolve to '{source}')"
    if target.exists() and source.exists() and os.path.samefile(target, source):
        return "is {input} (the same file, a hard link)"
    if source.is_dir() and source in target.parents:
        return "lies inside {input}, a folder the command reads"
    if writes is None or target not in source.parents:
        return None
    inside = source.relative_to(target)
    if any(fnmatch.fnmatchcase(inside.parts[0], name) or fnmatch.fnmatchcase(inside.as_posix(), name) for name in writes):
        return f"would write '{inside.parts[0]}' over " + "{input}"
    return None


def write_table(table, path: str | Path | None, index: bool = True) -> None:
    """Write ``table`` (indexed by ID) to ``path``, or as CSV to stdout when ``path`` is None or '-'.

    ``index=False`` writes no index (PyRadiomics' layout): CSV without it, JSON as a list of row objects
    (PyRadiomics' JSON output); Parquet always keeps the table as it is. The layouts, and the pandas call
    that reads each, are in this module's docstring.
    """
    if path is None or str(path) == "-":
        _write_csv(table, sys.stdout, index)
        return
    path = Path(path)
    suffix = _suffix(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        # newline="": the csv writer ends lines itself, as pandas' to_csv does
        with open(path, "w", encoding="utf-8", newline="") as handle:
            _write_csv(table, handle, index)
    elif suffix == ".json" and not index:
        path.write_text(_pyradiomics_json(table), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(_table_json(table, path), encoding="utf-8")
    else:
        _write_parquet(table, path)


# ------------------------------------------------------------------------------------------ float block
def _float64_positions(table):
    """Positions of the numpy float64 columns (features and numeric diagnostics): the block formatted at once."""
    import numpy as np

    return np.flatnonzero(np.array([dtype == np.float64 for dtype in table.dtypes], dtype=bool))


def _float64_block(table, positions):
    """The float64 columns as one (rows, columns) array.

    A table assembled column by column (as a batch is) holds one block per column, and every
    positional selection then walks all of them; a copy consolidates the blocks first (half the time).
    """
    import numpy as np

    return table.copy().iloc[:, positions].to_numpy(dtype=np.float64)


def _float_cells(block, nan: str, inf: str, minus_inf: str) -> list[list[str]]:
    """Each value of ``block`` as its shortest round-trip text, row by row, NaN and +-inf spelled as given.

    ``json.dumps`` of a row formats its floats with ``float.__repr__`` (Gay's shortest correctly rounded
    form, see the module's references) inside the C encoder, the fastest exact formatter at hand (numpy's
    ``astype(str)``, which pandas' ``to_csv`` calls, gives the same text 1.3-1.8x slower). It spells the
    non-finite values ``NaN``, ``Infinity`` and ``-Infinity``; no finite value's text holds a capital letter.
    """
    cells = []
    for row in block.tolist():
        text = json.dumps(row)[1:-1]
        if "N" in text or "I" in text:  # (-Infinity through a placeholder: the spellings may hold "Infinity")
            text = text.replace("NaN", nan).replace("-Infinity", "\0").replace("Infinity", inf).replace("\0", minus_inf)
        cells.append(text.split(", "))
    return cells


def _plain_labels(table, index: bool) -> bool:
    """Single-level text column labels (and a single-level index when it is written): the fast paths' case."""
    import pandas as pd

    if isinstance(table.columns, pd.MultiIndex) or (index and isinstance(table.index, pd.MultiIndex)):
        return False
    return all(isinstance(column, str) for column in table.columns)


def _others(table, positions):
    """The columns that are not float64, in order, with the index."""
    import numpy as np

    return table.iloc[:, np.setdiff1d(np.arange(table.shape[1]), positions)]


# ------------------------------------------------------------------------------------------------- CSV
def _write_csv(table, handle, index: bool) -> None:
    """``table.to_csv(handle, index=index)``, byte for byte, with the float64 block formatted at once.

    pandas formats the other columns and the header (so their text is what it always was); those cells are
    read back with the csv module, each quoted again by the csv writer pandas uses (QUOTE_MINIMAL), and
    joined with the float cells, which never need quotes, in the table's column order.
    """
    import numpy as np

    positions = _float64_positions(table)
    lead = 1 if index else 0
    if not positions.size or not len(table) or lead + table.shape[1] < 2 or not _plain_labels(table, index):
        table.to_csv(handle, index=index)  # (a lone empty field is written '""': leave such tables to pandas)
        return
    others = _others(table, positions)
    if others.shape[1] or index:
        head = list(csv.reader(io.StringIO(others.to_csv(index=index))))
    else:
        head = [[] for _ in range(len(table) + 1)]
    width = lead + others.shape[1]
    if len(head) != len(table) + 1 or any(len(row) != width for row in head):
        table.to_csv(handle, index=index)  # labels pandas writes in some other way: let it write everything
        return
    float_at = lead + positions
    out = np.empty((len(table) + 1, lead + table.shape[1]), dtype=object)
    out[:, np.setdiff1d(np.arange(out.shape[1]), float_at)] = np.array([_csv_quoted(row) for row in head], dtype=object).reshape(len(head), width)
    out[0, float_at] = _csv_quoted([str(c) for c in table.columns[positions]])
    out[1:, float_at] = np.array(_float_cells(_float64_block(table, positions), "", "inf", "-inf"), dtype=object)
    handle.write("".join(",".join(row) + os.linesep for row in out.tolist()))


def _csv_quoted(cells: list[str]) -> list[str]:
    """Each cell as pandas' csv writer writes it inside a row (quoted when it holds a comma, quote or line break)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    out = []
    for cell in cells:
        if cell == "":  # alone in a row the writer quotes an empty field; inside one it writes nothing
            out.append("")
            continue
        writer.writerow([cell])
        out.append(buffer.getvalue()[:-1])
        buffer.seek(0)
        buffer.truncate()
    return out


# A field pandas' C parser and Python's float() both read as the same float64: a decimal number, inf, nan
# or empty (NaN). ASCII digits only: Python's float() also takes other scripts' digits and "1_0".
_FLOAT_FIELD = r"[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf|Infinity)|nan|NaN|"
_FLOAT_COLUMN = re.compile(rf"(?:{_FLOAT_FIELD})(?:\n(?:{_FLOAT_FIELD}))*")
# pandas reads a column of integers as int64: a float column has a field with a point, an exponent, inf or nan
_FLOAT_MARK = re.compile(r"[.eEnN]")


def _exact_csv_options() -> dict:
    """``read_csv`` options for correctly rounded floats: pandas before 3.1 needs ``float_precision="round_trip"``
    (its default converter is off by one unit in the last place for some 17-digit values); 3.1 has only one
    converter, an exact one, and deprecates the option."""
    import pandas as pd

    major, minor = (int(part) for part in pd.__version__.split(".")[:2])
    return {} if (major, minor) >= (3, 1) else {"float_precision": "round_trip"}


def _float_columns(columns: list[tuple[str, ...]]) -> list[int]:
    """Positions (from 1: 0 is the index) of the columns pandas would read as float64.

    Every field matches ``_FLOAT_FIELD`` and one at least holds a point, an exponent, inf or nan (a column
    of integers is int64 in pandas). One regular-expression match per column, over its fields joined by
    line breaks (0.2-0.5 s for 24,000 columns of 63 fields, much less than a match per field).
    """
    fast = []
    for j in range(1, len(columns)):
        joined = "\n".join(columns[j])
        if _FLOAT_MARK.search(joined) and _FLOAT_COLUMN.fullmatch(joined):
            fast.append(j)
    return fast


def _float64_columns(columns: list[tuple[str, ...]]):
    """(rows, columns) float64 array of text columns: Python's ``float()`` of each field, empty fields NaN."""
    import numpy as np

    block = np.array(columns, dtype=object)
    block[block == ""] = "nan"
    return block.astype(np.float64).T


def _read_csv_pandas(path: Path):
    """The table as ``read_csv`` reads it: first column the index, as text."""
    import pandas as pd

    header = pd.read_csv(path, nrows=0).columns
    if not len(header):
        raise ValueError("no columns")
    return pd.read_csv(path, index_col=0, dtype={header[0]: str}, **_exact_csv_options())


def _read_csv(path: Path):
    """What :func:`_read_csv_pandas` returns, with the float columns parsed as one block.

    The fields are split by the csv module; a column every field of which is a float (see ``_FLOAT_FIELD``)
    with at least one point, exponent, inf or nan is one pandas would read as float64, and is converted
    here with Python's ``float()``, exact. The other columns and the index go through ``read_csv`` as
    before. A file that is not a plain rectangle with distinct, named columns is read by pandas alone.
    """
    import pandas as pd

    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:  # pandas skips a byte-order mark too
            rows = [row for row in csv.reader(handle) if row]  # and blank lines
    except csv.Error:  # e.g. a field over the csv module's size limit: pandas has none
        return _read_csv_pandas(path)
    if not rows:
        raise ValueError("no columns")
    header = rows[0]
    plain = len(rows) > 1 and header[0] and all(header) and len(set(header)) == len(header)
    if not plain or any(len(row) != len(header) for row in rows):
        return _read_csv_pandas(path)
    columns = list(zip(*rows[1:]))
    fast = _float_columns(columns)
    if not fast:
        return _read_csv_pandas(path)
    values = _float64_columns([columns[j] for j in fast])
    keep = [0, *sorted(set(range(1, len(header))) - set(fast))]
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows([[row[j] for j in keep] for row in rows])
    others = pd.read_csv(io.StringIO(text.getvalue()), index_col=0, dtype={header[0]: str}, **_exact_csv_options())
    floats = pd.DataFrame(values, index=others.index, columns=[header[j] for j in fast])
    return pd.concat([others, floats], axis=1)[header[1:]]


# ------------------------------------------------------------------------------------------------ JSON
def _json_value(value):
    """A cell of the PyRadiomics layout (``index=False``): NaN as null, +-inf as "Infinity"/"-Infinity"."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _pyradiomics_json(table) -> str:
    """``json.dumps(rows, indent=2)`` of the list of row objects, byte for byte, the float block formatted at once."""
    import numpy as np

    positions = _float64_positions(table)
    if not positions.size or not len(table) or not _plain_labels(table, False):
        rows = [{str(k): _json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
        return json.dumps(rows, indent=2, allow_nan=False) + "\n"
    out = np.empty(table.shape, dtype=object)
    others = _others(table, positions)
    for j, column in zip(np.setdiff1d(np.arange(table.shape[1]), positions), others.columns):
        out[:, j] = [json.dumps(_json_value(v), allow_nan=False) for v in others[column].tolist()]
    out[:, positions] = np.array(_float_cells(_float64_block(table, positions), "null", '"Infinity"', '"-Infinity"'), dtype=object)
    keys = [f"    {json.dumps(str(c))}: " for c in table.columns]
    rows = ["  {\n" + ",\n".join(map(operator.add, keys, row)) + "\n  }" for row in out.tolist()]
    return "[\n" + ",\n".join(rows) + "\n]\n"


#: the smallest positive normal float64; nonzero values below it are subnormal
_TINY = 2.2250738585072014e-308


def _table_json_value(value):
    """A cell of the ``orient="table"`` layout: NaN/None as null, +-inf as "INF"/"-INF", a subnormal number as a
    string, objects (tuples, paths) as text, like Parquet."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "INF" if value > 0 else "-INF"
        return repr(value) if 0 < abs(value) < _TINY else value
    if isinstance(value, (bool, int, str)):
        return value
    import pandas as pd

    return None if value is pd.NA or value is pd.NaT else str(value)


def _table_json(table, path: Path) -> str:
    """The text of ``table`` in pandas' ``orient="table"`` layout (see the module docstring)."""
    import numpy as np
    from pandas.io.json import build_table_schema

    if not _plain_labels(table, True):
        raise ParamsError(f"table '{path}': JSON needs one level of text column names and of IDs: write a .parquet file instead")
    index_name = "index" if table.index.name is None else str(table.index.name)  # pandas' name for an unnamed index
    names = [index_name, *table.columns]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ParamsError(f"table '{path}': column name(s) {', '.join(map(repr, twice[:3]))} used twice (IDs included): a JSON row holds one value per name; rename them")
    positions = _float64_positions(table)
    others = _others(table, positions)
    schema = build_table_schema(others, index=True, version=True)
    fields = {field["name"]: field for field in schema["fields"]}
    is_float = np.zeros(table.shape[1], dtype=bool)
    is_float[positions] = True
    schema["fields"] = [fields[index_name]] + [{"name": c, "type": "number"} if f else fields[c] for c, f in zip(table.columns, is_float)]
    out = np.empty((len(table), 1 + table.shape[1]), dtype=object)
    out[:, 0] = [json.dumps(_table_json_value(v)) for v in table.index.tolist()]
    for j, column in zip(1 + np.flatnonzero(~is_float), others.columns):
        out[:, j] = [json.dumps(_table_json_value(v), allow_nan=False) for v in others[column].tolist()]
    if positions.size and len(table):
        block = _float64_block(table, positions)
        cells = _float_cells(block, "null", '"INF"', '"-INF"')
        for i, j in zip(*np.nonzero((block != 0) & (np.abs(block) < _TINY))):
            cells[i][j] = f'"{cells[i][j]}"'  # subnormal: see the module docstring
        out[:, 1 + positions] = np.array(cells, dtype=object)
    keys = [f"{json.dumps(name)}: " for name in names]
    rows = ["{" + ", ".join(map(operator.add, keys, row)) + "}" for row in out.tolist()]
    return '{"schema": ' + json.dumps(schema) + ',\n "data": [\n' + ",\n".join(rows) + "\n]}\n"


def _read_json(path: Path):
    import pandas as pd

    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("schema"), dict) and "data" in data:
        return _read_json_table(data, text)
    if isinstance(data, dict) and {"columns", "rows"} <= set(data):
        # the layout of earlier versions: {"index": name, "columns": [...], "rows": {ID: [values]}}
        table = pd.DataFrame.from_dict(_infinities(data["rows"]), orient="index", columns=data["columns"])
        table.index.name = data.get("index") or "ID"
        return table.infer_objects()
    if isinstance(data, list):
        # PyRadiomics' layout (index=False): the first column is the index, as in a CSV
        table = pd.DataFrame.from_records([_infinities(row) for row in data]).infer_objects()
        if not table.shape[1]:
            raise ValueError("no columns")
        return table.set_index(table.columns[0])
    # pandas' own orient="index" layout (tables written by earlier versions); convert_axes=False keeps IDs as
    # text ("001" would become 1)
    return pd.read_json(io.StringIO(text), orient="index", precise_float=True, convert_axes=False)


def _infinities(values):
    """The strings "Infinity"/"-Infinity" of the earlier layouts as floats, in a dict of lists, a dict or a list."""
    names = {"Infinity": math.inf, "-Infinity": -math.inf}
    if isinstance(values, dict):
        return {k: _infinities(v) if isinstance(v, list) else (names.get(v, v) if isinstance(v, str) else v) for k, v in values.items()}
    return [names.get(v, v) if isinstance(v, str) else v for v in values]


def _read_json_table(data: dict, text: str):
    """What ``pd.read_json(path, orient="table", precise_float=True)`` returns, the number fields converted as one block.

    pandas builds a DataFrame from the row objects and casts each field to its type, one column at a time;
    here the number fields (float64) are taken from every row at once and cast together (``None`` becomes
    NaN and the strings "INF", "-INF" and subnormal numbers their values, as in pandas' cast), and pandas
    reads the rest.
    """
    import numpy as np
    import pandas as pd

    schema = data["schema"]
    key = schema.get("primaryKey")
    if not (isinstance(key, list) and len(key) == 1):
        return pd.read_json(io.StringIO(text), orient="table", precise_float=True)
    fields = schema["fields"]
    numbers = [f["name"] for f in fields if f.get("type") == "number" and "extDtype" not in f and f["name"] != key[0]]
    rows = data["data"]
    if not numbers or not rows:
        return pd.read_json(io.StringIO(text), orient="table", precise_float=True)
    take = operator.itemgetter(*numbers)
    try:
        values = [take(row) for row in rows]
    except KeyError:  # a row without some field: pandas fills it with NaN
        return pd.read_json(io.StringIO(text), orient="table", precise_float=True)
    block = np.array(values, dtype=object).reshape(len(rows), len(numbers)).astype(np.float64)
    numbered = set(numbers)
    rest = [f for f in fields if f["name"] not in numbered]
    names = [f["name"] for f in rest]
    reduced = {"schema": {**schema, "fields": rest}, "data": [{name: row.get(name) for name in names} for row in rows]}
    others = pd.read_json(io.StringIO(json.dumps(reduced)), orient="table", precise_float=True)
    floats = pd.DataFrame(block, index=others.index, columns=numbers)
    return pd.concat([others, floats], axis=1)[[f["name"] for f in fields if f["name"] != key[0]]]


# --------------------------------------------------------------------------------------------- Parquet
def _text_objects(frame):
    """Columns of Python objects as text (Parquet needs one type per column): None/NaN stay missing."""
    import numpy as np

    out = frame.copy()
    for column in [c for c, dtype in zip(frame.columns, frame.dtypes) if dtype == np.dtype(object)]:
        out[column] = frame[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    return out


def _write_parquet(table, path: Path) -> None:
    """``table.to_parquet(path)`` with the float64 block turned into Arrow arrays at once.

    pyarrow's ``Table.from_pandas`` spends ~0.2 ms per column (24,000 columns: 5 s); here it converts only
    the other columns and the index, the float64 columns become Arrow arrays straight from one
    Fortran-ordered block (NaN as null, as ``from_pandas`` does), and pandas' metadata is the one pyarrow
    wrote for the other columns with, for each float64 column, the entry pyarrow writes for a float64
    column, so ``pd.read_parquet`` rebuilds the same table. Statistics and dictionary pages are written for
    the text columns only (they cost time per column and serve no 63-row float column).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    positions = _float64_positions(table)
    if not positions.size or not _plain_labels(table, True) or table.columns.has_duplicates:
        _text_objects(table).to_parquet(path)  # pandas' own checks and messages (e.g. duplicate names)
        return
    small = pa.Table.from_pandas(_text_objects(_others(table, positions)))
    meta = json.loads(small.schema.metadata[b"pandas"])
    entries = {entry["field_name"]: entry for entry in meta["columns"]}
    float_entry = json.loads(pa.Table.from_pandas(pd.DataFrame({"x": np.zeros(0)}), preserve_index=False).schema.metadata[b"pandas"])["columns"][0]
    block = np.asfortranarray(_float64_block(table, positions))
    is_float = np.zeros(table.shape[1], dtype=bool)
    is_float[positions] = True
    arrays, fields, columns, at = [], [], [], 0
    for name, f in zip(table.columns, is_float):
        if f:
            arrays.append(pa.array(block[:, at], type=pa.float64(), from_pandas=True))
            fields.append(pa.field(name, pa.float64()))
            columns.append({**float_entry, "name": name, "field_name": name})
            at += 1
        else:
            arrays.append(small.column(name))
            fields.append(small.schema.field(name))
            columns.append(entries[name])
    for name in [c for c in meta["index_columns"] if isinstance(c, str)]:  # index columns come last, as pyarrow puts them
        arrays.append(small.column(name))
        fields.append(small.schema.field(name))
        columns.append(entries[name])
    meta["columns"] = columns
    schema = pa.schema(fields, metadata={**small.schema.metadata, b"pandas": json.dumps(meta).encode()})
    text = [field.name for field in fields if field.type != pa.float64()]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, use_dictionary=text, write_statistics=text)


# ------------------------------------------------------------------------------------------------ read
def read_table(path: str | Path, what: str = "features table"):
    """Read a table written by :func:`write_table` (or any CSV/Parquet/JSON with an ID first column), indexed by ID.

    IDs are read as text (``001`` stays ``001``). Float64 values come back bit for bit. Raises ParamsError
    naming the file when it is missing or unreadable.
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
            table = _read_csv(path)
    except (OSError, ValueError, TypeError, UnicodeDecodeError, KeyError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamsError(f"cannot read {what} '{path}' as {suffix[1:].upper()} ({first})") from exc
    table.index = table.index.astype(str)
    table.index.name = table.index.name or "ID"
    return table
