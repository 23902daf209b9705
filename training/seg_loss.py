"""Training objective of the organ segmenter (``--stage seg``): cross-entropy + soft Dice, as nnU-Net trains.

The soft Dice is over the foreground classes, pooled over the batch, and averaged over the
classes present in the batch's targets (a class absent from every target is left out rather
than counted as a perfect or a failed prediction).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["segmentation_loss"]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
                      ) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, {"ce", "soft_dice"}) of (B, classes, X, Y, Z) ``logits`` against class indices ``target``."""
    ce = F.cross_entropy(logits, target)
    probabilities = logits.softmax(dim=1)[:, 1:]
    one_hot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probabilities.dtype)
    dims = (0, 2, 3, 4)
    intersection = (probabilities * one_hot).sum(dims)
    denominator = probabilities.sum(dims) + one_hot.sum(dims)
    present = one_hot.sum(dims) > 0
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    soft_dice = dice[present].mean() if present.any() else dice.new_tensor(1.0)
    loss = ce + dice_weight * (1 - soft_dice)
    return loss, {"ce": float(ce.detach()), "soft_dice": float(soft_dice.detach())}
