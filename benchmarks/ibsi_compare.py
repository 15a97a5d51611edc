"""IBSI 1 compliance: deepradiomics against PyRadiomics 3.0.1 alone, and the evidence for each known deviation.

Usage (from the repository root; the IBSI data sits in ../shared/data/ibsi)::

    .venv/bin/python benchmarks/ibsi_compare.py                  # pass counts, both engines, and their agreement
    .venv/bin/python benchmarks/ibsi_compare.py --evidence       # + which correction removes each failure
    .venv/bin/python benchmarks/ibsi_compare.py --evidence --list   # + the KNOWN_DEVIATIONS spec that evidence gives
    .venv/bin/python benchmarks/ibsi_compare.py --config B,C,D,E --resampling-steps   # what each interpolation step changes

Both engines get the same params (``deepradiomics.ibsi.configuration_params``): deepradiomics'
``Extractor.from_dict(params).execute`` and ``radiomics.featureextractor.RadiomicsFeatureExtractor(params)
.execute``. ``--evidence`` repeats the deepradiomics run with IBSI's interpolation, with IBSI's fixed bin
size edges (PyRadiomics' ``imageoperations.getBinEdges`` replaced by ``deepradiomics.ibsi.ibsi_bin_edges``
for that run only, as the ``IBSI_BINNING`` switch of PyRadiomics' own benchmark does) and with both, and
reports for every failure of the default run the smallest set of corrections under which it passes
(``deepradiomics.ibsi.explain_failures``), next to the causes listed in ``KNOWN_DEVIATIONS``.
Times are wall-clock seconds of one run each (informative, not a benchmark of speed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from pathlib import Path

import radiomics

from deepradiomics import ibsi


@contextlib.contextmanager
def ibsi_binning():
    """PyRadiomics bins with IBSI's fixed bin size edges inside the block (restored after it)."""
    from radiomics import imageoperations

    original = imageoperations.getBinEdges
    imageoperations.getBinEdges = ibsi.ibsi_bin_edges
    try:
        yield
    finally:
        imageoperations.getBinEdges = original


