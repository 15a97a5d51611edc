"""Voxel-based feature maps: deepradiomics' engines against PyRadiomics' own voxel mode, on one real case.

Usage (from the repository root, in the project's environment)::

    python benchmarks/voxel_speed.py                             # brain1, every class, kernelRadius 1 and 2, 3 repeats
    python benchmarks/voxel_speed.py --repeats 5 --tools pyradiomics voxelengine
    python benchmarks/voxel_speed.py --kernel-radius 1 --voxel-batch 500 --tools pyradiomics deepradiomics
    python benchmarks/voxel_speed.py --case lung1 --params my_voxel_params.yaml

Tools, each timed on the same inputs (``--tools`` picks some, default all):

- ``pyradiomics``: ``radiomics.featureextractor.RadiomicsFeatureExtractor(params).execute(image, mask,
  voxelBased=True)``, PyRadiomics 3.0.1's voxel mode (serial): the reference;
- ``deepradiomics jobs=N`` for each ``--jobs`` value (default 1 2): ``deepradiomics.voxel.
  compute_voxel_features(extractor, image, mask, jobs=N)``, PyRadiomics' own engine over N processes
  (target ratio ``--target``, 0.6, for the largest N); its maps must be PyRadiomics' bit for bit;
- ``voxelengine jobs=N`` for each ``--engine-jobs`` value (default 1 2): ``deepradiomics.voxelengine.
  compute_voxel_features_fast(extractor, image, mask, jobs=N)``, the sparse engine (target ratio
  ``--engine-target``, 0.1, for the largest N); its maps must equal PyRadiomics' to relative 1e-9
  (absolute 1e-12 near zero), NaN where PyRadiomics has NaN.

Each run is a fresh child process (``python benchmarks/voxel_speed.py --child ...``): it imports the
libraries and reads the image and mask, then times the one call. Measured per run: wall time of the call;
CPU time of the call (user + system, the child and its worker processes, ``resource.getrusage``); peak
memory as the peak resident set size (``ru_maxrss``) of the child, and of its largest worker process when it
has any (each includes the interpreter and libraries, about 0.2 GB: the child's resident size before the
call is printed as the baseline). The order of the tools rotates from one repeat to the next. Printed
per radius and tool: median wall time with its spread (min-max), ratio of medians to PyRadiomics', CPU
median, peak memory (largest over the repeats); then, for the engine, the worst relative difference per
class against PyRadiomics' first run (over every voxel of every map of the class) and how many maps are
identical to the bit.

Params: ``setting: {binWidth: 25}`` and PyRadiomics' voxel example settings (examples/exampleSettings/
exampleVoxel.yaml: ``kernelRadius``, ``maskedKernel: true``, ``initValue: nan``, ``voxelBatch: 10000``, one
batch for brain1's 4137 ROI voxels) for every class with voxel maps (93 maps); the example's ``force2D`` and
single feature are left out, as every class in 3-D is what is timed (``--force2d`` puts force2D back). Or
``--params FILE``. Exit status 0 when every run matched, 1 otherwise. Timings depend on the machine and its
load: the CPU count and load average are printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "pyradiomics"
RTOL, ATOL = 1e-9, 1e-12


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="brain1", help="PyRadiomics test case in ../shared/data/pyradiomics (default brain1)")
    parser.add_argument("--params", type=Path, help="params file (default: every class, binWidth 25, the voxel settings below)")
    parser.add_argument("--kernel-radius", type=int, nargs="+", default=[1, 2], help="kernel radii, one comparison each (default 1 2)")
    parser.add_argument("--voxel-batch", type=int, default=10000, help="voxels per batch (default 10000, PyRadiomics' example); 0: unset")
    parser.add_argument("--force2d", action="store_true", help="force2D: true (PyRadiomics' voxel example has it)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="deepradiomics (PyRadiomics engine) worker counts (default 1 2)")
    parser.add_argument("--engine-jobs", type=int, nargs="+", default=[1, 2], help="voxelengine worker counts (default 1 2)")
    parser.add_argument("--tools", nargs="+", choices=("pyradiomics", "deepradiomics", "voxelengine"), default=["pyradiomics", "deepradiomics", "voxelengine"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.6, help="deepradiomics ratio target for the largest --jobs (default 0.6)")
    parser.add_argument("--engine-target", type=float, default=0.1, help="voxelengine ratio target for the largest --engine-jobs (default 0.1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def machine() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.node()}, {os.cpu_count()} CPUs, load average {load}"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (pool workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def resident_mb() -> float:
    """Current resident set size of this process, MB (/proc/self/statm)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_params(args, radius: int):
    if args.params:
        return str(args.params)
    voxel = {"kernelRadius": radius, "maskedKernel": True, "initValue": float("nan")}
    if args.voxel_batch > 0:
        voxel["voxelBatch"] = args.voxel_batch
    setting = {"binWidth": 25}
    if args.force2d:
        setting["force2D"] = True
    return {"setting": setting, "voxelSetting": voxel}


