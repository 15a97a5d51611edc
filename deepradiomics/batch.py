"""Batch extraction over a manifest: process pool or Dask cluster, per-case results, resume.

A manifest is a CSV (or DataFrame) with columns ``ID``, ``Image``, ``Mask``, optional ``Label`` and
``Image_<name>`` for extra modalities; paths are relative to the manifest's folder; other columns pass
through to the output. A failed case becomes a row with ``diagnostics_Error`` and NaN features, and the
batch carries on.

Guarantees
----------
- **Resume without stale rows.** With ``out_dir``, each finished case is written to
  ``out_dir/cases/<ID>-<hash>.json`` as soon as it is done. A re-run reuses it only when its key matches:
  the params hash (which includes every model and fitted-artifact sha256), the versions of the code that
  computes the features (deepradiomics, PyRadiomics, each plugin's distribution), the label, the
  transforms, and the identity (resolved path, size, modification time) of every input file; and only
  when the stored row is intact (its checksum matches and its feature columns are exactly those of the
  params: :meth:`~deepradiomics.extractor.Extractor.columns_problem`). Anything else is recomputed, with
  one warning line for a damaged or incomplete file. Failed cases are retried on a re-run. Files are
  written under unique temporary names and renamed, so batches sharing an ``out_dir`` never see a
  partial file.
- **Faults cost one case.** At most ``jobs`` cases are in flight at a time. When a worker process dies
  (e.g. SIGKILL by the out-of-memory killer), the pool is rebuilt and the cases that were in flight are
  retried once, each alone (so a case that kills its worker cannot take an innocent neighbour down with
  it twice); a case whose worker dies again becomes an error row and the batch finishes. Dask tasks are
  retried once too (``allowed-failures``). Workers exit when the main process dies. Ctrl-C (or any
  exception in the main process) terminates the workers at once and keeps what was finished.
- **Order.** Cases run largest first (by the total size of their input files) so that the slowest cases
  do not finish last on one worker; the table keeps the manifest's order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .case import MAIN_IMAGE, Case
from .errors import CaseError, DeepRadiomicsError, ParamsError, did_you_mean
from .naming import ERROR_COLUMN, is_diagnostic, is_feature

logger = logging.getLogger("deepradiomics.batch")

REQUIRED_COLUMNS = ("ID", "Image", "Mask")
MODALITY_PREFIX = "Image_"
#: what a worker's death (SIGKILL, OOM) does: retry the cases in flight this many times, then error rows
WORKER_DEATH_RETRIES = 1
#: the error-row message of a case whose worker died on every try
WORKER_DIED = (
    "the worker process computing this case died twice (killed, e.g. by the out-of-memory killer): "
    "give the batch fewer --jobs or more memory, or check this case's input size"
)
#: seconds to wait for a remote Dask scheduler before giving up
DASK_CONNECT_TIMEOUT = 10
_DASK_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx)://[^\s/]+(:\d+)?/?$")


# ------------------------------------------------------------------------------------------------ manifest
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


def _resolve(value: Any, base: Path) -> Any:
    if not isinstance(value, str):
        return value
    path = Path(value)
    return str(path if path.is_absolute() else base / path)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def case_from_row(row: dict, base: Path, default_label: int = 1, transforms: Sequence = ()) -> Case:
    """Build the :class:`Case` of one manifest row (paths resolved against ``base``)."""
    case_id = str(row["ID"])
    for column in ("Image", "Mask"):
        if _is_blank(row.get(column)):
            raise CaseError(f"case '{case_id}': the manifest's '{column}' cell is blank: give the path of the {column.lower()} file")
    modalities = {MAIN_IMAGE: _resolve(row["Image"], base)}
    for column, value in row.items():
        if str(column).startswith(MODALITY_PREFIX) and not _is_blank(value):
            modalities[str(column)[len(MODALITY_PREFIX):]] = _resolve(value, base)
    label = row.get("Label", "")
    label = default_label if _is_blank(label) else parse_label(label, f"case '{case_id}': Label")
    return Case(modalities, _resolve(row["Mask"], base), label=label, case_id=case_id, transforms=tuple(transforms))


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


def _input_bytes(row: dict, base: Path) -> int:
    """Total size of a row's input files (the largest-first scheduling key); 0 for what is missing."""
    total = 0
    for column, value in row.items():
        if (column in ("Image", "Mask") or str(column).startswith(MODALITY_PREFIX)) and isinstance(value, str) and value.strip():
            path = Path(_resolve(value, base))
            try:
                total += sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
            except OSError:
                pass
    return total


