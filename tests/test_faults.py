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
        return {"RoiMean": float(values.mean()), "RoiMax": float(values.max())}
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

    def start(self, *options: str, output: str = "out.csv") -> subprocess.Popen:
        argv = [*COMMAND, "batch", str(self.params), str(self.manifest), "-o", str(self.root / output), "--no-progress", *options]
        return subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.root)

    def run(self, *options: str, output: str = "out.csv", timeout: float = 240) -> subprocess.CompletedProcess:
        process = self.start(*options, output=output)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def hold(self, case_id: str) -> None:
        (self.control / f"hold-{case_id}").touch()

    def release(self, case_id: str) -> None:
        (self.control / f"hold-{case_id}").unlink(missing_ok=True)

    def starts(self, case_id: str) -> list[int]:
        """PIDs that started ``case_id``, in order."""
        files = sorted(self.control.glob(f"{case_id}.*.started"), key=lambda p: int(p.name.split(".")[2]))
        return [int(p.name.split(".")[1]) for p in files]

    def wait_for_start(self, case_id: str, count: int = 1, timeout: float = 120) -> int:
        """PID of the ``count``-th start of ``case_id``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            starts = self.starts(case_id)
            if len(starts) >= count:
                return starts[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"case {case_id} did not start {count} time(s) within {timeout} s")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("probe_plugin")
    (folder / "probe_plugin.py").write_text(PROBE_MODULE)
    info = folder / "probe_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deepradiomics.feature_classes]\nprobe = probe_plugin:Probe\n")
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
    # the suspects are retried one at a time: whichever restarts first runs alone
    deadline = time.monotonic() + 120
    while len(runner.starts(culprit)) < 2 and len(runner.starts(neighbour)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if len(runner.starts(neighbour)) == 2:
        time.sleep(1.0)
        assert len(runner.starts(culprit)) == 1, "the culprit was retried beside its neighbour"
        runner.release(neighbour)
        second = runner.wait_for_start(culprit, count=2)
    else:
        second = runner.wait_for_start(culprit, count=2)
        time.sleep(1.0)
        assert len(runner.starts(neighbour)) == 1, "the neighbour was retried beside the culprit"
        runner.release(neighbour)
    os.kill(second, signal.SIGKILL)  # it dies again, alone this time: it is the culprit
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


@pytest.mark.xfail(
    strict=False,
    reason="open problem: passes alone and with its module (3 of 3 runs), but in the full suite of a fresh clone the batch "
    "did not exit within 60 s of SIGINT (2 of 2 runs on 2026-11-24); cause not yet found",
)
def test_ctrl_c_exits_promptly_keeps_finished_cases_and_resumes(runner, reference):
    held = runner.ids[0]
    runner.hold(held)
    process = runner.start("-j", "2", "--out-dir", "cache")
    worker = runner.wait_for_start(held)
    cases = runner.root / "cache" / "cases"
    deadline = time.monotonic() + 120
    while len(list(cases.glob("*.json")) if cases.is_dir() else []) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 130 and "Interrupted" in err and "Traceback" not in err, err
    assert elapsed < 10, f"took {elapsed:.1f} s to stop (the held case would have kept it for 120 s)"
    assert wait_gone([worker]) == []
    runner.release(held)
    done_before = {i: len(runner.starts(i)) for i in runner.ids}
    result = runner.run("-j", "2", "--out-dir", "cache")
    assert result.returncode == 0, result.stderr
    assert {i: len(runner.starts(i)) - done_before[i] for i in runner.ids} == {i: int(i == held) for i in runner.ids}
    assert normalised(runner.root / "out.csv", runner) == reference


def test_two_concurrent_batches_share_an_out_dir_safely(runner, reference):
    first = runner.start("-j", "1", "--out-dir", "cache", output="a.csv")
    second = runner.start("-j", "1", "--out-dir", "cache", output="b.csv")
    for process in (first, second):
        _, err = process.communicate(timeout=240)
        assert process.returncode == 0 and "Traceback" not in err, err
    assert normalised(runner.root / "a.csv", runner) == reference == normalised(runner.root / "b.csv", runner)
    files = sorted(p.name for p in (runner.root / "cache").rglob("*") if p.is_file())
    assert len(files) == 4 and not any(name.endswith(".tmp") for name in files), files
    assert all(json.loads(p.read_text())["id"] in runner.ids for p in (runner.root / "cache" / "cases").glob("*.json"))


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
    files = {i: tmp_path / "cache" / "cases" / f"{batch.cache_file_name(i)}.json" for i in ids}
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
    for path, content in zip(sorted((tmp_path / "cache" / "cases").glob("*.json")), [b"\xff\xfe\x00binary", b'"a string"']):
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
    assert sorted(run.computed) == ["a/b", "a_b"] and len(list((tmp_path / "cache" / "cases").glob("*.json"))) == 2
    again, run = _run(Extractor(PARAMS), path, tmp_path / "cache")
    assert sorted(run.reused) == ["a/b", "a_b"] and run.computed == []
    pd.testing.assert_frame_equal(again, first)
    assert first.loc["a/b", "original_firstorder_Mean"] != first.loc["a_b", "original_firstorder_Mean"]


def test_a_bad_output_is_refused_before_the_first_case(runner):
    (runner.root / "afile").write_text("")
    result = runner.run(output="afile/t.csv")
    assert result.returncode == 1 and "is a file" in result.stderr and "Traceback" not in result.stderr
    assert list(runner.control.glob("*.started")) == []  # no case ran
