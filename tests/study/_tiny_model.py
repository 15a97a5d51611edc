"""A tiny VQ segmentation bundle for the explain and robustness tests (built on the fly, never shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_bundle(folder: Path, arrays: list[np.ndarray], modalities, seed: int = 0, unreachable: int | None = None, K: int = 16) -> Path:
    """A tiny VQSegNet (K=16, D=8, S=32) whose codebook is k-means-initialised on real slices.

    The encoder's conv biases are zero, so an all-zero input block maps to the zero latent and the
    background has one codeword, as in a trained model. ``unreachable`` moves that codeword far away
    from every latent, so that it never occurs.
    """
    import torch

    from deepradiomics.models import save_bundle
    from deepradiomics.nets.preprocess import volume_to_slices
    from deepradiomics.nets.vqseg import VQSegNet

    torch.manual_seed(seed)
    arch = dict(
        in_channels=len(modalities),
        num_classes=2,
        filters=[4, 4, 4],
        decoder_filters=[4, 4, 4],
        input_size=32,
        num_embeddings=K,
        embedding_dim=8,
    )
    net = VQSegNet.from_config(arch)
    for module in net.encoder.modules():
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)
    net.train()
    net(volume_to_slices(arrays, 32))  # k-means initialisation of the codebook on real latents
    net.eval()
    if unreachable is not None:
        with torch.no_grad():
            net.quantizer.embedding[unreachable] = 1e4
    config = {"name": f"tiny-{seed}", "architecture": arch, "modalities": [{"name": m} for m in modalities]}
    return save_bundle(net, config, folder, "tiny test model {sha256}")
