"""Batch extraction over a manifest: process pool or Dask cluster, per-case results, resume.

A manifest is a CSV (or DataFrame) with columns ``ID``, ``Image``, ``Mask``, optional ``Label`` and
``Image_<name>`` for extra modalities; paths are relative to the manifest's folder; other columns pass
through to the output. A failed case becomes a row with ``diagnostics_Error`` and NaN features, and the
batch carries on. With ``out_dir``, each finished case is written to ``out_dir/cases/<ID>.json`` as soon
as it is done, and a re-run with the same params skips it (failed cases are retried).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .case import MAIN_IMAGE, Case
from .errors import CaseError, DeepRadiomicsError, ParamsError, did_you_mean
from .naming import ERROR_COLUMN, is_diagnostic, is_feature

REQUIRED_COLUMNS = ("ID", "Image", "Mask")
MODALITY_PREFIX = "Image_"


def read_manifest(manifest, base_dir: str | os.PathLike | None = None):
    """Read and check a manifest; return ``(DataFrame, base_dir)`` with paths still as written.

    Raises
    ------
    ParamsError
        When the file is missing, a required column is absent (with a did-you-mean), or IDs repeat.
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
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        base = Path(base_dir) if base_dir is not None else path.resolve().parent
    if "ID" not in frame.columns and frame.index.name == "ID":
        frame = frame.reset_index()
    for column in REQUIRED_COLUMNS:
        if column not in frame.columns:
            raise ParamsError(
                f"{where} has no '{column}' column.{did_you_mean(column, map(str, frame.columns))} "
                f"Required: {', '.join(REQUIRED_COLUMNS)}; found: {', '.join(map(str, frame.columns))}"
            )
    frame["ID"] = frame["ID"].astype(str)
    duplicated = frame["ID"][frame["ID"].duplicated()].unique()
    if len(duplicated):
        raise ParamsError(f"{where}: IDs must be unique; repeated: {', '.join(duplicated[:5])}")
    return frame, base


def _resolve(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value
    path = Path(value)
    return str(path if path.is_absolute() else base / path)


def case_from_row(row: dict, base: Path, default_label: int = 1) -> Case:
    """Build the :class:`Case` of one manifest row (paths resolved against ``base``)."""
    modalities = {MAIN_IMAGE: _resolve(row["Image"], base)}
    for column, value in row.items():
        if str(column).startswith(MODALITY_PREFIX) and value not in ("", None):
            modalities[str(column)[len(MODALITY_PREFIX):]] = _resolve(value, base)
    label = row.get("Label", "")
    if label in ("", None) or (isinstance(label, float) and label != label):
        label = default_label
    try:
        label = int(float(label))
    except (TypeError, ValueError):
        raise CaseError(f"case '{row['ID']}': Label {label!r} in the manifest is not an integer") from None
    return Case(modalities, _resolve(row["Mask"], base), label=label, case_id=str(row["ID"]))


def _safe_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id)


class ResultCache:
    """Per-case results under ``out_dir``: ``cases/<ID>.json`` (done) and ``failed/<ID>.json``."""

    def __init__(self, out_dir: str | os.PathLike, params_hash: str) -> None:
        self.root = Path(out_dir)
        self.params_hash = params_hash
        (self.root / "cases").mkdir(parents=True, exist_ok=True)
        (self.root / "failed").mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, case_id: str) -> Path:
        return self.root / kind / f"{_safe_name(case_id)}.json"

    def load(self, case_id: str) -> dict | None:
        path = self._path("cases", case_id)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a half-written file from an interrupted run: compute again
        if stored.get("params_hash") != self.params_hash or stored.get("id") != case_id:
            return None
        return stored["row"]

    def store(self, case_id: str, row: dict) -> None:
        failed = ERROR_COLUMN in row
        path = self._path("failed" if failed else "cases", case_id)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"id": case_id, "params_hash": self.params_hash, "row": row}, default=str))
        temporary.replace(path)  # atomic: an interrupted write never leaves a truncated result
        if not failed:
            self._path("failed", case_id).unlink(missing_ok=True)


