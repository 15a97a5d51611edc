"""Wide feature tables: write and read times of ``deepradiomics.io`` per format, against the previous code and numpy.

A batch table of the LGG cohort with classical + vqhist + cnn + fisher features is 63 rows x ~24,000 float64
columns plus ~150 input and diagnostics columns. This script builds such a table from real parts and times
``write_table`` / ``read_table`` in CSV, JSON and Parquet, ``--repeats`` times, against two references
measured in the same run:

- "before": the previous implementation of ``write_table``/``read_table`` (``deepradiomics/io.py`` at commit
  0a0963a), copied below as ``old_write_table``/``old_read_table``;
- "numpy": ``np.save`` / ``np.load`` of the float64 block alone, a lower bound (no text, no names, binary).

How the table is built (the project's choice, to be realistic where it can be and said where it is not):

- rows: the 63 IDs and every input column of ``../shared/data/lgg/cases.csv`` (text, as the batch reads them);
- one real row: ``Extractor.from_yaml("params/classical.yaml").execute_batch`` on one LGG case (``--case``),
  which gives the real diagnostics columns (text, numbers, tuples written as text) and the 107 classical
  values; every case gets those values times a per-value log-normal factor (sigma 0.25), hashes and ROI
  numbers varied per case;
- the deep families' real column names, from the plugin classes of ``params/deep.yaml`` (vqhist, 512),
  ``params/cnn.yaml`` (cnn, 4,608) and ``params/fisher.yaml`` (fisher, 16,384), with values drawn like
  theirs: codeword counts (integral floats, many zeros), float32 activations (mean and max pooled,
  non-negative, 17 significant digits once widened to float64), improved Fisher vectors (signed square
  root, L2-normalised rows); and the classical features of further PyRadiomics image types (LoG sigmas,
  wavelet bands, simple filters, LBP) until ``--features`` columns, with diagnostics of the same form as
  ``diagnostics_Image-original_*`` for 15 of them (PyRadiomics writes those for the original image only:
  they stand for the other diagnostics of a wide params file);
- awkward values: one failed case (every feature NaN, its message in ``diagnostics_Error``), NaN in 0.5 %
  and +-inf in 0.05 % of the classical values, and 0.1 + 0.2, 5e-324, -2.5e-320, -0.0 and the largest double
  in the first row.

The table is timed in two memory layouts: "consolidated" (one pandas block per dtype) and "fragmented"
(one block per column, as a table assembled column by column is: ``deepradiomics.batch.assemble`` builds
its feature columns by ``table[list] = ...astype(float64)``, which leaves one block per column). Reading
does not depend on the layout, so only writes are timed in both. Implementations run in rotating order
within each repeat.

Checks, for every format and implementation: the IDs (text), the column order, every float64 value bit for
bit (NaN where NaN, -0.0 kept), and which text columns did not come back as the same text (in CSV, columns
whose every value looks like a number come back as numbers: CSV holds no types). It also times, once, the
pandas call that the JSON layout documents, ``pd.read_json(path, orient="table", precise_float=True)``, and
checks it is exact.

Run from the repository root, on an otherwise idle machine::

    python benchmarks/table_io.py                       # 63 x ~24,000, 3 repeats, all formats, before and after
    python benchmarks/table_io.py --repeats 1 --no-before --formats csv

It prints the machine (CPU count, load average before and after), then per format and operation the median
seconds with min-max over the repeats for each implementation, the ratio after/before and after/numpy, the
10 s target, and the exactness of each.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
LGG = REPO.parent / "shared" / "data" / "lgg"
TARGET_S = 10.0

# ------------------------------------------------------------------------------------------------------
# The previous implementation (deepradiomics/io.py at commit 0a0963a), verbatim but for the names.
from deepradiomics.errors import ParamsError  # noqa: E402


def old_write_table(table, path, index: bool = True) -> None:
    if path is None or str(path) == "-":
        table.to_csv(sys.stdout, index=index)
        return
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        table.to_csv(path, index=index)
    elif suffix == ".json" and not index:
        rows = [{str(k): _old_json_value(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
        path.write_text(json.dumps(rows, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(_old_json_records(table), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    else:
        frame = table.copy()
        for column in frame.columns:
            if frame[column].dtype == np.dtype(object):
                frame[column] = frame[column].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
        frame.to_parquet(path)


def _old_json_value(value):
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _old_json_records(table) -> dict:
    index_name = table.index.name or "ID"
    return {
        "index": index_name,
        "columns": [str(c) for c in table.columns],
        "rows": {str(i): [_old_json_value(v) for v in row] for i, row in zip(table.index, table.itertuples(index=False, name=None))},
    }


def old_read_table(path, what: str = "features table"):
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
            if table.index.name is None and len(table.columns) and str(table.columns[0]) == "ID":
                table = table.set_index("ID")
        elif suffix == ".json":
            table = _old_read_json(path)
        else:
            header = pd.read_csv(path, nrows=0).columns
            if not len(header):
                raise ValueError("no columns")
            table = pd.read_csv(path, index_col=0, dtype={header[0]: str})
    except (OSError, ValueError, UnicodeDecodeError, KeyError, pd.errors.ParserError) as exc:
        raise ParamsError(f"cannot read {what} '{path}' ({exc})") from exc
    table.index = table.index.astype(str)
    table.index.name = table.index.name or "ID"
    return table


def _old_read_json(path: Path):
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and {"columns", "rows"} <= set(data):
        infinities = {"Infinity": np.inf, "-Infinity": -np.inf}
        rows = {i: [infinities.get(v, v) if isinstance(v, str) else v for v in values] for i, values in data["rows"].items()}
        table = pd.DataFrame.from_dict(rows, orient="index", columns=data["columns"])
        table.index.name = data.get("index") or "ID"
        return table.infer_objects()
    return pd.read_json(path, orient="index", precise_float=True)


# ------------------------------------------------------------------------------------------------------
# The table
IMAGE_TYPES = (
    [f"log-sigma-{s:.1f}-mm-3D".replace(".", "-") for s in (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)]
    + [f"wavelet-{band}" for band in ("LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH", "LLL")]
    + ["square", "squareroot", "logarithm", "exponential", "gradient", "lbp-3D-m1", "lbp-3D-m2", "lbp-3D-k"]
)


def real_row(case: str) -> pd.DataFrame:
    """The batch row of one LGG case with params/classical.yaml: real input, diagnostics and classical columns."""
    from deepradiomics import Extractor

    manifest = pd.read_csv(LGG / "cases.csv", dtype=str, keep_default_na=False)
    row = manifest[manifest["ID"] == case]
    if row.empty:
        raise SystemExit(f"--case {case}: not an ID of {LGG / 'cases.csv'}")
    return Extractor.from_yaml(REPO / "params" / "classical.yaml").execute_batch(row, base_dir=LGG)


def deep_classes() -> dict:
    """The plugin classes of params/deep.yaml, cnn.yaml and fisher.yaml (names and diagnostics only; nothing runs)."""
    import yaml

    from deepradiomics import Extractor

    classes = {}
    for name in ("deep", "cnn", "fisher"):
        classes.update(yaml.safe_load((REPO / "params" / f"{name}.yaml").read_text())["featureClass"])
    return Extractor.from_dict({"setting": {"label": 1}, "featureClass": classes}).plugin_classes


def build_table(case: str, n_features: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    manifest = pd.read_csv(LGG / "cases.csv", dtype=str, keep_default_na=False).set_index("ID")
    n = len(manifest)
    row = real_row(case)
    is_feature = np.array([t == np.float64 and not c.startswith("diagnostics_") for c, t in zip(row.columns, row.dtypes)])
    inputs = [c for c in row.columns if c in manifest.columns]
    diagnostics = [c for c, f in zip(row.columns, is_feature) if not f and c not in inputs]
    classical = [c for c, f in zip(row.columns, is_feature) if f]

    text = manifest[inputs].copy()
    text.index.name = "ID"
    for column in diagnostics:
        value = row[column].iloc[0]
        if isinstance(value, (float, np.floating)):
            text[column] = float(value) * rng.lognormal(0, 0.3, n)
        elif isinstance(value, (int, np.integer)):
            text[column] = (int(value) * rng.lognormal(0, 0.3, n)).astype(np.int64)
        elif column.endswith("Hash"):
            text[column] = [rng.bytes(20).hex() for _ in range(n)]
        else:
            text[column] = value
    classes = deep_classes()
    for name, feature_class in classes.items():
        for key, value in feature_class.diagnostics().items():
            text[f"diagnostics_{name}_{key}"] = str(value)
    for image_type in IMAGE_TYPES[:15]:  # stand-ins of the same form for the other diagnostics of a wide params file
        for key in ("Hash", "Dimensionality", "Spacing", "Size", "Mean", "Minimum", "Maximum"):
            source = text[f"diagnostics_Image-original_{key}"]
            text[f"diagnostics_Image-{image_type}_{key}"] = source * rng.lognormal(0, 0.3, n) if source.dtype == np.float64 else source

    base = row[classical].iloc[0].to_numpy(dtype=np.float64)
    blocks = {c: base[i] * rng.lognormal(0, 0.25, n) for i, c in enumerate(classical)}
    vq = classes["vqhist"].feature_names()
    rate = rng.gamma(0.3, 40.0, len(vq))
    counts = rng.poisson(rate, size=(n, len(vq))).astype(np.float64)
    cnn = classes["cnn"].feature_names()
    act = rng.lognormal(-2.0, 1.0, size=(n, len(cnn))) * np.where(np.char.find(np.array(cnn), "Max") >= 0, 4.0, 1.0)
    act = act.astype(np.float32).astype(np.float64)
    fisher = classes["fisher"].feature_names()
    fv = rng.normal(0, 1, size=(n, len(fisher))) * rng.lognormal(0, 1, len(fisher))
    fv = np.sign(fv) * np.sqrt(np.abs(fv))
    fv /= np.linalg.norm(fv, axis=1, keepdims=True)
    deep = len(vq) + len(cnn) + len(fisher)
    non_shape = [c for c in classical if "_shape_" not in c]
    extra = []
    for image_type in IMAGE_TYPES * 10:
        if len(classical) + len(extra) + deep >= n_features:
            break
        for c in non_shape:
            extra.append(c.replace("original_", f"{image_type}_", 1))
            blocks[extra[-1]] = blocks[c] * rng.lognormal(0, 0.5, n)
    extra = extra[: max(0, n_features - deep - len(classical))]
    classic = np.column_stack([blocks[c] for c in classical + extra])
    classic[rng.random(classic.shape) < 0.005] = np.nan
    infinite = rng.random(classic.shape) < 0.0005
    classic[infinite] = np.where(rng.random(int(infinite.sum())) < 0.5, np.inf, -np.inf)
    classic[0, :5] = [0.1 + 0.2, 5e-324, -2.5e-320, -0.0, 1.7976931348623157e308]
    values = np.hstack([classic, counts, act, fv])
    names = classical + extra + [f"original_vqhist_{c}" for c in vq] + [f"original_cnn_{c}" for c in cnn] + [f"original_fisher_{c}" for c in fisher]
    failed = n // 2
    values[failed] = np.nan
    text.loc[text.index[failed], "diagnostics_Error"] = "CaseError: TCGA case: the mask holds no voxel of label 1 (a failed case keeps its row)"
    features = pd.DataFrame(values, index=text.index, columns=names)
    return pd.concat([text, features], axis=1)


def fragmented(table: pd.DataFrame) -> pd.DataFrame:
    """The same table with one pandas block per column (as a table assembled column by column)."""
    return pd.concat([table.iloc[:, [j]] for j in range(table.shape[1])], axis=1)


# ------------------------------------------------------------------------------------------------------
# Checks and timing
def check(table: pd.DataFrame, back: pd.DataFrame) -> tuple[bool, str]:
    """(IDs, column order and every float64 bit as written?, what differs: those, and the other columns that
    came back with another dtype or other values)."""
    if list(back.index) != list(table.index) or back.index.name != table.index.name:
        return False, "IDs differ"
    if list(back.columns) != list(table.columns):
        return False, "column order differs"
    floats = [c for c, t in zip(table.columns, table.dtypes) if t == np.float64]
    a, b = table[floats].to_numpy(), back[floats].to_numpy(dtype=np.float64)
    nan = np.isnan(a)
    wrong = int((nan != np.isnan(b)).sum() + (a.view(np.uint64)[~nan] != b.view(np.uint64)[~nan]).sum())
    others = [c for c in table.columns if c not in set(floats)]
    changed = [c for c in others if not (back[c].dtype == table[c].dtype and back[c].equals(table[c]))]
    problems = [f"{wrong} float64 value(s) not bit for bit"] if wrong else []
    if changed:
        shown = ", ".join(f"{c} ({table[c].dtype} -> {back[c].dtype})" for c in changed[:3])
        problems.append(f"{len(changed)} of {len(others)} other column(s) read back otherwise: {shown}{', ...' if len(changed) > 3 else ''}")
    return not wrong, "exact" if not problems else "; ".join(problems)


def timed(step) -> tuple[float, object]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s [{min(values):.2f}-{max(values):.2f}]"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--features", type=int, default=24000, help="float64 feature columns (default 24,000)")
    parser.add_argument("--formats", default="csv,json,parquet")
    parser.add_argument("--case", default="TCGA_CS_4942_19970222", help="the LGG case whose real row is used")
    parser.add_argument("--no-before", action="store_true", help="skip the previous implementation (it takes minutes)")
    parser.add_argument("--keep", default=None, help="keep the written files in this folder")
    args = parser.parse_args(argv)
    from deepradiomics import io

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {load()}; Python {platform.python_version()}, "
          f"pandas {pd.__version__}, numpy {np.__version__}")
    seconds, table = timed(lambda: build_table(args.case, args.features))
    floats = [c for c, t in zip(table.columns, table.dtypes) if t == np.float64]
    print(f"table: {table.shape[0]} rows x {table.shape[1]} columns ({len(floats)} float64, {table.shape[1] - len(floats)} other: "
          f"{sum(c.startswith('diagnostics_') for c in table.columns)} diagnostics_*), built in {seconds:.1f} s; "
          f"{int(np.isnan(table[floats].to_numpy()).sum())} NaN, {int(np.isinf(table[floats].to_numpy()).sum())} inf")
    frames = {"consolidated": table, "fragmented": fragmented(table)}
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="table_io_"))
    folder.mkdir(parents=True, exist_ok=True)
    impls = {"after": (io.write_table, io.read_table)}
    if not args.no_before:
        impls["before"] = (old_write_table, old_read_table)
    times: dict[tuple, list[float]] = {}
    verdicts: dict[tuple, str] = {}
    block = table[floats].to_numpy()
    try:
        for repeat in range(args.repeats):
            order = list(impls) if repeat % 2 == 0 else list(impls)[::-1]
            for fmt in args.formats.split(","):
                for impl in order:
                    write, read = impls[impl]
                    path = folder / f"{impl}.{fmt}"
                    for layout, frame in frames.items():
                        seconds, _ = timed(lambda write=write, frame=frame, path=path: write(frame, path))
                        times.setdefault((fmt, f"write {layout}", impl), []).append(seconds)
                        print(f"  repeat {repeat + 1}: {fmt:7s} {impl:6s} write {layout:12s} {seconds:6.2f} s (load {load()})", flush=True)
                    seconds, back = timed(lambda read=read, path=path: read(path))
                    times.setdefault((fmt, "read", impl), []).append(seconds)
                    verdicts[(fmt, impl)] = check(table, back)
                    print(f"  repeat {repeat + 1}: {fmt:7s} {impl:6s} read                {seconds:6.2f} s (load {load()})", flush=True)
            npy = folder / "block.npy"
            seconds, _ = timed(lambda npy=npy: np.save(npy, block))
            times.setdefault(("numpy", "write", "np.save"), []).append(seconds)
            seconds, loaded = timed(lambda npy=npy: np.load(npy))
            times.setdefault(("numpy", "read", "np.load"), []).append(seconds)
        documented = None
        if "json" in args.formats.split(","):
            seconds, back = timed(lambda: pd.read_json(folder / "after.json", orient="table", precise_float=True))
            documented = (seconds, check(table, back))
        report(times, verdicts, documented, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"load average after: {load()}")
    # exit 1 unless every format kept IDs, order and every float64 bit, and JSON and Parquet every other column too
    after = {fmt: verdict for (fmt, impl), verdict in verdicts.items() if impl == "after"}
    return 0 if all(ok and (fmt == "csv" or text == "exact") for fmt, (ok, text) in after.items()) else 1


def report(times, verdicts, documented, args) -> None:
    save, load_np = statistics.median(times[("numpy", "write", "np.save")]), statistics.median(times[("numpy", "read", "np.load")])
    print(f"\nnumpy lower bound (float64 block only): np.save {spread(times[('numpy', 'write', 'np.save')])}, np.load {spread(times[('numpy', 'read', 'np.load')])}")
    print(f"{'format':8s} {'operation':20s} {'after':26s} {'before':26s} {'after/before':>12s} {'after/numpy':>12s}  target {TARGET_S:.0f} s")
    for fmt in args.formats.split(","):
        for op in ("write consolidated", "write fragmented", "read"):
            after = times[(fmt, op, "after")]
            before = times.get((fmt, op, "before"))
            bound = load_np if op == "read" else save
            ratio = f"{statistics.median(after) / statistics.median(before):12.3f}" if before else f"{'-':>12s}"
            met = "met" if statistics.median(after) < TARGET_S else "NOT MET"
            print(f"{fmt:8s} {op:20s} {spread(after):26s} {spread(before) if before else '-':26s} {ratio} {statistics.median(after) / bound:12.0f}  {met}")
    print("\nexactness (IDs, column order, float64 bit for bit, text columns):")
    for (fmt, impl), (_, verdict) in sorted(verdicts.items()):
        print(f"  {fmt:8s} {impl:6s} {verdict}")
    if documented:
        print(f"  json: pd.read_json(path, orient='table', precise_float=True): {documented[1][1]}, {documented[0]:.1f} s (once)")


if __name__ == "__main__":
    sys.exit(main())
