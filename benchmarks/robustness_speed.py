"""Robustness sweep: the batch-based implementation against the previous serial one, in one run.

The previous implementation (``deepradiomics/study/robustness.py`` at commit 7020c0d, a serial loop with its
own extraction pipeline) is exported from this repository's git history into a temporary folder and run in a
subprocess whose ``PYTHONPATH`` puts that old package first; the current one runs in another subprocess with
``--jobs``. Both sweep the same cases, params and levels (scale and shift, 0 to 1 in steps of 0.1).

What differs in the work (reported, not hidden): the old sweep perturbed the foreground only and extracted the
deep class on the normalised input and the classical classes without shape; the new one extracts every
class of the params file (shape included) from perturbed images, through the batch (resume cache, error
rows). Run it on an otherwise idle machine::

    python benchmarks/robustness_speed.py                       # 63 LGG cases, params/combined.yaml, --jobs 2
    python benchmarks/robustness_speed.py --limit 6 --jobs 2    # a quick check

It prints each implementation's wall time, the ratio new/old, and the CPU count and load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "7020c0d"
DATA = REPO.parent / "shared" / "data" / "lgg" / "cases.csv"

OLD = """
import sys, time
import deepradiomics
assert "/deepradiomics/study" not in deepradiomics.__file__ and deepradiomics.__file__.startswith(sys.path[1]), deepradiomics.__file__
from deepradiomics.study.robustness import run_robustness
start = time.perf_counter()
result = run_robustness(sys.argv[1], sys.argv[2], limit={limit})
print("seconds", time.perf_counter() - start)
print("cases", result.timing["cases"])
"""

NEW = """
import sys, time
from deepradiomics.study.robustness import run_robustness
start = time.perf_counter()
result = run_robustness(sys.argv[1], sys.argv[2], limit={limit}, jobs={jobs}, region="{region}")
print("seconds", time.perf_counter() - start)
print("cases", result.timing["cases"], "extractions", result.timing["extractions"], "failed", len(result.failed))
"""


def export_old(folder: Path) -> Path:
    """The old package tree (deepradiomics + plugins as deepradiomics_plugins) in ``folder``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "deepradiomics", "plugins"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "plugins").rename(folder / "deepradiomics_plugins")
    return folder


def run(code: str, env: dict, args: list[str], cwd: str) -> tuple[float, str]:
    # cwd outside the repository: `python -c` puts the working directory first on sys.path
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"run failed:\n{result.stderr[-3000:]}")
    return wall, result.stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(REPO / "params" / "combined.yaml"))
    parser.add_argument("--manifest", default=str(DATA))
    parser.add_argument("--limit", type=int, default=None, help="first N cases only")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--region", default="image", choices=["image", "foreground"])
    args = parser.parse_args(argv)
    if not Path(args.manifest).is_file():
        raise SystemExit(f"manifest not found: {args.manifest} (the shared data folder sits beside the repository)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; params {args.params}; manifest {args.manifest}; limit {args.limit}")
    with tempfile.TemporaryDirectory() as folder:
        old_tree = export_old(Path(folder))
        env_old = {**os.environ, "PYTHONPATH": str(old_tree)}
        old_wall, old_out = run(OLD.format(limit=args.limit), env_old, [args.params, args.manifest], folder)
    print(f"old (serial, commit {OLD_COMMIT}): {old_wall:.1f} s  [{old_out.replace(chr(10), '; ')}]")
    new_wall, new_out = run(NEW.format(limit=args.limit, jobs=args.jobs, region=args.region), dict(os.environ), [args.params, args.manifest], tempfile.gettempdir())
    print(f"new (batch, --jobs {args.jobs}, region {args.region}): {new_wall:.1f} s  [{new_out.replace(chr(10), '; ')}]")
    print(f"ratio new/old: {new_wall / old_wall:.3f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
