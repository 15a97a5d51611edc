"""Faults and stale results: real processes killed by PID, concurrent batches, and a cache that never lies.

The batches run as real `deepradiomics batch` processes on real LGG cases. A test feature class ``probe``
(a fake distribution on PYTHONPATH, so the pool's workers import it like any plugin) writes
``<case>.<pid>.<ns>.started`` into a control folder ($PROBE_CONTROL) when it starts a case, then waits while
``hold-<case>`` exists there. The tests hold a case, kill the PID that computes it, release it, and
compare the final table with an uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

from deepradiomics import Extractor, batch
from deepradiomics.batch import BatchRun, read_manifest
from deepradiomics.naming import ERROR_COLUMN
from deepradiomics.registry import get_registry

REPO = Path(__file__).resolve().parents[1]
COMMAND = [str(REPO / ".venv" / "bin" / "deepradiomics")] if (REPO / ".venv" / "bin" / "deepradiomics").exists() else [sys.executable, "-m", "deepradiomics"]
#: runs its arguments with SIGINT at its default disposition (see Batch.start)
FOREGROUND = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"]

PROBE_MODULE = '''
import os
import time

import numpy as np

from deepradiomics.featureclass import FeatureClass


class Probe(FeatureClass):
    """ROI mean and maximum; announces each case in the control folder $PROBE_CONTROL and waits while it is held."""

    name = "probe"
    family = "classical"

    def feature_names(self):
        return ["RoiMean", "RoiMax"]

    def compute(self, case):
        control = os.environ["PROBE_CONTROL"]  # not a setting: the params (and their hash) stay the same in every run
        open(os.path.join(control, f"{case.case_id}.{os.getpid()}.{time.monotonic_ns()}.started"), "w").close()
        deadline = time.monotonic() + 120
        while os.path.exists(os.path.join(control, f"hold-{case.case_id}")) and time.monotonic() < deadline:
            time.sleep(0.05)
        values = np.asarray(case.array(), dtype=np.float64)[case.mask_array()]
        open(os.path.join(control, f"{case.case_id}.{os.getpid()}.{time.monotonic_ns()}.finished"), "w").close()
        return {"RoiMean": float(values.mean()), "RoiMax": float(values.max())}
'''

#: a plugin whose module imports torch (as deep plugins do), so the pool starts its workers with spawn, not fork,
#: and whose class logs a warning on every case: what a worker logs must read like the main process's log
LOUD_MODULE = '''
import logging

import numpy as np
import torch  # noqa: F401 - imported by the main process with the registry: the pool then spawns its workers

from deepradiomics.featureclass import FeatureClass


class Loud(FeatureClass):
    name = "loud"
    family = "classical"

    def feature_names(self):
        return ["RoiMean"]

    def compute(self, case):
        logging.getLogger("probe_plugins.loud").warning("case %s is loud", case.case_id)
        return {"RoiMean": float(np.asarray(case.array(), dtype=np.float64)[case.mask_array()].mean())}
'''


# ------------------------------------------------------------------------------------------------ set-up
class Batch:
    """A control folder, a params file naming ``probe``, a manifest of real cases, and the CLI to run on them."""

    def __init__(self, root: Path, plugin_dir: Path, manifest: Path) -> None:
        self.root = root
        self.control = root / "control"
        self.control.mkdir()
        self.params = root / "params.yaml"
        # probe alone: it reads the real images (and their gzip check) without PyRadiomics' start-up cost
        self.params.write_text(yaml.safe_dump({"featureClass": {"probe": {}}}))
        self.manifest = manifest
        self.ids = list(pd.read_csv(manifest, dtype=str)["ID"])
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(REPO)]), "PROBE_CONTROL": str(self.control)}

    def start(self, *options: str, output: str = "out.csv", params: Path | None = None) -> subprocess.Popen:
        argv = [*COMMAND, "batch", str(params or self.params), str(self.manifest), "-o", str(self.root / output), "--no-progress", *options]
        # as a command typed in a terminal: SIGINT at its default. A test run started in the background of a
        # non-interactive shell (`pytest &`, a CI step) ignores SIGINT, and every process it starts would inherit
        # that (Python keeps an inherited SIG_IGN): Ctrl-C would then do nothing. The launcher resets it and execs
        # the command (thread-safe, unlike preexec_fn).
        return subprocess.Popen([*FOREGROUND, *argv], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.root)

    def run(self, *options: str, output: str = "out.csv", timeout: float = 240) -> subprocess.CompletedProcess:
        process = self.start(*options, output=output)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def hold(self, case_id: str) -> None:
        (self.control / f"hold-{case_id}").touch()

    def release(self, case_id: str) -> None:
        (self.control / f"hold-{case_id}").unlink(missing_ok=True)

    def events(self, case_id: str, kind: str = "started") -> list[tuple[int, int]]:
        """``(monotonic ns, PID)`` of every start (or finish) of ``case_id``, in order (one clock for every process)."""
        files = self.control.glob(f"{case_id}.*.{kind}")
        return sorted((int(p.name.split(".")[2]), int(p.name.split(".")[1])) for p in files)

    def starts(self, case_id: str) -> list[int]:
        """PIDs that started ``case_id``, in order."""
        return [pid for _, pid in self.events(case_id)]

    def wait_for_start(self, case_id: str, count: int = 1, timeout: float = 120) -> int:
        """PID of the ``count``-th start of ``case_id``."""
        return self.starts(self.wait_for_any({case_id: count}, timeout))[count - 1]

    def wait_for_any(self, counts: dict[str, int], timeout: float = 120) -> str:
        """The first case of ``counts`` started as many times as it says (polling the control folder)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for case_id, count in counts.items():
                if len(self.starts(case_id)) >= count:
                    return case_id
            time.sleep(0.05)
        raise AssertionError(f"no case of {counts} started that often within {timeout} s")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe_plugin")
    (folder / "probe_plugin.py").write_text(PROBE_MODULE)
    (folder / "loud_plugin.py").write_text(LOUD_MODULE)
    info = folder / "probe_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepradiomics.feature_classes]\nprobe = probe_plugin:Probe\nloud = loud_plugin:Loud\n")
    return folder


