"""Task losses shared by every head (AURA, probes, MLPs). Missing labels are masked, never zero-filled."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """w_y = N / (C · n_y) over the labelled samples (AURA's expression weighting); 0 for absent classes."""
    labelled = labels[labels >= 0]
    counts = torch.bincount(labelled, minlength=n_classes).float()
    weights = labelled.numel() / (n_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def expression_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Class-weighted cross-entropy, Σ w_yᵢ ℓᵢ / Σ w_yᵢ over labelled samples (label −1 is skipped)."""
    if not (labels >= 0).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, weight=weights, ignore_index=-1)


def ccc_torch(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lin's CCC over the finite targets (population moments), differentiable."""
    keep = torch.isfinite(target)
    p, t = pred[keep], target[keep]
    if p.numel() < 2:
        return pred.sum() * 0.0
    mp, mt = p.mean(), t.mean()
    cov = ((p - mp) * (t - mt)).mean()
    return 2 * cov / (p.var(unbiased=False) + t.var(unbiased=False) + (mp - mt) ** 2 + 1e-8)


def va_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """(1 − CCC) + α · MSE for one dimension (valence or arousal), NaN targets skipped."""
    keep = torch.isfinite(target)
    if keep.sum() < 2:
        return pred.sum() * 0.0
    return (1 - ccc_torch(pred, target)) + alpha * F.mse_loss(pred[keep], target[keep])


def au_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the labelled (sample, AU) entries (label −1 is skipped)."""
    keep = labels >= 0
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], labels[keep].float())


def au_branch_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per AU branch: mean BCE over that AU's labelled samples. ``logits``, ``labels`` (M, B) → (M,);
    a branch with no labelled sample in the batch contributes 0."""
    keep = labels >= 0
    bce = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0).float(), reduction="none")
    return (bce * keep).sum(-1) / keep.sum(-1).clamp(min=1)