# ------------------------------------------------------------------------------------------------ cache
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cache_file_name(case_id: str) -> str:
    """File name of a case in the cache: readable, and unique even when two IDs sanitise alike."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', case_id)[:80]}-{hashlib.sha256(case_id.encode()).hexdigest()[:10]}"


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file unique to this process and thread, then rename (safe for concurrent batches)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class ResultCache:
    """Per-case results under ``out_dir``: ``cases/`` (done) and ``failed/`` (retried on a re-run).

    ``row_problem(row)`` says what makes a stored row unusable (a missing or extra column), or None.
    """

    def __init__(self, out_dir: str | os.PathLike, key_base: dict, row_problem: Callable[[dict], str | None] | None = None) -> None:
        self.root = Path(out_dir)
        self.key_base = key_base
        self.row_problem = row_problem
        for kind in ("cases", "failed"):
            (self.root / kind).mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, case_id: str) -> Path:
        return self.root / kind / f"{cache_file_name(case_id)}.json"

    def key(self, case: Case) -> str:
        """What a result depends on: params and artifacts, label, transforms, input file identities."""
        return _digest({**self.key_base, "label": case.label, "transforms": [t.describe() for t in case.transforms], "inputs": input_identity(case)})

    def load(self, case_id: str, key: str) -> dict | None:
        path = self._path("cases", case_id)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(stored, dict) or not isinstance(stored.get("row"), dict):
                raise ValueError("not a cached row")
            row = stored["row"]
            if stored.get("checksum") != _digest(row):
                raise ValueError("checksum mismatch")
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            logger.warning("cached result %s of case '%s' is damaged (%s): computing the case again", path, case_id, exc)
            return None
        if stored.get("id") != case_id or stored.get("key") != key:
            return None  # other params, code, label, transforms or input files: stale, compute again
        problem = self.row_problem(row) if self.row_problem is not None else None
        if problem:
            logger.warning("cached result %s of case '%s' is incomplete (%s): computing the case again", path, case_id, problem)
            return None
        return row

    def store(self, case_id: str, key: str, row: dict) -> None:
        failed = ERROR_COLUMN in row
        payload = {"id": case_id, "key": key, "checksum": _digest(row), "row": row}
        _atomic_write(self._path("failed" if failed else "cases", case_id), json.dumps(payload, default=str).encode("utf-8"))
        if not failed:
            self._path("failed", case_id).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class VoxelOutput:
    """Where and how ``--mode voxel`` writes a case's feature maps (``maps_dir/<case>/<feature>.<fmt>``).

    ``grid="image"`` puts every map on the case's image grid (:func:`deepradiomics.voxel.on_image_grid`);
    ``"native"`` keeps PyRadiomics' own (the ROI's padded bounding box). ``jobs`` splits one case's
    PyRadiomics maps over worker processes (identical values).
    """

    maps_dir: str
    fmt: str = "nrrd"
    grid: str = "image"
    jobs: int = 1

    def __post_init__(self) -> None:
        from .voxel import MAP_FORMATS

        if self.fmt not in MAP_FORMATS:
            raise ParamsError(f"map format '{self.fmt}' is not one of {', '.join(MAP_FORMATS)}")
        if self.grid not in ("image", "native"):
            raise ParamsError(f"map grid '{self.grid}' is not 'image' or 'native'")

    def folder(self, case_id: str) -> Path:
        return Path(self.maps_dir) / cache_file_name(case_id)

    def write(self, extractor, case: Case, layout: str = "deepradiomics", folder: str | os.PathLike | None = None) -> dict:
        """Compute the case's maps, write them (to ``folder``, default :meth:`folder`), return its row:
        diagnostics and ``feature name -> file path``."""
        from .voxel import compute_maps, on_image_grid, write_maps

        maps = compute_maps(extractor, case, jobs=self.jobs, diagnostics=layout == "pyradiomics")
        if self.grid == "image":
            maps = on_image_grid(maps, case.image())
        row = dict(extractor.provenance() if layout == "deepradiomics" else {})
        if layout == "deepradiomics":
            row.update(case.diagnostics())
        table = write_maps(maps, folder if folder is not None else self.folder(case.case_id), fmt=self.fmt, case_id=case.case_id)
        row.update(table.iloc[0].to_dict())
        return row


def missing_map_files(row: Mapping[str, Any]) -> str | None:
    """A stored voxel-mode row whose map files are gone is not reused (None when every file exists)."""
    for key, value in row.items():
        if is_feature(key) and not (isinstance(value, str) and Path(value).is_file()):
            return f"map file of '{key}' is missing ({value})"
    return None


@dataclass
class RowTask:
    """One manifest row (what a worker runs): features, or maps with ``voxel``, of the case with its transforms.

    ``transforms`` is a sequence applied to every case, or a mapping ``{ID: sequence}`` per case; ``layout``
    is :data:`deepradiomics.extractor.LAYOUTS`' ``deepradiomics`` or ``pyradiomics``.
    """

    extractor: Any
    transforms: tuple | Mapping = ()
    layout: str = "deepradiomics"
    voxel: VoxelOutput | None = None

    def case(self, row: dict, base: Path) -> Case:
        transforms = self.transforms.get(row["ID"], ()) if isinstance(self.transforms, Mapping) else self.transforms
        return case_from_row(row, base, self.extractor.params.label, transforms)

    def compute(self, case: Case) -> dict:
        if self.voxel is not None:
            return self.voxel.write(self.extractor, case, self.layout)
        return self.extractor.compute(case, layout=self.layout)

    def __call__(self, row: dict, base: Path) -> dict:
        return compute_row(self, row, base)


def error_message(exc: BaseException) -> str:
    """``Type: message`` of an exception, with the place it came from when it is not a deepradiomics error."""
    if isinstance(exc, DeepRadiomicsError):
        return f"{type(exc).__name__}: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def compute_row(task: RowTask, row: dict, base: Path) -> dict:
    """Features of one manifest row; any failure becomes ``{diagnostics_Error: message}``."""
    try:
        return task.compute(task.case(row, base))
    except Exception as exc:  # a batch records every failure and carries on
        return {ERROR_COLUMN: error_message(exc)}


@dataclass
class DescribeTask:
    """Descriptors of one manifest row for a fitted class (``describe``), for ``fit``."""

    feature_class: Any
    label: int = 1

    def __call__(self, row: dict, base: Path) -> dict:
        return self.feature_class.describe(case_from_row(row, base, self.label))


# Each worker process builds its task once (pool initializer), then serves many cases.
_WORKER: dict[str, Any] = {}


def _exit_with_parent(parent: int) -> None:
    """Make this worker die with the main process (no orphans after a SIGKILL of the batch)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:  # portable fallback: the parent changed (re-parented to init)
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _init_worker(task, threads: int, parent: int) -> None:
    # Share the cores between workers instead of letting each library start one thread per core.
    import SimpleITK as sitk

    _exit_with_parent(parent)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when a deep class imports it
    _WORKER["task"] = task


