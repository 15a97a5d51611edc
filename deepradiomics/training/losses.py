"""Segmentation losses of the VQ network: soft Dice over foreground classes + focal loss (+ latent loss).

``soft_dice_loss``: :math:`1 - \\frac{1}{C-1}\\sum_{c \\ge 1} \\frac{2\\sum p_c g_c + s}{\\sum p_c + \\sum g_c + s}`
with softmax probabilities :math:`p`, one-hot targets :math:`g`, sums over the batch and pixels.

``focal_loss``: :math:`\\mathrm{mean}\\,(1 - p_t)^{\\gamma} \\cdot (-\\log p_t)` (Lin et al. 2017), gamma 2.
"""

from __future__ import annotations

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


def hard_dice(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of each foreground class between integer maps (1.0 when both are empty)."""
    scores = []
    for c in range(1, num_classes):
        p, g = pred == c, target == c
        denom = int(p.sum()) + int(g.sum())
        scores.append(1.0 if denom == 0 else 2.0 * int((p & g).sum()) / denom)
    return scores
