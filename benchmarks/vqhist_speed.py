"""Speed of vqhist against the FLOP limit, on the 4-channel BraTS case (240 x 240 x 155).

Paper-size encoder (4 modalities, 256 x 256 input, filters 32-64-128-128-128-128, K=512, D=64) with random
weights, 2 torch threads. Reported:

* the encoder FLOPs per volume, counted analytically from the conv layers' shapes
  (2 * C_in/groups * C_out * k_h * k_w * H_out * W_out per conv, times the number of slices; every slice
  is counted, background ones included, for both variants);
* this machine's torch GEMM rate, from timing a large float32 matmul (best of several);
* the FLOP limit = FLOPs / GEMM rate, and seconds per volume of
  - naive: one slice at a time, torch.no_grad, default memory format, every slice encoded;
  - optimised: the real vqhist path (``VQHistogram.compute`` -> ``VQSegNet.volume_codeword_indices``):
    batched slices, torch.inference_mode, channels_last, all-background slices answered from the
    codeword map cached once per model;
  both including preprocessing (z-scoring, resizing) and the histogram.

Run: ``python benchmarks/vqhist_speed.py [--threads 2] [--repeats 3]``

Recorded on the project's 2-core CPU machine (torch 2.13 CPU, 2 threads, ``--repeats 2``, batch 16), which
other jobs shared, so the figures swing with the load (1-minute load average at the start of each run):

=============  ===========  ========  =========  ==================  ==================
date (UTC)     load avg     GEMM      limit      naive               optimised
=============  ===========  ========  =========  ==================  ==================
2026-11-22     ~4-5         85 GF/s   14.7 s     77.5 s = 5.26 x     36.2 s = 2.46 x
2026-11-22     ~3.6         84 GF/s   14.9 s     75.4 s = 5.06 x     26.6 s = 1.78 x
2026-11-22     ~1.3         88 GF/s   14.4 s     14.8 s = 1.03 x     10.6 s = 0.73 x
2026-11-22     ~1.3 (idle)  178 GF/s  7.06 s     12.3 s = 1.75 x     10.8 s = 1.53 x
2026-11-22     idle, bs 8   190 GF/s  6.63 s     15.5 s = 2.34 x     10.1 s = 1.52 x
=============  ===========  ========  =========  ==================  ==================

The last two rows were taken with nothing else running: the GEMM rate doubles (the earlier rows measured
it while other jobs held a core), so those are the fair ratios: the optimised path is about 1.5x the
limit. A torch profile of the optimised encoder puts 82 % of its time in oneDNN convolutions (about 0.77 of
the GEMM rate) and 13.5 % in GroupNorm.

In the loaded rows the optimised path can beat the "limit" because the limit counts every slice (18 of 155 are all
background and skipped) and oneDNN's convolutions run faster than the 2048^3 ``torch.mm`` used as the
reference rate. Only the quiet run is a fair measurement of the code; rerun on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats23"
NAMES = ("t1", "t1ce", "t2", "flair")
PAPER = {
    "type": "VQSegNet",
    "in_channels": 4,
    "num_classes": 4,
    "filters": [32, 64, 128, 128, 128, 128],
    "decoder_filters": [128, 128, 128, 128, 64, 32],
    "input_size": 256,
    "num_embeddings": 512,
    "embedding_dim": 64,
    "quantizer": {"kmeans_init": False},
}


def encoder_flops_per_slice(net) -> int:
    """2 * MACs of every Conv2d of the encoder for one slice, from the layer shapes."""
    import torch

    flops = 0

    def hook(module, inputs, output):
        nonlocal flops
        kh, kw = module.kernel_size
        flops += 2 * (module.in_channels // module.groups) * module.out_channels * kh * kw * output.shape[-2] * output.shape[-1]

    handles = [m.register_forward_hook(hook) for m in net.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net.encode(torch.zeros(1, net.in_channels, net.input_size, net.input_size))
    for h in handles:
        h.remove()
    return flops


def gemm_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def naive_compute(vq, case) -> dict:
    """The straightforward path: same preprocessing and histogram, slices encoded one at a time."""
    import torch

    from deepradiomics.nets.preprocess import volume_to_slices

    bundle = vq._bundle()
    net = bundle.model
    slices = volume_to_slices([case.array(n) for n in vq.settings.modalities], bundle.input_size)
    with torch.no_grad():
        indices = torch.cat([net.quantizer.quantize(net.encode(slices[i : i + 1])) for i in range(len(slices))])
    counts = torch.bincount(indices.flatten(), minlength=bundle.num_embeddings)
    return {f"Codeword{i:03d}": float(c) for i, c in enumerate(counts.tolist())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if not DATA.exists():
        print(f"BraTS case not found at {DATA}", file=sys.stderr)
        return 1

    import torch
    from deepradiomics_plugins.vqhist import VQHistogram

    from deepradiomics.case import Case
    from deepradiomics.models import save_bundle
    from deepradiomics.nets.preprocess import volume_to_slices
    from deepradiomics.nets.vqseg import VQSegNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = VQSegNet.from_config(PAPER).eval()
    case = Case(
        {"Image": DATA / "flair.nii.gz", **{n: DATA / f"{n}.nii.gz" for n in NAMES}},
        DATA / "seg.nii.gz",
        case_id="BraTS-GLI-00001-000",
    )
    with tempfile.TemporaryDirectory() as tmp:
        save_bundle(
            net,
            {"name": "paper-random", "architecture": PAPER, "modalities": [{"name": n, "column": n} for n in NAMES]},
            Path(tmp) / "b",
            "random weights {sha256}",
        )
        vq = VQHistogram({"model": str(Path(tmp) / "b"), "modalities": list(NAMES), "batch_size": args.batch_size})
        vq._bundle()
        case.check()  # read the files once: we time the features, not the disk
        slices = volume_to_slices([case.array(n) for n in NAMES], 256)
        n_slices = len(slices)
        n_background = int((slices.flatten(1).abs().amax(1) == 0).sum())

        flops = encoder_flops_per_slice(vq.bundle_.model) * n_slices
        rate = gemm_flops_per_second()
        limit = flops / rate

        def best_of(fn):
            fn()  # warm-up (and fills the background cache for the optimised path)
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - t0)
            return min(times), out

        t_naive, naive = best_of(lambda: naive_compute(vq, case))
        t_fast, fast = best_of(lambda: vq.compute(case))
    # channels-last and batched kernels sum in another order than the naive ones: with random weights a few
    # latent cells sit on near-ties between two codewords, so compare the histograms cell by cell
    differing = sum(abs(naive[k] - fast[k]) for k in naive) / 2
    total = sum(naive.values())
    same = differing <= 0.01 * total
    print(f"case: BraTS-GLI-00001-000, 4 x 240 x 240 x 155 -> {n_slices} slices at 256 x 256 ({n_background} all-background)")
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"encoder FLOPs per volume (conv layers, all {n_slices} slices): {flops / 1e9:.1f} GFLOP")
    print(f"measured GEMM rate (2048^3 float32 matmul): {rate / 1e9:.1f} GFLOP/s")
    print(f"FLOP limit: {limit:.2f} s per volume")
    print(f"naive:     {t_naive:.2f} s per volume = {t_naive / limit:.2f} x the limit")
    print(f"optimised: {t_fast:.2f} s per volume = {t_fast / limit:.2f} x the limit")
    print(
        f"histogram agreement: {int(differing)} of {int(total)} latent cells counted under another codeword (float summation order)"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
