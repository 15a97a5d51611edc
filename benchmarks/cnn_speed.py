"""Speed of the ``cnn`` class (params/cnn.yaml: random VGG-19-3D, conv2_2/conv4_2/conv5_4, 16 and 32-voxel
patches) on real LGG cases, against the FLOP limit measured in the same run.

Reported:

* per case (three LGG cases with small, medium and large ROIs, so that the growth with ROI size shows):
  patches per size, convolution FLOPs of those patches counted analytically from the layer shapes
  (``2 * C_in * C_out * 27 * side**3`` per convolution up to conv5_4, :meth:`VGG3D.conv_flops`), the
  median seconds of ``CNNFeatures.compute`` over ``--repeats`` runs with the min-max spread, and the
  median ratio to the FLOP limit (FLOPs / GEMM rate) with its spread;
* the GEMM rate: float32 ``torch.mm`` of two 2048 x 2048 matrices (17 GFLOP, the size of one case's
  work; the most efficient GEMM shape, so the strictest reference: an im2col-shaped 2048 x 1728 by
  1728 x 256 product ran about 10 % slower here), the median of 3 products timed just before every
  timed run, so that each ratio compares two numbers measured side by side (the project's machine is
  shared and its speed drifts); runs of the cases, and of the variants below, alternate;
* the choices inside the network pass, on the 16-voxel patches of the largest case, each timed the same
  way and compared with the class's own path (relative difference of the pooled activations): batched
  patches vs one patch at a time, channels-last weights and input vs contiguous memory vs channels-last
  input only, ``inference_mode`` vs ``no_grad``;
* the GFLOP/s of every convolution on the small batches (2 + 1 patches) of the smallest case, which
  show where small ROIs lose time.

Run: ``python benchmarks/cnn_speed.py [--threads 2] [--repeats 5] [--part all|cases|pass|layers]`` from
the repository root; recorded figures are in benchmarks/README.md. The
network build (seeded weights, about a second) is reported once and not counted per case. No GPU was
available for the recorded runs (see benchmarks/README.md); ``--device cuda`` runs the same on one.
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


def gemm_seconds(a, b, calls: int = 3) -> float:
    """Median seconds of ``calls`` float32 products ``a @ b``."""
    import torch

    times = []
    for _ in range(calls):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(functions: dict, repeats: int, gemm, prepare: dict | None = None) -> dict:
    """Time each function ``repeats`` times, interleaved with each other and with the GEMM reference.

    Other jobs on the machine change its speed from minute to minute; timing the variants and the GEMM
    in turn, round after round (the order rotating), lets every ratio compare numbers taken side by side.
    ``prepare[name]()``, if given, runs untimed before each call (e.g. switching the weights' memory format).
    Returns ``{name: {"seconds": [...], "gemm": [...] (FLOP/s measured just before), "out": last result}}``.
    """
    names = list(functions)
    prepare = prepare or {}
    results = {}
    for name in names:  # warm-up
        prepare.get(name, lambda: None)()
        results[name] = {"seconds": [], "gemm": [], "out": functions[name]()}
    for round_index in range(repeats):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            prepare.get(name, lambda: None)()
            rate = gemm()
            start = time.perf_counter()
            results[name]["out"] = functions[name]()
            results[name]["seconds"].append(time.perf_counter() - start)
            results[name]["gemm"].append(rate)
    return results


def summary(seconds: list[float], rates: list[float], flops: float) -> str:
    """Median seconds (min-max) and the median ratio to the FLOP limit of the same round (min-max)."""
    ratios = [t * r / flops for t, r in zip(seconds, rates)]
    return (
        f"{statistics.median(seconds):7.2f} s ({min(seconds):.2f}-{max(seconds):.2f})  "
        f"{statistics.median(ratios):5.2f} x limit ({min(ratios):.2f}-{max(ratios):.2f})"
    )


def max_relative_difference(a: dict, b: dict) -> float:
    """Largest difference between two ``encode_patches`` results, relative to each tap's largest value."""
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
    parser.add_argument("--part", choices=("all", "cases", "pass", "layers"), default="all", help="what to time (default: all)")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"LGG data not found at {DATA}", file=sys.stderr)
        return 1

    import torch
    import yaml
    from deepradiomics_plugins.cnn import CNNFeatures

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
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    gemm_flops = 2 * 2048**3

    def gemm() -> float:
        return gemm_flops / gemm_seconds(a, b)

    cases = {}
    for case_id in CASES:
        folder = DATA / case_id
        case = Case({"Image": folder / "flair.nii.gz"}, folder / "mask.nii.gz", case_id=case_id)
        case.check()  # read the files once: time the features, not the disk
        cases[case_id] = case
    if args.part in ("all", "cases"):
        time_cases(cnn, cases, net, deepest, args.repeats, gemm)
    if args.part in ("all", "pass"):
        time_pass_choices(cnn, settings, encoder, cases[CASES[-1]], net, deepest, args.repeats, gemm)
    if args.part in ("all", "layers"):
        profile_layers(cnn, cases[CASES[0]], net, args.repeats, gemm)
    print(f"\nload average after: {os.getloadavg()}")
    return 0


