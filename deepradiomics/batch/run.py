"""``run_batch(task, manifest)``: a task on every case of a manifest, resumable, one table.

A :class:`BatchTask` says what to do with one case (``compute``), what its result depends on
(``cache_key``) and when a stored result is unusable (``row_problem``). The batch engine knows tasks, rows
and files, never what computes them: :meth:`deepradiomics.extractor.Extractor.batch_task` builds the task
of a feature extraction (features or voxel maps), ``describe_task`` the per-case descriptors of a fitted
class; robustness sweeps, fold-wise studies and cohort explanations run the same way.

Guarantees
----------
- **Resume without stale results.** With ``out_dir``, each finished case is stored as soon as it is done
  (:mod:`.cache`). A re-run reuses it only when its key matches (for extraction: the params hash, which
  includes every model and fitted-artifact sha256, the versions of the code that computes the features,
  the layout, the label, the transforms and the identity of every input file) and when the stored row is
  intact and complete (``row_problem``). Anything else is recomputed, with one warning for a damaged
  file. Failed cases are retried on a re-run.
- **Faults cost one case** (:mod:`.pool`): a failing case becomes a row with ``diagnostics_Error`` and the
  batch carries on; a worker that dies costs its case one retry, alone.
- **Order.** Cases run largest first (by the total size of their input files) so that the slowest cases
  do not finish last on one worker; the table keeps the manifest's order.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..case import Case
from ..classical import diagnostic_value
from ..errors import DeepRadiomicsError, ParamsError
from ..naming import ERROR_COLUMN, LAYOUTS, is_diagnostic, is_feature
from .assemble import assemble, assemble_pyradiomics
from .cache import ArrayCache, ResultCache, digest
from .manifest import case_from_row, input_identity, read_manifest
from .pool import check_scheduler, error_message, error_row, map_cases


@dataclass(kw_only=True)
class BatchTask:
    """What :func:`run_batch` runs on every manifest row; subclasses implement :meth:`compute` and :meth:`namespace`.

    A task is pickled to every worker once, so it must pickle and should load heavy state (a network)
    lazily. ``label`` is the label value of cases whose row has no ``Label``; ``transforms`` is a sequence
    of case transforms (e.g. :mod:`deepradiomics.perturb` perturbations) applied to every case, or a
    mapping ``{ID: sequence}``.
    """

    label: int = 1
    transforms: tuple | Mapping = ()
    #: where the task's settings come from (a params file), recorded in its cache entry for ``deepradiomics cache list``
    source: str = ""

    #: ``"row"``: ``compute`` returns ``{column: value}`` (stored as JSON, assembled into a table);
    #: ``"arrays"``: ``{name: numpy array}`` (stored as ``.npz``); ``"any"``: anything (not stored)
    result_kind: ClassVar[str] = "row"

    @property
    def layout(self) -> str:
        """The table layout of the rows (:data:`deepradiomics.naming.LAYOUTS`)."""
        return "deepradiomics"

    @property
    def numeric(self) -> bool:
        """Whether feature columns are float64 (False: e.g. the paths of voxel maps)."""
        return True

    def check(self) -> None:
        """Refuse, before any case runs, what does not depend on a case (called once by :func:`run_tasks`)."""

    def case(self, row: dict, base: Path) -> Case:
        """The :class:`~deepradiomics.case.Case` of a manifest row, with its transforms."""
        transforms = self.transforms.get(row["ID"], ()) if isinstance(self.transforms, Mapping) else self.transforms
        return case_from_row(row, base, self.label, transforms)

    def compute(self, case: Case) -> Any:
        """The result of one case (a row, arrays, or anything for ``result_kind = "any"``)."""
        raise NotImplementedError

    def namespace(self) -> dict:
        """What every result of this task depends on beyond the case itself (params hash, code versions, ...)."""
        return {}

    def cache_key(self, case: Case) -> str:
        """The key a stored result must carry to be reused: :meth:`namespace`, label, transforms, input files."""
        return digest(
            {
                **self.namespace(),
                "label": case.label,
                "transforms": [t.describe() for t in case.transforms],
                "inputs": input_identity(case),
            }
        )

    def row_problem(self, row: dict) -> str | None:
        """What makes a stored row unusable (an incomplete row, a missing side file), or None."""
        return None

    def side_files(self, row: dict) -> list[str]:
        """The files a row points to: their sha256 is stored with the row and checked before it is reused.

        By default the feature cells of a task whose features are not numbers (:attr:`numeric`: voxel mode,
        where each is the path of a map file).
        """
        if self.numeric:
            return []
        return [value for key, value in row.items() if is_feature(key) and not is_diagnostic(key) and isinstance(value, str)]

    def __call__(self, row: dict, base: Path) -> Any:
        """The result of one manifest row; any failure becomes ``{diagnostics_Error: message}``.

        A row's values are plain (Python scalars; containers as text, :func:`~deepradiomics.classical.diagnostic_value`),
        so that a stored row reads back as it was computed and no text cell shows a numpy repr.
        """
        try:
            result = self.compute(self.case(row, base))
        except Exception as exc:  # a batch records every failure and carries on
            return {ERROR_COLUMN: error_message(exc)}
        if self.result_kind == "row" and isinstance(result, Mapping):
            return {key: diagnostic_value(value) for key, value in result.items()}
        return result


@dataclass
class BatchRun:
    """What :func:`run_batch` did (for summaries and benchmarks)."""

    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    #: ``(ID, message)`` of the cases that failed (also in the table's diagnostics_Error, but for the pyradiomics layout)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _cache(task: BatchTask, out_dir, source: str | None = None):
    """The cache of ``task``'s results under ``out_dir``: the entry of its namespace (other params keep theirs)."""
    if out_dir is None or task.result_kind == "any":
        return None
    source = source or task.source
    if task.result_kind == "arrays":
        return ArrayCache(out_dir, namespace=task.namespace(), source=source)
    return ResultCache(out_dir, task.row_problem, namespace=task.namespace(), side_files=task.side_files, source=source)


