"""Speed of the ``cnn`` class (params/cnn.yaml: random VGG-19-3D, conv2_2/conv4_2/conv5_4, 16 and 32-voxel
patches) on real LGG cases, against the FLOP limit measured in the same run.

Reported:

* per case (three LGG cases with small, medium and large ROIs, so that the growth with ROI size shows):
  patches per size, convolution FLOPs of those patches counted analytically from the layer shapes
  (``2 * C_in * C_out * 27 * side**3`` per convolution up to conv5_4, :meth:`VGG3D.conv_flops`), the
  median seconds of ``CNNFeatures.compute`` over ``--repeats`` runs with the min-max spread, and the ratio
  to the FLOP limit (FLOPs / GEMM rate);
* the GEMM rate: median of ``--repeats`` float32 ``torch.mm`` of 2048 x 1728 by 1728 x 256 (a batch of
  32-voxel patches through a 64-channel 3x3x3 convolution, as im2col would shape it) in the same run;
* the choices inside the network pass, on the 16-voxel patches of the largest case, each timed the same
  way and compared with the class's own path (relative difference of the pooled activations): batched
  patches vs one patch at a time, channels-last weights and input vs contiguous memory,
  ``inference_mode`` vs ``no_grad``.

Run: ``python benchmarks/cnn_speed.py [--threads 2] [--repeats 5]`` from the repository root. The
network build (seeded weights, about a second) is reported once and not counted per case. No GPU was
available for the recorded runs (see benchmarks/README_cnn.md); ``--device cuda`` runs the same on one.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "lgg"
#: LGG cases with a small (1,870 voxels), a medium (18,399) and a large (68,295) ROI
CASES = ("TCGA_DU_8165_19970205", "TCGA_DU_6404_19850629", "TCGA_DU_7014_19860618")


def timed(fn, repeats: int) -> tuple[float, float, float, object]:
    """Median, min and max seconds of ``repeats`` calls after one warm-up call, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times), out


def gemm_rate(repeats: int) -> tuple[float, float, float]:
    """float32 GEMM FLOP/s (median, min, max) of a 2048 x 1728 by 1728 x 256 product."""
    import torch

    a, b = torch.randn(2048, 1728), torch.randn(1728, 256)
    median, fastest, slowest, _ = timed(lambda: torch.mm(a, b), max(repeats, 5) * 4)
    flops = 2 * 2048 * 1728 * 256
    return flops / median, flops / slowest, flops / fastest


def max_relative_difference(a: dict, b: dict) -> float:
    import numpy as np

    worst = 0.0
    for key, (means, maxima) in a.items():
        for x, y in ((means, b[key][0]), (maxima, b[key][1])):
            scale = max(float(np.abs(x).max()), 1e-30)
            worst = max(worst, float(np.abs(x - y).max()) / scale)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"LGG data not found at {DATA}", file=sys.stderr)
        return 1

    import torch
    import yaml
    from deepradiomics_plugins.cnn import CNNFeatures
    from deepradiomics_plugins.cnn.patches import extract_patches, grid_volume, patch_centres

    from deepradiomics.case import Case

    torch.set_num_threads(args.threads)
    settings = yaml.safe_load((REPO / "params" / "cnn.yaml").read_text())["featureClass"]["cnn"]
    settings["device"] = args.device
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"device: {args.device}" + ("" if args.device != "cpu" else " (no GPU used)"))
    print(f"params/cnn.yaml: {settings}")

    cnn = CNNFeatures(settings)
    start = time.perf_counter()
    encoder = cnn._encoder()
    print(f"network build (seeded weights, {encoder.parameters:,} parameters): {time.perf_counter() - start:.2f} s, once per process")
    net = encoder.networks[""]
    deepest = cnn._layers()[-1].name
    rate, rate_low, rate_high = gemm_rate(args.repeats)
    print(f"GEMM rate (float32 2048x1728 @ 1728x256): median {rate / 1e9:.1f} GFLOP/s (range {rate_low / 1e9:.1f}-{rate_high / 1e9:.1f})")
    print()
    print(f"{'case':<24}{'ROI voxels':>11}{'P16':>5}{'P32':>5}{'GFLOP':>8}{'limit s':>9}{'median s':>10}{'min-max s':>14}{'x limit':>9}")
    largest = None
    for case_id in CASES:
        folder = DATA / case_id
        case = Case({"Image": folder / "flair.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)
        case.check()  # read the files once: time the features, not the disk
        median, fastest, slowest, _ = timed(lambda case=case: cnn.compute(case), args.repeats)
        patches = cnn.patches_
        flops = sum(n * net.conv_flops(size, deepest) for size, n in patches.items())
        limit = flops / rate
        print(
            f"{case_id:<24}{cnn.roi_voxels_:>11,}{patches[16]:>5}{patches[32]:>5}{flops / 1e9:>8.1f}{limit:>9.2f}"
            f"{median:>10.2f}{f'{fastest:.2f}-{slowest:.2f}':>14}{median / limit:>9.2f}"
        )
        largest = case

    # ---------------------------------------------------------------- the choices in the network pass
    print()
    grid = cnn._grid(largest)
    volume = grid_volume(largest.image("Image"), grid)
    patches = extract_patches(volume, patch_centres(grid.roi, 16), 16)
    flops = len(patches) * net.conv_flops(16, deepest)
    print(f"network pass on the {len(patches)} 16-voxel patches of {largest.case_id} ({flops / 1e9:.1f} GFLOP, limit {flops / rate:.2f} s):")

    def variant(batch_size, channels_last, mode):
        clone = CNNFeatures({**settings, "batch_size": batch_size} if batch_size else settings)
        clone.encoder_ = encoder
        encoder.use_channels_last(channels_last)
        if mode == "no_grad":
            original = torch.inference_mode
            torch.inference_mode = torch.no_grad  # the class enters inference_mode; swap it for this variant only
            try:
                return timed(lambda: clone.encode_patches(patches), args.repeats)
            finally:
                torch.inference_mode = original
        return timed(lambda: clone.encode_patches(patches), args.repeats)

    chosen = encoder.channels_last
    reference = None
    rows = [
        ("batched (auto), channels-last, inference_mode", None, True, "inference"),  # what the class does
        ("batched (auto), contiguous, inference_mode", None, False, "inference"),
        ("one patch at a time, channels-last, inference_mode", 1, True, "inference"),
        ("batched (auto), channels-last, no_grad", None, True, "no_grad"),
    ]
    for label, batch_size, channels_last, mode in rows:
        median, fastest, slowest, out = variant(batch_size, channels_last, mode)
        reference = reference or out
        print(
            f"  {label:<50} median {median:6.2f} s ({fastest:.2f}-{slowest:.2f}) = {median / (flops / rate):5.2f} x limit; "
            f"max rel. difference {max_relative_difference(reference, out):.1e}"
        )
    encoder.use_channels_last(chosen)
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
