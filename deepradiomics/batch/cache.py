"""The resume cache of a batch: one file per finished case, reused only when everything it depends on matches.

Results are kept per *entry*: one folder per namespace (what every result of a task depends on beyond the
case: params hash with every model and artifact sha256, code versions, layout, ...; see
:meth:`~deepradiomics.batch.run.BatchTask.namespace`), named by the first 16 hex digits of its sha256, so
batches with different params share a folder without evicting each other's results::

    <root>/<namespace id>/namespace.json    what the entry holds (namespace, source params file, created)
    <root>/<namespace id>/cases/<case>.json  {id, key, checksum, row, files}  (kind "rows")
    <root>/<namespace id>/failed/<case>.json a failed case, computed again by the next run
    <root>/<namespace id>/<case>.npz         per-case descriptors of a fitted class (kind "arrays")

Two kinds of results are kept, as their tasks declare (:attr:`~deepradiomics.batch.run.BatchTask.result_kind`):
``"row"`` (features, map paths), by :class:`ResultCache`, and ``"arrays"`` (descriptors), by
:class:`ArrayCache`, with the key stored as the array ``__key__`` (read with ``allow_pickle=False``).

A stored result is reused only when its key (the namespace plus the case's label, transforms and input
files' identity) matches and the file is intact (JSON checksum; a readable ``.npz``); a task may also
refuse a stored row (``row_problem``). A row covers the files it points to (``side_files``: a voxel-mode
row's maps): their sha256 is stored beside the row and checked on resume, so a truncated or replaced map is
recomputed (one warning), never named in a table. Files are written under a temporary name unique to the
process and thread, then renamed, so batches sharing a folder never read a partial file. The mtime of
``namespace.json`` records when the entry was last used (``deepradiomics cache list|prune``, :func:`entries`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..naming import ERROR_COLUMN

logger = logging.getLogger("deepradiomics.batch")

#: the file describing a cache entry (its namespace), whose mtime says when the entry was last used
NAMESPACE_FILE = "namespace.json"
#: hex digits of the namespace's sha256 naming an entry's folder
NAMESPACE_DIGITS = 16
#: what a cache folder holds (``fnmatch`` patterns): entries, and the folders of studies (``rows``,
#: ``descriptors``) and of earlier versions (``cases``, ``failed``)
CACHE_WRITES = ("[0-9a-f]" * NAMESPACE_DIGITS, "cases", "failed", "rows", "descriptors")


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value`` (keys sorted; other objects by ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def namespace_id(namespace: Mapping[str, Any]) -> str:
    """The folder name of the cache entry of ``namespace`` (first digits of its sha256)."""
    return digest(dict(namespace))[:NAMESPACE_DIGITS]


def cache_file_name(case_id: str) -> str:
    """File name of a case in the cache: readable, and unique even when two IDs sanitise alike."""
    return f"{re.sub(r'[^A-Za-z0-9._-]', '_', case_id)[:80]}-{hashlib.sha256(case_id.encode()).hexdigest()[:10]}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file unique to this process and thread, then rename (safe for concurrent batches)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_entry(root: Path, kind: str, namespace: Mapping[str, Any], source: str = "") -> Path:
    """The folder of the entry of ``namespace`` under ``root`` (created, with its ``namespace.json``), marked as used now."""
    folder = root / namespace_id(namespace)
    folder.mkdir(parents=True, exist_ok=True)
    description = folder / NAMESPACE_FILE
    if description.is_file():
        os.utime(description)  # last used: what `cache prune --older-than` goes by
    else:
        info = {"kind": kind, "namespace": dict(namespace), "source": str(source), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write(description, json.dumps(info, sort_keys=True, indent=1, default=str).encode("utf-8"))
    return folder


class ResultCache:
    """Per-case rows of one task's namespace under ``out_dir``: ``cases/`` (done) and ``failed/`` (retried on a re-run).

    ``row_problem(row)`` says what makes a stored row unusable (a missing or extra column), or None;
    ``side_files(row)`` lists the files a row points to (checksummed when stored, verified when loaded);
    ``source`` (the params file, for listings) is recorded in the entry's ``namespace.json``.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        row_problem: Callable[[dict], str | None] | None = None,
        *,
        namespace: Mapping[str, Any] | None = None,
        side_files: Callable[[dict], Iterable[str]] | None = None,
        source: str = "",
    ) -> None:
        self.root = Path(out_dir)
        self.row_problem = row_problem
        self.side_files = side_files
        self.folder = open_entry(self.root, "rows", namespace or {}, source)
        for kind in ("cases", "failed"):
            (self.folder / kind).mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, case_id: str) -> Path:
        return self.folder / kind / f"{cache_file_name(case_id)}.json"

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
            return None  # other label, transforms or input files: stale, compute again
        problem = self.row_problem(row) if self.row_problem is not None else None
        if problem:
            logger.warning("cached result %s of case '%s' is incomplete (%s): computing the case again", path, case_id, problem)
            return None
        problem = self._side_file_problem(row, stored.get("files"))
        if problem:
            logger.warning("cached result %s of case '%s' points to %s: computing the case again", path, case_id, problem)
            return None
        return row

    def _side_file_problem(self, row: dict, recorded: Any) -> str | None:
        """What is wrong with the files ``row`` points to (None when each has the sha256 recorded with it)."""
        if self.side_files is None:
            return None
        recorded = recorded if isinstance(recorded, dict) else {}
        for path in self.side_files(row):
            expected = recorded.get(str(path))
            if expected is None:
                return f"'{path}', whose sha256 was not recorded"
            try:
                actual = file_sha256(path)
            except OSError as exc:
                return f"'{path}', which cannot be read ({exc.strerror or exc})"
            if actual != expected:
                return f"'{path}', which is damaged or was replaced (sha256 {actual[:12]}..., recorded {expected[:12]}...)"
        return None

    def store(self, case_id: str, key: str, row: dict) -> None:
        """Keep ``row`` (a failed one under ``failed/``, so that the next run computes it again), with the sha256
        of every file it points to."""
        failed = ERROR_COLUMN in row
        files = {}
        if self.side_files is not None and not failed:
            files = {str(p): file_sha256(p) for p in self.side_files(row) if Path(p).is_file()}
        payload = {"id": case_id, "key": key, "checksum": digest(row), "row": row, "files": files}
        atomic_write(self._path("failed" if failed else "cases", case_id), json.dumps(payload, default=str).encode("utf-8"))
        if not failed:
            self._path("failed", case_id).unlink(missing_ok=True)