@pytest.fixture(scope="module")
def manifest4(tmp_path_factory, lgg_manifest) -> Path:
    """Four real LGG cases (20-22 slices), absolute paths."""
    frame, base = read_manifest(lgg_manifest)
    rows = frame.head(4)[["ID", "Image", "Mask", "grade"]].copy()
    for column in ("Image", "Mask"):
        rows[column] = [str(base / p) for p in rows[column]]
    path = tmp_path_factory.mktemp("faults") / "cases.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, plugin_dir, manifest4) -> str:
    """The uninterrupted run's table (CSV text), computed once by the CLI in one process."""
    runner = Batch(tmp_path_factory.mktemp("reference"), plugin_dir, manifest4)
    result = runner.run()
    assert result.returncode == 0, result.stderr
    return normalised(runner.root / "out.csv", runner)


def normalised(path: Path, runner: Batch) -> str:
    """A batch CSV with its run-specific folder (in the params path) replaced, so that runs compare byte for byte."""
    return path.read_text().replace(str(runner.root), "<root>")


@pytest.fixture
def runner(tmp_path, plugin_dir, manifest4) -> Batch:
    runner = Batch(tmp_path, plugin_dir, manifest4)
    yield runner
    for hold in runner.control.glob("hold-*"):  # never leave a worker waiting
        hold.unlink()


