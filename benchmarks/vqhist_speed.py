"""Speed of vqhist on the 4-channel BraTS case (240 x 240 x 155) against a bound that holds, in one run.

Paper-size encoder (4 modalities, 256 x 256 input, filters 32-64-128-128-128-128, K=512, D=64), random
weights (speed does not depend on them). Everything below is measured in the same run:

* **conv bound**: every Conv2d of the encoder timed *alone*, on its own input shape, at each batch size of
  ``--batch-sizes`` and in both memory formats (contiguous, channels-last), keeping its best time per slice;
  the bound is the sum over the layers times the number of slices encoded. The whole encoder also runs its
  GroupNorms, activations and additions, and a layer cannot run faster inside the network than alone at its
  best configuration, so no encoder path can beat this bound (it is a lower bound, not a target). Two bounds:
  all slices (what the naive path encodes) and the slices the vqhist path encodes (it answers all-background
  slices from the model's cached codeword map);
* **naive**: one slice at a time, ``torch.no_grad``, default memory format, every slice encoded;
* **vqhist paths**: ``VQHistogram.compute`` (preprocessing, encoder, quantizer, histogram) for each
  batch size x memory format; the one vqhist uses by default is marked.

Each timing is the median of ``--repeats`` runs, reported with its range. The defaults of vqhist
(``batch_size`` setting, channels-last in ``VQSegNet.volume_codeword_indices``) were chosen from these
measurements; the script says whether the default is the fastest configuration measured in this run.

Run on an otherwise idle machine: ``python benchmarks/vqhist_speed.py [--threads 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats23"
NAMES = ("t1", "t1ce", "t2", "flair")
PAPER = {
    "type": "vqseg",
    "in_channels": 4,
    "num_classes": 4,
    "filters": [32, 64, 128, 128, 128, 128],
    "decoder_filters": [128, 128, 128, 128, 64, 32],
    "input_size": 256,
    "num_embeddings": 512,
    "embedding_dim": 64,
    "quantizer": {"kmeans_init": False},
}


def median_range(times: list[float]) -> str:
    return f"{statistics.median(times):7.2f} s [{min(times):.2f}-{max(times):.2f}]"


def timed(fn, repeats: int) -> tuple[list[float], object]:
    out = fn()  # warm-up: oneDNN picks its kernels, caches fill
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def conv_inputs(net) -> list[tuple[object, tuple]]:
    """(conv module, its input shape for one slice) for every Conv2d of the encoder, in order."""
    import torch

    seen = []
    hooks = [
        m.register_forward_hook(lambda module, inputs, output: seen.append((module, tuple(inputs[0].shape[1:]))))
        for m in net.encoder.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.inference_mode():
        net.encode(torch.zeros(1, net.in_channels, net.input_size, net.input_size))
    for h in hooks:
        h.remove()
    return seen


def conv_bound_per_slice(net, batch_sizes, repeats: int) -> tuple[float, list[str]]:
    """Sum over the encoder's convolutions of their best time per slice, each timed alone (see the docstring)."""
    import torch

    total, lines = 0.0, []
    for index, (conv, shape) in enumerate(conv_inputs(net)):
        best, where = float("inf"), ""
        for fmt_name, fmt in (("contiguous", torch.contiguous_format), ("channels-last", torch.channels_last)):
            layer = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)
            layer.load_state_dict(conv.state_dict())
            layer = layer.to(memory_format=fmt).eval()
            for batch in batch_sizes:
                x = torch.randn(batch, *shape).contiguous(memory_format=fmt)
                with torch.inference_mode():
                    times, _ = timed(lambda layer=layer, x=x: layer(x), repeats)
                per_slice = min(times) / batch
                if per_slice < best:
                    best, where = per_slice, f"batch {batch}, {fmt_name}"
        total += best
        lines.append(f"  conv {index:2d} {shape} -> {conv.out_channels} ch, stride {conv.stride[0]}: {best * 1e3:7.3f} ms/slice ({where})")
    return total, lines