def run_tasks(
    task: BatchTask,
    manifest,
    *,
    jobs: int = 1,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
    base_dir: str | os.PathLike | None = None,
    scheduler: str = "processes",
    run: BatchRun | None = None,
    desc: str = "cases",
    source: str | None = None,
) -> tuple[Any, Path, dict[str, Any]]:
    """Run ``task`` on every case of ``manifest``; return ``(manifest frame, base folder, {ID: result})``.

    Parameters
    ----------
    task
        A :class:`BatchTask`.
    manifest
        CSV path or DataFrame with ``ID``, ``Image``, ``Mask``, optional ``Label``, ``Image_<name>``.
    jobs
        Worker processes (or Dask workers for ``scheduler="dask"``); 1 runs in this process.
    out_dir
        Folder of stored results; a re-run reuses what is still valid (see the module docstring).
    progress
        Show a progress bar on stderr (labelled ``desc``).
    base_dir
        Folder the manifest's relative paths are relative to (default: the manifest's folder).
    scheduler
        ``"processes"`` (default), ``"dask"`` (a local Dask cluster) or a Dask scheduler address.
    run
        A :class:`BatchRun` to fill with the IDs computed, reused and failed.
    desc
        Label of the progress bar.
    source
        Where the task's settings come from (a params file), recorded in its cache entry (default ``task.source``).
    """
    from tqdm.auto import tqdm

    check_scheduler(scheduler)
    frame, base = read_manifest(manifest, base_dir)
    task.check()  # what does not depend on a case fails the whole batch at once, not every case
    records = frame.to_dict(orient="records")
    cache = _cache(task, out_dir, source)
    results: dict[str, Any] = {}
    keys: dict[str, str] = {}
    todo = []
    for record in records:
        cached = None
        if cache is not None:
            try:
                keys[record["ID"]] = task.cache_key(task.case(record, base))
                cached = cache.load(record["ID"], keys[record["ID"]])
            except DeepRadiomicsError:
                cached = None  # a bad row (blank path, bad label): computing it records the error
        if cached is not None:
            results[record["ID"]] = cached
        else:
            todo.append(record)
    run = run if run is not None else BatchRun()
    run.reused = [r["ID"] for r in records if r["ID"] in results]
    with tqdm(total=len(records), initial=len(results), desc=desc, unit="case", file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        # closed whatever ends the loop (Ctrl-C while a result is stored, an error): its workers stop at once
        # instead of keeping the interpreter's exit waiting for the cases they compute
        with closing(map_cases(task, todo, base, jobs, scheduler, on_error=error_row)) as finished:
            for case_id, result in finished:
                results[case_id] = result
                run.computed.append(case_id)
                if cache is not None and case_id in keys:
                    cache.store(case_id, keys[case_id], result)
                bar.update(1)
    run.failed = [
        (r["ID"], results[r["ID"]][ERROR_COLUMN])
        for r in records
        if isinstance(results.get(r["ID"]), dict) and ERROR_COLUMN in results[r["ID"]]
    ]
    return frame, base, results


def run_batch(task: BatchTask, manifest, **options):
    """Run ``task`` on every case of ``manifest`` and return the table of its rows.

    ``options`` are those of :func:`run_tasks`. The table follows ``task.layout``: ``"deepradiomics"``
    (manifest columns, diagnostics, features as float64, indexed by ID; a failed case is a row with
    ``diagnostics_Error`` and NaN features) or ``"pyradiomics"`` (the table PyRadiomics' command line
    writes: the manifest's columns with absolute Image and Mask paths, then PyRadiomics' keys in its
    order, plus plugin features; no index; a failed case keeps only its manifest columns).
    """
    if task.layout not in LAYOUTS:
        raise ParamsError(f"layout '{task.layout}' is not one of {', '.join(LAYOUTS)}")
    frame, base, results = run_tasks(task, manifest, **options)
    if task.layout == "pyradiomics":
        return assemble_pyradiomics(frame, results, base)
    return assemble(frame, results, numeric=task.numeric)
