"""A linear structure learner built on the causal head's acyclicity penalty (heads/losses.py).

NOTEARS' program: minimise ½n⁻¹‖X − XW‖² + λ₁‖W‖₁ subject to h(W) = tr(exp(W∘W)) − d = 0, by
the augmented Lagrangian ρ/2 h² + α h (α ← α + ρh; ρ × 10 while h falls by less than a quarter),
the L1 term made smooth by W = W⁺ − W⁻ with both parts bounded below by 0, each subproblem solved
by SciPy's L-BFGS-B on values and gradients from torch (so h and ∇h are ``dag_penalty``'s). It
exists to check that ``dag_penalty`` steers a graph to a DAG as it should (tests compare its
structural Hamming distance with DAGMA's on simulated linear SEMs); the causal head itself keeps
the paper's soft penalty λ_DAG · h(W) and never enforces h = 0.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch

from heads.losses import dag_penalty


def learn_linear_dag(
    x: np.ndarray,
    lambda1: float = 0.02,
    w_threshold: float = 0.3,
    h_tol: float = 1e-8,
    rho_max: float = 1e16,
    max_iter: int = 100,
) -> np.ndarray:
    """The weighted adjacency matrix ([i, j]: edge i → j) of a DAG fitted to the samples ``x`` (n × d),
    entries below ``w_threshold`` in magnitude set to zero."""
    data = torch.as_tensor(x - x.mean(0), dtype=torch.float64)
    n, d = data.shape
    # ½n⁻¹‖X − XW‖² = ½ tr((I − W)ᵀ Σ (I − W)) with Σ = XᵀX / n: d × d work per evaluation, not n × d
    covariance, eye = data.T @ data / n, torch.eye(d, dtype=torch.float64)

    def weights(flat: np.ndarray) -> torch.Tensor:
        split = torch.as_tensor(flat, dtype=torch.float64).reshape(2, d, d)
        return split[0] - split[1]

    def objective(flat: np.ndarray, rho: float, alpha: float) -> tuple[float, np.ndarray]:
        variables = torch.as_tensor(flat, dtype=torch.float64).requires_grad_(True)
        split = variables.reshape(2, d, d)
        w = split[0] - split[1]
        h = dag_penalty(w)
        residual = eye - w
        fit = 0.5 * (residual * (covariance @ residual)).sum()
        loss = fit + lambda1 * variables.sum() + 0.5 * rho * h * h + alpha * h
        (grad,) = torch.autograd.grad(loss, variables)
        return float(loss.detach()), grad.numpy()

    # no self-loops: the diagonal of both parts is held at 0
    bounds = [(0, 0) if i == j else (0, None) for _ in range(2) for i in range(d) for j in range(d)]
    flat, rho, alpha, h = np.zeros(2 * d * d), 1.0, 0.0, np.inf
    for _ in range(max_iter):
        while rho < rho_max:
            solution = scipy.optimize.minimize(
                objective, flat, args=(rho, alpha), jac=True, method="L-BFGS-B", bounds=bounds
            ).x
            h_new = float(dag_penalty(weights(solution)))
            if h_new > 0.25 * h:
                rho *= 10
            else:
                break
        flat, h = solution, h_new
        alpha += rho * h
        if h <= h_tol or rho >= rho_max:
            break
    w = weights(flat).numpy()
    return np.where(np.abs(w) >= w_threshold, w, 0.0)
