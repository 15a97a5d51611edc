"""Voxel-based feature maps: deepradiomics.voxel against PyRadiomics' own voxel mode, on one real case.

Usage (from the repository root, in the project's environment)::

    python benchmarks/voxel_speed.py                         # brain1, all classes, kernelRadius 1, voxelBatch 500
    python benchmarks/voxel_speed.py --repeats 5 --jobs 2 4
    python benchmarks/voxel_speed.py --case lung1 --voxel-batch 1000 --kernel-radius 2

What it does, ``--repeats`` times, in one process and on the same inputs (image and mask read once):

- ``pyradiomics``: ``radiomics.featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask,
  voxelBased=True)``, PyRadiomics 3.0.1's voxel mode (serial);
- ``deepradiomics jobs=N`` for each ``--jobs`` value (default 1 and 2):
  ``deepradiomics.voxel.compute_voxel_features(extractor, image, mask, jobs=N)`` with the same extractor.

The order of the tools rotates from one repeat to the next, so that none always runs first. Then it
prints, per tool, the median wall time with its spread (min-max over the repeats), the ratio of medians
to PyRadiomics' median (the target for ``jobs=2`` is <= 0.6), the CPU time of each run (this process and
its pool's workers: the work done, far less sensitive than wall time to what else runs on the machine;
``jobs`` only shortens wall time when cores are free), and checks that every result of every run is
identical to PyRadiomics' first result: same keys in the same order and, for each map, the same
geometry, pixel type and voxel values bit for bit (diagnostics equal, NaN included).

Params: PyRadiomics' defaults (every class, binWidth 25) with ``voxelSetting`` ``kernelRadius`` and
``voxelBatch`` from the command line, or ``--params FILE``. Exit status 0 when every run matched
PyRadiomics, 1 otherwise. Timings depend on the machine and its load: the CPU count and load average are
printed before and after, and a result should be quoted with them.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pyradiomics"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="brain1", help="PyRadiomics test case in ../shared/data/pyradiomics (default brain1)")
    parser.add_argument("--params", type=Path, help="params file (default: all classes, binWidth 25, the voxel settings below)")
    parser.add_argument("--kernel-radius", type=int, default=1)
    parser.add_argument("--voxel-batch", type=int, default=500, help="voxels per batch; 0: one batch per class (PyRadiomics' default)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="deepradiomics worker counts to time (default 1 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.6, help="ratio target for the largest --jobs value (default 0.6)")
    return parser.parse_args(argv)


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.node()}, {os.cpu_count()} CPUs, load average {load}"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the pool's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def same_result(expected, got) -> str | None:
    """None when ``got`` equals ``expected`` exactly (keys, order, map geometry and bits), else what differs."""
    import SimpleITK as sitk

    if list(got) != list(expected):
        return f"keys differ ({len(got)} vs {len(expected)})"
    for key, value in expected.items():
        other = got[key]
        if isinstance(value, sitk.Image):
            geometry = lambda image: (image.GetPixelID(), image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection())  # noqa: E731
            if not isinstance(other, sitk.Image) or geometry(other) != geometry(value):
                return f"{key}: geometry or type differs"
            if sitk.GetArrayViewFromImage(other).tobytes() != sitk.GetArrayViewFromImage(value).tobytes():
                return f"{key}: voxel values differ"
        elif repr(other) != repr(value):
            return f"{key}: {other!r} vs {value!r}"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    import radiomics
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxel import compute_voxel_features

    radiomics.setVerbosity(logging.CRITICAL)  # PyRadiomics logs each failed MCC batch; both tools would print them
    image_path, mask_path = DATA / f"{args.case}_image.nrrd", DATA / f"{args.case}_label.nrrd"
    if not image_path.is_file():
        print(f"case '{args.case}' not found in {DATA}", file=sys.stderr)
        return 1
    image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
    if args.params:
        params: object = str(args.params)
    else:
        voxel = {"kernelRadius": args.kernel_radius}
        if args.voxel_batch > 0:
            voxel["voxelBatch"] = args.voxel_batch
        params = {"setting": {"binWidth": 25}, "voxelSetting": voxel}
    extractor = RadiomicsFeatureExtractor(params)
    roi = int((sitk.GetArrayViewFromImage(mask) == extractor.settings.get("label", 1)).sum())
    print(f"case: {args.case} ({roi} ROI voxels); params: {args.params or params}; repeats: {args.repeats}")
    print(f"machine: {machine()}; Python {platform.python_version()}, PyRadiomics {radiomics.__version__}, numpy {np.__version__}")

    tools = [("pyradiomics", lambda: extractor.execute(image, mask, voxelBased=True))]
    for jobs in args.jobs:
        tools.append((f"deepradiomics jobs={jobs}", lambda jobs=jobs: compute_voxel_features(extractor, image, mask, jobs=jobs)))
    times: dict[str, list[float]] = {name: [] for name, _ in tools}
    cpu: dict[str, list[float]] = {name: [] for name, _ in tools}
    reference = None
    mismatches = []
    for repeat in range(args.repeats):
        order = tools[repeat % len(tools):] + tools[: repeat % len(tools)]
        for name, run in order:
            start, start_cpu = time.perf_counter(), cpu_seconds()
            result = run()
            elapsed, used = time.perf_counter() - start, cpu_seconds() - start_cpu
            times[name].append(elapsed)
            cpu[name].append(used)
            maps = sum(isinstance(v, sitk.Image) for v in result.values())
            load = os.getloadavg()[0]
            print(f"run {repeat + 1}/{args.repeats} {name:<22} {elapsed:8.2f} s wall {used:8.2f} s CPU  ({maps} maps; load {load:.1f})", flush=True)
            if reference is None:  # repeat 1 runs PyRadiomics first: its result is the reference
                reference = result
            difference = same_result(reference, result)
            if difference:
                mismatches.append(f"run {repeat + 1} {name}: {difference}")

    base, base_cpu = statistics.median(times["pyradiomics"]), statistics.median(cpu["pyradiomics"])
    for name, values in times.items():
        median, median_cpu = statistics.median(values), statistics.median(cpu[name])
        spread = f"{min(values):.2f}-{max(values):.2f}"
        ratio = "" if name == "pyradiomics" else f"  ratio {median / base:.3f}"
        cpu_ratio = "" if name == "pyradiomics" else f" (ratio {median_cpu / base_cpu:.3f})"
        print(f"{name:<24} median {median:8.2f} s  (spread {spread} s over {len(values)} runs){ratio}; CPU median {median_cpu:.2f} s{cpu_ratio}")
    last = f"deepradiomics jobs={max(args.jobs)}"
    ratio = statistics.median(times[last]) / base
    verdict = "within" if ratio <= args.target else "ABOVE"
    print(f"ratio {last} / pyradiomics: {ratio:.3f} ({verdict} target {args.target})")
    runs = sum(len(v) for v in times.values())
    if mismatches:
        print(f"values: {len(mismatches)} run(s) differ from PyRadiomics: " + "; ".join(mismatches))
    else:
        print(f"values: all {runs} results identical to PyRadiomics' (keys, order, map geometry, every voxel bit for bit)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