def _work(row: dict, base: Path) -> tuple[str, Any]:
    return row["ID"], _WORKER["task"](row, base)


def _standalone(task, row: dict, base: Path) -> tuple[str, Any]:
    return row["ID"], task(row, base)


def map_cases(
    task: Callable[[dict, Path], Any],
    rows: Sequence[dict],
    base: Path,
    jobs: int = 1,
    scheduler: str = "processes",
    on_error: Callable[[dict, BaseException | str], Any] | None = None,
) -> Iterable[tuple[str, Any]]:
    """Run ``task(row, base)`` for every row; yield ``(ID, result)`` as they finish.

    ``scheduler``: ``"processes"`` (a pool of ``jobs`` workers; in the calling process when ``jobs == 1``),
    ``"dask"`` (a local Dask cluster of ``jobs`` workers) or a Dask scheduler address ``tcp://HOST:PORT``.
    Rows are submitted largest first. ``on_error(row, reason)`` turns a case whose worker died (twice) into a
    result; without it such a case raises.
    """
    check_scheduler(scheduler)
    if not rows:
        return
    rows = sorted(rows, key=lambda r: -_input_bytes(r, base))
    if scheduler == "processes" and jobs <= 1:
        for row in rows:
            yield row["ID"], task(row, base)
        return
    if scheduler == "processes":
        yield from _map_pool(task, rows, base, jobs, on_error)
        return
    yield from _map_dask(task, rows, base, jobs, scheduler, on_error)


