"""Cost of the VQ segmentation network per block (``preact``, ``paper``) at the CPU and the paper sizes.

For each configuration it prints, in one run:

* **parameters** (trainable; the EMA codebook, K x D, is a buffer and is listed apart);
* **FLOPs of one training step at batch 1**: forward, and forward + backward of the training loss (soft
  Dice + focal + latent loss), counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and
  matrix products, 2 FLOPs per multiply-add; normalisations and activations are not counted), with the
  forward convolutions also counted by hand from their output shapes (2 C_in C_out k^2 H_out W_out) as a
  check of the counter;
* **seconds of one forward + backward + Adam step at batch 1** on this CPU, median of ``--repeats`` with
  its range, and the ratio of each configuration's median to the first one's, measured in the same run
  (absolute times depend on the machine and on what else runs; the ratios less so).

The paper trains with batch 72 (Kobayashi et al., Sci Rep 2021, "Training setups"): a step there costs
72 times the batch-1 FLOPs. Run: ``python benchmarks/vq_paper_cost.py [--threads 1] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

CPU = {"filters": [16, 32, 64, 64, 64, 64], "decoder_filters": [64, 64, 64, 64, 32, 16], "input_size": 128}
PAPER = {"filters": [32, 64, 128, 128, 128, 128], "decoder_filters": [128, 128, 128, 128, 64, 32], "input_size": 256}
LGG = {"in_channels": 3, "num_classes": 2}  # the LGG data: t1, FLAIR, t1ce; background + FLAIR abnormality
BRATS = {"in_channels": 4, "num_classes": 4}  # the paper: T1, T1-Gd, T2, FLAIR; background + ET, ED, NET
CONFIGS = {
    "cpu sizes, preact (vq-lgg-cpu)": {**LGG, **CPU, "block": "preact"},
    "cpu sizes, paper": {**LGG, **CPU, "block": "paper"},
    "paper sizes, preact, LGG 3 ch / 2 cl": {**LGG, **PAPER, "block": "preact"},
    "paper sizes, paper, LGG 3 ch / 2 cl": {**LGG, **PAPER, "block": "paper"},
    "paper sizes, paper, BraTS 4 ch / 4 cl": {**BRATS, **PAPER, "block": "paper"},
}


def build(arch: dict):
    import torch

    from deepradiomics.nets.vqseg import VQSegNet

    torch.manual_seed(0)
    return VQSegNet.from_config(
        {**arch, "num_embeddings": 512, "embedding_dim": 64, "quantizer": {"kmeans_init": False}, "init": "he"}
    )


def batch(net, n: int = 1):
    import torch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, net.in_channels, net.input_size, net.input_size, generator=generator)
    y = torch.randint(0, net.num_classes, (n, net.input_size, net.input_size), generator=generator)
    return x, y


def loss_of(net, x, y):
    from deepradiomics.training.losses import segmentation_loss

    out = net(x)
    return sum(segmentation_loss("dice+focal", out["logits"], y, 2.0).values()) + out["latent_loss"]


def hand_conv_flops(net, x) -> int:
    """2 C_in C_out k^2 H_out W_out (+ nothing for the bias) over every Conv2d run by one forward pass."""
    import torch

    total = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        total.append(2 * module.in_channels * module.out_channels * k * output.shape[-1] * output.shape[-2] * output.shape[0])

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return sum(total)


def counted_flops(net, x, y) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of the training loss, from FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as forward:
        loss = loss_of(net, x, y)
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    net.zero_grad(set_to_none=True)
    return forward.get_total_flops(), forward.get_total_flops() + backward.get_total_flops()


def step_times(net, x, y, repeats: int) -> list[float]:
    import torch

    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    times = []
    for i in range(repeats + 1):  # the first step warms up (oneDNN kernel choice, allocations)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_of(net, x, y).backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    reference = None
    for name, arch in CONFIGS.items():
        net = build(arch).train()
        x, y = batch(net)
        params = sum(p.numel() for p in net.parameters())
        codebook = net.quantizer.embedding.numel()
        forward, total = counted_flops(net, x, y)
        hand = hand_conv_flops(net, x)
        times = step_times(net, x, y, args.repeats)
        median = statistics.median(times)
        reference = reference or median
        print(
            f"{name:40s} params {params:>10,d} (+ codebook {codebook:,d}); GFLOPs batch 1: forward {forward / 1e9:6.2f} "
            f"(convs by hand {hand / 1e9:6.2f}), forward+backward {total / 1e9:6.2f}, batch 72 {72 * total / 1e12:5.2f} TFLOPs; "
            f"step {median:6.3f} s [{min(times):.3f}-{max(times):.3f}] = {median / reference:5.2f}x the first"
        )


if __name__ == "__main__":
    main()
