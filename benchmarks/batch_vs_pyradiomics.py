"""Wall time of `deepradiomics batch` against PyRadiomics' own `pyradiomics` command on one manifest.

Both tools run as subprocesses on the same manifest, the same params file and the same number of
worker processes, alternating which goes first in each repeat (so neither always gets the cold file
cache). The script prints each time, the medians, the ratio deepradiomics / pyradiomics (target
<= 1.05: the wrapper should cost no more than 5 % over plain PyRadiomics) and the largest relative
difference between the two tools' feature values, which should be 0 (both call PyRadiomics).

Usage (from the repository root, in the project's environment)::

    python benchmarks/batch_vs_pyradiomics.py                 # 63 LGG cases, params/classical.yaml, --jobs 2, 2 repeats
    python benchmarks/batch_vs_pyradiomics.py --repeats 3 --jobs 4
    python benchmarks/batch_vs_pyradiomics.py --limit 6 --repeats 1   # a quick smoke run on 6 cases

Exit status: 0 when both tools succeed on every case and their values agree (max relative difference
<= 1e-9), 1 otherwise. The ratio target is reported, not enforced: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO.parent / "shared" / "data" / "lgg" / "cases.csv"
DEFAULT_PARAMS = REPO / "params" / "classical.yaml"
TARGET_RATIO = 1.05
VALUE_TOLERANCE = 1e-9  # both tools run the same PyRadiomics code: values should be identical
ABS_FLOOR = 1e-9  # denominator floor for values that are zero up to round-off


def find_command(name: str) -> str:
    """The console script ``name`` of the running interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        sys.exit(f"error: command '{name}' not found beside {sys.executable} or on PATH: install the project (make install)")
    return found


def subset_manifest(manifest: Path, limit: int, folder: Path) -> Path:
    """The first ``limit`` cases of ``manifest`` as a new CSV with absolute image and mask paths."""
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = [row for _, row in zip(range(limit), reader)]
    for row in rows:
        for column in fields:
            if (column in ("Image", "Mask") or column.startswith("Image_")) and row[column]:
                path = Path(row[column])
                row[column] = str(path if path.is_absolute() else (manifest.parent / path).resolve())
    target = folder / f"{manifest.stem}_first{limit}.csv"
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target


def tool_commands(params: Path, manifest: Path, jobs: int, folder: Path) -> dict[str, Callable[[int], tuple[list[str], Path]]]:
    """``{tool: f(run_index) -> (argv, output_csv)}`` for both tools."""
    deepradiomics, pyradiomics = find_command("deepradiomics"), find_command("pyradiomics")

    def deep(index: int):
        out = folder / f"deepradiomics_{index}.csv"
        return [deepradiomics, "batch", str(params), str(manifest), "-o", str(out), "--jobs", str(jobs), "--no-progress"], out

    def plain(index: int):
        out = folder / f"pyradiomics_{index}.csv"  # pyradiomics appends to -o: each run gets a fresh file
        return [pyradiomics, str(manifest), "-p", str(params), "-o", str(out), "-f", "csv", "--jobs", str(jobs)], out

    return {"deepradiomics": deep, "pyradiomics": plain}


def run_timed(argv: list[str], log: Path) -> float:
    """Run ``argv``; return its wall time in seconds; exit with its log tail when it fails."""
    start = time.perf_counter()
    with open(log, "w") as handle:
        completed = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        tail = log.read_text()[-3000:]
        sys.exit(f"error: {' '.join(argv)} exited with {completed.returncode}; log tail:\n{tail}")
    return elapsed