def timed(function, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def engines(data_dir: Path, names: list[str]) -> None:
    """Pass counts of deepradiomics and of PyRadiomics alone (same params), and their largest difference."""
    print("| configuration | mapped | deepradiomics passed | PyRadiomics alone passed | max abs difference | seconds (deepradiomics / PyRadiomics) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        ours, ours_s = timed(ibsi.run_configuration, name, data_dir, engine="deepradiomics")
        theirs, theirs_s = timed(ibsi.run_configuration, name, data_dir, engine="pyradiomics")
        both = ours["value"].notna() & theirs["value"].notna()
        same_missing = bool((ours["value"].isna() == theirs["value"].isna()).all())
        difference = float((ours.loc[both, "value"] - theirs.loc[both, "value"]).abs().max())
        note = "" if same_missing else " (different missing values)"
        print(
            f"| {name} | {len(ours)} | {int(ours['passed'].sum())} | {int(theirs['passed'].sum())} | {difference:.3g}{note} "
            f"| {ours_s:.1f} / {theirs_s:.1f} |"
        )


def evidence(data_dir: Path, names: list[str], print_list: bool) -> int:
    """Explain every failure of the default run by the corrections that remove it; the number of problems."""
    problems = 0
    specs = {}
    for name in names:
        runs = {}
        runs[frozenset()], seconds = timed(ibsi.run_configuration, name, data_dir)
        runs[frozenset({"interpolation"})], ibsi_s = timed(ibsi.run_configuration, name, data_dir, interpolation="ibsi")
        with ibsi_binning():
            runs[frozenset({"binning"})] = ibsi.run_configuration(name, data_dir)
            runs[frozenset({"interpolation", "binning"})] = ibsi.run_configuration(name, data_dir, interpolation="ibsi")
        explained = ibsi.explain_failures(runs)
        counts = ibsi.summarize(runs[frozenset({"interpolation"})]).iloc[0]
        print(
            f"\n## {name}: {len(explained)} failures in the default run ({seconds:.1f} s); with IBSI interpolation "
            f"{counts['passed']} of {counts['mapped']} pass, {counts['passed_ibsi_definition']} with IBSI definitions ({ibsi_s:.1f} s)"
        )
        unexplained = explained[explained["corrections"] == ""]
        mismatched = explained[explained["causes"] != explained["listed"]]
        for causes, part in explained.groupby("causes", sort=False):
            print(f"- {causes or 'NO CORRECTION MAKES IT PASS'}: {len(part)}: {' '.join(part['tag'])}")
        for _, row in explained[explained["alternatives"] != ""].iterrows():
            print(f"  ALTERNATIVE {row['tag']}: {row['corrections']} or {row['alternatives']}")
        for _, row in mismatched.iterrows():
            print(f"  MISMATCH {row['tag']}: evidence {row['causes'] or '-'}, listed {row['listed'] or '-'}")
        listed = set(ibsi.KNOWN_DEVIATIONS.get(name, {}))
        passing = sorted(listed - set(explained["tag"]))
        if passing:
            print(f"  LISTED BUT PASSING: {' '.join(passing)}")
        problems += len(unexplained) + len(mismatched) + len(passing)
        spec: dict[str, list[str]] = {}
        for _, row in explained.iterrows():
            spec.setdefault(row["causes"], []).append(row["tag"])
        specs[name] = spec
    if print_list:
        print("\nKNOWN_DEVIATIONS spec:")
        for name, spec in specs.items():
            print(f'    "{name}": _deviations(\n        {{')
            for causes, tags in spec.items():
                print(f'            "{causes}": "{" ".join(tags)}",')
            print("        }\n    ),")
    return problems


def resampling_steps(data_dir: Path, names: list[str]) -> None:
    """Passes with IBSI's interpolation, then with one of its steps done as PyRadiomics does it."""
    import functools

    variants = {
        "IBSI interpolation": {},
        "mask by nearest neighbour": {"mask_interpolator": "sitkNearestNeighbor"},
        "intensities not rounded": {"round_intensities": False},
    }
    print("\n| configuration | interpolation | passed (all) | passed (features) |\n|---|---|---|---|")
    original = ibsi.ibsi_interpolate
    for name in names:
        if ibsi.CONFIGURATIONS[name].spacing is None:
            continue
        for label, options in variants.items():
            ibsi.ibsi_interpolate = functools.partial(original, **options)
            try:
                table = ibsi.run_configuration(name, data_dir, interpolation="ibsi")
            finally:
                ibsi.ibsi_interpolate = original
            features = table[~table["column"].str.startswith("diagnostics_")]
            print(f"| {name} | {label} | {int(table['passed'].sum())} of {len(table)} | {int(features['passed'].sum())} of {len(features)} |")
        table = ibsi.run_configuration(name, data_dir)
        features = table[~table["column"].str.startswith("diagnostics_")]
        print(f"| {name} | PyRadiomics' resampling | {int(table['passed'].sum())} of {len(table)} | {int(features['passed'].sum())} of {len(features)} |")


def main(argv=None) -> int:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="IBSI data folder (default: ../shared/data/ibsi)")
    parser.add_argument("--config", default=",".join(ibsi.CONFIGURATION_NAMES), help="comma-separated configurations")
    parser.add_argument("--evidence", action="store_true", help="run the corrections and explain every failure")
    parser.add_argument("--list", action="store_true", help="with --evidence: print the KNOWN_DEVIATIONS spec")
    parser.add_argument("--resampling-steps", action="store_true", help="passes with IBSI's interpolation and one step done as PyRadiomics does")
    args = parser.parse_args(argv)
    radiomics.setVerbosity(logging.ERROR)
    data_dir = ibsi.find_data_dir(args.data)
    names = [n.strip() for n in args.config.split(",") if n.strip()]
    print(f"PyRadiomics {radiomics.__version__}; data {data_dir}; rule: within tolerance, unrounded or at {ibsi.SIGNIFICANT_DIGITS} significant digits")
    engines(data_dir, names)
    if args.resampling_steps:
        resampling_steps(data_dir, names)
    if args.evidence:
        problems = evidence(data_dir, names, args.list)
        print(f"\n{problems} problem(s): failures no correction explains, causes differing from the list, listed values that pass")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
