"""Batch scaling: parallel efficiency of ``--jobs 2`` against ``--jobs 1``, now and before largest-first scheduling.

Efficiency = T(jobs=1) / (2 x T(jobs=2)) on the 63 LGG cases with ``params/classical.yaml`` (1.0 = perfect).
Cases of very different sizes (20 to 88 slices) finish unevenly when submitted in manifest order: the last
large case can run alone on one worker. The current batch submits the largest cases first (by input file
size) and keeps at most ``jobs`` cases in flight. The previous batch (commit 7020c0d, manifest order, all cases
submitted at once) is exported from git history and measured in the same run::

    python benchmarks/batch_scaling.py                # 63 cases, 2 repeats, alternating order
    python benchmarks/batch_scaling.py --limit 12 --repeats 1

Prints every run, the median times, each implementation's efficiency, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "7020c0d"
DATA = REPO.parent / "shared" / "data" / "lgg" / "cases.csv"

CODE = """
import sys, time
import pandas as pd
from deepradiomics import Extractor
frame = pd.read_csv(sys.argv[2], dtype=str, keep_default_na=False)
if int(sys.argv[4]) > 0:
    frame = frame.head(int(sys.argv[4]))
base = __import__("pathlib").Path(sys.argv[2]).resolve().parent
extractor = Extractor(sys.argv[1])
start = time.perf_counter()
table = extractor.execute_batch(frame, jobs=int(sys.argv[3]), base_dir=base)
print(time.perf_counter() - start, int((table["diagnostics_Error"].astype(str).str.len() > 0).sum()))
"""


def export_old(folder: Path) -> Path:
    """The package at OLD_COMMIT in ``folder`` (created), as robustness_speed.py exports it."""
    from robustness_speed import export_old as export  # this folder is on sys.path when run as a script

    folder.mkdir(parents=True, exist_ok=True)
    return export(folder)


def timed(env: dict, cwd: str, params: str, manifest: str, jobs: int, limit: int) -> float:
    result = subprocess.run([sys.executable, "-c", CODE, params, manifest, str(jobs), str(limit)], env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    seconds, failed = result.stdout.split()
    if int(failed):
        raise SystemExit(f"{failed} case(s) failed: the timing would not be comparable")
    return float(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params" / "classical.yaml"))
    parser.add_argument("--manifest", default=str(DATA))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    if not Path(args.manifest).is_file():
        raise SystemExit(f"manifest not found: {args.manifest}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; params {args.params}; limit {args.limit or 'all'}")
    times: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        old_tree = export_old(Path(folder) / "old")
        envs = {"old": ({**os.environ, "PYTHONPATH": str(old_tree)}, str(old_tree)), "new": (dict(os.environ), folder)}
        runs = [(impl, jobs) for impl in ("old", "new") for jobs in (1, 2)]
        for repeat in range(args.repeats):
            for impl, jobs in runs if repeat % 2 == 0 else list(reversed(runs)):
                env, cwd = envs[impl]
                seconds = timed(env, cwd, args.params, args.manifest, jobs, args.limit)
                times.setdefault((impl, jobs), []).append(seconds)
                print(f"repeat {repeat + 1}: {impl:<3} --jobs {jobs}: {seconds:7.1f} s", flush=True)
    for impl in ("old", "new"):
        one, two = statistics.median(times[(impl, 1)]), statistics.median(times[(impl, 2)])
        spread = ", ".join(f"{t:.1f}" for t in times[(impl, 2)])
        print(f"{impl}: median jobs=1 {one:.1f} s, jobs=2 {two:.1f} s (runs {spread}); speed-up {one / two:.2f}, efficiency {one / (2 * two):.3f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