def naive_compute(vq, case) -> dict:
    """The straightforward path: same preprocessing and histogram, slices encoded one at a time."""
    import torch

    net = vq.bundle.model
    slices = vq.preprocess(case)
    with torch.no_grad():
        indices = torch.cat([net.quantizer.quantize(net.encode(slices[i : i + 1])) for i in range(len(slices))])
    counts = torch.bincount(indices.flatten(), minlength=vq.num_embeddings)
    return {f"Codeword{i:03d}": float(c) for i, c in enumerate(counts.tolist())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"BraTS case not found at {DATA}", file=sys.stderr)
        return 1
    import os

    import torch
    from deepradiomics_plugins.vqhist import VQHistogram, VQHistogramSettings

    from deepradiomics.case import Case
    from deepradiomics.models import save_bundle
    from deepradiomics.nets.vqseg import VQSegNet

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = VQSegNet.from_config(PAPER).eval()
    case = Case({"Image": DATA / "flair.nii.gz", **{n: DATA / f"{n}.nii.gz" for n in NAMES}}, DATA / "seg.nii.gz", case_id="BraTS-GLI-00001-000")
    case.check()  # read the files once: we time the features, not the disk
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        config = {"name": "paper-random", "architecture": PAPER, "modalities": [{"name": n} for n in NAMES]}
        save_bundle(net, config, Path(tmp) / "b", "random weights {sha256}")
        vq = VQHistogram({"model": str(Path(tmp) / "b"), "modalities": list(NAMES)})
        slices = vq.preprocess(case)
        n_slices = len(slices)
        n_encoded = int((slices.flatten(1).abs().amax(1) > 0).sum())
        bound_slice, lines = conv_bound_per_slice(vq.bundle.model, batch_sizes, max(3, args.repeats))
        print(f"case: BraTS-GLI-00001-000 -> {n_slices} slices at 256 x 256, {n_encoded} with tissue (the rest answered from the cache)")
        print("conv bound (each encoder convolution alone, at its best batch size and memory format):")
        print("\n".join(lines))
        bound_all, bound_encoded = bound_slice * n_slices, bound_slice * n_encoded
        print(f"bound: {bound_all:.2f} s for all {n_slices} slices, {bound_encoded:.2f} s for the {n_encoded} encoded ones")

        naive_times, naive = timed(lambda: naive_compute(vq, case), args.repeats)
        print(f"naive (one slice at a time, all slices):      {median_range(naive_times)} = {statistics.median(naive_times) / bound_all:.2f} x bound(all)")
        defaults = VQHistogramSettings()
        results = {}
        for channels_last in (True, False):
            for batch in batch_sizes:
                settings = {"model": str(Path(tmp) / "b"), "modalities": list(NAMES), "batch_size": batch, "channels_last": channels_last}
                candidate = VQHistogram(settings)
                candidate.bundle  # noqa: B018 - load outside the timing

                def run(candidate=candidate):
                    return candidate.compute(case)

                times, fast = timed(run, args.repeats)
                results[(batch, channels_last)] = (times, fast)
        default_key = (defaults.batch_size, defaults.channels_last)
        fastest = min(results, key=lambda k: statistics.median(results[k][0]))
        for (batch, channels_last), (times, _) in sorted(results.items(), key=lambda kv: statistics.median(kv[1][0])):
            mark = "  <- vqhist default" if (batch, channels_last) == default_key else ""
            fmt = "channels-last" if channels_last else "contiguous"
            print(f"vqhist batch {batch:2d}, {fmt:<13}: {median_range(times)} = {statistics.median(times) / bound_encoded:.2f} x bound(encoded){mark}")
        default_times, fast = results[default_key]
        speedup = statistics.median(naive_times) / statistics.median(default_times)
        slower_than_naive = sum(t >= min(naive_times) for t in default_times)
        print(f"default vs naive: {speedup:.2f}x faster (median); runs of the default slower than the fastest naive run: {slower_than_naive} of {len(default_times)}")
        print(f"fastest configuration measured: batch {fastest[0]}, {'channels-last' if fastest[1] else 'contiguous'}"
              + (" (the default)" if fastest == default_key else f"; the default is {statistics.median(default_times) / statistics.median(results[fastest][0]):.2f}x its time"))
    # batching and memory format change the floating-point summation order: with random weights a few latent
    # cells sit on near-ties between two codewords, so the histograms are compared cell by cell
    differing = sum(abs(naive[k] - fast[k]) for k in naive) / 2
    total = sum(naive.values())
    print(f"histogram agreement: {int(differing)} of {int(total)} latent cells counted under another codeword (summation order)")
    print(f"load average after: {os.getloadavg()}")
    return 0 if differing <= 0.01 * total else 1


if __name__ == "__main__":
    sys.exit(main())