class ArrayCache:
    """Per-case dicts of arrays (descriptors) as ``<root>/<namespace id>/<case>.npz``, the key stored beside the arrays.

    Without ``namespace`` new files are ``<root>/<case>.npz`` (the layout of earlier versions) and a load
    also looks in every entry under ``root`` for a file stored under the same key.
    """

    def __init__(self, root: str | os.PathLike, namespace: Mapping[str, Any] | None = None, source: str = "") -> None:
        self.root = Path(root)
        self.namespaced = namespace is not None
        self.folder = open_entry(self.root, "arrays", namespace, source) if namespace is not None else self.root
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, case_id: str) -> Path:
        return self.folder / f"{cache_file_name(case_id)}.npz"

    def load(self, case_id: str, key: str) -> dict | None:
        """The stored arrays of ``case_id`` when they were computed under ``key``, else None (a damaged file: one warning)."""
        name = f"{cache_file_name(case_id)}.npz"
        candidates = [self._path(case_id)]
        if not self.namespaced:
            candidates += sorted(d / name for d in self.root.iterdir() if (d / NAMESPACE_FILE).is_file())
        for path in candidates:
            arrays = self._load(path, key) if path.is_file() else None
            if arrays is not None:
                return arrays
        return None

    def _load(self, path: Path, key: str) -> dict | None:
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["__key__"]) != key:
                    return None
                return {k: data[k] for k in data.files if k != "__key__"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a truncated zip, a bad CRC
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


# ------------------------------------------------------------------------------------------ listing
@dataclass(frozen=True)
class CacheEntry:
    """One entry of a cache folder (what ``deepradiomics cache list`` shows)."""

    folder: Path
    kind: str
    namespace: dict
    source: str
    created: str
    cases: int
    failed: int
    bytes: int
    last_used: float

    @property
    def id(self) -> str:
        """The entry's folder name (first digits of its namespace's sha256)."""
        return self.folder.name

    @property
    def params_hash(self) -> str:
        """The params hash of the namespace (with every model and artifact sha256), or the entry id when it has none."""
        value = self.namespace.get("params")
        return str(value) if value else self.id

    def age_days(self, now: float | None = None) -> float:
        """Days since the entry was last used."""
        return ((now if now is not None else time.time()) - self.last_used) / 86400.0


def entries(root: str | os.PathLike, max_depth: int = 4) -> list[CacheEntry]:
    """Every cache entry under ``root`` (batch ``--out-dir``, ``--cache-dir`` of fit, study and robustness), sorted by folder."""
    root = Path(root)
    found = []
    for description in sorted(_namespace_files(root, max_depth)):
        folder = description.parent
        try:
            info = json.loads(description.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            info = {}
        info = info if isinstance(info, dict) else {}
        files = [p for p in folder.rglob("*") if p.is_file()]
        kind = str(info.get("kind", "rows"))
        if kind == "arrays":
            cases = sum(1 for p in folder.glob("*.npz"))
            failed = 0
        else:
            cases = sum(1 for p in (folder / "cases").glob("*.json"))
            failed = sum(1 for p in (folder / "failed").glob("*.json"))
        found.append(
            CacheEntry(
                folder=folder,
                kind=kind,
                namespace=info.get("namespace") if isinstance(info.get("namespace"), dict) else {},
                source=str(info.get("source") or ""),
                created=str(info.get("created") or ""),
                cases=cases,
                failed=failed,
                bytes=sum(p.stat().st_size for p in files),
                last_used=max([description.stat().st_mtime, *(p.stat().st_mtime for p in files)]),
            )
        )
    return found


def _namespace_files(root: Path, max_depth: int) -> Iterable[Path]:
    """``namespace.json`` files at most ``max_depth`` folders below ``root`` (an entry's own subfolders are not searched)."""
    if not root.is_dir() or max_depth < 0:
        return
    description = root / NAMESPACE_FILE
    if description.is_file():
        yield description
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            yield from _namespace_files(child, max_depth - 1)
