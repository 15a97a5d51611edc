"""Dice of a bundle's automatic segmentation against the manual masks, on the original image grid.

For each bundle, the held-out (validation) patients listed in its ``config.yaml`` (``metrics.validation_cases``)
are segmented exactly as ``deepradiomics segment BUNDLE IMAGE -m ... -o mask.nii.gz`` does
(:func:`deepradiomics.training.segment.segment_images`: the bundle's preprocessing, the network's
``segment``, class scores resampled to the original grid, argmax, inverse label map), and the 3D Dice of
"label > 0" against the manual mask (> 0) is computed on the original 256 x 256 x Z grid of the LGG data.

Printed per bundle: one line per patient (Dice, predicted and manual voxel counts, seconds), then the
mean, the median with the interquartile range and the range, and the bundle's own validation Dice from
training (measured on the network's input grid) for comparison. Nothing is written.

Run (repository root, project environment)::

    python benchmarks/segment_dice.py                                  # vq-lgg-cpu and dlr-lgg-cpu
    python benchmarks/segment_dice.py --bundle runs/dlr --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg"


def evaluate(bundle_name: str, manifest: Path) -> list[float]:
    import pandas as pd

    from deepradiomics.models import load_bundle
    from deepradiomics.training.segment import dice, segment_images

    bundle = load_bundle(bundle_name)
    table = pd.read_csv(manifest).set_index("ID")
    cases = bundle.config["metrics"]["validation_cases"]
    columns = {m["name"]: m["column"] for m in bundle.config["modalities"]}
    print(f"\n{bundle.name} ({bundle.architecture}, sha256 {bundle.sha256[:12]}...): {len(cases)} held-out patients; "
          f"channels {', '.join(f'{n}={c}' for n, c in columns.items())}")
    import SimpleITK as sitk

    scores = []
    for case in cases:
        row = table.loc[case]
        images = {name: str(manifest.parent / row[column]) for name, column in columns.items()}
        start = time.perf_counter()
        labels = sitk.GetArrayFromImage(segment_images(bundle, images)) > 0
        seconds = time.perf_counter() - start
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(manifest.parent / row["Mask"]))) > 0
        score = dice(labels, truth)
        scores.append(score)
        print(f"  {case}  Dice {score:.4f}  predicted {int(labels.sum()):7d}  manual {int(truth.sum()):7d} voxels  {seconds:5.1f} s")
    values = np.array(scores)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    print(f"  mean {values.mean():.4f}; median {median:.4f} (IQR {q1:.4f}-{q3:.4f}); range {values.min():.4f}-{values.max():.4f}")
    recorded = bundle.config["metrics"].get("validation_dice_mean")
    grid = bundle.preprocessing.input_size
    if recorded is not None:
        print(f"  recorded at training (network input grid {grid or 'native'}): mean {recorded:.4f}")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", action="append", help="bundle name or folder (repeatable; default: vq-lgg-cpu and dlr-lgg-cpu)")
    parser.add_argument("--manifest", type=Path, default=DATA / "cases.csv")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}; torch {torch.__version__}, "
          f"{args.threads} thread(s)")
    for bundle in args.bundle or ["vq-lgg-cpu", "dlr-lgg-cpu"]:
        evaluate(bundle, args.manifest)
    print(f"\nload average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