def time_cases(cnn, cases, net, deepest, repeats, gemm) -> None:
    """Per case, three ROI sizes: CNNFeatures.compute against the FLOP limit."""
    import statistics

    flops = {}
    def one(case):
        result = cnn.compute(case)
        patches = {int(k[len("PatchesP"):]): v for k, v in result.diagnostics.items() if k.startswith("PatchesP")}
        return result.features, patches, result.diagnostics["RoiVoxels"]

    runs = interleaved({case_id: (lambda case=case: one(case)) for case_id, case in cases.items()}, repeats, gemm)
    rates = [r for run in runs.values() for r in run["gemm"]]
    print(
        f"GEMM rate (float32 2048^3 torch.mm, median of 3 before every timed run): median {statistics.median(rates) / 1e9:.1f} GFLOP/s "
        f"(range {min(rates) / 1e9:.1f}-{max(rates) / 1e9:.1f})"
    )
    print(f"\nper case, CNNFeatures.compute, {repeats} runs each (ratio = seconds / (GFLOP / GEMM rate of the same round)):")
    print(f"{'case':<24}{'ROI voxels':>11}{'P16':>5}{'P32':>5}{'GFLOP':>8}   median s (min-max)      ratio to the FLOP limit")
    for case_id, run in runs.items():
        _, patches, roi_voxels = run["out"]
        flops[case_id] = sum(n * net.conv_flops(size, deepest) for size, n in patches.items())
        print(f"{case_id:<24}{roi_voxels:>11,}{patches[16]:>5}{patches[32]:>5}{flops[case_id] / 1e9:>8.1f}  {summary(run['seconds'], run['gemm'], flops[case_id])}")


def time_pass_choices(cnn, settings, encoder, largest, net, deepest, repeats, gemm) -> None:
    """The choices in the network pass (batching, memory format, grad mode) on the largest case's 16-voxel patches."""
    import torch
    from deepradiomics_plugins.cnn import CNNFeatures
    from deepradiomics_plugins.cnn.patches import extract_patches, grid_volume, patch_centres

    grid = cnn._grid(largest)
    volume = grid_volume(largest.image("Image"), grid)
    patches = extract_patches(volume, patch_centres(grid.roi, 16), 16)
    pass_flops = len(patches) * net.conv_flops(16, deepest)
    print(f"\nnetwork pass on the {len(patches)} 16-voxel patches of {largest.case_id} ({pass_flops / 1e9:.1f} GFLOP), {repeats} interleaved runs each:")

    def memory_format(channels_last):
        def prepare():
            encoder.use_channels_last(channels_last == "both")
            encoder.channels_last = channels_last in ("both", "patches")  # "patches": contiguous weights, channels-last input

        return prepare

    def variant(batch_size, grad_mode):
        clone = CNNFeatures({**settings, "batch_size": batch_size} if batch_size else settings)
        clone.encoder_ = encoder

        def run():
            if grad_mode == "inference_mode":
                return clone.encode_patches(patches)
            original = torch.inference_mode
            torch.inference_mode = torch.no_grad  # the class enters inference_mode: swap it for this variant only
            try:
                return clone.encode_patches(patches)
            finally:
                torch.inference_mode = original

        return run

    chosen = encoder.channels_last
    choices = {  # label: (patches per batch, memory format, grad mode)
        "batched, channels-last, inference_mode (the class)": (None, "both", "inference_mode"),
        "batched, contiguous, inference_mode": (None, "none", "inference_mode"),
        "batched, channels-last patches only, inference_mode": (None, "patches", "inference_mode"),
        "one patch at a time, channels-last, inference_mode": (1, "both", "inference_mode"),
        "batched, channels-last, no_grad": (None, "both", "no_grad"),
    }
    variants = {label: variant(batch, mode) for label, (batch, _fmt, mode) in choices.items()}
    formats = {label: memory_format(fmt) for label, (_batch, fmt, _mode) in choices.items()}
    results = interleaved(variants, repeats, gemm, formats)
    reference = results[next(iter(variants))]["out"]
    for label, run in results.items():
        print(f"  {label:<54}{summary(run['seconds'], run['gemm'], pass_flops)}; max rel. difference {max_relative_difference(reference, run['out']):.1e}")
    encoder.use_channels_last(chosen)


def profile_layers(cnn, case, net, repeats, gemm) -> None:
    """GFLOP/s of every convolution for the small batches of the smallest case (what limits small ROIs)."""
    import statistics

    import torch
    from deepradiomics_plugins.cnn.patches import extract_patches, grid_volume, patch_centres, scale_patches

    grid = cnn._grid(case)
    volume = grid_volume(case.image("Image"), grid)
    rate = statistics.median(gemm() for _ in range(3))
    print(f"\nper-layer rate on the batches of {case.case_id} (channels-last, inference_mode; GEMM rate now {rate / 1e9:.1f} GFLOP/s):")
    for size in cnn.settings.patch_sizes:
        patches = extract_patches(volume, patch_centres(grid.roi, size), size)
        x = scale_patches(torch.from_numpy(patches).unsqueeze(1)).contiguous(memory_format=torch.channels_last_3d)
        seconds: dict[int, list[float]] = {}
        with torch.inference_mode():
            for round_index in range(repeats + 1):
                h = x
                for index, module in enumerate(net.features[: net.layer_index["conv5_4"] + 1]):
                    start = time.perf_counter()
                    h = module(h)
                    if round_index:  # the first round warms up
                        seconds.setdefault(index, []).append(time.perf_counter() - start)
        cells = []
        for name in net.layer_names:
            conv = net.features[net.conv_index[name]]
            side = net.layer_size(name, size)
            layer_flops = 2 * conv.in_channels * conv.out_channels * 27 * side**3 * len(patches)
            cells.append(f"{name} {layer_flops / statistics.median(seconds[net.conv_index[name]]) / 1e9:.1f}")
        print(f"  {len(patches)} patch(es) of {size}: " + ", ".join(cells) + " GFLOP/s")


if __name__ == "__main__":
    sys.exit(main())