def compute_row(extractor, row: dict, base: Path) -> dict:
    """Features of one manifest row; any failure becomes ``{diagnostics_Error: message}``."""
    try:
        case = case_from_row(row, base, extractor.params.label)
        return extractor.compute(case)
    except DeepRadiomicsError as exc:
        return {ERROR_COLUMN: f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # a batch records every failure and carries on
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        return {ERROR_COLUMN: f"{type(exc).__name__}: {exc}{where}"}


# Each worker process builds its extractor once (pool initializer), then serves many cases.
_WORKER: dict[str, Any] = {}


def _init_worker(extractor, threads: int) -> None:
    # Share the cores between workers instead of letting each library start one thread per core.
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when a deep class imports it
    _WORKER["extractor"] = extractor


def _work(row: dict, base: Path) -> tuple[str, dict]:
    return row["ID"], compute_row(_WORKER["extractor"], row, base)


def _standalone(extractor, row: dict, base: Path) -> tuple[str, dict]:
    return row["ID"], compute_row(extractor, row, base)


def _iterate(extractor, rows: list[dict], base: Path, jobs: int, scheduler: str) -> Iterable[tuple[str, dict]]:
    if not rows:
        return
    if scheduler == "processes" and jobs <= 1:
        for row in rows:
            yield row["ID"], compute_row(extractor, row, base)
        return
    if scheduler == "processes":
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # fork is cheapest, but unsafe once torch has started its thread pools in this process.
        method = "fork" if "torch" not in sys.modules and sys.platform.startswith("linux") else "spawn"
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(extractor, threads),
        ) as pool:
            futures = [pool.submit(_work, row, base) for row in rows]
            for future in as_completed(futures):
                yield future.result()
        return
    # Dask: "dask" starts a local cluster with `jobs` workers; "tcp://host:port" joins a running one.
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ParamsError("the Dask scheduler needs dask.distributed: pip install 'dask[distributed]'") from exc
    if scheduler == "dask":
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        cluster, client = None, Client(scheduler)
    try:
        scattered = client.scatter(extractor, broadcast=True)
        futures = [client.submit(_standalone, scattered, row, base, pure=False) for row in rows]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(
    extractor,
    manifest,
    jobs: int = 1,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    base_dir: str | os.PathLike | None = None,
    scheduler: str = "processes",
):
    """Extract every case of ``manifest`` with ``extractor``; return a DataFrame indexed by ID.

    Parameters
    ----------
    extractor
        An :class:`~deepradiomics.extractor.Extractor` (fitted, if its classes need fitting).
    manifest
        CSV path or DataFrame with ``ID``, ``Image``, ``Mask``, optional ``Label``, ``Image_<name>``.
    jobs
        Worker processes (or Dask workers for ``scheduler="dask"``).
    out_dir
        Folder for per-case results; finished cases are skipped on a re-run with the same params.
    progress
        Show a progress bar on stderr.
    scheduler
        ``"processes"`` (default), ``"dask"`` (a local Dask cluster) or a Dask scheduler address.
    """
    from tqdm.auto import tqdm

    frame, base = read_manifest(manifest, base_dir)
    records = frame.to_dict(orient="records")
    cache = ResultCache(out_dir, extractor.params.hash) if out_dir is not None else None
    results: dict[str, dict] = {}
    todo = []
    for record in records:
        cached = cache.load(record["ID"]) if cache else None
        if cached is not None:
            results[record["ID"]] = cached
        else:
            todo.append(record)
    with tqdm(total=len(records), initial=len(results), desc="cases", unit="case", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        for case_id, row in _iterate(extractor, todo, base, jobs, scheduler):
            results[case_id] = row
            if cache:
                cache.store(case_id, row)
            bar.update(1)
    return assemble(frame, results)


def assemble(frame, results: dict[str, dict]):
    """One table: manifest columns, then diagnostics, then features (first-seen order), indexed by ID."""
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
    if features:
        table[list(features)] = table[list(features)].astype(np.float64)
    return table


def failures(table) -> list[tuple[str, str]]:
    """``(ID, message)`` of the failed rows of a batch table."""
    if ERROR_COLUMN not in table.columns:
        return []
    failed = table[table[ERROR_COLUMN].astype(str).str.len() > 0]
    return list(zip(failed.index, failed[ERROR_COLUMN]))