def wait_gone(pids, timeout: float = 15) -> list[int]:
    """PIDs still alive (zombies count as gone) after waiting up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    return alive


# ------------------------------------------------------------------------------------------------ worker death
def test_a_killed_worker_costs_one_retried_case_and_the_table_is_complete(runner, reference):
    victim = runner.ids[1]
    runner.hold(victim)
    process = runner.start("-j", "2")
    pid = runner.wait_for_start(victim)
    os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer does
    runner.release(victim)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    assert f"a worker process died while computing case '{victim}': retrying it once" in err
    assert "4 of 4 cases extracted" in err
    assert runner.starts(victim)[-1] != pid  # recomputed by a new worker
    assert normalised(runner.root / "out.csv", runner) == reference


def test_a_case_that_kills_its_worker_twice_is_an_error_row_and_its_neighbour_survives(runner, reference):
    culprit, neighbour = runner.ids[0], runner.ids[1]
    runner.hold(culprit)
    runner.hold(neighbour)
    process = runner.start("-j", "2")
    first = runner.wait_for_start(culprit)
    runner.wait_for_start(neighbour)  # both in flight when the worker dies: both are suspects
    os.kill(first, signal.SIGKILL)
    # the suspects are retried one at a time: whichever restarts first runs alone, the other starts after it ended
    # (shown by the order of the recorded events, one monotonic clock for every process: no sleep)
    if runner.wait_for_any({neighbour: 2, culprit: 2}) == neighbour:
        runner.release(neighbour)
        second = runner.wait_for_start(culprit, count=2)
        assert runner.events(culprit)[1][0] > runner.events(neighbour, "finished")[0][0], "the culprit was retried beside its neighbour"
        os.kill(second, signal.SIGKILL)  # it dies again, alone this time: it is the culprit
    else:
        second = runner.wait_for_start(culprit, count=2)
        killed = time.monotonic_ns()
        os.kill(second, signal.SIGKILL)  # it dies again, alone this time: it is the culprit
        runner.release(neighbour)
        runner.wait_for_start(neighbour, count=2)
        assert runner.events(neighbour)[1][0] > killed, "the neighbour was retried beside the culprit"
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0 and "Traceback" not in err, err
    assert "3 of 4 cases extracted" in err and f"{culprit}: the worker process computing this case died twice" in err
    # cell for cell, as the text the batch wrote
    table = pd.read_csv(io.StringIO(normalised(runner.root / "out.csv", runner)), index_col="ID", dtype=str, keep_default_na=False)
    expected = pd.read_csv(io.StringIO(reference), index_col="ID", dtype=str, keep_default_na=False)
    assert list(table.index) == runner.ids
    assert "died twice" in table.loc[culprit, ERROR_COLUMN] and table.loc[culprit, "original_probe_RoiMean"] == ""
    others = [i for i in runner.ids if i != culprit]
    # the other rows hold the same features, to the last bit (integer diagnostics such as Case_Slices print as
    # 20.0 instead of 20 in a table with an error row: pandas has no integer NaN)
    features = [c for c in expected.columns if c.startswith("original_")]
    assert features and table.loc[others, features].astype(float).equals(expected.loc[others, features].astype(float))
    assert (table.loc[others, ERROR_COLUMN] == "").all()


def test_workers_exit_when_the_main_process_is_killed(runner):
    held = runner.ids[:2]
    for case_id in held:
        runner.hold(case_id)
    process = runner.start("-j", "2")
    workers = [runner.wait_for_start(case_id) for case_id in held]
    assert all(psutil.Process(w).ppid() == process.pid for w in workers)
    process.kill()
    process.wait()
    assert wait_gone(workers) == []  # no orphan keeps computing (and holding memory)


def test_ctrl_c_exits_promptly_keeps_finished_cases_and_resumes(runner, reference):
    held = runner.ids[0]
    runner.hold(held)
    process = runner.start("-j", "2", "--out-dir", "cache")
    worker = runner.wait_for_start(held)
    # wait on state, not on the clock: three rows stored, or the batch gone (the held case lets go by itself
    # after its own 120 s, so the batch always ends and this loop with it)
    while len(list((runner.root / "cache").glob("*/cases/*.json"))) < 3:
        assert process.poll() is None, "the batch ended before it stored three cases"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=100)  # a safety net only: the held case would keep a waiting batch for 120 s
    assert process.returncode == 130 and "Interrupted" in err and "Traceback" not in err, err
    # promptly: the batch ended while its case was still held, so it did not wait for that case to finish
    assert runner.events(held, "finished") == [] and (runner.control / f"hold-{held}").exists()
    assert wait_gone([worker]) == []
    runner.release(held)
    done_before = {i: len(runner.starts(i)) for i in runner.ids}
    result = runner.run("-j", "2", "--out-dir", "cache")
    assert result.returncode == 0, result.stderr
    assert {i: len(runner.starts(i)) - done_before[i] for i in runner.ids} == {i: int(i == held) for i in runner.ids}
    assert normalised(runner.root / "out.csv", runner) == reference


def test_the_batch_does_not_inherit_an_ignored_sigint_from_the_test_run():
    # the cause of the Ctrl-C test's failures when the suite ran in the background of a shell script: SIGINT is
    # then ignored (SIG_IGN) in the test process and in all it starts, Python keeps it so, and the batch never saw
    # the signal. What Batch.start runs must see SIGINT at its default, whatever the test process inherited.
    ignoring = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execvp(sys.argv[1], sys.argv[1:])"]
    report = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    inherited = subprocess.run([*ignoring, sys.executable, "-c", report], capture_output=True, text=True, check=True)
    assert inherited.stdout.strip() == "False"  # what the batch used to inherit
    reset = subprocess.run([*ignoring, *FOREGROUND, sys.executable, "-c", report], capture_output=True, text=True, check=True)
    assert reset.stdout.strip() == "True"


def test_two_concurrent_batches_share_an_out_dir_safely(runner, reference):
    first = runner.start("-j", "1", "--out-dir", "cache", output="a.csv")
    second = runner.start("-j", "1", "--out-dir", "cache", output="b.csv")
    for process in (first, second):
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0 and "Traceback" not in err, err
    assert normalised(runner.root / "a.csv", runner) == reference == normalised(runner.root / "b.csv", runner)
    files = sorted(p.relative_to(runner.root / "cache") for p in (runner.root / "cache").rglob("*") if p.is_file())
    (entry,) = {f.parts[0] for f in files}  # one entry: the same params
    assert sorted(f.name for f in files) == sorted(["namespace.json", *(f"{batch.cache_file_name(i)}.json" for i in runner.ids)]), files
    assert all(json.loads(p.read_text())["id"] in runner.ids for p in (runner.root / "cache" / entry / "cases").glob("*.json"))


@pytest.mark.slow
def test_a_killed_dask_worker_costs_one_retried_case(runner, reference):
    pytest.importorskip("distributed")
    victim = runner.ids[2]
    runner.hold(victim)
    process = runner.start("-j", "2", "--scheduler", "dask")
    pid = runner.wait_for_start(victim, timeout=180)
    os.kill(pid, signal.SIGKILL)
    runner.release(victim)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0 and "Traceback" not in err, err
    assert "4 of 4 cases extracted" in err
    assert "INFO distributed" not in err  # distributed's chatter stays at our log level
    assert normalised(runner.root / "out.csv", runner) == reference


@pytest.mark.slow
def test_dask_workers_exit_when_the_main_process_is_killed(runner):
    pytest.importorskip("distributed")
    held = runner.ids[:2]
    for case_id in held:
        runner.hold(case_id)
    process = runner.start("-j", "2", "--scheduler", "dask")
    for case_id in held:
        runner.wait_for_start(case_id, timeout=180)
    children = [child.pid for child in psutil.Process(process.pid).children(recursive=True)]
    assert len(children) >= 2  # nannies and workers
    process.kill()
    process.wait()
    assert wait_gone(children, timeout=30) == []


# ------------------------------------------------------------------------------------------------ stale results
@pytest.fixture
def manifest2(manifest4, tmp_path) -> Path:
    path = tmp_path / "two.csv"
    pd.read_csv(manifest4, dtype=str).head(2).to_csv(path, index=False)
    return path


def _run(extractor, manifest, out_dir) -> tuple[pd.DataFrame, BatchRun]:
    run = BatchRun()
    table = batch.run_batch(extractor.batch_task(), manifest, out_dir=out_dir, run=run)
    return table, run


def test_a_retrained_model_at_the_same_path_invalidates_the_cache(manifest4, tmp_path, lgg_manifest):
    pytest.importorskip("torch")
    from tests.test_models import tiny_bundle

    frame, base = read_manifest(lgg_manifest)
    rows = frame.head(1)[["ID", "Image", "Mask", "Image_t1", "Image_t1ce"]].copy()
    for column in ("Image", "Mask", "Image_t1", "Image_t1ce"):
        rows[column] = [str(base / p) for p in rows[column]]
    manifest = tmp_path / "m.csv"
    rows.to_csv(manifest, index=False)
    bundle = tmp_path / "bundle"
    tiny_bundle(bundle, seed=0)
    params = {"featureClass": {"vqhist": {"model": str(bundle), "modalities": ["t1", "Image", "t1ce"]}}}
    first, run = _run(Extractor(params), manifest, tmp_path / "cache")
    assert sorted(run.computed) == sorted(rows["ID"])
    _, run = _run(Extractor(params), manifest, tmp_path / "cache")
    assert run.computed == [] and sorted(run.reused) == sorted(rows["ID"])
    tiny_bundle(bundle, seed=1)  # retrained: same folder, same params file, other weights
    again, run = _run(Extractor(params), manifest, tmp_path / "cache")
    assert sorted(run.computed) == sorted(rows["ID"]) and run.reused == []
    column = "diagnostics_vqhist_ModelSha256"
    assert (again[column] != first[column]).all()


def test_a_refitted_artifact_at_the_same_path_invalidates_the_cache(manifest2, tmp_path):
    from tests.fitted_class import IntensityCodebook

    registry = get_registry()
    registry.register(IntensityCodebook, source="tests")
    try:
        frame, base = read_manifest(manifest2)
        cases = [batch.case_from_row(r, base) for r in frame.to_dict(orient="records")]
        params = {"featureClass": {"codebook": {"clusters": 3, "samples": 500}}}
        fitted = Extractor(params).fit(cases).save_fitted(tmp_path / "fitted")
        first, run = _run(Extractor.from_yaml(fitted), manifest2, tmp_path / "cache")
        assert len(run.computed) == 2
        _, run = _run(Extractor.from_yaml(fitted), manifest2, tmp_path / "cache")
        assert run.computed == []
        Extractor(params).fit(cases[:1]).save_fitted(tmp_path / "fitted")  # refitted in place on other cases
        again, run = _run(Extractor.from_yaml(fitted), manifest2, tmp_path / "cache")
        assert len(run.computed) == 2 and run.reused == []
        codebook = [c for c in again.columns if "_codebook_" in c]
        assert not np.array_equal(again[codebook].to_numpy(), first[codebook].to_numpy())
    finally:
        registry.unregister(IntensityCodebook.name)


PARAMS = {"setting": {"binWidth": 25.0}, "featureClass": {"firstorder": ["Mean", "Maximum"]}}


def _rewrite_row(path: Path, change) -> None:
    """Edit a cached row and re-seal its checksum, as a row written by other code would look."""
    stored = json.loads(path.read_text())
    change(stored["row"])
    stored["checksum"] = batch.digest(stored["row"])
    path.write_text(json.dumps(stored))


def test_cached_rows_with_an_extra_or_missing_column_are_recomputed_with_one_warning(manifest2, tmp_path, caplog):
    extractor = Extractor(PARAMS)
    reference, _ = _run(extractor, manifest2, tmp_path / "cache")
    ids = list(reference.index)
    (entry,) = batch.cache.entries(tmp_path / "cache")
    files = {i: entry.folder / "cases" / f"{batch.cache_file_name(i)}.json" for i in ids}
    _rewrite_row(files[ids[0]], lambda row: row.update({"original_firstorder_Entropy": 1.0}))  # an extra feature column
    _rewrite_row(files[ids[1]], lambda row: row.pop("original_firstorder_Maximum"))  # a missing one
    with caplog.at_level("WARNING", logger="deepradiomics.batch"):
        table, run = _run(extractor, manifest2, tmp_path / "cache")
    assert sorted(run.computed) == sorted(ids)
    warnings = [r.getMessage() for r in caplog.records if "is incomplete" in r.getMessage()]
    assert len(warnings) == 2, warnings
    assert any("unexpected original_firstorder_Entropy" in w for w in warnings)
    assert any("lacks original_firstorder_Maximum" in w for w in warnings)
    pd.testing.assert_frame_equal(table, reference)


def test_rows_cached_by_another_code_version_are_recomputed(manifest2, tmp_path, monkeypatch):
    import deepradiomics.extractor as extractor_module

    extractor = Extractor(PARAMS)
    _run(extractor, manifest2, tmp_path / "cache")
    monkeypatch.setattr(extractor_module, "__version__", "99.0")
    _, run = _run(Extractor(PARAMS), manifest2, tmp_path / "cache")
    assert len(run.computed) == 2 and run.reused == []


def test_unparseable_cached_rows_are_recomputed(manifest2, tmp_path, caplog):
    extractor = Extractor(PARAMS)
    reference, _ = _run(extractor, manifest2, tmp_path / "cache")
    for path, content in zip(sorted((tmp_path / "cache").glob("*/cases/*.json")), [b"\xff\xfe\x00binary", b'"a string"']):
        path.write_bytes(content)
    with caplog.at_level("WARNING", logger="deepradiomics.batch"):
        table, run = _run(extractor, manifest2, tmp_path / "cache")
    assert len(run.computed) == 2 and sum("is damaged" in r.getMessage() for r in caplog.records) == 2
    pd.testing.assert_frame_equal(table, reference)


def test_ids_that_sanitise_alike_keep_separate_cached_rows(manifest2, tmp_path):
    frame = pd.read_csv(manifest2, dtype=str)
    twins = pd.concat([frame.head(1).assign(ID="a/b"), frame.iloc[1:2].assign(ID="a_b")])
    path = tmp_path / "twins.csv"
    twins.to_csv(path, index=False)
    first, run = _run(Extractor(PARAMS), path, tmp_path / "cache")
    assert sorted(run.computed) == ["a/b", "a_b"] and len(list((tmp_path / "cache").glob("*/cases/*.json"))) == 2
    again, run = _run(Extractor(PARAMS), path, tmp_path / "cache")
    assert sorted(run.reused) == ["a/b", "a_b"] and run.computed == []
    pd.testing.assert_frame_equal(again, first)
    assert first.loc["a/b", "original_firstorder_Mean"] != first.loc["a_b", "original_firstorder_Mean"]


def test_a_bad_output_is_refused_before_the_first_case(runner):
    (runner.root / "afile").write_text("")
    result = runner.run(output="afile/t.csv")
    assert result.returncode == 1 and "is a file" in result.stderr and "Traceback" not in result.stderr
    assert list(runner.control.glob("*.started")) == []  # no case ran


# ------------------------------------------------------------------------------------------------ worker logs
def test_worker_warnings_keep_the_parents_log_format(runner):
    # the loud plugin imports torch, so the pool spawns its workers: they start without the parent's handler
    params = runner.root / "loud.yaml"
    params.write_text(yaml.safe_dump({"featureClass": {"loud": {}}}))
    process = runner.start("-j", "2", params=params)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err
    lines = [line for line in err.splitlines() if "is loud" in line]
    assert sorted(lines) == sorted(f"WARNING probe_plugins.loud: case {i} is loud" for i in runner.ids), err


# ------------------------------------------------------------------------------------------------ side files and entries
@pytest.fixture
def synthetic_manifest(tmp_path) -> Path:
    """Two tiny synthetic cases on disk (mechanics of the cache, not science)."""
    import SimpleITK as sitk

    from deepradiomics.testing import synthetic_case

    rows = []
    for seed in (0, 1):
        case = synthetic_case(size=10, seed=seed)
        image, mask = tmp_path / f"image{seed}.nrrd", tmp_path / f"mask{seed}.nrrd"
        sitk.WriteImage(case.image(), str(image))
        sitk.WriteImage(case.mask_image(), str(mask))
        rows.append({"ID": f"s{seed}", "Image": str(image), "Mask": str(mask)})
    path = tmp_path / "synthetic.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("damage", ["truncated", "replaced"])
def test_a_damaged_map_of_a_cached_voxel_row_is_recomputed_with_one_warning(damage, synthetic_manifest, tmp_path, caplog):
    from deepradiomics.voxel import VoxelOutput

    extractor = Extractor({"setting": {"binWidth": 25.0}, "voxelSetting": {"kernelRadius": 1}, "featureClass": {"firstorder": ["Mean", "Maximum"]}})
    task = extractor.batch_task(voxel=VoxelOutput(str(tmp_path / "maps")))
    first = batch.run_batch(task, synthetic_manifest, out_dir=tmp_path / "cache")
    victim = Path(first.loc["s1", "original_firstorder_Mean"])
    intact = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(intact[: len(intact) // 2])  # the row still names it, and the file exists
    else:
        victim.write_bytes(Path(first.loc["s1", "original_firstorder_Maximum"]).read_bytes())  # a valid map, the wrong one
    run = BatchRun()
    with caplog.at_level("WARNING", logger="deepradiomics.batch"):
        again = batch.run_batch(task, synthetic_manifest, out_dir=tmp_path / "cache", run=run)
    assert run.computed == ["s1"] and run.reused == ["s0"]
    warnings = [r.getMessage() for r in caplog.records if "points to" in r.getMessage()]
    assert len(warnings) == 1 and str(victim) in warnings[0] and "damaged or was replaced" in warnings[0], warnings
    assert victim.read_bytes() == intact  # recomputed, bit for bit
    pd.testing.assert_frame_equal(again, first)


def test_damaged_cached_descriptors_are_recomputed_with_one_warning(manifest2, tmp_path, caplog):
    from deepradiomics.extractor import describe_cases
    from tests.fitted_class import IntensityCodebook

    feature_class = IntensityCodebook({"clusters": 3, "samples": 500})
    first = describe_cases(feature_class, manifest2, cache_dir=tmp_path / "cache")
    stored = sorted((tmp_path / "cache").glob("descriptors/*/*/*.npz"))
    assert len(stored) == 2
    data = bytearray(stored[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the zip: its CRC-32 check fails
    stored[0].write_bytes(bytes(data))
    stored[1].write_bytes(stored[1].read_bytes()[:100])  # a truncated zip
    with caplog.at_level("WARNING", logger="deepradiomics.batch"):
        again = describe_cases(feature_class, manifest2, cache_dir=tmp_path / "cache")
    assert sum("are damaged" in r.getMessage() for r in caplog.records) == 2
    assert all(np.array_equal(first[i][k], again[i][k]) for i in first for k in first[i])


def test_batches_with_other_params_share_an_out_dir_and_the_cache_command_lists_and_prunes_them(runner):
    from click.testing import CliRunner

    from deepradiomics.cli import main

    other = runner.root / "other.yaml"
    other.write_text(yaml.safe_dump({"setting": {"label": 1}, "featureClass": {"probe": {}}}))  # other params, same probe
    for params in (runner.params, other, runner.params, other):
        process = runner.start("--out-dir", "cache", output=f"{params.stem}.csv", params=params)
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
    # each of the four cases was computed once per params set: the second runs read every row back
    assert {i: len(runner.starts(i)) for i in runner.ids} == {i: 2 for i in runner.ids}
    listing = CliRunner().invoke(main, ["cache", "list", str(runner.root / "cache")])
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:4] == ["entry", "kind", "params", "hash"] and len(lines) == 3
    assert sorted(line.split()[-1] for line in lines[1:]) == sorted([str(runner.params), str(other)])
    assert all(line.split()[3] == "4" for line in lines[1:])  # 4 cases each
    entry = lines[1].split()[0]
    dry = CliRunner().invoke(main, ["cache", "prune", str(runner.root / "cache"), "--params", entry[:8], "--dry-run"])
    assert dry.exit_code == 0 and "would remove" in dry.stderr and (runner.root / "cache" / entry).is_dir()
    pruned = CliRunner().invoke(main, ["cache", "prune", str(runner.root / "cache"), "--params", entry[:8]])
    assert pruned.exit_code == 0 and "1 entry removed" in pruned.stderr and not (runner.root / "cache" / entry).exists()
    assert CliRunner().invoke(main, ["cache", "prune", str(runner.root / "cache"), "--older-than", "1"]).stderr.strip().startswith("0 entries")
    left = CliRunner().invoke(main, ["cache", "list", str(runner.root / "cache")]).stdout.splitlines()
    assert len(left) == 2 and left[1].split()[0] != entry


# ------------------------------------------------------------------------------------------------ threads
DASK = [str(REPO / ".venv" / "bin" / "dask")] if (REPO / ".venv" / "bin" / "dask").exists() else [sys.executable, "-m", "dask"]


def _stop(process: subprocess.Popen) -> None:
    """End a process started in its own session, and everything it started (a Dask worker's nanny and worker)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def lgg8(tmp_path_factory, lgg_manifest) -> Path:
    """Eight real LGG cases (absolute paths)."""
    frame, base = read_manifest(lgg_manifest)
    rows = frame.head(8)[["ID", "Image", "Mask", "grade"]].copy()
    for column in ("Image", "Mask"):
        rows[column] = [str(base / p) for p in rows[column]]
    path = tmp_path_factory.mktemp("threads") / "cases.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_a_cold_threaded_dask_worker_gives_the_serial_table_cell_for_cell(lgg8, tmp_path):
    # a freshly started `dask worker --nthreads 4` runs four cases at once in threads of one process, while
    # PyRadiomics sets itself up (its schema validation shares one YAML parser): every case must come out as
    # in a serial run, diagnostics included, on every cold start
    pytest.importorskip("distributed")
    params = REPO / "params" / "classical.yaml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROBE")}

    def batch_table(output: Path, *options: str) -> str:
        done = subprocess.run([*COMMAND, "batch", str(params), str(lgg8), "-o", str(output), "--no-progress", *options], capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0 and "8 of 8 cases extracted" in done.stderr, done.stderr
        return output.read_text()

    serial = batch_table(tmp_path / "serial.csv")
    for start in range(3):
        folder = tmp_path / f"cold{start}"
        folder.mkdir()
        address_file = folder / "scheduler.json"
        common = {"cwd": folder, "env": env, "start_new_session": True, "stdout": subprocess.DEVNULL, "stderr": open(folder / "dask.log", "w")}
        scheduler = subprocess.Popen([*DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(address_file)], **common)
        worker = None
        try:
            while not address_file.is_file():  # the scheduler writes its address, or exits
                assert scheduler.poll() is None, f"cold start {start}: dask scheduler exited: {(folder / 'dask.log').read_text()[-2000:]}"
                time.sleep(0.1)
            address = json.loads(address_file.read_text())["address"]
            worker = subprocess.Popen(
                [*DASK, "worker", address, "--nthreads", "4", "--nworkers", "1", "--no-dashboard", "--memory-limit", "0", "--host", "127.0.0.1"], **common
            )
            threaded = batch_table(folder / "threaded.csv", "--scheduler", address)
        finally:
            for process in (worker, scheduler):
                if process is not None:
                    _stop(process)
            common["stderr"].close()
        assert threaded == serial, f"cold start {start}: the threaded worker's table differs from the serial one"
