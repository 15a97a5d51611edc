"""Batch scaling: deepradiomics' ``--jobs 2`` efficiency against the machine's own two-process reference.

Efficiency of a two-worker run = T(one worker) / (2 x T(two workers)); 1.0 is perfect. Two cores rarely give
a perfect 2.0x: they share memory bandwidth, caches and turbo headroom. So the reference is measured on the
same machine, in the same run, with no batch machinery at all:

- **reference**: plain PyRadiomics (``radiomics.featureextractor.RadiomicsFeatureExtractor(params).execute``
  on each case's image and mask, in a loop) over the whole cohort in one process, then over the two halves
  of the cohort in two independent processes started together (halves balanced by input size: largest
  first, each case to the lighter half). Its efficiency = T(whole) / (2 x T(slower half)).
- **deepradiomics**: ``Extractor.execute_batch(..., jobs=1)`` and ``jobs=2`` (largest cases first, at most
  two in flight, every input checked, one result row per case).

Printed: every run, the medians with the runs, each efficiency, their ratio (deepradiomics / reference:
the target is >= 0.97), and deepradiomics' one-worker time against PyRadiomics' one process (what the
batch adds per case: input checks, provenance, rows). Runs alternate order between repeats; the load
average is printed before and after::

    python benchmarks/batch_scaling.py                   # 63 LGG cases, params/classical.yaml, 2 repeats
    python benchmarks/batch_scaling.py --limit 12 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lgg" / "cases.csv"

#: one process of plain PyRadiomics over a list of (image, mask) pairs: prints its seconds
REFERENCE = """
import json, sys, time
from radiomics import featureextractor, setVerbosity
setVerbosity(40)
pairs = json.load(open(sys.argv[2]))
extractor = featureextractor.RadiomicsFeatureExtractor(sys.argv[1])
start = time.perf_counter()
for image, mask in pairs:
    extractor.execute(image, mask)
print(time.perf_counter() - start)
"""

#: deepradiomics' batch over the manifest: prints its seconds, failures, and per-case compute seconds
OURS = """
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


def cases(manifest: Path, limit: int) -> list[tuple[str, str, int]]:
    """``(image, mask, input bytes)`` of the manifest's cases, absolute paths."""
    import csv

    base = manifest.resolve().parent
    out = []
    with open(manifest, newline="") as handle:
        for row in csv.DictReader(handle):
            image, mask = str(base / row["Image"]), str(base / row["Mask"])
            out.append((image, mask, os.path.getsize(image) + os.path.getsize(mask)))
    return out[:limit] if limit else out


def halves(pairs: list[tuple[str, str, int]]) -> tuple[list, list]:
    """Two halves of (nearly) equal total input size: largest first, each case to the lighter half."""
    parts: tuple[list, list] = ([], [])
    sizes = [0, 0]
    for image, mask, size in sorted(pairs, key=lambda p: -p[2]):
        lighter = 0 if sizes[0] <= sizes[1] else 1
        parts[lighter].append((image, mask))
        sizes[lighter] += size
    return parts


def run(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())


def finish(process: subprocess.Popen) -> list[str]:
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(err[-3000:])
    return out.split()


def reference(params: str, pairs: list, folder: Path) -> tuple[float, float]:
    """(seconds of the whole cohort in one process, seconds of the slower of two concurrent halves)."""
    whole = folder / "whole.json"
    whole.write_text(json.dumps([(i, m) for i, m, _ in pairs]))
    one = float(finish(run(REFERENCE, params, str(whole)))[0])
    files = []
    for index, part in enumerate(halves(pairs)):
        path = folder / f"half{index}.json"
        path.write_text(json.dumps(part))
        files.append(path)
    processes = [run(REFERENCE, params, str(path)) for path in files]
    two = max(float(finish(p)[0]) for p in processes)
    return one, two


def ours(params: str, manifest: str, jobs: int, limit: int) -> float:
    seconds, failed = finish(run(OURS, params, manifest, str(jobs), str(limit)))
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
    manifest = Path(args.manifest)
    if not manifest.is_file():
        raise SystemExit(f"manifest not found: {manifest}")
    pairs = cases(manifest, args.limit)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; params {args.params}; {len(pairs)} cases")
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            steps = ["reference", "ours"] if repeat % 2 == 0 else ["ours", "reference"]
            for step in steps:
                if step == "reference":
                    one, two = reference(args.params, pairs, Path(folder))
                    times.setdefault("reference 1", []).append(one)
                    times.setdefault("reference 2", []).append(two)
                    print(f"repeat {repeat + 1}: PyRadiomics one process {one:7.1f} s; two halves, slower {two:7.1f} s", flush=True)
                else:
                    for jobs in (1, 2):
                        seconds = ours(args.params, str(manifest), jobs, args.limit)
                        times.setdefault(f"ours {jobs}", []).append(seconds)
                        print(f"repeat {repeat + 1}: deepradiomics --jobs {jobs}: {seconds:7.1f} s", flush=True)
    med = {key: statistics.median(values) for key, values in times.items()}
    runs = {key: ", ".join(f"{v:.1f}" for v in values) for key, values in times.items()}
    ref_eff = med["reference 1"] / (2 * med["reference 2"])
    our_eff = med["ours 1"] / (2 * med["ours 2"])
    print(f"reference (PyRadiomics): one process {med['reference 1']:.1f} s ({runs['reference 1']}), two halves {med['reference 2']:.1f} s ({runs['reference 2']}); efficiency {ref_eff:.3f}")
    print(f"deepradiomics: --jobs 1 {med['ours 1']:.1f} s ({runs['ours 1']}), --jobs 2 {med['ours 2']:.1f} s ({runs['ours 2']}); efficiency {our_eff:.3f}")
    print(f"ratio of efficiencies (deepradiomics / reference): {our_eff / ref_eff:.3f} (target >= 0.97)")
    print(f"deepradiomics --jobs 1 against PyRadiomics in one process: {med['ours 1'] / med['reference 1']:.3f}x its time")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
