"""Segmentation losses: soft Dice over foreground classes, focal loss, cross-entropy; named combinations.

``soft_dice_loss``: :math:`1 - \\frac{1}{C-1}\\sum_{c \\ge 1} \\frac{2\\sum p_c g_c + s}{\\sum p_c + \\sum g_c + s}`
with softmax probabilities :math:`p`, one-hot targets :math:`g`, sums over the batch and pixels.

``focal_loss``: :math:`\\mathrm{mean}\\,(1 - p_t)^{\\gamma} \\cdot (-\\log p_t)` (Lin et al. 2017), gamma 2.

``cross_entropy_loss``: :math:`\\mathrm{mean}\\,(-\\log p_t)`, the loss of the patch network (Pereira et al.
2016, Li et al. 2017), where each patch has one target, the class of its centre pixel.

A training config names its loss as terms joined by ``+`` (``dice+focal``: the VQ network, Kobayashi et
al. 2021; ``cross_entropy``: the DLR network); :func:`segmentation_loss` sums them. Logits are
(B, K, h, w) and targets (B, h, w); patch networks give (B, K, 1, 1) and (B,) targets, reshaped to (B, 1, 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss averaged over the foreground classes 1..C-1 (batch-level sums)."""
    logits = logits.float()
    num_classes = logits.shape[1]
    probs = logits.softmax(1)
    onehot = F.one_hot(target, num_classes).permute(0, 3, 1, 2).float()
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)[1:]
    denom = probs.sum(dims)[1:] + onehot.sum(dims)[1:]
    return 1.0 - ((2 * inter + smooth) / (denom + smooth)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss, mean over pixels."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    pt = torch.exp(-ce)
    return ((1 - pt) ** gamma * ce).mean()


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Categorical cross-entropy, mean over pixels (or patches)."""
    return F.cross_entropy(logits.float(), target)


#: loss term name -> function(logits, target, focal_gamma)
LOSS_TERMS: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "dice": lambda logits, target, gamma: soft_dice_loss(logits, target),
    "focal": lambda logits, target, gamma: focal_loss(logits, target, gamma),
    "cross_entropy": lambda logits, target, gamma: cross_entropy_loss(logits, target),
}


def loss_terms(name: str) -> list[str]:
    """The terms of a loss name such as ``dice+focal``; ValueError naming the known terms."""
    terms = [t.strip() for t in str(name).split("+") if t.strip()]
    unknown = [t for t in terms if t not in LOSS_TERMS]
    if not terms or unknown:
        raise ValueError(f"loss '{name}': unknown term(s) {unknown or [name]}; join known terms with '+': {', '.join(LOSS_TERMS)}")
    return terms


def segmentation_loss(name: str, logits: torch.Tensor, target: torch.Tensor, focal_gamma: float = 2.0) -> dict[str, torch.Tensor]:
    """``{term: value}`` of each term of loss ``name`` (e.g. ``dice+focal``) on logits (B, K, h, w) and targets."""
    if target.dim() == 1:  # one centre-pixel label per patch
        target = target.view(-1, 1, 1)
    target = target.long()
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} differ in size")
    return {term: LOSS_TERMS[term](logits, target, focal_gamma) for term in loss_terms(name)}


def hard_dice(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of each foreground class between integer maps (1.0 when both are empty)."""
    scores = []
    for c in range(1, num_classes):
        p, g = pred == c, target == c
        denom = int(p.sum()) + int(g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return scores
