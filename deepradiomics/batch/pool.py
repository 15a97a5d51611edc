"""Where cases run: in this process, a pool of worker processes, or a Dask cluster.

:func:`map_cases` runs ``task(row, base)`` for every manifest row and yields ``(ID, result)`` as cases
finish, largest cases first. Guarantees:

- **Faults cost one case.** At most ``jobs`` cases are in flight at a time. When a worker process dies
  (e.g. SIGKILL by the out-of-memory killer), the pool is rebuilt and the cases that were in flight are
  retried once, each alone (so a case that kills its worker cannot take an innocent neighbour down with
  it twice); a case whose worker dies again becomes an error row and the batch finishes. Dask tasks are
  retried once too (``allowed-failures``). Workers exit when the main process dies. Ctrl-C (or any
  exception in the main process, or the consumer closing the iterator) terminates the workers at once.
- **One task per worker.** A pool worker receives the task once (its initializer) and serves many cases
  with it, so what the task loads lazily (a network) is loaded once per worker, not per case.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DeepRadiomicsError, ParamsError
from ..naming import ERROR_COLUMN
from .manifest import input_bytes

logger = logging.getLogger("deepradiomics.batch")

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


def error_message(exc: BaseException) -> str:
    """``Type: message`` of an exception, with the place it came from when it is not a deepradiomics error."""
    if isinstance(exc, DeepRadiomicsError):
        return f"{type(exc).__name__}: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"



_WORKER: dict[str, Any] = {}


@dataclass(frozen=True)
class LogSetup:
    """The main process's log set-up (format and levels), installed in each worker so that a worker's warnings
    read like the parent's (``WARNING deepradiomics.batch: ...``), whether it was forked, spawned or is a Dask worker.

    Captured from the handler :func:`deepradiomics.cli.common.setup_logging` installs (marked
    ``_deepradiomics``); with no such handler (library use) nothing is installed in the workers either.
    """

    fmt: str | None = None
    levels: tuple[tuple[str, int], ...] = ()

    @classmethod
    def capture(cls) -> LogSetup:
        """The current process's set-up."""
        handler = next((h for h in logging.getLogger().handlers if getattr(h, "_deepradiomics", False)), None)
        if handler is None or handler.formatter is None:
            return cls()
        # only our loggers and PyRadiomics': a worker's other logging (a Dask worker's own) is left as it is
        names = ("deepradiomics", "radiomics")
        return cls(handler.formatter._fmt, tuple((name, logging.getLogger(name).level) for name in names))

    def apply(self) -> None:
        """Install the set-up in this process (idempotent; a forked worker already has the handler)."""
        if self.fmt is None:
            return
        root = logging.getLogger()
        if not any(getattr(h, "_deepradiomics", False) for h in root.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler._deepradiomics = True  # type: ignore[attr-defined]
            handler.setFormatter(logging.Formatter(self.fmt))
            root.addHandler(handler)
        for name, level in self.levels:
            logging.getLogger(name).setLevel(level)
        if "radiomics" in sys.modules:  # PyRadiomics adds its own stderr handler at import: route it through ours
            radiomics_logger = logging.getLogger("radiomics")
            for h in list(radiomics_logger.handlers):
                radiomics_logger.removeHandler(h)
            radiomics_logger.propagate = True


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


def _init_worker(task, threads: int, parent: int, log_setup: LogSetup | None = None) -> None:
    # Share the cores between workers instead of letting each library start one thread per core.
    import SimpleITK as sitk

    _exit_with_parent(parent)
    if log_setup is not None:
        log_setup.apply()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when a deep class imports it
    _WORKER["task"] = task


def _work(row: dict, base: Path) -> tuple[str, Any]:
    return row["ID"], _WORKER["task"](row, base)


def _standalone(task, row: dict, base: Path, log_setup: LogSetup | None = None) -> tuple[str, Any]:
    if log_setup is not None:
        log_setup.apply()  # a Dask worker: once per process in effect (idempotent)
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
    rows = sorted(rows, key=lambda r: -input_bytes(r, base))
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
            initargs=(task, threads, os.getpid(), LogSetup.capture()),
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
            log_setup = LogSetup.capture()
            futures = {client.submit(_standalone, scattered, row, base, log_setup, pure=False): row for row in rows}
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
