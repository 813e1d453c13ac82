"""Task losses shared by every head (AURA, probes, MLPs). Missing labels are masked, never zero-filled."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """w_y = N / (C · n_y) over the labelled samples (AURA's expression weighting); 0 for absent classes."""
    labelled = labels[labels >= 0]
    counts = torch.bincount(labelled, minlength=n_classes).float()
    weights = labelled.numel() / (n_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


@dataclass
class ClassLoss:
    """The class loss the trainer hands a head in place of bare class weights when a transport term
    is on: class-weighted cross-entropy + ``weight`` × the mean transport cost (under ``cost`` (C, C))
    between each labelled sample's class and its prediction."""

    weights: torch.Tensor | None
    cost: torch.Tensor
    weight: float

    def to(self, device: torch.device | str) -> ClassLoss:
        w = self.weights.to(device) if self.weights is not None else None
        return ClassLoss(w, self.cost.to(device), self.weight)


def expression_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | ClassLoss | None = None
) -> torch.Tensor:
    """Class-weighted cross-entropy, Σ w_yᵢ ℓᵢ / Σ w_yᵢ over labelled samples (label −1 is skipped),
    plus the transport term when ``weights`` is a :class:`ClassLoss`."""
    if not (labels >= 0).any():
        return logits.sum() * 0.0
    if not isinstance(weights, ClassLoss):
        return F.cross_entropy(logits, labels, weight=weights, ignore_index=-1)
    ce = F.cross_entropy(logits, labels, weight=weights.weights, ignore_index=-1)
    labelled = labels >= 0
    return ce + weights.weight * transport_cost(logits[labelled], labels[labelled], weights.cost).mean()


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


class _TraceExp(torch.autograd.Function):
    """tr(exp(A)) with its closed-form gradient ∂/∂A tr(exp(A)) = exp(A)ᵀ: the exponential the
    forward pass computed, where autograd through ``matrix_exp`` would differentiate the exponential
    itself (a 2d × 2d exponential per backward pass, most of a structure fit's time)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        exp = torch.linalg.matrix_exp(a)
        ctx.save_for_backward(exp)
        return exp.diagonal(dim1=-2, dim2=-1).sum(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (exp,) = ctx.saved_tensors
        return grad[..., None, None] * exp.transpose(-2, -1)


def dag_penalty(w: torch.Tensor) -> torch.Tensor:
    """NOTEARS' acyclicity measure h(W) = tr(exp(W ∘ W)) − d: zero exactly when the weighted graph
    ``w`` (d × d) has no directed cycle, positive otherwise; ∇h = exp(W ∘ W)ᵀ ∘ 2W."""
    return _TraceExp.apply(w * w) - w.shape[-1]


def preference_loss(logits: torch.Tensor, rises: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of "the affect rises" over the labelled pairs (NaN labels excluded)."""
    keep = torch.isfinite(rises)
    if not keep.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[keep], rises[keep])


def occurrence_weights(labels: torch.Tensor) -> torch.Tensor:
    """FAUD-CLIP's AU weights: w_i ∝ 1 / r_i (r_i AU i's occurrence rate over the labelled rows of
    ``labels`` (N, m), −1 / NaN missing), normalised to mean 1; an AU that never occurs gets the
    largest weight any occurring AU has (1 / 0 would swamp the rest)."""
    y = torch.nan_to_num(labels.float(), nan=-1.0)
    labelled = y >= 0
    rate = (y.clamp(min=0) * labelled).sum(0) / labelled.sum(0).clamp(min=1)
    inverse = torch.where(rate > 0, 1 / rate.clamp(min=1e-12), torch.zeros_like(rate))
    inverse = torch.where(rate > 0, inverse, inverse.max() if (rate > 0).any() else torch.ones_like(rate))
    return inverse / inverse.mean()


def asymmetric_au_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted asymmetric BCE over the labelled (row, AU) entries:
    −mean w_i [y log p + (1 − y) · p · log(1 − p)], the negative term scaled by the prediction p
    itself (a confident negative costs little, a confident false positive a lot)."""
    y = torch.nan_to_num(labels.float(), nan=-1.0)
    keep = y >= 0
    if not keep.any():
        return logits.sum() * 0.0
    p = torch.sigmoid(logits)
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    y = y.clamp(min=0)
    entry = -weights * (y * log_p + (1 - y) * p * log_not_p)
    return entry[keep].mean()


def dice_au_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Weighted dice over the batch, per AU: mean_i w_i (1 − (2 Σ y p + ε) / (Σ y² + Σ p² + ε)), the sums
    over the rows labelled for AU i (ε = 1 smooths an AU absent from the batch)."""
    y = torch.nan_to_num(labels.float(), nan=-1.0)
    keep = (y >= 0).float()
    if not keep.any():
        return logits.sum() * 0.0
    p, y = torch.sigmoid(logits) * keep, y.clamp(min=0) * keep
    dice = (2 * (y * p).sum(0) + eps) / ((y * y).sum(0) + (p * p).sum(0) + eps)
    present = keep.sum(0) > 0
    return (weights * (1 - dice))[present].mean()


def circumplex_costs(positions: torch.Tensor) -> torch.Tensor:
    """C[i, j]: the Euclidean distance between classes i and j at ``positions`` (C, 2) (valence, arousal)."""
    return torch.cdist(positions[None].double(), positions[None].double())[0].to(positions.dtype)


def transport_cost(logits: torch.Tensor, target: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """Per sample, the optimal-transport cost between the target distribution and the softmax
    prediction p under ``cost`` (C, C). Class labels (B,) (−1: unlabelled, cost 0): the target is one
    class y and the only plan moves every p_j from y, so the cost is Σ_j p_j C[y, j]. Soft targets
    (B, C), rows summing to 1: POT's exact network-simplex solver (``ot.emd2``), whose gradient with
    respect to p is its dual potential."""
    p = logits.softmax(-1)
    if target.ndim == 1:
        labelled = target >= 0
        rows = cost[target.clamp(min=0)]  # (B, C): C[y, ·]
        return torch.where(labelled, (p * rows).sum(-1), torch.zeros_like(p[:, 0]))
    import ot  # POT: only soft targets need it

    c = cost.double()
    return torch.stack([ot.emd2(t.double() / t.sum(), q.double(), c) for t, q in zip(target, p)]).to(p.dtype)
