"""AdamW for the trainer: torch's fused AdamW kernel, called without ``torch.optim.Optimizer``.

``torch.optim.Optimizer.step`` imports ``torch._dynamo`` on its first call (for a graph break that
matters only under ``torch.compile``): 1.7 s on 2 CPUs, as long as the whole training of a linear
probe, paid by every retrain from the shell. This class keeps AdamW's state (step, first and second
moments) and hands it to the same kernel ``torch.optim.AdamW(fused=True)`` runs, so the update is
that optimiser's, bit for bit (``tests/test_heads.py`` compares the two). Devices without the fused
kernel get ``torch.optim.AdamW`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

FUSED_DEVICES = ("cpu", "cuda")


class FusedAdamW:
    """AdamW (decoupled weight decay, no AMSGrad) over one device and dtype."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = [p for p in params if p.requires_grad]
        if len({(p.device, p.dtype) for p in self.params}) > 1:
            raise ValueError("FusedAdamW takes parameters on one device with one dtype")
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.state: dict[torch.nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        live = [p for p in self.params if p.grad is not None]
        if not live:
            return
        for p in live:
            if p not in self.state:  # what torch.optim.AdamW creates on a parameter's first step
                step = torch.zeros((), dtype=torch.float32, device=p.device)
                self.state[p] = (step, torch.zeros_like(p), torch.zeros_like(p))
        steps, exp_avgs, exp_avg_sqs = (list(s) for s in zip(*(self.state[p] for p in live), strict=True))
        torch._foreach_add_(steps, 1)
        torch._fused_adamw_(
            live,
            [p.grad for p in live],
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            lr=self.lr,
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=self.weight_decay,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )


def adamw(
    params: Iterable[torch.nn.Parameter] | list[tuple[list[torch.nn.Parameter], float]],
    lr: float,
    weight_decay: float,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
):
    """The trainer's optimiser: the fused kernel where torch has one, else torch.optim.AdamW.
    ``params`` may be (parameters, lr scale) groups (a head's :meth:`parameter_groups`): a group
    whose scale is not 1 learns at ``lr × scale``, with its own AdamW state (:class:`ScaledGroups`)."""
    if isinstance(params, list) and params and isinstance(params[0], tuple):
        if len(params) > 1 or params[0][1] != 1.0:
            return ScaledGroups([(adamw(p, lr * scale, weight_decay, device, betas), scale) for p, scale in params])
        params = params[0][0]
    if device.type in FUSED_DEVICES:
        return FusedAdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


class ScaledGroups:
    """One AdamW per parameter group, each at the base learning rate times its group's scale (FAUD-CLIP's
    prompts learn at a tenth of the other modules' rate); the schedule sets the base rate."""

    def __init__(self, optimisers: list[tuple[object, float]]):
        self.optimisers = optimisers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimiser, _ in self.optimisers:
            optimiser.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimiser, _ in self.optimisers:
            optimiser.step()


def set_lr(optimiser, lr: float) -> None:
    """The (base) learning rate of any optimiser :func:`adamw` returns."""
    if isinstance(optimiser, ScaledGroups):
        for inner, scale in optimiser.optimisers:
            set_lr(inner, lr * scale)
    elif isinstance(optimiser, FusedAdamW):
        optimiser.lr = lr
    else:
        for group in optimiser.param_groups:
            group["lr"] = lr


def cosine_lr(base: float, step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up to ``base`` over ``warmup_steps``, then cosine decay to 0 at ``steps``."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