# -- one run, in a child process ----------------------------------------------------------------------
def child(spec: dict) -> int:
    """Run one tool once; write its result (pickled arrays) to spec['out'] and print its measurements."""
    import logging

    import radiomics
    import SimpleITK as sitk
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from deepradiomics.voxel import compute_voxel_features
    from deepradiomics.voxelengine import compute_voxel_features_fast

    radiomics.setVerbosity(logging.CRITICAL)  # PyRadiomics logs each failed MCC batch
    image, mask = sitk.ReadImage(spec["image"]), sitk.ReadImage(spec["mask"])
    extractor = RadiomicsFeatureExtractor(spec["params"])
    tool, jobs = spec["tool"], spec["jobs"]
    baseline = resident_mb()
    record = None
    start, start_cpu = time.perf_counter(), cpu_seconds()
    if tool == "pyradiomics":
        result = extractor.execute(image, mask, voxelBased=True)
    elif tool == "deepradiomics":
        result = compute_voxel_features(extractor, image, mask, jobs=jobs)
    else:
        result, record = compute_voxel_features_fast(extractor, image, mask, jobs=jobs)
    elapsed, used = time.perf_counter() - start, cpu_seconds() - start_cpu
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stored = {}
    for key, value in result.items():
        if isinstance(value, sitk.Image):
            geometry = (value.GetPixelID(), value.GetSize(), value.GetOrigin(), value.GetSpacing(), value.GetDirection())
            stored[key] = ("map", geometry, sitk.GetArrayFromImage(value))
        else:
            stored[key] = ("value", repr(value), None)
    with open(spec["out"], "wb") as handle:
        pickle.dump({"result": stored, "record": dict(record) if record else None}, handle)
    print(json.dumps({"wall": elapsed, "cpu": used, "peak_mb": own, "worker_peak_mb": workers, "baseline_mb": baseline}))
    return 0


