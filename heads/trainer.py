"""The one trainer: seeded, device-aware mini-batch AdamW with early stopping on a validation split.

It trains any :class:`heads.base.Head`: ``losses`` per batch, ``predict`` for validation, and for
archetype heads ``reset_unused`` after each warm-up epoch and ``prune`` once the best epoch is
restored. The task (heads/tasks.py) gives the class weights, the metrics and the headline that
picks the best epoch. The trainer does no file I/O.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from heads.base import Head
from heads.optim import adamw, cosine_lr, set_lr
from heads.standardise import fit_input_norms
from heads.tasks import Task, get_task


@dataclass
class TrainConfig:
    """The trainer's knobs. The defaults are the ``fast`` preset (see PRESETS)."""

    epochs: int = 100
    batch_size: int | None = None  # None: auto_batch_size of the training set
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 5  # epochs without a better validation headline before stopping
    # Usage-aware archetype resets happen after each of these epochs; for heads with archetypes
    # they are never chosen as the best epoch and never count towards patience.
    warmup_epochs: int = 3
    seed: int = 0
    # "cosine": the lr warms up linearly over ``warmup_epochs`` then decays to 0 by ``epochs`` (FAUD-CLIP's)
    schedule: str = "constant"
    beta2: float = 0.999  # AdamW's second-moment decay (FAUD-CLIP: 0.99)
    # The step budget's floor: when ``epochs`` of this training set come to fewer optimiser steps,
    # epochs, patience and warm-up are stretched by one factor until they do (see ``stretched``).
    # A paper's epoch count is a step count at the paper's data size; on a set a hundred times
    # smaller the same epochs are a hundredth of the updates, too few for Adam to move a weight
    # more than lr × steps from its start (issues 36, 37; docs/methods.md#step-budget)
    min_steps: int = 0
    # a transport term added to the class loss (fer, au_fer): the optimal-transport cost of moving the
    # prediction onto the label under a class cost the step gives (``circumplex``: distances on
    # Russell's circumplex; ``uniform``: the same mean cost between every pair, a confidence penalty)
    transport: str = "none"
    transport_weight: float = 1.0
    standardise: bool = True  # inputs standardised with the training split's statistics (heads/standardise.py)
    device: str | None = None
    progress: bool = True

    @classmethod
    def preset(cls, name: str, **overrides) -> TrainConfig:
        """The named preset's knobs; ``overrides`` that are not None replace them. Epochs given
        without a ``min_steps`` are taken as given: the step floor stretches the preset's epochs only."""
        if name not in PRESETS:
            raise ValueError(f"unknown training preset {name!r}; presets: {', '.join(PRESETS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "epochs" in given:
            given.setdefault("min_steps", 0)
        return cls(**{**PRESETS[name], **given})

    def stretched(self, steps_per_epoch: int) -> TrainConfig:
        """These knobs for a training set of ``steps_per_epoch`` batches: unchanged when ``epochs``
        reach ``min_steps``, else epochs, patience and warm-up epochs times the smallest whole factor
        that reaches them (a preset that trains every epoch, patience = epochs, still does, and the
        cosine schedule keeps its shape)."""
        if self.epochs * steps_per_epoch >= self.min_steps:
            return self
        factor = -(-self.min_steps // (self.epochs * steps_per_epoch))
        return replace(
            self,
            epochs=self.epochs * factor,
            patience=self.patience * factor,
            warmup_epochs=self.warmup_epochs * factor,
        )


# ``fast`` (the default) trains AURA on 24,000 × 1,280 cached features in a sixth of the paper
# preset's seconds, 0.013 macro-F1 below it (bench/heads.py); ``paper`` is AURA's implementation
# details: AdamW at lr 1e-4 (appendix A.2) and usage resets over the first 20 epochs (appendix E: "first
# 20–30 epochs"); the paper gives no batch size or stopping rule and reports convergence at epochs
# 122–207 (Tables 4 and 6): batch 256, 200 epochs and patience 15 are ours (docs/methods.md#aura-fidelity).
PRESETS: dict[str, dict] = {
    "fast": {},
    "paper": {"epochs": 200, "batch_size": 256, "lr": 1e-4, "patience": 15, "warmup_epochs": 20},
    # CausalAffect's implementation details (appendix F.2): AdamW lr 1e-4, weight decay 1e-5, 80 epochs,
    # 60 samples per dataset in a batch (one dataset: 60; several: --batch-size 60 × datasets). The paper
    # trains all 80: patience 80 never stops early; the trainer keeps the best validation epoch of them
    "causal": {"epochs": 80, "batch_size": 60, "lr": 1e-4, "weight_decay": 1e-5, "patience": 80, "warmup_epochs": 0},
    # LaScA's learner as scikit-learn's MLPClassifier trains it (heads/lasca.py): 25 iterations of Adam
    # on batches of 200; its stop (3 iterations without a better training loss) did not trigger within
    # 25 on our checks, while 3 without a better validation accuracy stopped the twin early: all 25 run
    "lasca": {"epochs": 25, "batch_size": 200, "lr": 1e-3, "weight_decay": 0.0, "patience": 25, "warmup_epochs": 0},
    # FAUD-CLIP's implementation details: AdamW β (0.9, 0.99), weight decay 5e-4, cosine decay after
    # one linear warm-up epoch, 12 epochs of batches of 64, lr 1e-3 for the modules after the encoder
    # (BP4D's; DISFA's is 1e-4) and 1e-4 for the learnable prompts (the head's ``faud`` option preset:
    # context_lr 0.1). The paper trains all 12 epochs: patience 12 never stops early, and the trainer
    # keeps the best validation epoch among them (the paper reports the last; stated in docs/methods.md).
    # Its 12 epochs are ~19,000 steps on BP4D; on a set of ~600 faces they are 120, and FAUD fell
    # below the linear probe there (0.255 vs 0.288 mean F1, its rare AUs at F1 0): a floor of 1,000
    # steps (folds 1–2: 0.35 against the probe's 0.27), which never binds at the paper's data sizes
    # (docs/methods.md#step-budget)
    "faud": {
        "epochs": 12,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 5e-4,
        "beta2": 0.99,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "patience": 12,
        "min_steps": 1000,
    },
}
# knobs added after heads were stored: left out of head keys at these defaults, so those keys stay
LATER_KNOBS = {"schedule": "constant", "beta2": 0.999, "transport": "none", "transport_weight": 1.0, "min_steps": 0}
TRANSPORTS = ("none", "circumplex", "uniform")
# what a user sets per run
KNOBS = ("epochs", "batch_size", "lr", "patience", "warmup_epochs", "min_steps", "transport", "transport_weight")


def auto_batch_size(n_train: int) -> int:
    """The fast preset's batch: a sixteenth of the training set, between 32 and 512, so a set of a
    few hundred samples still takes 16 steps an epoch and 24,000 take 47 steps of 512."""
    return int(min(512, max(32, n_train // 16)))


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    seconds: float
    val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    k_stable: list[int] | None = None
    batch_size: int = 0  # the batch it trained with (auto_batch_size when the config left it open)
    epoch_budget: int = 0  # the epochs it could train: the config's, stretched to ``min_steps``
    steps_per_epoch: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device_of(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    # 1024 rows: a 12-branch AU head's activations then stay cache-sized (on 2 CPUs it predicts
    # ~1.5× faster than with 4096-row batches; single-branch heads lose ~10 %)
    model.eval()
    device = next(model.parameters()).device
    outs = [model.predict(x[i : i + batch_size].to(device))[0].float().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs).numpy()


def evaluate(
    task: Task | str, outputs: np.ndarray, target: np.ndarray, n_outputs: int, names: list[str] | None = None
) -> dict[str, float]:
    """Every metric of ``task`` from raw head outputs (logits / values)."""
    return get_task(task).metrics(outputs, target, names or [str(j) for j in range(n_outputs)])


def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, groups: np.ndarray | None = None
) -> list[torch.Tensor]:
    """One epoch's batches of row indices: a shuffled pass over the rows; with ``groups`` (each
    row's dataset) of several datasets, batches of equal shares of every dataset (CausalAffect's
    multi-dataset training: 60 per dataset), an epoch one pass over the largest dataset while the
    smaller ones cycle through fresh permutations, each batch's rows shuffled."""
    if groups is None or np.unique(groups).size < 2:
        return list(torch.randperm(n, generator=generator).split(batch_size))
    members = [torch.from_numpy(np.flatnonzero(groups == g)) for g in np.unique(groups)]
    share = max(1, batch_size // len(members))
    steps = -(-max(m.numel() for m in members) // share)
    streams = []
    for m in members:
        cycles = -(-steps * share // m.numel())
        order = torch.cat([m[torch.randperm(m.numel(), generator=generator)] for _ in range(cycles)])
        streams.append(order[: steps * share].view(steps, share))
    batches = torch.cat(streams, 1)
    shuffle = torch.rand(batches.shape, generator=generator).argsort(1)
    return list(batches.gather(1, shuffle))


def fit(
    model: Head,
    task: Task | str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    n_outputs: int,
    cfg: TrainConfig,
    groups: np.ndarray | None = None,
    costs: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` in place; the weights of the best validation epoch are restored. ``groups``:
    each training row's dataset, when one head trains on several (batches balanced across them);
    ``costs``: the class cost (C, C) of ``cfg.transport`` (the step builds it from the class names)."""
    seed_everything(cfg.seed)
    task = get_task(task)
    device = device_of(cfg.device)
    model.to(device)
    x_train, y_train = train
    batch_size = cfg.batch_size or auto_batch_size(x_train.shape[0])
    if cfg.standardise:
        fit_input_norms(model, x_train)
    weights = task.class_weights(y_train, n_outputs)
    if cfg.transport not in TRANSPORTS:
        raise ValueError(f"transport {cfg.transport!r}: one of {', '.join(TRANSPORTS)}")
    if cfg.transport != "none":
        if costs is None:
            raise ValueError(f"transport {cfg.transport!r} needs its class costs (fit(..., costs=C))")
        weights = task.with_transport(weights, costs.float(), cfg.transport_weight)
    weights = weights.to(device) if weights is not None else None
    # the fused kernel: one pass over all parameters (on 2 CPUs ~8× faster than the per-tensor loop)
    optimiser = adamw(model.parameter_groups(), cfg.lr, cfg.weight_decay, device, (0.9, cfg.beta2))
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule {cfg.schedule!r}: constant or cosine")
    steps_per_epoch = len(epoch_batches(x_train.shape[0], batch_size, torch.Generator(), groups))
    cfg = cfg.stretched(steps_per_epoch)
    step = 0
    generator = torch.Generator().manual_seed(cfg.seed)
    best, best_state, best_epoch, stale = -np.inf, None, -1, 0
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"train {task.name}", disable=not cfg.progress, leave=False)
    resets = model.uses_archetypes
    for epoch in bar:
        model.train()
        batches = epoch_batches(x_train.shape[0], batch_size, generator, groups)
        total, seen = 0.0, 0
        for idx in batches:
            if cfg.schedule == "cosine":
                lr = cosine_lr(cfg.lr, step, cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch)
                set_lr(optimiser, lr)
            step += 1
            loss, _ = model.losses(x_train[idx].to(device), y_train[idx].to(device), weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, seen = total + float(loss.detach()) * idx.numel(), seen + idx.numel()
        if epoch < cfg.warmup_epochs and resets:
            model.train(False)
            sample = torch.cat(batches[:4])
            model.reset_unused(x_train[sample].to(device), y_train[sample].to(device))
        scores = evaluate(task, predict(model, val[0]), val[1].numpy(), n_outputs)
        score = scores[task.headline]
        history.append({"epoch": epoch, "loss": total / seen, **scores})
        bar.set_postfix(loss=f"{total / seen:.3f}", val=f"{score:.3f}")
        if resets and epoch < cfg.warmup_epochs:
            # while archetypes are being re-initialised the codebook is not a candidate, and
            # these epochs never count towards patience
            continue
        improved, tied = score > best + 1e-6, score >= best - 1e-6
        if improved or tied:
            # a tie (a saturated headline, e.g. every validation face right) keeps the later, longer
            # trained epoch, whose outputs are the more confident, but does not reset patience
            best, best_epoch, best_state = max(score, best), epoch, copy.deepcopy(model.state_dict())
        stale = 0 if improved else stale + 1
        if stale >= cfg.patience:
            break
    if best_state is not None:  # None only when every epoch was a warm-up epoch: keep the last state
        model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        k_stable = model.prune(x_train.to(device), y_train.to(device))
    val_scores = evaluate(task, predict(model, val[0]), val[1].numpy(), n_outputs)
    seconds = time.perf_counter() - t0
    return TrainResult(
        best_epoch, len(history), seconds, val_scores, history, k_stable, batch_size, cfg.epochs, steps_per_epoch
    )
