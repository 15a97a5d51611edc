"""fisher's ROI over a cohort: the small-ROI check on every case, and with ``--roi segmentation`` the Dice of
the network's own segmentation (the ROI of ``roi: segmentation``) against the manual masks.

For every case of the manifest the ROI is formed exactly as ``FisherVector.describe`` forms it
(:meth:`FisherVector.roi`: the manual mask, or the bundle's segmentation by
:func:`deepradiomics.training.segment.segment_slices`, the function ``deepradiomics segment`` runs) and
measured by :meth:`FisherVector.roi_size`, the small-ROI check's own numbers: the largest cross-section in
image pixels, in network pixels at the smallest scale, and whether it is shorter than the layer's
receptive field. No descriptor is computed, so the mask count takes seconds; the segmentation runs the
network once per case (a few seconds per LGG case on one thread).

Printed: one line per case, then how many cases trigger the check (and which), and for segmentations
how many are empty (each a CaseError of ``roi: segmentation``) and the Dice's mean, median, IQR and range
over all cases, and over the bundle's held-out (validation) patients. Nothing is written.

Run (repository root, project environment)::

    python benchmarks/fisher_roi.py                                   # params/fisher.yaml, masks
    python benchmarks/fisher_roi.py --roi segmentation --threads 1    # the network's own ROI, with Dice
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lgg"


def measure(params: Path, manifest: Path, roi: str) -> None:
    """Print the ROI figures of every case of ``manifest`` under the fisher settings of ``params``."""
    from deepradiomics_plugins.fisher import FisherVector

    from deepradiomics.batch import case_from_row, read_manifest
    from deepradiomics.errors import CaseError
    from deepradiomics.params import load_params

    loaded = load_params(params)
    fisher = FisherVector({**loaded.class_settings("fisher"), "roi": roi}, base_dir=loaded.base_dir)
    frame, base = read_manifest(manifest)
    validation = set(fisher.bundle.config.get("metrics", {}).get("validation_cases", []))
    print(f"{fisher.bundle.name}, layer {fisher.layer}, smallest scale {min(fisher.scales):g}, roi: {roi}; {len(frame)} cases")
    small, empty, dice, held_out = [], [], [], []
    for _, row in frame.iterrows():
        case = case_from_row(row, base, loaded.label)
        arrays = [case.array(name) for name in fisher.modalities]
        start = time.perf_counter()
        try:
            mask, provenance = fisher.roi(case, fisher.bundle.preprocessing.slices(arrays), np.shape(arrays[0]))
        except CaseError:
            empty.append(case.case_id)
            if case.case_id in validation:
                held_out.append(0.0)
            print(f"  {case.case_id}  no tumour segmented{' (held out)' if case.case_id in validation else ''}")
            continue
        size = fisher.roi_size(mask)
        line = f"  {case.case_id}  box {size.height:3d} x {size.width:3d} px, {size.network_extent:5.1f} network px  {'SMALL' if size.small else 'ok   '}"
        if provenance:
            dice.append(float(provenance["roi_dice"]))
            if case.case_id in validation:
                held_out.append(dice[-1])
            line += f"  voxels {int(provenance['roi_voxels']):6d}  Dice {dice[-1]:.4f}{' (held out)' if case.case_id in validation else ''}"
        print(f"{line}  {time.perf_counter() - start:4.1f} s")
        if size.small:
            small.append(case.case_id)
    print(f"small-ROI check fires for {len(small)} of {len(frame) - len(empty)} cases: {', '.join(small)}")
    if roi == "segmentation":
        print(f"no tumour segmented in {len(empty)} cases: {', '.join(empty) or '-'}")
        for label, values in (("all cases (empty ones as Dice 0)", dice + [0.0] * len(empty)), ("held-out patients (empty ones as Dice 0)", held_out)):
            summary(label, values)


def summary(label: str, values) -> None:
    """Mean, median (IQR) and range of ``values``."""
    if not len(values):
        return
    values = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    print(f"Dice, {label} (n={len(values)}): mean {values.mean():.4f}; median {median:.4f} (IQR {q1:.4f}-{q3:.4f}); "
          f"range {values.min():.4f}-{values.max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params" / "fisher.yaml")
    parser.add_argument("--manifest", type=Path, default=DATA / "cases.csv")
    parser.add_argument("--roi", choices=("mask", "segmentation"), default="mask")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    measure(args.params, args.manifest, args.roi)


if __name__ == "__main__":
    main()
