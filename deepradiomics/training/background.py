"""Background codewords of a VQ network: the codewords that encode "nothing there".

Definition (recorded as ``background_codewords`` at the top level of a VQ bundle's config.yaml): over the
training slices, take every latent cell whose (S/8) x (S/8) input block is all zero in every channel
(outside the head; the preprocessing sets background voxels to exactly 0), and count the codeword each
such cell is quantised to. The result lists ``[codeword, count]`` pairs, most frequent first (ties by
codeword index). The first entry is the paper's "background vector" (the most common vector outside the
body), used for codeword ablation.

:func:`background_codewords` computes it for a network and preprocessed slices (training calls it);
:func:`bundle_background_codewords` recomputes it for a trained bundle from its manifest, over the
training patients (the manifest's cases minus the bundle's ``metrics.validation_cases``), without
touching the weights.

Example
-------
>>> pairs = bundle_background_codewords("vq-lgg-cpu", "../shared/data/lgg/cases.csv")  # doctest: +SKIP
>>> pairs[0]  # doctest: +SKIP
[25, 162]
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


@torch.no_grad()
def background_codewords(net, images: torch.Tensor, batch_size: int = 32) -> list[list[int]]:
    """``[[codeword, count], ...]`` over the latent cells of ``images`` whose input block is all zero.

    Parameters
    ----------
    net
        A VQ network (``volume_codeword_indices``, ``input_size``; 8 x 8 latent grid).
    images
        Preprocessed slices (N, C, S, S), as the network takes them.

    Returns
    -------
    list of [int, int]
        Codeword index and number of all-zero cells quantised to it, most frequent first; empty when no
        cell is all zero.
    """
    was_training = net.training
    net.eval()
    size = int(images.shape[-1])
    block = size // 8
    counts = torch.zeros(net.quantizer.num_embeddings, dtype=torch.long)
    for start in range(0, len(images), 256):
        x = images[start : start + 256]
        empty = F.max_pool2d(x.abs().amax(1, keepdim=True), block)[:, 0] == 0  # (n, 8, 8)
        if not bool(empty.any()):
            continue
        indices = net.volume_codeword_indices(x, batch_size=batch_size).cpu()
        counts += torch.bincount(indices[empty], minlength=counts.numel())
    net.train(was_training)
    used = torch.nonzero(counts).flatten().tolist()
    return [[int(c), int(counts[c])] for c in sorted(used, key=lambda c: (-int(counts[c]), c))]


def bundle_background_codewords(bundle: str | Path, manifest: str | Path, progress: bool = False) -> list[list[int]]:
    """The background codewords of a trained VQ bundle over its training patients.

    Parameters
    ----------
    bundle
        Shipped bundle name or folder (loaded with its sha256 check; the weights are only read).
    manifest
        The manifest the bundle was trained on (its ``modalities[].column`` and ``Mask`` columns).

    Returns
    -------
    list of [int, int]
        As :func:`background_codewords`, over every case of ``manifest`` that is not one of the bundle's
        ``metrics.validation_cases``; add it to the bundle's config.yaml as ``background_codewords``.
    """
    import pandas as pd

    from ..errors import ModelError
    from ..models import load_bundle
    from .data import load_manifest_slices

    loaded = load_bundle(bundle)
    if getattr(loaded.model, "quantizer", None) is None:
        raise ModelError(f"bundle '{loaded.name}' ({loaded.architecture}) has no codebook: background codewords need a VQ network")
    config = loaded.config
    validation = set((config.get("metrics") or {}).get("validation_cases") or [])
    id_column = "ID"
    cases = [str(c) for c in pd.read_csv(manifest)[id_column].astype(str) if str(c) not in validation]
    slices = load_manifest_slices(
        manifest,
        [m["column"] for m in config["modalities"]],
        "Mask",
        loaded.preprocessing.input_size,
        config.get("label_map") or {"nonzero": 1},
        id_column=id_column,
        progress=progress,
        preprocessing=loaded.preprocessing,
        cases=cases,
    )
    return background_codewords(loaded.model, slices.images)