def compare_outputs(deep_csv: Path, plain_csv: Path, manifest_columns: set[str]) -> dict:
    """Compare the feature columns (not the manifest's, not ``diagnostics_*``) of the two tables by case ID."""
    import numpy as np
    import pandas as pd

    deep = pd.read_csv(deep_csv, index_col="ID", dtype={"ID": str})
    plain = pd.read_csv(plain_csv, dtype={"ID": str}).set_index("ID")
    problems = []
    if "diagnostics_Error" in deep.columns:
        failed = deep["diagnostics_Error"].dropna().astype(str)
        failed = failed[failed.str.strip().str.len() > 0]
        if len(failed):
            problems.append(f"deepradiomics failed on {len(failed)} cases: {dict(failed.head(3))}")

    def feature_columns(table):
        return [c for c in table.columns if c not in manifest_columns and not c.startswith("diagnostics_") and c.count("_") >= 2]

    deep_features, plain_features = feature_columns(deep), feature_columns(plain)
    if set(deep_features) != set(plain_features):
        only_deep = sorted(set(deep_features) - set(plain_features))[:5]
        only_plain = sorted(set(plain_features) - set(deep_features))[:5]
        problems.append(f"feature columns differ: only deepradiomics {only_deep}, only pyradiomics {only_plain}")
    if set(deep.index) != set(plain.index):
        problems.append(f"case IDs differ: {sorted(set(deep.index) ^ set(plain.index))[:5]}")
    columns = [c for c in deep_features if c in set(plain_features)]
    ids = [i for i in deep.index if i in set(plain.index)]
    a = deep.loc[ids, columns].to_numpy(dtype=np.float64)
    b = plain.loc[ids, columns].to_numpy(dtype=np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    difference = np.where(both_nan, 0.0, np.abs(a - b) / np.maximum(np.abs(b), ABS_FLOOR))
    difference = np.where(np.isnan(difference), np.inf, difference)  # NaN on one side only
    worst = np.unravel_index(np.argmax(difference), difference.shape) if difference.size else None
    return {
        "cases": len(ids),
        "features": len(columns),
        "values": int(difference.size),
        "max_relative_difference": float(difference.max()) if difference.size else float("nan"),
        "worst": (ids[worst[0]], columns[worst[1]], float(a[worst]), float(b[worst])) if worst is not None else None,
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="batch manifest (default: %(default)s)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="params file for both tools (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for both tools (default: %(default)s)")
    parser.add_argument(
        "--repeats", "-n", type=int, default=2, help="runs of each tool, alternating order (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases of the manifest (a quick check)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the output tables and logs in this folder")
    args = parser.parse_args(argv)

    if not args.manifest.is_file():
        sys.exit(f"error: manifest {args.manifest} not found (the shared data folder sits beside the repository)")
    if not args.params.is_file():
        sys.exit(f"error: params file {args.params} not found")
    if args.repeats < 1 or args.jobs < 1:
        sys.exit("error: --repeats and --jobs must be >= 1")

    folder = Path(tempfile.mkdtemp(prefix="bench_batch_")) if args.keep is None else args.keep
    folder.mkdir(parents=True, exist_ok=True)
    manifest = args.manifest.resolve() if args.limit is None else subset_manifest(args.manifest.resolve(), args.limit, folder)
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        n_cases = sum(1 for _ in reader)
        manifest_columns = set(reader.fieldnames or [])

    import radiomics

    print(f"manifest: {args.manifest} ({n_cases} cases); params: {args.params}; --jobs {args.jobs}; {args.repeats} repeat(s)")
    print(
        f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"Python {platform.python_version()}, PyRadiomics {radiomics.__version__}"
    )
    commands = tool_commands(args.params.resolve(), manifest, args.jobs, folder)
    times: dict[str, list[float]] = {tool: [] for tool in commands}
    outputs: dict[str, Path] = {}
    for index in range(args.repeats):
        order = list(commands) if index % 2 == 0 else list(reversed(commands))
        for tool in order:
            argv_, out = commands[tool](index)
            elapsed = run_timed(argv_, folder / f"{tool}_{index}.log")
            times[tool].append(elapsed)
            outputs[tool] = out
            print(f"run {index + 1}/{args.repeats} {tool:14s} {elapsed:8.2f} s  ({n_cases / elapsed:.2f} cases/s)", flush=True)

    medians = {tool: statistics.median(values) for tool, values in times.items()}
    ratio = medians["deepradiomics"] / medians["pyradiomics"]
    for tool, values in times.items():
        print(f"{tool:14s} median {medians[tool]:8.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"ratio deepradiomics/pyradiomics: {ratio:.3f} ({verdict} target {TARGET_RATIO})")

    comparison = compare_outputs(outputs["deepradiomics"], outputs["pyradiomics"], manifest_columns)
    worst = comparison["worst"]
    where = (
        f" at {worst[0]} {worst[1]}: {worst[2]!r} vs {worst[3]!r}" if worst and comparison["max_relative_difference"] > 0 else ""
    )
    print(
        f"feature values: {comparison['cases']} cases x {comparison['features']} features = {comparison['values']} values; "
        f"max relative difference {comparison['max_relative_difference']:.3g}{where}"
    )
    for problem in comparison["problems"]:
        print(f"problem: {problem}")
    kept = f"; outputs and logs kept in {folder}" if args.keep is not None else ""
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}{kept}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    ok = not comparison["problems"] and comparison["max_relative_difference"] <= VALUE_TOLERANCE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
