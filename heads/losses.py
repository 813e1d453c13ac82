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


def rbf_gram(x: torch.Tensor) -> torch.Tensor:
    """RBF kernel matrices exp(−‖xᵢ − xⱼ‖² / σ²) of samples ``x`` (..., n, d), one per leading index,
    σ² by the median heuristic: the median of the pairwise squared distances i < j (not
    differentiated: the bandwidth is a choice of scale, not a parameter)."""
    sq = torch.cdist(x, x).square()
    upper = torch.triu_indices(x.shape[-2], x.shape[-2], 1, device=x.device)
    sigma2 = sq.detach()[..., upper[0], upper[1]].median(dim=-1).values.clamp(min=1e-6)
    return torch.exp(-sq / sigma2[..., None, None])


def centred(gram: torch.Tensor) -> torch.Tensor:
    """H K H with H = I − 11ᵀ/n: the kernel matrix with row and column means removed."""
    return gram - gram.mean(-1, keepdim=True) - gram.mean(-2, keepdim=True) + gram.mean((-2, -1), keepdim=True)


def hsic(gram_x: torch.Tensor, gram_y: torch.Tensor) -> torch.Tensor:
    """The biased empirical HSIC tr(K H L H) / (n − 1)² of kernel matrices K, L (..., n, n).
    tr(K H L H) = Σᵢⱼ (HKH)ᵢⱼ Lⱼᵢ, so one centred matrix and an elementwise product give it in O(n²)."""
    n = gram_x.shape[-1]
    return (centred(gram_x) * gram_y.transpose(-2, -1)).sum((-2, -1)) / (n - 1) ** 2


def dag_penalty(w: torch.Tensor) -> torch.Tensor:
    """NOTEARS' acyclicity measure h(W) = tr(exp(W ∘ W)) − d: zero exactly when the weighted graph
    ``w`` (d × d) has no directed cycle, positive otherwise; ∇h = exp(W ∘ W)ᵀ ∘ 2W."""
    return torch.linalg.matrix_exp(w * w).diagonal().sum() - w.shape[-1]


def preference_loss(logits: torch.Tensor, rises: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of "the affect rises" over the labelled pairs (NaN labels excluded)."""
    keep = torch.isfinite(rises)
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], rises[keep])
