"""Batch work over a manifest: process pool or Dask cluster, per-case results, resume.

The package knows tasks, rows and files, never what computes them (imports point down only):

- :mod:`.manifest`: reading and checking a manifest, one row -> a :class:`~deepradiomics.case.Case`;
- :mod:`.cache`: the resume cache (rows as JSON, descriptors as ``.npz``, keyed and checksummed);
- :mod:`.pool`: where cases run (in process, worker processes, Dask) and what a worker's death costs;
- :mod:`.run`: :class:`BatchTask` and :func:`run_batch` / :func:`run_tasks`;
- :mod:`.assemble`: rows -> one table (deepradiomics' or PyRadiomics' layout).

The usual entry point is :meth:`deepradiomics.extractor.Extractor.execute_batch`, which builds the task.
"""

from .assemble import assemble, assemble_pyradiomics, failures
from .cache import ArrayCache, ResultCache, cache_file_name, digest
from .manifest import MODALITY_PREFIX, REQUIRED_COLUMNS, case_from_row, input_identity, parse_label, read_manifest
from .pool import WORKER_DIED, check_scheduler, error_message, error_row, map_cases
from .run import BatchRun, BatchTask, run_batch, run_tasks

__all__ = [
    "MODALITY_PREFIX",
    "REQUIRED_COLUMNS",
    "WORKER_DIED",
    "ArrayCache",
    "BatchRun",
    "BatchTask",
    "ResultCache",
    "assemble",
    "assemble_pyradiomics",
    "cache_file_name",
    "case_from_row",
    "check_scheduler",
    "digest",
    "error_message",
    "error_row",
    "failures",
    "input_identity",
    "map_cases",
    "parse_label",
    "read_manifest",
    "run_batch",
    "run_tasks",
]
