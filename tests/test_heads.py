"""AURA's loss terms on hand-built cases, CCC against its formula, straight-through gradients, and
the trainer on separable synthetic features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from heads.aura import ArchetypeBranches, AuraConfig, AuraHead
from heads.baselines import linear_probe
from heads.dropout import Dropout
from heads.losses import au_loss, ccc_torch, class_weights, expression_loss, va_loss
from heads.metrics import au_metrics, ccc, expression_metrics, va_metrics
from heads.registry import create_head
from heads.stacked import StackedEncoderLayer
from heads.standardise import fit_input_norms
from heads.tasks import get_task
from heads.trainer import TrainConfig, fit, seed_everything


def _branch(task="fer", d=2, k=2, n_out=2, **kw) -> ArchetypeBranches:
    """One branch (M = 1) without projector or contextualiser."""
    cfg = AuraConfig(
        task=task, in_dim=d, n_outputs=n_out, d=d, k_max=k, use_projector=False, use_contextualisation=False, **kw
    )
    return ArchetypeBranches(cfg, 1, d, n_out if task == "fer" else 1, cfg.ctx_dim, cfg.n_tokens)


def _set(branch: ArchetypeBranches, archetypes, head_weight, head_bias=None) -> None:
    """Branch 0's archetypes (K, d) and φ as nn.Linear writes it: weight (out, d), bias (out,)."""
    with torch.no_grad():
        branch.archetypes[0].copy_(torch.tensor(archetypes, dtype=torch.float32))
        branch.head.weight[0].copy_(torch.tensor(head_weight, dtype=torch.float32).T)
        branch.head.bias[0].copy_(
            torch.zeros_like(branch.head.bias[0]) if head_bias is None else torch.tensor(head_bias)
        )


# -- task losses -------------------------------------------------------------------------------------
def test_class_weights_are_n_over_c_times_class_count():
    w = class_weights(torch.tensor([0, 0, 0, 1, -1]), 3)
    np.testing.assert_allclose(w.numpy(), [4 / (3 * 3), 4 / (3 * 1), 0.0], rtol=1e-6)


def test_weighted_cross_entropy_on_a_hand_built_case():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    labels = torch.tensor([0, 0, -1])
    weights = torch.tensor([0.5, 3.0])
    l0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    l1 = -math.log(1 / (1 + math.e))
    expected = (0.5 * l0 + 0.5 * l1) / (0.5 + 0.5)  # both labelled samples are class 0
    assert float(expression_loss(logits, labels, weights)) == pytest.approx(expected, rel=1e-6)


def test_va_loss_is_one_minus_ccc_plus_alpha_mse():
    target = torch.tensor([-0.5, 0.0, 0.5, float("nan")])
    assert float(va_loss(target.nan_to_num(0.0), target)) == pytest.approx(0.0, abs=1e-6)
    # pred = −target: CCC = −1, MSE = mean((2t)²) = (1 + 0 + 1) / 3 · … over the finite three
    pred = torch.tensor([0.5, 0.0, -0.5, 9.0])
    assert float(va_loss(pred, target, alpha=0.5)) == pytest.approx(2 + 0.5 * (1 + 0 + 1) / 3, rel=1e-5)


def test_au_loss_averages_bce_over_labelled_entries_only():
    logits = torch.zeros(2, 3)
    labels = torch.tensor([[1, 0, -1], [-1, -1, 1]])
    assert float(au_loss(logits, labels)) == pytest.approx(math.log(2), rel=1e-6)
    logits = torch.tensor([[10.0, 0.0, 99.0], [0.0, 0.0, 0.0]])
    expected = (math.log1p(math.exp(-10)) + math.log(2) + math.log(2)) / 3
    assert float(au_loss(logits, labels)) == pytest.approx(expected, rel=1e-5)


def test_ccc_matches_the_formula_on_random_data():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(0.3, 1.2, 500)
        y = 0.6 * x + rng.normal(0, 0.8, 500)
        formula = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
        assert abs(ccc(x, y) - formula) < 1e-6
        assert abs(float(ccc_torch(torch.tensor(x), torch.tensor(y))) - formula) < 1e-6
    scores = va_metrics(np.stack([x, y], 1), np.stack([x, x], 1))
    assert scores["ccc_valence"] == pytest.approx(1.0) and scores["ccc_mean"] == pytest.approx((1 + ccc(y, x)) / 2)


# -- archetype losses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_f1_and_accuracy_are_scikit_learns(seed):
    """The numpy confusion-matrix scores against sklearn.metrics (the maintained reference), with
    classes that are never predicted, never present, and unlabelled samples mixed in."""
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(seed)
    target = rng.integers(-1, 6, 300)  # class 6 is never present, −1 is unlabelled
    pred = np.where(rng.random(300) < 0.4, target.clip(0), rng.integers(0, 5, 300))  # class 5, 6 rarely/never
    keep = target >= 0
    scores = expression_metrics(pred, target, 7)
    assert scores["accuracy"] == pytest.approx(accuracy_score(target[keep], pred[keep]))
    reference = f1_score(target[keep], pred[keep], labels=list(range(7)), average="macro", zero_division=0)
    assert scores["macro_f1"] == pytest.approx(reference, abs=1e-12)
    au_target, au_pred = rng.integers(-1, 2, (200, 3)), rng.integers(0, 2, (200, 3))
    au_pred[:, 2] = 0  # an AU never predicted: F1 0 by zero_division
    au = au_metrics(au_pred, au_target, ["a", "b", "c"])
    for j, name in enumerate("abc"):
        labelled = au_target[:, j] >= 0
        expected = f1_score(au_target[labelled, j], au_pred[labelled, j], zero_division=0)
        assert au[f"f1_{name}"] == pytest.approx(expected, abs=1e-12)


def test_the_trainers_adamw_is_torchs_fused_adamw_bit_for_bit():
    """heads.optim.FusedAdamW against torch.optim.AdamW(fused=True) on the same model, batches and
    settings: every parameter equal after 25 steps (a parameter without a gradient is left alone)."""
    from heads.optim import FusedAdamW

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3), nn.Linear(3, 3))

    ours, theirs = model(), model()
    ours[3].requires_grad_(False), theirs[3].requires_grad_(False)
    unused = nn.Parameter(torch.ones(2))  # in the optimiser, never in the loss
    opt_ours = FusedAdamW([*ours.parameters(), unused], lr=3e-3, weight_decay=0.05)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=3e-3, weight_decay=0.05, fused=True)
    data = torch.Generator().manual_seed(1)
    for _ in range(25):
        x, y = torch.randn(16, 6, generator=data), torch.randint(0, 3, (16,), generator=data)
        for net, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(ours[0].weight, model()[0].weight)  # it trained
    assert torch.equal(unused, torch.ones(2))