def _map_pool(task, rows, base, jobs, on_error) -> Iterable[tuple[str, Any]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # fork is cheapest, but unsafe once torch has started its thread pools in this process.
    method = "fork" if "torch" not in sys.modules and sys.platform.startswith("linux") else "spawn"
    threads = max(1, (os.cpu_count() or 1) // jobs)
    pending = list(reversed(rows))  # pop() takes the largest first
    suspects: list[dict] = []  # cases that were in flight when a worker died: retried one at a time
    deaths: dict[str, int] = {}

    def new_pool():
        return ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(task, threads, os.getpid()),
        )

    pool = new_pool()
    in_flight: dict = {}
    finished = False
    try:
        while pending or suspects or in_flight:
            broken = False
            try:
                if suspects:
                    if not in_flight:  # a suspect runs alone: if it kills its worker again, it is the culprit
                        row = suspects.pop()
                        in_flight[pool.submit(_work, row, base)] = row
                else:
                    while pending and len(in_flight) < jobs:
                        row = pending.pop()
                        in_flight[pool.submit(_work, row, base)] = row
            except BrokenProcessPool:  # the pool broke between two submissions
                (suspects if row["ID"] in deaths else pending).append(row)
                broken = True
            if not broken:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    row = in_flight.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        broken = True
                        in_flight[future] = row  # handled below with the other cases in flight
            if broken:
                lost = list(in_flight.values())
                in_flight.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                for row in lost:
                    deaths[row["ID"]] = deaths.get(row["ID"], 0) + 1
                    if deaths[row["ID"]] > WORKER_DEATH_RETRIES:
                        reason = WORKER_DIED
                        if on_error is None:
                            raise DeepRadiomicsError(f"case '{row['ID']}': {reason}")
                        logger.warning("case '%s': %s: recorded as an error row", row["ID"], reason)
                        yield row["ID"], on_error(row, reason)
                    else:
                        logger.warning("a worker process died while computing case '%s': retrying it once, alone", row["ID"])
                        suspects.append(row)
                pool = new_pool()
        finished = True
    finally:
        if not finished:  # Ctrl-C, an error, or the consumer stopped: do not wait for the running cases
            _terminate_workers(pool)
        pool.shutdown(wait=False, cancel_futures=True)


def _terminate_workers(pool) -> None:
    """SIGTERM the worker processes of ``pool`` (its shutdown would wait for the cases they are computing)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            process.terminate()
        except (OSError, ValueError, AttributeError):
            pass  # already gone


def check_scheduler(scheduler: str) -> None:
    """ParamsError unless ``scheduler`` is 'processes', 'dask' (with dask.distributed installed) or a Dask address.

    Called before any work, so that a typo does not surface only after the cached cases were read.
    """
    if scheduler == "processes":
        return
    if scheduler != "dask" and not _DASK_ADDRESS.match(str(scheduler)):
        raise ParamsError(f"--scheduler '{scheduler}' is not 'processes', 'dask' or a Dask address such as tcp://HOST:8786")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise ParamsError(f"--scheduler '{scheduler}' needs dask.distributed: pip install 'dask[distributed]', or use --scheduler processes")


def _map_dask(task, rows, base, jobs, scheduler, on_error) -> Iterable[tuple[str, Any]]:
    check_scheduler(scheduler)
    import dask
    from dask.distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    # distributed sets its own loggers to INFO on import: keep its chatter at the level of ours (warnings by default)
    logging.getLogger("distributed").setLevel(max(logging.getLogger("deepradiomics").getEffectiveLevel(), logging.WARNING))
    # a task that was on a worker that died is retried once, then reported (KilledWorker)
    with dask.config.set({"distributed.scheduler.allowed-failures": WORKER_DEATH_RETRIES}):
        if scheduler == "dask":
            cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            cluster = None
            try:
                client = Client(scheduler, timeout=f"{DASK_CONNECT_TIMEOUT}s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ParamsError(
                    f"cannot reach the Dask scheduler at '{scheduler}' within {DASK_CONNECT_TIMEOUT} s ({type(exc).__name__}): "
                    "start it (dask scheduler) or fix --scheduler"
                ) from exc
        try:
            scattered = client.scatter(task, broadcast=True)
            futures = {client.submit(_standalone, scattered, row, base, pure=False): row for row in rows}
            for future in as_completed(futures):
                row = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # KilledWorker (a worker died twice on it), or a lost connection
                    if on_error is None:
                        raise
                    reason = WORKER_DIED if isinstance(exc, KilledWorker) else exc
                    logger.warning("case '%s': %s: recorded as an error row", row["ID"], reason if isinstance(reason, str) else error_message(exc))
                    yield row["ID"], on_error(row, reason)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def error_row(row: dict, reason: BaseException | str) -> dict:
    """The result of a case whose worker died (``map_cases``' on_error): ``{diagnostics_Error: message}``."""
    return {ERROR_COLUMN: reason if isinstance(reason, str) else error_message(reason)}


# ------------------------------------------------------------------------------------------------ batch
@dataclass
class BatchRun:
    """What :func:`run_batch` did (for summaries and benchmarks)."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    #: ``(ID, message)`` of the cases that failed (also in the table's diagnostics_Error, but for the pyradiomics layout)
    failed: list[tuple[str, str]] = field(default_factory=list)


def run_batch(
    extractor,
    manifest,
    jobs: int = 1,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    base_dir: str | os.PathLike | None = None,
    scheduler: str = "processes",
    transforms: Sequence | Mapping = (),
    run: BatchRun | None = None,
    layout: str = "deepradiomics",
    voxel: VoxelOutput | None = None,
):
    """Extract every case of ``manifest`` with ``extractor``; return a DataFrame indexed by ID.

    Parameters
    ----------
    extractor
        An :class:`~deepradiomics.extractor.Extractor` (its fitted classes fitted or pointing to artifacts).
    manifest
        CSV path or DataFrame with ``ID``, ``Image``, ``Mask``, optional ``Label``, ``Image_<name>``.
    jobs
        Worker processes (or Dask workers for ``scheduler="dask"``).
    out_dir
        Folder for per-case results; a re-run reuses what is still valid (see the module docstring).
    progress
        Show a progress bar on stderr.
    scheduler
        ``"processes"`` (default), ``"dask"`` (a local Dask cluster) or a Dask scheduler address.
    transforms
        Case transforms applied to every case (e.g. :mod:`deepradiomics.perturb` perturbations), or a
        mapping ``{ID: transforms}`` per case.
    run
        A :class:`BatchRun` to fill with the IDs computed and reused.
    layout
        ``"deepradiomics"`` (default): manifest columns, diagnostics, features, indexed by ID.
        ``"pyradiomics"``: the table PyRadiomics' command line writes (the manifest's columns with
        absolute Image and Mask paths, then PyRadiomics' keys in its order, plus plugin features; no
        index, no deepradiomics diagnostics; a failed case keeps only its manifest columns).
    voxel
        A :class:`VoxelOutput`: compute feature maps instead of features, write them per case, and return
        the table of their paths (``--mode voxel``).
    """
    from tqdm.auto import tqdm

    check_scheduler(scheduler)
    frame, base = read_manifest(manifest, base_dir)
    extractor.check_fitted()  # a missing fit fails the whole batch at once, not every case
    records = frame.to_dict(orient="records")
    from .extractor import LAYOUTS

    if layout not in LAYOUTS:
        raise ParamsError(f"layout '{layout}' is not one of {', '.join(LAYOUTS)}")
    task = RowTask(extractor, transforms if isinstance(transforms, Mapping) else tuple(transforms), layout, voxel)
    cache = None
    keys: dict[str, str] = {}
    if out_dir is not None:
        key_base = {"params": extractor.params_hash, "code": extractor.code_versions(), "layout": layout}
        if voxel is not None:
            key_base["voxel"] = {"maps_dir": str(Path(voxel.maps_dir).resolve()), "fmt": voxel.fmt, "grid": voxel.grid}
        cache = ResultCache(out_dir, key_base, missing_map_files if voxel is not None else (extractor.columns_problem if layout == "deepradiomics" else None))
    results: dict[str, dict] = {}
    todo = []
    for record in records:
        cached = None
        if cache is not None:
            try:
                keys[record["ID"]] = cache.key(task.case(record, base))
                cached = cache.load(record["ID"], keys[record["ID"]])
            except DeepRadiomicsError:
                cached = None  # a bad row (blank path, bad label): computing it records the error
        if cached is not None:
            results[record["ID"]] = cached
        else:
            todo.append(record)
    run = run if run is not None else BatchRun()
    run.reused = [r["ID"] for r in records if r["ID"] in results]
    with tqdm(total=len(records), initial=len(results), desc="cases", unit="case", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        # closed whatever ends the loop (Ctrl-C while a row is stored, an error): its workers stop at once
        # instead of keeping the interpreter's exit waiting for the cases they compute
        with closing(map_cases(task, todo, base, jobs, scheduler, on_error=error_row)) as finished:
            for case_id, row in finished:
                results[case_id] = row
                run.computed.append(case_id)
                if cache is not None and case_id in keys:
                    cache.store(case_id, keys[case_id], row)
                bar.update(1)
    run.failed = [(r["ID"], results[r["ID"]][ERROR_COLUMN]) for r in records if ERROR_COLUMN in results.get(r["ID"], {})]
    if layout == "pyradiomics":
        return assemble_pyradiomics(frame, results, base)
    return assemble(frame, results, numeric=voxel is None)


def assemble_pyradiomics(frame, results: dict[str, dict], base: Path):
    """PyRadiomics' command-line table: the manifest's columns (Image and Mask as absolute paths) then the
    result keys, first case's order first and later keys sorted after (as its CLI does); no index.
    A failed case keeps only its manifest columns, as in PyRadiomics' output (the error goes to the log)."""
    import pandas as pd

    rows, first, extra = [], None, set()
    for record in frame.to_dict(orient="records"):
        row = dict(record)
        for column in ("Image", "Mask"):
            row[column] = str(Path(_resolve(record[column], base)).absolute())
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


# ------------------------------------------------------------------------------------------------ fit
def describe_cases(
    feature_class,
    manifest,
    jobs: int = 1,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    label: int = 1,
    base_dir: str | os.PathLike | None = None,
    scheduler: str = "processes",
) -> dict[str, dict]:
    """``{ID: descriptors}`` of a fitted class for every case of ``manifest`` (parallel, cached).

    A failing case stops the fit with its message (a cohort-level encoder silently fitted on fewer cases
    than the user listed would be a hidden change of the study). With ``cache_dir`` the descriptors of
    each case are kept as ``.npz`` (keyed like the batch cache) and reused by later fits, e.g. the
    fold-wise refits of a study.
    """
    import dataclasses

    import numpy as np
    from tqdm.auto import tqdm

    frame, base = read_manifest(manifest, base_dir)
    records = frame.to_dict(orient="records")
    task = DescribeTask(feature_class, label)
    settings = {k: v for k, v in dataclasses.asdict(feature_class.settings).items() if k != feature_class.fitted_setting}
    artifacts = {k: v for k, v in feature_class.artifacts().items() if k != "Fitted"}
    key_base = {"class": feature_class.name, "settings": settings, "artifacts": artifacts}
    folder = Path(cache_dir) / "descriptors" / feature_class.name if cache_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, dict] = {}
    keys: dict[str, str] = {}
    todo = []
    for record in records:
        case = case_from_row(record, base, label)
        if folder is not None:
            keys[record["ID"]] = _digest({**key_base, "label": case.label, "inputs": input_identity(case)})
            cached = _load_descriptors(folder / f"{cache_file_name(record['ID'])}.npz", keys[record["ID"]])
            if cached is not None:
                out[record["ID"]] = cached
                continue
        todo.append(record)
    failed: list[str] = []
    with tqdm(total=len(records), initial=len(out), desc=f"describe {feature_class.name}", unit="case", file=sys.stderr, disable=not progress) as bar:
        with closing(map_cases(Guarded(task), todo, base, jobs, scheduler, on_error=error_row)) as finished:
            for case_id, result in finished:
                if isinstance(result, dict) and ERROR_COLUMN in result:
                    failed.append(f"{case_id}: {result[ERROR_COLUMN]}")
                    continue
                out[case_id] = result
                if folder is not None:
                    buffer = _npz_bytes({**result, "__key__": np.array(keys[case_id])})
                    _atomic_write(folder / f"{cache_file_name(case_id)}.npz", buffer)
                bar.update(1)
    if failed:
        raise DeepRadiomicsError(
            f"fitting '{feature_class.name}' needs every case of the manifest, but {len(failed)} failed; first: {failed[0]}. "
            "Fix or remove those cases and fit again"
        )
    return {r["ID"]: out[r["ID"]] for r in records}


@dataclass
class Guarded:
    """A task whose exceptions become ``{diagnostics_Error: message}`` (so that one case does not end the pool)."""

    task: Any

    def __call__(self, row: dict, base: Path):
        try:
            return self.task(row, base)
        except Exception as exc:
            return {ERROR_COLUMN: error_message(exc)}


def _npz_bytes(arrays: dict) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _load_descriptors(path: Path, key: str) -> dict | None:
    import numpy as np

    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["__key__"]) != key:
                return None
            return {k: data[k] for k in data.files if k != "__key__"}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("cached descriptors %s are damaged (%s): computing them again", path, exc)
        return None