def run_child(tool: str, jobs: int, params, image: Path, mask: Path) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as folder:
        spec = {"tool": tool, "jobs": jobs, "params": params, "image": str(image), "mask": str(mask), "out": str(Path(folder) / "result.pkl")}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} jobs={jobs} failed:\n{done.stderr[-3000:]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        with open(spec["out"], "rb") as handle:
            return measured, pickle.load(handle)


# -- comparisons ----------------------------------------------------------------------------------------
def same_result(expected: dict, got: dict) -> str | None:
    """None when ``got`` equals ``expected`` exactly (keys, order, map geometry and bits), else what differs."""
    if list(got) != list(expected):
        return f"keys differ ({len(got)} vs {len(expected)})"
    for key, (kind, info, array) in expected.items():
        other = got[key]
        if other[0] != kind or other[1] != info:
            return f"{key}: geometry, type or value differs"
        if kind == "map" and other[2].tobytes() != array.tobytes():
            return f"{key}: voxel values differ"
    return None


def class_differences(expected: dict, got: dict) -> tuple[dict, list[str]]:
    """Per class ``(worst relative difference, maps identical to the bit, maps)``, and the problems found.

    The relative difference of a voxel is ``|got - expected| / |expected|`` (absolute where
    ``|expected| <= 1e-12``); a problem is a key, geometry or diagnostic mismatch, NaN where the other has
    none, or a voxel beyond ``max(1e-9 |expected|, 1e-12)``.
    """
    problems: list[str] = []
    if list(got) != list(expected):
        return {}, [f"keys differ ({len(got)} vs {len(expected)})"]
    per_class: dict = {}
    for key, (kind, info, array) in expected.items():
        other = got[key]
        if other[0] != kind or other[1] != info:
            problems.append(f"{key}: geometry, type or value differs")
            continue
        if kind != "map":
            continue
        name = key.split("_")[1] if key.count("_") >= 2 else key
        worst, identical, count = per_class.get(name, (0.0, 0, 0))
        values = other[2]
        nan = np.isnan(array)
        if not np.array_equal(nan, np.isnan(values)):
            problems.append(f"{key}: NaN differs")
        finite = ~nan & np.isfinite(array) & np.isfinite(values)
        diff = np.abs(values[finite] - array[finite])
        scale = np.abs(array[finite])
        if (diff > np.maximum(RTOL * scale, ATOL)).any():
            problems.append(f"{key}: beyond 1e-9")
        relative = np.where(scale > ATOL, diff / np.where(scale > ATOL, scale, 1), diff)
        worst = max(worst, float(relative.max()) if relative.size else 0.0)
        per_class[name] = (worst, identical + (values.tobytes() == array.tobytes()), count + 1)
    return per_class, problems


def summarise(radius: int, names: list[str], measured: dict, args) -> list[str]:
    """Print the medians and ratios of one radius; return the target verdict lines."""
    base = statistics.median(m["wall"] for m in measured["pyradiomics"]) if measured.get("pyradiomics") else None
    base_cpu = statistics.median(m["cpu"] for m in measured["pyradiomics"]) if measured.get("pyradiomics") else None
    for name in names:
        runs = measured[name]
        walls = [m["wall"] for m in runs]
        median, median_cpu = statistics.median(walls), statistics.median(m["cpu"] for m in runs)
        peak = max(m["peak_mb"] for m in runs)
        worker = max(m["worker_peak_mb"] for m in runs)
        baseline = min(m["baseline_mb"] for m in runs)
        ratio = f"  ratio {median / base:.3f}" if base and name != "pyradiomics" else ""
        cpu_ratio = f" (ratio {median_cpu / base_cpu:.3f})" if base_cpu and name != "pyradiomics" else ""
        workers = f", largest worker {worker:.0f} MB" if worker > 0 else ""
        print(f"r={radius} {name:<24} median {median:8.2f} s (spread {min(walls):.2f}-{max(walls):.2f} s, {len(walls)} runs){ratio}; "
              f"CPU median {median_cpu:.2f} s{cpu_ratio}; peak RSS {peak:.0f} MB (baseline {baseline:.0f} MB){workers}")  # fmt: skip
    verdicts = []
    for tool, jobs, target in (("deepradiomics", args.jobs, args.target), ("voxelengine", args.engine_jobs, args.engine_target)):
        name = f"{tool} jobs={max(jobs)}"
        if base and name in measured:
            ratio = statistics.median(m["wall"] for m in measured[name]) / base
            verdicts.append(f"r={radius} ratio {name} / pyradiomics: {ratio:.3f} ({'within' if ratio <= target else 'ABOVE'} target {target})")
    return verdicts


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    import radiomics

    image_path, mask_path = DATA / f"{args.case}_image.nrrd", DATA / f"{args.case}_label.nrrd"
    if not image_path.is_file():
        print(f"case '{args.case}' not found in {DATA}", file=sys.stderr)
        return 1
    import SimpleITK as sitk

    roi = int((sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) == 1).sum())
    print(f"case: {args.case} ({roi} ROI voxels); radii {args.kernel_radius}; repeats: {args.repeats}; tools: {args.tools}")
    print(f"machine: {machine()}; Python {platform.python_version()}, PyRadiomics {radiomics.__version__}, numpy {np.__version__}")
    tools = [("pyradiomics", 1)] if "pyradiomics" in args.tools else []
    tools += [("deepradiomics", j) for j in args.jobs] if "deepradiomics" in args.tools else []
    tools += [("voxelengine", j) for j in args.engine_jobs] if "voxelengine" in args.tools else []
    failures, verdicts = [], []
    for radius in args.kernel_radius:
        params = build_params(args, radius)
        print(f"\nkernelRadius {radius}; params: {params}")
        names = [f"{tool} jobs={jobs}" if tool != "pyradiomics" else tool for tool, jobs in tools]
        measured: dict = {name: [] for name in names}
        reference = None
        differences: dict = {}
        for repeat in range(args.repeats):
            shift = repeat % len(tools)
            for (tool, jobs), name in list(zip(tools, names))[shift:] + list(zip(tools, names))[:shift]:
                m, stored = run_child(tool, jobs, params, image_path, mask_path)
                measured[name].append(m)
                result = stored["result"]
                maps = sum(kind == "map" for kind, _, _ in result.values())
                extra = f"; record {sorted(set(stored['record'].values()))}" if stored["record"] else ""
                print(f"run {repeat + 1}/{args.repeats} {name:<22} {m['wall']:8.2f} s wall {m['cpu']:8.2f} s CPU  peak {m['peak_mb']:.0f} MB"
                      f" ({maps} maps; load {os.getloadavg()[0]:.1f}){extra}", flush=True)  # fmt: skip
                if tool == "pyradiomics" and reference is None:
                    reference = result
                if reference is None:
                    continue
                if tool == "deepradiomics":
                    problem = same_result(reference, result)
                    if problem:
                        failures.append(f"r={radius} run {repeat + 1} {name}: {problem}")
                elif tool == "voxelengine":
                    per_class, problems = class_differences(reference, result)
                    differences[name] = per_class
                    failures += [f"r={radius} run {repeat + 1} {name}: {p}" for p in problems]
        verdicts += summarise(radius, names, measured, args)
        for name, per_class in differences.items():
            line = ", ".join(f"{c} {w:.2g} ({i}/{n} bit-identical)" for c, (w, i, n) in per_class.items())
            print(f"r={radius} {name} worst relative difference per class: {line}")
    print()
    for line in verdicts:
        print(line)
    if failures:
        print(f"values: {len(failures)} problem(s): " + "; ".join(failures))
    else:
        print("values: deepradiomics identical to PyRadiomics bit for bit, voxelengine within relative 1e-9 (NaN where NaN), in every run")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