def test_the_reports_pca_is_scikit_learns():
    from sklearn.decomposition import PCA

    from heads.report import pca_2d

    rng = np.random.default_rng(0)
    points = rng.normal(size=(120, 9)) @ rng.normal(size=(9, 9)) + 3.0
    np.testing.assert_allclose(pca_2d(points), PCA(n_components=2).fit_transform(points), atol=1e-9)


def test_assignment_loss_and_discriminative_loss_on_a_hand_built_case():
    branch = _branch(beta=0.5)
    _set(branch, [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[2.0, 1.0]])  # f̂ = (2, 1)/√5, nearest archetype (1, 0)
    parts = branch.losses(x, torch.tensor([[0]]), None, None)
    gap = 2 - 4 / math.sqrt(5)  # ‖f̂ − â‖²
    assert parts["assign"].item() == pytest.approx((1 + 0.5) * gap, rel=1e-5)
    # L_dis: φ on the archetype (1, 0) → logits (1, 0), label 0
    assert parts["dis"].item() == pytest.approx(-math.log(math.e / (math.e + 1)), rel=1e-5)
    f = x / x.norm()
    assert parts["vas"].item() == pytest.approx(float(F.cross_entropy(f @ torch.eye(2), torch.tensor([0]))), rel=1e-5)


def test_expression_regularisers_on_hand_built_archetypes():
    """AURA's Eq. 6–8 computed by hand: compactness, separation and diversity over class centres."""
    branch = _branch(k=5, n_out=3, margin=0.1)
    # archetypes 0–2 → class 0 (head row 0 = x axis), 3 → class 1 (y axis), 4 → class 2 (−x axis)
    _set(
        branch,
        [[1.0, 0.0], [0.9, 0.3], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]],
        [[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]],
    )
    a = branch.normalised()[0].detach()
    probs = torch.softmax(a @ torch.tensor([[5.0, 0.0], [0.0, 5.0], [-5.0, 0.0]]).T, -1)
    conf, cls = probs.max(-1)
    assert cls.tolist() == [0, 0, 0, 1, 2]
    mu = torch.stack([F.normalize(a[:3].mean(0), dim=0), a[3], a[4]])  # μ̃_c
    compact = sum((1 - conf[k]) * (1 - a[k] @ mu[0]) for k in range(3)) / 5  # Eq. 6, 1/K
    cos = mu @ mu.T
    separate = sum(max(0.0, float(cos[i, j]) - 0.1) for i in range(3) for j in range(3) if i != j) / 6  # Eq. 7
    d = (mu - mu.mean(0)).norm(dim=-1)  # d_c = ‖μ̃_c − μ̄‖
    diversity = -d.mean() - ((d - d.mean()) ** 2).mean()  # Eq. 8
    parts = branch.regularisation(branch.normalised())
    assert parts["compact"].item() == pytest.approx(float(compact), rel=1e-5)
    assert parts["separate"].item() == pytest.approx(separate, rel=1e-5)
    assert parts["diversity"].item() == pytest.approx(float(diversity), rel=1e-5)
    # the earlier form (ablation row): over every archetype rather than the class centres
    branch.cfg.diversity_over = "archetypes"
    spread = (a - a.mean(0)).norm(dim=-1)
    expected = -(spread.mean() + spread.var(unbiased=False))
    assert branch.regularisation(branch.normalised())["diversity"].item() == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(diversity)) > 0.01  # the case tells the two apart


def test_score_aware_attraction_and_repulsion_on_hand_built_archetypes():
    """AURA's Eq. 9–10 by hand: squared hinges on d = (1 − cos)/2 around the margin m, over the
    pairs whose predicted scores differ by less than m (attraction) or by at least m (repulsion)."""
    branch = _branch(task="au", k=4, n_out=1, margin=0.3)
    # head: logit = 10·x₀ − 5: (0.6, ±0.8) score alike but lie far apart (attracted); (0, 1) scores
    # 0.007 against their 0.73 but lies close to (0.6, 0.8) (repelled)
    _set(branch, [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.6, -0.8]], [[10.0, 0.0]], [-5.0])
    a = branch.normalised()[0].detach()
    score = torch.sigmoid(10 * a[:, 0] - 5)
    gap = (score[:, None] - score[None, :]).abs()
    d = (1 - a @ a.T) / 2
    off = ~torch.eye(4, dtype=torch.bool)
    near, far = off & (gap < 0.3), off & (gap >= 0.3)
    attract = (F.relu(d[near] - 0.3) ** 2).mean()  # Eq. 9
    repel = (F.relu(0.3 - d[far]) ** 2).mean()  # Eq. 10
    assert float(attract) > 0 and float(repel) > 0  # both hinges are active somewhere in this case
    parts = branch.regularisation(branch.normalised())
    assert parts["attract"].item() == pytest.approx(float(attract), rel=1e-5)
    assert parts["repel"].item() == pytest.approx(float(repel), rel=1e-5)
    # Eq. 8 with each archetype its own centre (AU and VA have no classes)
    spread = (a - a.mean(0)).norm(dim=-1)
    assert parts["diversity"].item() == pytest.approx(float(-(spread.mean() + spread.var(unbiased=False))), rel=1e-5)
    # the earlier graded form, kept as an ablation row
    branch.cfg.pair_loss = "graded"
    cos = a @ a.T
    graded = branch.regularisation(branch.normalised())
    assert graded["attract"].item() == pytest.approx(float(((1 - cos[near]) * (1 - gap[near] / 0.3)).mean()), rel=1e-5)
    assert graded["repel"].item() == pytest.approx(float(F.relu(cos[far] - (1 - gap[far])).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="diversity_over"):
        AuraConfig(task="au", in_dim=2, diversity_over="centres")  # AUs have no class centres
    with pytest.raises(ValueError, match="pair_loss"):
        AuraConfig(task="va", in_dim=2, pair_loss="hinge")


def test_straight_through_gradients_reach_the_projector():
    cfg = AuraConfig(
        task="fer", in_dim=8, n_outputs=3, d=4, k_max=6, use_reg=False, use_contextualisation=False, lambda_proj=0.0
    )
    head = AuraHead(cfg)
    branch = head.branches
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    parts = branch.losses(x, y[None], None, None)
    parts["dis"].backward()  # only the discriminative loss on the assigned archetypes
    assert branch.project_in.weight.grad.abs().sum() > 0  # through the straight-through path
    assert branch.archetypes.grad.abs().sum() > 0


def _plain_fer_head(k_max=10, tau=0.2) -> AuraHead:
    """Archetypes in the input space itself (no projector, no contextualiser): f̂ = x / ‖x‖; φ maps
    the x direction to class 0 and the y and z directions to class 1."""
    cfg = AuraConfig(
        task="fer", in_dim=4, n_outputs=2, d=4, k_max=k_max, use_projector=False, use_contextualisation=False, tau=tau
    )
    head = AuraHead(cfg)
    with torch.no_grad():
        head.branches.head.weight[0].copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 1.0, 0]]).T)
        head.branches.head.bias[0].zero_()
    return head


