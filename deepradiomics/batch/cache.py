"""The resume cache of a batch: one file per finished case, reused only when everything it depends on matches.

Two kinds of results are kept, as their tasks declare (:attr:`~deepradiomics.batch.run.BatchTask.result_kind`):

- ``"row"`` (features, map paths): ``<root>/cases/<case>.json`` holding ``{id, key, checksum, row}``;
  a failed case goes to ``<root>/failed/`` and is computed again by the next run;
- ``"arrays"`` (per-case descriptors of a fitted class): ``<root>/<case>.npz`` with the key stored as the
  array ``__key__`` (read with ``allow_pickle=False``).

A stored result is reused only when its key (what the task says the result depends on: params hash, code
versions, label, transforms, input files' identity, ...) matches and the file is intact (JSON checksum;
a readable ``.npz``); a task may also refuse a stored row (``row_problem``). Files are written under a
temporary name unique to the process and thread, then renamed, so batches sharing a folder never read a
partial file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..naming import ERROR_COLUMN

logger = logging.getLogger("deepradiomics.batch")


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def cache_file_name(case_id: str) -> str:
    """File name of a case in the cache: readable, and unique even when two IDs sanitise alike."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', case_id)[:80]}-{hashlib.sha256(case_id.encode()).hexdigest()[:10]}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file unique to this process and thread, then rename (safe for concurrent batches)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class ResultCache:
    """Per-case rows under ``out_dir``: ``cases/`` (done) and ``failed/`` (retried on a re-run).

    ``row_problem(row)`` says what makes a stored row unusable (a missing or extra column), or None.
    """

    def __init__(self, out_dir: str | os.PathLike, row_problem: Callable[[dict], str | None] | None = None) -> None:
        self.root = Path(out_dir)
        self.row_problem = row_problem
        for kind in ("cases", "failed"):
            (self.root / kind).mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, case_id: str) -> Path:
        return self.root / kind / f"{cache_file_name(case_id)}.json"

    def load(self, case_id: str, key: str) -> dict | None:
        """The stored row of ``case_id`` when it was computed under ``key`` and is intact, else None."""
        path = self._path("cases", case_id)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(stored, dict) or not isinstance(stored.get("row"), dict):
                raise ValueError("not a cached row")
            row = stored["row"]
            if stored.get("checksum") != digest(row):
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
        """Keep ``row`` (a failed one under ``failed/``, so that the next run computes it again)."""
        failed = ERROR_COLUMN in row
        payload = {"id": case_id, "key": key, "checksum": digest(row), "row": row}
        atomic_write(self._path("failed" if failed else "cases", case_id), json.dumps(payload, default=str).encode("utf-8"))
        if not failed:
            self._path("failed", case_id).unlink(missing_ok=True)


class ArrayCache:
    """Per-case dicts of arrays (descriptors) as ``<root>/<case>.npz``, the key stored beside the arrays."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, case_id: str) -> Path:
        return self.root / f"{cache_file_name(case_id)}.npz"

    def load(self, case_id: str, key: str) -> dict | None:
        """The stored arrays of ``case_id`` when they were computed under ``key``, else None (a damaged file: one warning)."""
        import numpy as np

        path = self._path(case_id)
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

    def store(self, case_id: str, key: str, arrays: dict) -> None:
        """Keep ``arrays`` (an error result is not stored: the next run computes the case again)."""
        import numpy as np

        if ERROR_COLUMN in arrays:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, __key__=np.array(key))
        atomic_write(self._path(case_id), buffer.getvalue())