def _set_codebook(head: AuraHead, used: list[list[float]]) -> None:
    """The first archetypes as given; the rest point away from every sample (never nearest)."""
    with torch.no_grad():
        rest = -torch.rand(head.cfg.k_max - len(used), 4) - 0.1
        head.branches.archetypes[0] = F.normalize(torch.cat([torch.tensor(used), rest]), dim=-1)


def _groups_of(head: AuraHead) -> np.ndarray:
    """The class φ gives each archetype, computed here: argmax of â · W + b."""
    with torch.no_grad():
        a = F.normalize(head.branches.archetypes[0], dim=-1)
        return (a @ head.branches.head.weight[0] + head.branches.head.bias[0]).argmax(-1).numpy()


def test_usage_reset_reinitialises_exactly_the_underused_archetypes_from_embedded_samples():
    head = _plain_fer_head(tau=0.2)
    branch = head.branches
    _set_codebook(head, [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    x = torch.tensor([[1.0, 0, 0, 0]] * 8 + [[0, 1.0, 0, 0]] * 8 + [[0, 0, 1.0, 0]] * 1)
    y = torch.tensor([0] * 8 + [1] * 9)
    _ = branch.losses(x, y[None], None, None)
    usage = branch.usage[0].clone()
    assert usage[:3].tolist() == [8, 8, 1] and usage[3:].sum() == 0 and branch.supply[0].tolist() == [8, 9]
    # counted independently: underused = fewer than max(τ · G · its class's samples, 1) nearest samples
    # (G = 2 classes); archetype 2 decides class 1 (9 samples: 1 < 3.6), the unused seven whatever φ gives them
    supply = np.array([8, 9])
    underused = usage.numpy() < np.maximum(0.2 * 2 * supply[_groups_of(head)], 1)
    assert underused.tolist() == [False, False] + [True] * 8
    before = branch.archetypes.detach().clone()
    assert head.reset_unused(x, y) == int(underused.sum()) == 8
    after = branch.archetypes.detach()[0]
    rare = torch.from_numpy(underused)
    assert torch.equal(after[~rare], before[0][~rare]), "archetypes in use must be bit-identical across a reset"
    assert not torch.isclose(after[rare], before[0][rare]).all(-1).any(), "every underused archetype is re-drawn"
    # each re-drawn archetype is an embedded training sample plus small noise
    closest = (F.normalize(after[rare], dim=-1) @ F.normalize(x, dim=-1).T).max(-1).values
    assert (closest > 0.99).all(), closest
    assert branch.usage.sum() == 0 and branch.supply.sum() == 0  # counting starts again


def test_a_class_no_live_archetype_decides_gets_one_from_its_own_samples_at_reset():
    """16 samples of class 0, 2 of class 1, one archetype (class 0) nearest to all of them: the
    codebook-wide rule re-drew from random samples (no class-1 sample among 9 picks a third of the
    time); the per-class rule draws the first re-drawn archetype from class 1."""
    for seed in range(5):
        torch.manual_seed(seed)
        head = _plain_fer_head(tau=0.2)
        _set_codebook(head, [[1.0, 0, 0, 0]])
        x = torch.tensor([[1.0, 0, 0, 0]] * 16 + [[0, 1.0, 0, 0]] * 2)
        y = torch.tensor([0] * 16 + [1] * 2)
        _ = head.branches.losses(x, y[None], None, None)
        assert head.reset_unused(x, y) == 9
        redrawn = F.normalize(head.branches.archetypes.detach()[0, 1:], dim=-1)
        assert (redrawn[:, 1] > 0.99).any(), f"seed {seed}: no archetype re-drawn from class 1"


def test_pruning_judges_usage_within_each_class_and_keeps_every_class_one_archetype():
    head = _plain_fer_head(tau=0.3)
    _set_codebook(head, [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    # class 0: 10 samples on archetype 0; class 1: 5 on archetype 1 (y), 1 on archetype 2 (z)
    x = torch.tensor([[1.0, 0, 0, 0]] * 10 + [[0, 1.0, 0, 0]] * 5 + [[0, 0, 1.0, 0]] * 1)
    y = torch.tensor([0] * 10 + [1] * 6)
    # thresholds τ · G · samples = 0.3 · 2 · 10 = 6 and 0.3 · 2 · 6 = 3.6: archetypes 0 and 1 stay, 2 goes
    assert head.prune(x, y) == [2] and head.branches.active[0].tolist() == [True, True] + [False] * 8
    assert head.prune(x, y, batch_size=3) == [2]  # usage counted in batches gives the same K_stable
    _, index = head.predict(x)
    assert set(index[:, 0].tolist()) == {0, 1}  # inference only ever picks kept archetypes
    assert head.uncovered() == [[]]

    # every archetype under its threshold (0.6 · 2 · 10 = 12): each class keeps its most used one
    head = _plain_fer_head(tau=0.6)
    _set_codebook(head, [[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    x = torch.tensor([[1.0, 0, 0, 0]] * 10 + [[0, 1.0, 0, 0]] * 4 + [[0, 0, 1.0, 0]] * 6)
    y = torch.tensor([0] * 10 + [1] * 10)
    assert head.prune(x, y) == [2] and head.branches.active[0].tolist() == [True, False, True] + [False] * 7

    # a class that no archetype decides is reported, never silent
    head = _plain_fer_head(tau=0.3)
    _set_codebook(head, [[1.0, 0, 0, 0]])
    x = torch.tensor([[1.0, 0, 0, 0]] * 10 + [[0, 1.0, 0, 0]] * 2)
    assert head.prune(x, torch.tensor([0] * 10 + [1] * 2)) == [1] and head.uncovered() == [[1]]


def independent_k_stable(head: AuraHead, x_train: torch.Tensor, y_train: torch.Tensor) -> list[np.ndarray]:
    """Which archetypes pruning must keep, counted here from scratch: per output space, the training
    samples nearest to each archetype (cosine, all of them) against max(τ · G · the samples of the
    group it decides, 1), G groups — its class by φ's argmax, its AU state by the logit's sign, its VA
    bin by the value — and for each group with samples at least its most used archetype."""
    head.eval()
    with torch.no_grad():
        f_hat = head.embed(x_train)
        a_hat = F.normalize(head.branches.archetypes, dim=-1)
        nearest = (f_hat @ a_hat.transpose(1, 2)).argmax(-1).numpy()
        phi = (a_hat @ head.branches.head.weight + head.branches.head.bias[:, None]).numpy()
    y, task, bins = y_train.numpy(), head.cfg.task, [-0.5, 0.0, 0.5]
    kept = []
    for j in range(nearest.shape[0]):
        usage = np.bincount(nearest[j], minlength=head.cfg.k_max)
        if task == "fer":
            groups, labels, n_groups = phi[j].argmax(-1), y, phi.shape[-1]
        elif task == "au":
            groups, labels, n_groups = (phi[j, :, 0] >= 0).astype(int), y[:, j], 2
        else:
            labels = np.where(np.isfinite(y[:, j]), np.digitize(np.nan_to_num(y[:, j]), bins), -1)
            groups, n_groups = np.digitize(np.tanh(phi[j, :, 0]), bins), 4
        supply = np.bincount(labels[labels >= 0], minlength=n_groups)
        keep = usage >= np.maximum(head.cfg.tau * n_groups * supply[groups], 1)
        for g in np.flatnonzero(supply):
            mine = (groups == g) & (usage > 0)
            if mine.any() and not keep[mine].any():
                keep[np.where(mine, usage, -1).argmax()] = True
        if not keep.any():
            keep[usage.argmax()] = True
        kept.append(keep)
    return kept


def assert_pruned_by_usage(head: AuraHead, k_stable: list[int], x_train: torch.Tensor, y_train: torch.Tensor) -> None:
    kept = independent_k_stable(head, x_train, y_train)
    assert k_stable == [int(k.sum()) for k in kept]
    for j, keep in enumerate(kept):
        np.testing.assert_array_equal(head.branches.active[j].numpy(), keep)


@pytest.mark.parametrize(("task", "ctx_layers"), [("au", 1), ("va", 1), ("au", 2), ("va", 0)])
def test_stacked_branches_compute_what_separate_branches_would(task, ctx_layers):
    """M branches run as one batched pass; each must give exactly what it gives alone (with one
    contextualiser layer its CLS queries are shared by all samples; with two they are not)."""
    m = 3 if task == "au" else 2
    cfg = AuraConfig(
        task=task, in_dim=6, n_outputs=m, d=4, k_max=8, hidden=16, ctx_dim=8, n_tokens=2, top_k=3, ctx_layers=ctx_layers
    )
    stacked = ArchetypeBranches(cfg, m, 6, 1, cfg.ctx_dim, cfg.n_tokens).eval()  # eval: no dropout
    z, semantic = torch.randn(20, 6), torch.randn(20, 2, cfg.ctx_dim)
    target = (torch.rand(m, 20) < 0.5).long() if task == "au" else torch.rand(m, 20) * 2 - 1
    together = stacked.losses(z, target, semantic.expand(m, -1, -1, -1), None)
    alone: dict[str, float] = {}
    for j in range(m):
        one = ArchetypeBranches(cfg, 1, 6, 1, cfg.ctx_dim, cfg.n_tokens).eval()
        one.load_state_dict({k: v[j : j + 1] for k, v in stacked.state_dict().items()})
        for name, value in one.losses(z, target[j : j + 1], semantic[None], None).items():
            alone[name] = alone.get(name, 0.0) + float(value.detach())
        outputs, index = one.predict(z)
        np.testing.assert_allclose(outputs[0].detach(), stacked.predict(z)[0][j].detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(index[0], stacked.predict(z)[1][j])
    assert set(together) == set(alone) >= {"vas", "assign", "dis", "attract", "repel", "diversity", "contx"}
    for name, value in together.items():
        assert float(value.detach()) == pytest.approx(alone[name], rel=1e-4, abs=1e-6), name


def test_stacked_encoder_layer_is_pytorchs_pre_norm_layer_and_queries_select_its_outputs():
    torch.manual_seed(0)
    width, heads, ffn = 8, 2, 16
    stacked = StackedEncoderLayer(2, width, heads, ffn, dropout=0.0)
    x = torch.randn(2, 5, 7, width)  # (M, B, L, width)
    for j in range(2):  # each map is nn.TransformerEncoderLayer(norm_first=True) with its weights
        ref = nn.TransformerEncoderLayer(width, heads, ffn, 0.0, batch_first=True, norm_first=True).eval()
        with torch.no_grad():
            ref.self_attn.in_proj_weight.copy_(stacked.qkv.weight[j].T)
            ref.self_attn.in_proj_bias.copy_(stacked.qkv.bias[j])
            ref.self_attn.out_proj.weight.copy_(stacked.out.weight[j].T)
            ref.self_attn.out_proj.bias.copy_(stacked.out.bias[j])
            ref.linear1.weight.copy_(stacked.ff1.weight[j].T)
            ref.linear1.bias.copy_(stacked.ff1.bias[j])
            ref.linear2.weight.copy_(stacked.ff2.weight[j].T)
            ref.linear2.bias.copy_(stacked.ff2.bias[j])
            for mine, theirs in ((stacked.norm1, ref.norm1), (stacked.norm2, ref.norm2)):
                mine.weight[j].uniform_(0.5, 1.5)
                mine.bias[j].uniform_(-0.5, 0.5)
                theirs.weight.copy_(mine.weight[j])
                theirs.bias.copy_(mine.bias[j])
        torch.testing.assert_close(stacked(x)[j], ref(x[j]), rtol=1e-5, atol=1e-5)
    # the last layer of the contextualiser computes only the CLS rows: the same values
    torch.testing.assert_close(stacked(x, queries=x[:, :, :2]), stacked(x)[:, :, :2], rtol=1e-5, atol=1e-6)
    # ... and when those rows are the same for every sample, they can be given once (batch axis 1)
    x[:, :, :2] = x[:, :1, :2]
    torch.testing.assert_close(stacked(x, queries=x[:, :1, :2]), stacked(x)[:, :, :2], rtol=1e-5, atol=1e-6)


def test_dropout_zeroes_a_fraction_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    drop = Dropout(0.2)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    zeroed = float((y == 0).float().mean())
    assert zeroed == pytest.approx(0.2, abs=0.005)
    assert set(torch.unique(y).tolist()) == {0.0, 1.25}  # kept entries scaled by 1 / (1 − p)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes through the same mask
    assert torch.equal(drop.eval()(x), x)  # identity in eval mode
    with pytest.raises(ValueError):
        Dropout(1.0)


# -- switches: the paper's ablations are one change each ------------------------------------------------------
ABLATIONS = [
    ("fer", {"use_dis": False}, {"dis"}),
    ("fer", {"use_reg": False}, {"compact", "separate", "diversity"}),
    ("fer", {"use_contextualisation": False}, {"contx"}),
    ("fer", {"regularisers": ("diversity",)}, {"compact", "separate"}),
    ("au", {"use_reg": False}, {"attract", "repel", "diversity"}),
    ("au", {"regularisers": ("attract", "repel")}, {"diversity"}),
]
LAMBDA = {"lambda_proj": 1.3, "lambda_arc": 0.7, "lambda_contx": 0.4}


def _small(task: str, **switches) -> AuraHead:
    n_out = 3
    cfg = AuraConfig(
        task=task, in_dim=8, n_outputs=n_out, d=4, k_max=6, hidden=16, ctx_dim=8, n_tokens=2, top_k=3,
        margin=0.9, **LAMBDA, **switches,
    )  # fmt: skip
    return AuraHead(cfg).eval()  # eval: no dropout, so two heads with the same weights agree


@pytest.mark.parametrize(("task", "switch", "dropped"), ABLATIONS)
def test_each_ablation_switch_removes_exactly_its_terms_from_the_loss(task, switch, dropped):
    full, ablated = _small(task), _small(task, **switch)
    missing, _ = ablated.load_state_dict(full.state_dict(), strict=False)
    assert missing == []  # the ablated head is the full one minus the switched-off parts
    x = torch.randn(32, 8)
    y = torch.randint(0, 3, (32,)) if task == "fer" else torch.randint(0, 2, (32, 3))
    total_full, parts_full = full.losses(x, y)
    total_ablated, parts_ablated = ablated.losses(x, y)
    assert set(parts_full) - set(parts_ablated) == dropped and set(parts_ablated) <= set(parts_full)
    for name, value in parts_ablated.items():
        assert value == pytest.approx(parts_full[name], rel=1e-5, abs=1e-7), name
    weight = {name: LAMBDA["lambda_contx"] if name == "contx" else LAMBDA["lambda_arc"] for name in dropped}
    expected = sum(weight[name] * parts_full[name] for name in dropped)
    assert float((total_full - total_ablated).detach()) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_the_contextualiser_is_training_only():
    """Inference is projector → nearest archetype → φ: the contextualiser (and the semantic tokens
    feeding it) change the loss but never a prediction."""
    full, plain = _small("au"), _small("au", use_contextualisation=False)
    plain.load_state_dict(full.state_dict(), strict=False)
    x, y = torch.randn(40, 8), torch.randint(0, 2, (40, 3))
    outputs, index = full.predict(x)
    contx_before = full.losses(x, y)[1]["contx"]
    with torch.no_grad():
        for name, p in full.named_parameters():
            if name.startswith(("branches.context.", "semantic.")):
                p.add_(torch.randn_like(p))
    assert full.losses(x, y)[1]["contx"] != pytest.approx(contx_before)
    for other in (full, plain):
        again, again_index = other.predict(x)
        torch.testing.assert_close(again, outputs)
        assert torch.equal(again_index, index)


@pytest.mark.parametrize("task", ["fer", "va"])
def test_the_global_semantic_tokens_and_the_fused_cls_vector_are_unit_vectors_as_in_the_paper(task):
    """§2.3.1 (i): T^g "normalized"; §2.3.2: f_fused "normalized and fed into a prediction head".
    Captured at the contextualiser's head and at the semantic tokens' output; switched off, neither is."""
    seen = {}

    def capture(name):
        return lambda module, args, output: seen.__setitem__(name, (args[0] if name == "fused" else output).detach())

    x = torch.randn(10, 8)
    y = torch.randint(0, 3, (10,)) if task == "fer" else torch.rand(10, 3) * 2 - 1  # _small: 3 outputs
    for on in (True, False):
        head = _small(task, normalise_tokens=on, normalise_fused=on)
        head.semantic.register_forward_hook(capture("tokens"))
        head.branches.context.head.register_forward_hook(capture("fused"))
        head.losses(x, y)
        for name in ("tokens", "fused"):
            norms = seen[name].norm(dim=-1)
            assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) == on, (name, on)


@pytest.mark.parametrize("task", ["fer", "au"])
def test_the_contextualiser_loss_is_taken_on_the_first_ctx_samples_of_the_batch(task):
    """``ctx_samples`` = n: the contextualiser's loss is its loss on the batch's first n samples
    alone; every other term still sees the whole batch; 0 is the whole batch."""
    part, whole = _small(task, ctx_samples=5), _small(task, ctx_samples=0)
    whole.load_state_dict(part.state_dict())
    x = torch.randn(12, 8)
    y = torch.randint(0, 3, (12,)) if task == "fer" else torch.randint(0, 2, (12, 3))
    _, on_part = part.losses(x, y)
    _, on_first = whole.losses(x[:5], y[:5])
    _, on_all = whole.losses(x, y)
    assert on_part["contx"] == pytest.approx(on_first["contx"], rel=1e-5)
    assert on_part["contx"] != pytest.approx(on_all["contx"], rel=1e-3)
    assert on_part["vas"] == pytest.approx(on_all["vas"], rel=1e-5)  # the rest: the whole batch


# -- training: against baselines trained in the same test on the same split ---------------------------------------
FAST = TrainConfig(epochs=60, batch_size=64, lr=3e-3, patience=15, seed=0, device="cpu", progress=False)


def _clusters(n_per=120, classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 3
    x = np.concatenate([c + rng.normal(0, 1, (n_per, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(classes), n_per)
    order = rng.permutation(len(y))
    return torch.from_numpy(x[order]), torch.from_numpy(y[order])


def _rings(n=600, dim=16, seed=0):
    """Three concentric rings in a random plane of ``dim``-d space: no linear map separates them."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    radius = np.array([0.5, 1.5, 2.5])[y] + rng.uniform(-0.3, 0.3, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    plane = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, :2]
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1) @ plane.T + rng.normal(0, 0.1, (n, dim))
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


def _majority_accuracy(y_train: torch.Tensor, y_val: torch.Tensor) -> float:
    return float((y_val == torch.bincount(y_train).argmax()).float().mean())


def test_aura_matches_the_linear_probe_on_separable_expressions():
    x, y = _clusters()
    train, val = (x[:360], y[:360]), (x[360:], y[360:])
    aura = AuraHead(AuraConfig(task="fer", in_dim=16, n_outputs=4, d=8, k_max=40, hidden=32, ctx_dim=16, n_tokens=2))
    result = fit(aura, "fer", train, val, 4, FAST)
    probe = fit(linear_probe("fer", 16, 4), "fer", train, val, 4, FAST)
    assert probe.val["macro_f1"] > 0.95 and _majority_accuracy(train[1], val[1]) < 0.35  # the bar is the probe's
    assert result.val["macro_f1"] > 0.93 and result.val["macro_f1"] >= probe.val["macro_f1"] - 0.03, result.val
    assert_pruned_by_usage(aura, result.k_stable, *train)
    assert probe.k_stable is None


def test_aura_predicts_through_its_nearest_archetype_and_nothing_else():
    """AURA's inference (its central claim): a face's output is φ of the kept archetype nearest its
    projection, so faces sharing a nearest archetype share an output exactly, and the output is
    φ(archetype) recomputed by hand; an output read off the projection itself differs per face."""
    x, y = _clusters()
    aura = AuraHead(AuraConfig(task="fer", in_dim=16, n_outputs=4, d=8, k_max=40, hidden=32, ctx_dim=16, n_tokens=2))
    fit(aura, "fer", (x[:360], y[:360]), (x[360:], y[360:]), 4, FAST)
    with torch.no_grad():
        out, index = aura.predict(x)
        branches = aura.branches
        z = aura._inputs(x)[1]
        f_hat, archetypes = branches.embed(z), branches.normalised()  # (1, B, d), (1, K, d)
        nearest = (F.normalize(f_hat, dim=-1) @ archetypes.transpose(1, 2)).masked_fill(~branches.active[:, None], -2)
        assert torch.equal(index.T, nearest.argmax(-1))
        by_hand = branches.output(archetypes)[0][index[:, 0]]
        projected = branches.output(f_hat)[0]
    torch.testing.assert_close(out, by_hand)
    shared = index[:, 0] == index[0, 0]
    assert shared.sum() > 5 and torch.equal(out[shared], out[0].expand(int(shared.sum()), -1))
    assert not torch.allclose(projected[shared], out[shared], atol=1e-3)  # the projection is not the output


def test_aura_separates_rings_where_the_linear_probe_cannot():
    x, y = _rings()
    train, val = (x[:450], y[:450]), (x[450:], y[450:])
    aura = AuraHead(AuraConfig(task="fer", in_dim=16, n_outputs=3, d=8, k_max=40, hidden=32, ctx_dim=16, n_tokens=2))
    result = fit(aura, "fer", train, val, 3, FAST)
    probe = fit(linear_probe("fer", 16, 3), "fer", train, val, 3, FAST)
    assert probe.val["macro_f1"] < 0.55  # rings defeat any linear map
    assert result.val["macro_f1"] > 0.85 and result.val["macro_f1"] > probe.val["macro_f1"] + 0.3, result.val
    assert_pruned_by_usage(aura, result.k_stable, *train)


@pytest.mark.parametrize("task,input_kind", [("va", "global"), ("au", "global"), ("au", "patch")])
def test_va_and_au_heads_train_on_learnable_signals(task, input_kind):
    rng = np.random.default_rng(1)
    n, dim, patches = 480, 12, 4
    x = rng.normal(0, 1, (n, patches, dim) if input_kind == "patch" else (n, dim)).astype(np.float32)
    flat = x.mean(1) if input_kind == "patch" else x
    if task == "va":
        y = np.tanh(flat[:, :2] * 0.8).astype(np.float32)
        n_out = 2
    else:
        y = (flat[:, :3] > 0).astype(np.int64)
        y[::7, 1] = -1  # unlabelled entries are skipped, not counted
        n_out = 3
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    cfg = AuraConfig(
        task=task,
        in_dim=dim,
        n_outputs=n_out,
        d=8,
        k_max=60,
        hidden=32,
        ctx_dim=16,
        n_tokens=2,
        top_k=3,
        ctx_layers=1,
        input=input_kind,
        patch_layers=1,
        patch_dim=24,  # the patch transformer's width is its own, not the contextualiser's
        margin=0.2,
    )
    head = AuraHead(cfg, n_patches=patches if input_kind == "patch" else 0)
    train_cfg = TrainConfig(epochs=40, batch_size=64, lr=3e-3, patience=10, device="cpu", progress=False)
    result = fit(head, task, (x[:400], y[:400]), (x[400:], y[400:]), n_out, train_cfg)
    # the probe sees the same signal (the token mean, which the labels are a function of)
    flat = torch.from_numpy(flat)
    probe = fit(linear_probe(task, dim, n_out), task, (flat[:400], y[:400]), (flat[400:], y[400:]), n_out, train_cfg)
    if task == "va":
        headline, bar = "ccc_mean", 0.9
    else:
        headline, bar = "mean_f1", 0.9 if input_kind == "global" else 0.85
        every_au_present = au_metrics(np.ones((80, 3), int), y[400:].numpy(), ["a", "b", "c"])["mean_f1"]
        assert every_au_present < 0.7  # the constant predictor's score, well below the bar
    assert result.val[headline] > bar and result.val[headline] >= probe.val[headline] - 0.03, (result.val, probe.val)
    assert len(result.k_stable) == (2 if task == "va" else 3)
    assert_pruned_by_usage(head, result.k_stable, x[:400], y[:400])
    outputs, index = head.predict(x[:5])
    assert outputs.shape == (5, n_out) and index.shape == (5, n_out)


def test_input_norm_is_fitted_on_training_data_and_saved_with_the_weights():
    x = torch.randn(64, 5) * torch.tensor([1.0, 10, 0.1, 5, 2]) + torch.tensor([3.0, -2, 0, 1, 7])
    x[:, 2] = 4.0  # a constant dimension keeps unit scale instead of dividing by zero
    head = create_head("linear", "fer", 5, 3)
    fit_input_norms(head, x)
    z = head.norm(x)
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z[:, [0, 1, 3, 4]].std(0), torch.ones(4), atol=1e-5) and (z[:, 2] == 0).all()
    assert {"norm.mean", "norm.std"} <= set(head.state_dict())


def test_annotation_audit_finds_flipped_labels():
    from heads.data import TaskData
    from heads.report import analyse, audit, table3

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 4

    def split(n):
        y = np.arange(n) % 3
        return torch.from_numpy((centres[y] + rng.normal(size=(n, 16))).astype(np.float32)), torch.from_numpy(y)

    (xt, yt), (xv, yv), (xs, ys) = split(300), split(60), split(60)
    flipped = rng.choice(300, 15, replace=False)
    yt[flipped] = (yt[flipped] + 1) % 3  # label noise the audit should find
    rows = {"train": np.arange(300), "val": np.arange(300, 360), "test": np.arange(360, 420)}
    data = TaskData(
        {"train": xt, "val": xv, "test": xs}, {"train": yt, "val": yv, "test": ys}, rows, 3, ["a", "b", "c"], ""
    )
    model = AuraHead(AuraConfig(task="fer", in_dim=16, n_outputs=3, d=8, k_max=30, use_contextualisation=False))
    fit(model, "fer", (xt, yt), (xv, yv), 3, TrainConfig(epochs=60, lr=3e-3, batch_size=32, progress=False))
    branches = analyse(model, data, "fer", n_nearest=4)
    table = table3("fer", branches, data.label_names)
    assert sum(t["archetypes"] for t in table) == len(branches[0].kept)
    entries = audit(model, data, "fer", branches, np.array([f"img{i}.png" for i in range(420)]))
    found = {e["row"] for e in entries}
    assert len(found & set(flipped.tolist())) >= 12  # most of the 15 flipped labels
    assert len(found - set(flipped.tolist())) <= 3  # and little else
    assert entries[0]["path"].startswith("img") and entries[0]["strength"] >= 0.8


def test_purity_and_spread_per_archetype_by_hand():
    from heads.report import _spread

    groups = np.array([0, 0, 1, 2, -1, 2])  # −1: unlabelled, never counted
    assigned = np.array([0, 0, 0, 1, 1, 1])
    purity, spread = _spread(groups, assigned, n_kept=3, n_groups=3)
    # archetype 0 decides labels (0, 0, 1); 1 decides (2, 2); 2 decides nothing
    assert purity[:2] == pytest.approx([2 / 3, 1.0]) and np.isnan(purity[2])
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(3)
    assert spread[:2] == pytest.approx([expected, 0.0]) and np.isnan(spread[2])


def test_a_catch_all_archetype_is_flagged_and_left_out_of_the_audit_and_a_class_without_archetypes_is_an_error():
    """Five clean clusters, one per class, plus a sixth labelled 'a' in training and any of the five
    labels in validation and test (the unseen subjects of every class that land on one archetype):
    its archetypes agree with their training members, yet they are catch-alls (held-out spread ≥
    0.75), the audit draws no evidence from them, and it still finds the flipped labels in the clean
    clusters. Then every archetype of class 'c' is switched off: the report names 'c' as an error."""
    from heads.data import TaskData
    from heads.report import CATCH_ALL_ENTROPY, analyse, audit, markdown, table3, uncovered

    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 16)) * 4

    def split(n, mixed=True):
        cluster = np.arange(n) % 6
        y = np.where(cluster < 5, cluster, rng.integers(0, 5, n) if mixed else 0)
        x = centres[cluster] + rng.normal(size=(n, 16))
        return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y), cluster

    (xt, yt, ct), (xv, yv, cv), (xs, ys, cs) = split(600, mixed=False), split(120), split(120)
    flipped = rng.choice(np.flatnonzero(ct < 5), 15, replace=False)
    yt[flipped] = (yt[flipped] + 1) % 5
    rows = {"train": np.arange(600), "val": np.arange(600, 720), "test": np.arange(720, 840)}
    data = TaskData(
        {"train": xt, "val": xv, "test": xs}, {"train": yt, "val": yv, "test": ys}, rows, 5, list("abcde"), ""
    )
    model = AuraHead(AuraConfig(task="fer", in_dim=16, n_outputs=5, d=8, k_max=30, use_contextualisation=False))
    fit(model, "fer", (xt, yt), (xv, yv), 5, TrainConfig(epochs=60, lr=3e-3, batch_size=32, progress=False))
    (branch,) = analyse(model, data, "fer", n_nearest=4)
    _, index = model.predict(torch.cat([xt, xv, xs]))
    cluster = np.concatenate([ct, cv, cs])
    position = {int(a): k for k, a in enumerate(branch.kept)}
    deciding = np.array([position[int(i)] for i in index[:, 0]])
    flagged = branch.catch_all[deciding]
    assert flagged[cluster == 5].mean() >= 0.8, branch.label_entropy  # the mixed cluster's archetypes
    assert not flagged[cluster < 5].any()  # never one of a clean cluster
    assert (branch.label_entropy[branch.catch_all] >= CATCH_ALL_ENTROPY).all()
    entries = audit(model, data, "fer", [branch], np.array([f"img{i}.png" for i in range(840)]))
    assert not any(branch.catch_all[position[e["archetype"]]] for e in entries)  # no verdict from a catch-all
    found = {e["row"] for e in entries}
    assert len(found & set(flipped.tolist())) >= 12
    table = table3("fer", [branch], data.label_names)
    assert sum(t["catch_all"] for t in table) == branch.catch_all.sum() >= 1
    assert branch.uncovered == [] and uncovered("fer", [branch], data.label_names) == []

    said = model.branches.archetype_groups()[0]
    model.branches.active[0] &= said != 2  # no archetype decides 'c' any more
    (branch,) = analyse(model, data, "fer", n_nearest=4)
    missing = uncovered("fer", [branch], data.label_names)
    assert missing == [{"branch": "expression", "group": "c"}]
    text = markdown("heads/x", get_task("fer"), table, [], [branch], "PCA", data.label_names, missing)
    assert "## Error: groups no archetype decides" in text and "**expression: c**" in text


# -- imbalanced classes: a class of 1.5 % keeps its archetypes ----------------------------------------------------
IN_THE_WILD = np.array([0.25, 0.20, 0.18, 0.15, 0.12, 0.085, 0.015])  # class shares like in-the-wild sets


def _imbalanced(n=4000, dim=24, seed=0):
    """Seven overlapping classes of four sub-clusters each (people, poses), with in-the-wild shares."""
    rng = np.random.default_rng(seed)
    y = rng.choice(7, n, p=IN_THE_WILD / IN_THE_WILD.sum())
    centres = rng.normal(0, 1, (7, 4, dim)) * 0.9
    x = centres[y, rng.integers(0, 4, n)] + rng.normal(0, 1, (n, dim))
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)


def test_a_rare_class_keeps_archetypes_and_is_predicted_and_aura_stays_near_the_mlp():
    """The paper's codebook-wide τ lost every archetype of the 1.5 % class on two of these three
    seeds (it could then never be predicted); judged within each class, every class keeps some, is
    predicted, and AURA's mean macro-F1 over the seeds is within 0.03 of the MLP's (the MLP is the
    stronger baseline on in-the-wild data: issue 16's table). Measured: 0.874 against 0.899 with
    head version 9's normalised contextualiser (the paper's), 0.881 with version 8's unnormalised
    one; the seeds alone spread AURA by 0.05."""
    from heads.baselines import MlpConfig, mlp
    from heads.metrics import expression_metrics

    x, y = _imbalanced()
    train, val, test = slice(0, 2600), slice(2600, 3300), slice(3300, 4000)
    cfg = TrainConfig(epochs=40, batch_size=128, lr=2e-3, patience=8, device="cpu", progress=False)
    scores = {"aura": [], "mlp": []}
    for seed in (0, 1, 2):
        cfg.seed = seed
        seed_everything(seed)
        aura = AuraHead(
            AuraConfig(task="fer", in_dim=24, n_outputs=7, d=24, k_max=60, hidden=128, ctx_dim=16, n_tokens=2)
        )
        fit(aura, "fer", (x[train], y[train]), (x[val], y[val]), 7, cfg)
        decides = aura.branches.archetype_groups()[0][aura.branches.active[0]]
        assert (np.bincount(decides.numpy(), minlength=7) >= 1).all(), f"seed {seed}: a class lost every archetype"
        predicted = aura.predict(x[test])[0].argmax(-1)
        assert (np.bincount(predicted.numpy(), minlength=7) >= 1).all(), f"seed {seed}: a class is never predicted"
        assert aura.uncovered() == [[]]
        scores["aura"].append(expression_metrics(predicted.numpy(), y[test].numpy(), 7)["macro_f1"])
        seed_everything(seed)
        baseline = mlp("fer", 24, 7, MlpConfig())
        fit(baseline, "fer", (x[train], y[train]), (x[val], y[val]), 7, cfg)
        outputs = baseline.predict(x[test])[0].argmax(-1).numpy()
        scores["mlp"].append(expression_metrics(outputs, y[test].numpy(), 7)["macro_f1"])
    assert np.mean(scores["aura"]) >= np.mean(scores["mlp"]) - 0.03, scores


def _counted_steps(monkeypatch) -> list[int]:
    """A list the trainer's optimiser appends to on every step (the real AdamW still steps)."""
    import heads.trainer

    steps: list[int] = []
    real = heads.trainer.adamw

    def counting(*args, **kwargs):
        optimiser = real(*args, **kwargs)
        step = optimiser.step
        optimiser.step = lambda: (steps.append(1), step())
        return optimiser

    monkeypatch.setattr(heads.trainer, "adamw", counting)
    return steps


def test_the_fast_preset_trains_with_a_sixteenth_of_the_training_set_per_batch(monkeypatch):
    """Left open, the batch is auto_batch_size of the training set: 800 samples → 50, so an epoch
    is 16 optimiser steps (counted), and the result records it; a set batch is kept."""
    x, y = torch.randn(800, 6), torch.randint(0, 3, (800,))
    steps = _counted_steps(monkeypatch)
    cfg = TrainConfig(epochs=1, progress=False, device="cpu")
    assert cfg.batch_size is None
    result = fit(linear_probe("fer", 6, 3), "fer", (x, y), (x[:100], y[:100]), 3, cfg)
    assert result.batch_size == 50 and len(steps) == 16
    steps.clear()
    fixed = fit(
        linear_probe("fer", 6, 3),
        "fer",
        (x, y),
        (x[:100], y[:100]),
        3,
        TrainConfig(epochs=1, batch_size=200, progress=False),
    )
    assert fixed.batch_size == 200 and len(steps) == 4


def test_a_step_floor_stretches_epochs_patience_and_warm_up_by_one_whole_factor(monkeypatch):
    """12 epochs of 10 batches are 120 steps: a floor of 1000 needs ⌈1000 / 120⌉ = 9 times the
    epochs, patience and warm-up (FAUD-CLIP's schedule keeps its shape); a large set is left alone.
    Through the trainer: 800 rows in batches of 200 are 4 steps an epoch, 3 epochs 12 steps; a
    floor of 30 makes ⌈30 / 12⌉ = 3 times as many epochs, every step counted and recorded."""
    cfg = TrainConfig.preset("faud", min_steps=1000)
    assert (cfg.epochs, cfg.patience, cfg.warmup_epochs) == (12, 12, 1)
    small = cfg.stretched(10)
    assert (small.epochs, small.patience, small.warmup_epochs) == (108, 108, 9)
    assert cfg.stretched(84) is cfg  # 12 × 84 = 1008 steps ≥ 1000
    assert TrainConfig.preset("faud").min_steps == 1000  # the preset's floor (docs/methods.md#step-budget)
    assert TrainConfig.preset("faud", epochs=40).min_steps == 0  # epochs a user gives are taken as given
    x, y = torch.randn(800, 6), torch.randint(0, 3, (800,))
    steps = _counted_steps(monkeypatch)
    knobs = {"epochs": 3, "batch_size": 200, "patience": 100, "progress": False}
    result = fit(linear_probe("fer", 6, 3), "fer", (x, y), (x, y), 3, TrainConfig(min_steps=30, **knobs))
    assert (result.epoch_budget, result.steps_per_epoch, result.epochs_run, len(steps)) == (9, 4, 9, 36)
    steps.clear()
    result = fit(linear_probe("fer", 6, 3), "fer", (x, y), (x, y), 3, TrainConfig(min_steps=12, **knobs))
    assert (result.epoch_budget, len(steps)) == (3, 12)


def test_datasets_trained_together_share_the_union_of_their_outputs():
    """AU-only and expression-only datasets (DISFA beside RAF-DB) in one au_fer output space: AUs in
    FACS order, classes in canonical order, what a dataset does not code missing (−1), by hand."""
    from heads.tasks import Labels

    task = get_task("au_fer")
    au_only = Labels(np.array([[1, 0, -1], [0, 1, -1]]), np.ones(2, bool), ["AU12", "AU4"])
    expression_only = Labels(np.array([[1], [0], [-1]]), np.array([True, True, False]), ["happiness", "neutral"])
    both = Labels(np.array([[1, 0], [0, -1]]), np.ones(2, bool), ["AU1", "anger"])
    classes = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
    a, e, b = task.merge([au_only, expression_only, both], classes)
    assert a.names == e.names == b.names == ["AU1", "AU4", "AU12", "neutral", "happiness", "anger"]
    np.testing.assert_array_equal(a.y, [[-1, 0, 1, -1], [-1, 1, 0, -1]])
    # its own class 1 is neutral, 0 happiness: renumbered into the union
    np.testing.assert_array_equal(e.y, [[-1, -1, -1, 0], [-1, -1, -1, 1], [-1, -1, -1, -1]])
    np.testing.assert_array_equal(b.y, [[1, -1, -1, 2], [0, -1, -1, -1]])
    np.testing.assert_array_equal(e.labelled, [True, True, False])
    # the other tasks: the union of AUs (au), of classes (fer); va needs the same outputs everywhere
    (x,) = get_task("au").merge([Labels(np.array([[1]]), np.ones(1, bool), ["AU6"])], classes)
    assert x.names == ["AU6"]
    with pytest.raises(ValueError, match="same outputs"):
        get_task("va").merge(
            [Labels(np.zeros((1, 2)), np.ones(1, bool), ["valence", "arousal"])] * 2
            + [Labels(np.zeros((1, 1)), np.ones(1, bool), ["valence"])],
            classes,
        )


def test_batches_over_several_datasets_hold_equal_shares_and_cover_the_largest_once():
    from heads.trainer import epoch_batches

    groups = np.array([0] * 100 + [1] * 30 + [2] * 10)
    batches = epoch_batches(groups.size, 30, torch.Generator().manual_seed(0), groups)
    counts = np.array([np.bincount(groups[b.numpy()], minlength=3) for b in batches])
    assert (counts == 10).all() and len(batches) == 10  # 10 per dataset; 100 rows of the largest / 10
    largest = np.concatenate([b.numpy() for b in batches])
    assert sorted(largest[largest < 100].tolist()) == list(range(100))  # each row of the largest once
    assert set(largest[largest >= 130].tolist()) == set(range(130, 140))  # the smallest cycles
    assert any(groups[b.numpy()[:10]].min() != groups[b.numpy()[:10]].max() for b in batches)  # mixed order
    # one dataset: a shuffled pass over the rows, the batches the trainer always made
    single = epoch_batches(50, 16, torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.cat(single), torch.randperm(50, generator=torch.Generator().manual_seed(3)))
