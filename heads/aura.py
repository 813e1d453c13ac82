"""AURA: frozen features projected into a learnable archetype space; inference is cosine matching.

A branch is one output space: a projector (VAS) to d dimensions, a codebook of K_max archetypes, a
task head φ, the adaptive regulariser and (training only) the archetype contextualiser.
:class:`AuraHead` holds the branches of a task: one shared codebook for the expression classes, one
each for valence and arousal, one per AU. The branches of a task are independent networks of the
same shape, so :class:`ArchetypeBranches` stacks them and computes all of them in one batched pass
(heads/stacked.py); every loss is the sum over branches of that branch's loss.

Losses (all λ = 1 by default)::

    λ_Proj · L_VAS + λ_Arc · (L_assign + L_dis + L_reg) + λ_Contx · L_contx

* L_VAS    task loss of φ on the ℓ2-normalised projected feature f̂;
* L_assign ‖sg[f̂] − â‖² + β‖f̂ − sg[â]‖², â the nearest archetype by cosine;
* L_dis    task loss of φ on the assigned archetype, passed straight-through (its value is â, its
           gradient reaches both â and the projector);
* L_reg    expressions (Eq. 6–8): Σ(1 − w_k)(1 − cos(â_k, μ̃_{c_k}))/K compactness,
           hinge(cos(μ̃_c, μ̃_c') − m) separation, and diversity −mean(d_c) − var(d_c) with
           d_c = ‖μ̃_c − μ̄‖ over the class centres μ̃_c, where c_k = argmax φ(â_k) and w_k its
           softmax confidence; AU / VA (Eq. 9–10): with d = (1 − cos)/2, score-aware attraction
           mean over pairs whose predicted scores differ by less than m of hinge(d − m)², repulsion
           mean over pairs ≥ m apart of hinge(m − d)², and Eq. 8's diversity with each archetype
           its own centre (these tasks have no classes; our reading). ``pair_loss="graded"`` and
           ``diversity_over="archetypes"`` keep this project's earlier forms as ablation rows;
* L_contx  task loss of the contextualiser: the top-K archetypes as distance-aware tokens
           (W_proj â + W_dist d + b), N_tok semantic tokens from the input (learnable queries over
           per-token key/value projections of the global feature; for patches, N_tok learnable
           tokens prepended to the patch sequence in the patch transformer, each output through an
           AU-specific linear map), [c_sem; T; c_arc; Â] + positions → transformer → softmax gate over the two
           CLS outputs → head. (The two CLS tokens are stored first: with learned positions the
           order in memory is only a layout, and adjacent CLS rows are a slice, not a gather.)

Usage: archetype usage is counted in training and judged against what the archetype's group can
supply — the class it decides, its AU state (absent / present), its VA score bin — so a class
holding 1.5 % of the data keeps archetypes that a codebook-wide share would call unused. An
archetype is underused when fewer than τ·G of its group's samples (G groups; and fewer than one)
are nearest to it: with balanced groups that is τ of all usage, the paper's rule, and a group
holding a tenth of the balanced share gets a threshold ten times lower. During warm-up underused
archetypes are re-initialised from batch features plus small noise, first from the samples of
groups no live archetype decides, then class-balanced; after training they are pruned, leaving
K_stable, and every group with training samples keeps its most used archetype (a group no
archetype decides is reported as uncovered). Deviation: the paper prunes on the codebook-wide share
(τ = 1 % of all usage), which on in-the-wild data removed every archetype of a 1.5 % class.
Inference is projector → nearest kept archetype → φ, nothing else.
Every component has a switch (``AuraConfig``) so the paper's ablations are one change each.
Deviation: the encoders are frozen and features cached (the paper's CLIP is frozen as well).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head
from heads.dropout import Dropout
from heads.registry import register_head
from heads.stacked import StackedEncoderLayer, StackedLinear
from heads.standardise import InputNorm
from heads.tasks import get_task

# The paper's regularisers per task (the score-aware pair for per-output tasks). The tasks AURA serves.
REGULARISERS = {
    "fer": ("compact", "separate", "diversity"),
    "va": ("attract", "repel", "diversity"),
    "au": ("attract", "repel", "diversity"),
}
TASKS = tuple(REGULARISERS)
# Eq. 8's points per task: the class centres where there are classes, else every archetype its own
DIVERSITY_OVER = {"fer": "centres", "va": "archetypes", "au": "archetypes"}


@dataclass
class AuraConfig:
    task: str  # fer | va | au
    in_dim: int
    n_outputs: int = 7  # expression classes, or AUs; VA is always 2 branches of 1
    d: int = 32
    hidden: int = 256
    dropout: float = 0.2
    k_max: int = 200
    beta: float = 1.0
    margin: float = 0.2
    # "paper": Eq. 9–10, squared hinges on d = (1 − cos)/2; "graded": this project's earlier
    # (1 − cos)(1 − gap/m) attraction and hinge(cos − (1 − gap)) repulsion (an ablation row)
    pair_loss: str = "paper"
    # Eq. 8 over the class centres ("centres", expressions) or over single archetypes ("archetypes":
    # the only reading for AU / VA, which have no classes; for expressions this project's earlier form)
    diversity_over: str = ""  # empty: centres for expressions, archetypes otherwise
    va_alpha: float = 1.0
    tau: float = 0.01  # underused: below τ·G of its group's samples (τ of all usage when groups are balanced)
    lambda_proj: float = 1.0
    lambda_arc: float = 1.0
    lambda_contx: float = 1.0
    use_projector: bool = True
    use_dis: bool = True
    use_reg: bool = True
    use_contextualisation: bool = True
    regularisers: tuple[str, ...] = field(default=())  # empty: the task's full set (see REGULARISERS)
    top_k: int = 5
    n_tokens: int = 4
    # §2.3.1 (i): the global semantic tokens are "aggregated and normalized" into T^g; §2.3.2: the
    # fused CLS vector "is normalized and fed into a prediction head". Both ℓ2 (the paper's other
    # normalisations are all ℓ2); False: head version 8's unnormalised forms, kept as ablation rows.
    normalise_tokens: bool = True
    normalise_fused: bool = True
    # The contextualiser's size is not fixed by the method. Attention over ~11 tokens costs per
    # (sample, head) on CPU, and AU heads run one contextualiser per AU, so the defaults are small:
    # width 32, 2 heads, 1 layer (measured in bench/heads.py); larger ones are one option away.
    ctx_dim: int = 32
    ctx_heads: int = 2
    ctx_layers: int = 1
    # Dropout inside the contextualiser's transformer. The paper gives 0.2 for the projector only;
    # here it defaults to 0: on CPU the dropout masks cost more than the rest of the transformer.
    ctx_dropout: float = 0.0
    # The contextualiser only shapes training (inference is projector → archetype → φ), and it is
    # most of a step's cost: its loss is taken on this many samples of each (shuffled) batch, an
    # unbiased estimate of the whole batch's; 0: the whole batch (the paper; the ``paper`` preset).
    ctx_samples: int = 128
    input: str = "global"  # global | patch (AU: patch tokens through a light transformer)
    patch_layers: int = 2
    patch_dim: int = 32  # width of the patch-token transformer (its CLS output feeds each AU's projector)
    patch_heads: int = 2

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} not in {TASKS}")
        if self.input not in ("global", "patch"):
            raise ValueError("input must be 'global' or 'patch'")
        if not self.use_projector and self.input == "global":
            self.d = self.in_dim  # no projector: archetypes live in the encoder's own space
        allowed = REGULARISERS[self.task]
        if unknown := [r for r in self.regularisers if r not in allowed]:
            raise ValueError(f"regularisers {unknown} not in {allowed} for task {self.task}")
        self.regularisers = tuple(self.regularisers) or allowed
        if self.pair_loss not in ("paper", "graded"):
            raise ValueError(f"pair_loss must be 'paper' or 'graded', not {self.pair_loss!r}")
        self.diversity_over = self.diversity_over or DIVERSITY_OVER[self.task]
        if self.diversity_over not in {DIVERSITY_OVER[self.task], "archetypes"}:
            raise ValueError(f"diversity_over {self.diversity_over!r}: 'centres' (expressions) or 'archetypes'")

    def to_json(self) -> dict:
        return {**asdict(self), "regularisers": list(self.regularisers)}


# -- pieces ------------------------------------------------------------------------------------
class SemanticTokens(nn.Module):
    """N_tok learnable queries attending over per-token key/value projections of one global feature."""

    def __init__(self, in_dim: int, n_tokens: int, width: int, heads: int, normalise: bool):
        super().__init__()
        self.normalise = normalise
        self.queries = nn.Parameter(torch.randn(n_tokens, width) * 0.02)
        self.keys = nn.Linear(in_dim, n_tokens * width)
        self.values = nn.Linear(in_dim, n_tokens * width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.n_tokens, self.width = n_tokens, width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        k = self.keys(x).view(b, self.n_tokens, self.width)
        v = self.values(x).view(b, self.n_tokens, self.width)
        out, _ = self.attention(self.queries.expand(b, -1, -1), k, v, need_weights=False)
        return F.normalize(out, dim=-1) if self.normalise else out


class Contextualiser(nn.Module):
    """Per branch: [c_sem; T; c_arc; Â] + positions → transformer → gated fusion of the two CLS
    outputs → head. All M branches' contextualisers run stacked."""

    def __init__(self, cfg: AuraConfig, m: int, n_out: int, semantic_in: int, n_semantic: int):
        super().__init__()
        w = cfg.ctx_dim
        self.arc_proj = StackedLinear(m, cfg.d, w, bias=False)
        self.dist_proj = StackedLinear(m, 1, w)  # W_dist d_k + b
        self.semantic_proj = StackedLinear(m, semantic_in, w) if semantic_in != w else None
        self.cls = nn.Parameter(torch.randn(m, 2, w) * 0.02)  # c_sem, c_arc
        self.positions = nn.Parameter(torch.randn(m, 2 + n_semantic + cfg.top_k, w) * 0.02)
        self.layers = nn.ModuleList(
            StackedEncoderLayer(m, w, cfg.ctx_heads, 2 * w, cfg.ctx_dropout) for _ in range(cfg.ctx_layers)
        )
        self.gate = StackedLinear(m, 2 * w, 2)
        self.head = StackedLinear(m, w, n_out)
        self.n_semantic = n_semantic
        self.normalise_fused = cfg.normalise_fused

    def forward(
        self, semantic: torch.Tensor, archetypes: torch.Tensor, index: torch.Tensor, distances: torch.Tensor
    ) -> torch.Tensor:
        """semantic (M, B, S, ·); the codebook ``archetypes`` (M, K, d), each sample's top-k ``index``
        into it and cosine ``distances`` (M, B, k) → (M, B, n_out)."""
        m, b, k = index.shape
        first_arc = 2 + self.n_semantic
        positions = self.positions
        # W_proj â: projecting the K archetypes once and gathering equals projecting the B·k gathered ones
        arc_tokens = _gather(self.arc_proj(archetypes), index)
        # + W_dist d_k + b, and the position: W_dist maps a scalar, so one multiply-add
        offset = self.dist_proj.bias[:, None, None] + positions[:, None, first_arc : first_arc + k]
        arc_tokens = arc_tokens + torch.addcmul(
            offset, distances.unsqueeze(-1), self.dist_proj.weight.view(m, 1, 1, -1)
        )
        if self.semantic_proj is not None:
            semantic = self.semantic_proj(semantic)
        semantic = semantic + positions[:, None, 2:first_arc]
        # [c_sem; c_arc; T; Â]: the paper's [c_sem; T; c_arc; Â] with the CLS tokens side by side
        cls = (self.cls + positions[:, :2])[:, None]  # (M, 1, 2, w): the same for every sample
        seq = torch.cat([cls.expand(m, b, 2, -1), semantic, arc_tokens], dim=2)
        for layer in self.layers[:-1]:
            seq = layer(seq)
        # only the two CLS outputs are read: the last layer computes just those rows, and when it
        # is the only layer their inputs are the sample-independent CLS tokens
        if self.layers:
            seq = self.layers[-1](seq, queries=cls if len(self.layers) == 1 else seq[:, :, :2])
        sem, arc = seq[:, :, 0], seq[:, :, 1]
        g = torch.softmax(self.gate(torch.cat([sem, arc], dim=-1)), dim=-1)
        fused = g[..., :1] * sem + g[..., 1:] * arc
        return self.head(F.normalize(fused, dim=-1) if self.normalise_fused else fused)


class PatchEncoder(nn.Module):
    """Patch tokens → a light transformer with a learnable CLS, N_tok learnable semantic tokens
    prepended to the sequence (the paper's T_tok, sharing the projector's transformer here) and
    positional encodings. Returns the CLS output (each AU projector's input) and the N_tok outputs
    (each AU's semantic tokens, through an AU-specific linear map)."""

    def __init__(
        self, token_dim: int, n_patches: int, n_semantic: int, width: int, layers: int, heads: int, dropout: float
    ):
        super().__init__()
        self.inp = nn.Linear(token_dim, width)
        self.cls = nn.Parameter(torch.randn(1, 1 + n_semantic, width) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, 1 + n_semantic + n_patches, width) * 0.02)
        # the stacked layer with M = 1: one transformer implementation for the whole head
        self.layers = nn.ModuleList(StackedEncoderLayer(1, width, heads, 2 * width, dropout) for _ in range(layers))
        self.n_semantic = n_semantic

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), self.inp(tokens)], dim=1) + self.positions
        x = x[None]
        for layer in self.layers:
            x = layer(x)
        return x[0, :, 0], x[0, :, 1 : 1 + self.n_semantic]


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of per-branch tables: ``table`` (M, K, d), ``index`` (M, ...) → (M, ..., d)."""
    m, d = table.shape[0], table.shape[-1]
    flat = index.reshape(m, -1, 1).expand(-1, -1, d)
    return torch.gather(table, 1, flat).view(*index.shape, d)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per branch mean of ``values`` where ``mask`` holds, over every dimension but the first; 0 where none does."""
    dims = tuple(range(1, values.dim()))
    return (values * mask).sum(dims) / mask.sum(dims).clamp(min=1)


# -- the archetype spaces of one task -----------------------------------------------------------------
def _diversity(points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 8 per branch, summed: −mean(d) − var(d), d the distance of each of ``points`` (M, N, d)
    (where ``mask``) from their mean."""
    kept = mask[..., None].to(points.dtype)
    centre = (points * kept).sum(1, keepdim=True) / kept.sum(1, keepdim=True)
    spread = (points - centre).norm(dim=-1)
    mean = _masked_mean(spread, mask)
    variance = _masked_mean((spread - mean[:, None]) ** 2, mask)
    return -(mean + variance).sum()


class ArchetypeBranches(nn.Module):
    """M archetype spaces (branches) of one task, stacked: parameters carry a leading branch axis."""

    def __init__(self, cfg: AuraConfig, m: int, in_dim: int, n_out: int, semantic_in: int, n_semantic: int):
        super().__init__()
        self.task = get_task(cfg.task)
        if self.task.categorical and m != 1:
            raise ValueError("the classes of a categorical task share one codebook")
        self.cfg, self.m, self.n_out = cfg, m, n_out
        if cfg.use_projector:
            self.project_in = StackedLinear(m, in_dim, cfg.hidden)
            self.project_out = StackedLinear(m, cfg.hidden, cfg.d)
            self.project_dropout = Dropout(cfg.dropout)
        self.archetypes = nn.Parameter(F.normalize(torch.randn(m, cfg.k_max, cfg.d), dim=-1))
        self.head = StackedLinear(m, cfg.d, n_out)
        self.register_buffer("usage", torch.zeros(m, cfg.k_max))
        # training samples per group seen while usage was counted (a counter, not a weight: not saved)
        self.register_buffer("supply", torch.zeros(m, self.task.n_groups(cfg.n_outputs)), persistent=False)
        self.register_buffer("active", torch.ones(m, cfg.k_max, dtype=torch.bool))
        self.uncovered: list[list[int]] = [[] for _ in range(m)]  # groups with samples but no kept archetype
        self.context = Contextualiser(cfg, m, n_out, semantic_in, n_semantic) if cfg.use_contextualisation else None

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """ℓ2-normalised projected features f̂ (M, B, d) of the branch input ``z`` (B, in)."""
        if not self.cfg.use_projector:
            return F.normalize(z, dim=-1).expand(self.m, *z.shape)
        hidden = self.project_dropout(F.gelu(self.project_in.shared(z)))
        return F.normalize(self.project_out(hidden), dim=-1)

    def normalised(self) -> torch.Tensor:
        return F.normalize(self.archetypes, dim=-1)

    def assign(self, f_hat: torch.Tensor, a_hat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(index of the nearest kept archetype (M, B), cosine similarities (M, B, K); −2 for pruned
        ones). ``a_hat``: the normalised codebook when the caller has it already."""
        a_hat = self.normalised() if a_hat is None else a_hat
        sims = (f_hat @ a_hat.transpose(1, 2)).masked_fill(~self.active[:, None], -2.0)
        return sims.argmax(dim=-1), sims

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """φ's raw output for (M, ..., d): class logits, AU logit, or a VA value squashed into [−1, 1]."""
        return self._shape(self.head(z))

    def _shape(self, out: torch.Tensor) -> torch.Tensor:
        return out if self.task.categorical else self.task.squash(out.squeeze(-1))

    def predict(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: projector → nearest kept archetype → φ. Returns (output (M, B, …), index (M, B))."""
        index, _ = self.assign(self.embed(z))
        return self.output(_gather(self.normalised(), index)), index

    def task_loss(self, out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """Sum over branches of each branch's task loss; ``out`` and ``target`` carry the branch axis."""
        return self.task.branch_loss(out, target, weights, self.cfg.va_alpha)

    def losses(
        self, z: torch.Tensor, target: torch.Tensor, semantic: torch.Tensor | None, weights: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Every loss term, summed over branches. ``target`` (M, B); ``semantic`` (M, B, S, ·) or None."""
        cfg = self.cfg
        f_hat = self.embed(z)
        a_hat = self.normalised()
        index, sims = self.assign(f_hat, a_hat)
        assigned = _gather(a_hat, index)
        with torch.no_grad():
            self.usage.scatter_add_(1, index, torch.ones_like(index, dtype=self.usage.dtype))
            self.supply += self.group_counts(target)
        parts = {"vas": self.task_loss(self.output(f_hat), target, weights)}
        commitment = ((f_hat - assigned.detach()) ** 2).sum(-1).mean(-1).sum()
        parts["assign"] = ((f_hat.detach() - assigned) ** 2).sum(-1).mean(-1).sum() + cfg.beta * commitment
        if cfg.use_dis:
            straight_through = assigned + f_hat - f_hat.detach()  # value â; gradient to â and to f̂
            parts["dis"] = self.task_loss(self.output(straight_through), target, weights)
        if cfg.use_reg:
            parts.update(self.regularisation(a_hat))
        if self.context is not None and semantic is not None:
            k = min(cfg.top_k, int(self.active.sum(-1).min()))
            n = semantic.shape[1]  # the samples the contextualiser sees: the first n of the batch
            top = sims[:, :n].topk(k, dim=-1)
            out = self._shape(self.context(semantic, a_hat, top.indices, 1 - top.values))
            parts["contx"] = self.task_loss(out, target[:, :n], weights)
        return parts

    # -- adaptive regularisation --
    def regularisation(self, a_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task's regularisers on the kept archetypes ``a_hat`` (M, K, d), summed over branches."""
        use = set(self.cfg.regularisers)
        parts = {}
        if self.task.categorical:
            a = a_hat[0][self.active[0]]
            probs = torch.softmax(self.head(a[None])[0], dim=-1)
            confidence, cls = probs.max(dim=-1)
            # class centres μ̃_c: the normalised mean of the class's archetypes, all classes in one
            # matrix product rather than a loop over them
            members = F.one_hot(cls, probs.shape[-1]).to(a.dtype)
            centres = F.normalize(members.T @ a, dim=-1)  # (C, d); zero rows for classes no archetype decides
            if "compact" in use:
                parts["compact"] = ((1 - confidence.detach()) * (1 - (a * centres[cls]).sum(-1))).mean()
            present = members.sum(0) > 0
            n_present = int(present.sum())
            if "separate" in use and n_present > 1:
                cos = centres @ centres.T
                off = present[:, None] & present[None, :] & ~torch.eye(len(present), dtype=torch.bool, device=a.device)
                parts["separate"] = F.relu(cos[off] - self.cfg.margin).mean()
            if "diversity" in use and self.cfg.diversity_over == "centres":
                parts["diversity"] = _diversity(centres[present][None], present[present][None])
        else:
            score = self.task.score01(self.output(a_hat))
            gap = (score[:, :, None] - score[:, None, :]).abs().detach()
            cos = a_hat @ a_hat.transpose(1, 2)
            eye = torch.eye(a_hat.shape[1], dtype=torch.bool, device=a_hat.device)
            pairs = self.active[:, :, None] & self.active[:, None, :] & ~eye
            m = self.cfg.margin
            near, far = pairs & (gap < m), pairs & (gap >= m)
            if self.cfg.pair_loss == "paper":
                distance = (1 - cos) / 2
                attract, repel = F.relu(distance - m) ** 2, F.relu(m - distance) ** 2
            else:
                attract, repel = (1 - cos) * (1 - gap / m), F.relu(cos - (1 - gap))
            if "attract" in use:
                parts["attract"] = _masked_mean(attract, near).sum()
            if "repel" in use:
                parts["repel"] = _masked_mean(repel, far).sum()
        if "diversity" in use and self.cfg.diversity_over == "archetypes":
            parts["diversity"] = _diversity(a_hat, self.active)
        return parts

    # -- usage, judged per group --
    @torch.no_grad()
    def group_counts(self, target: torch.Tensor) -> torch.Tensor:
        """(M, G): labelled samples of each group in ``target`` (M, B)."""
        groups = self.task.sample_groups(target)
        counts = torch.zeros_like(self.supply)
        return counts.scatter_add_(1, groups.clamp(min=0), (groups >= 0).to(counts.dtype))

    @torch.no_grad()
    def archetype_groups(self) -> torch.Tensor:
        """(M, K): the group each archetype decides (φ on it)."""
        return torch.stack([self.task.archetype_groups(out) for out in self.output(self.normalised())])

    @torch.no_grad()
    def underused(self, usage: torch.Tensor, supply: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """(M, K): nearest to fewer than τ·G of the samples its group supplies (G groups), and to fewer
        than one. With balanced groups τ·G of a group is τ of all usage: the paper's rule."""
        share = self.cfg.tau * supply.shape[1]
        return usage < (share * torch.gather(supply, 1, groups)).clamp(min=1.0)

    @torch.no_grad()
    def reset_unused(self, z: torch.Tensor, target: torch.Tensor, noise: float = 0.01) -> int:
        """Re-initialise underused archetypes (of the counted samples) from batch features + noise:
        first from samples of groups that no live archetype decides, then class-balanced."""
        groups = self.archetype_groups()
        dead = self.underused(self.usage, self.supply, groups) & (self.usage.sum(-1, keepdim=True) > 0)
        f_hat = self.embed(z)
        sample_groups = self.task.sample_groups(target)
        for j in range(self.m):
            n = int(dead[j].sum())
            if n:
                covered = torch.zeros(self.supply.shape[1], dtype=torch.bool, device=z.device)
                covered[groups[j][~dead[j]]] = True
                picks = f_hat[j, _balanced_picks(sample_groups[j], covered, n)]
                self.archetypes[j, dead[j]] = F.normalize(picks + noise * torch.randn_like(picks), dim=-1)
        self.usage.zero_()
        self.supply.zero_()
        return int(dead.sum())

    @torch.no_grad()
    def counts(self, z: torch.Tensor) -> torch.Tensor:
        """(M, K): how many of ``z`` each archetype (kept or not) is nearest to."""
        index = (self.embed(z) @ self.normalised().transpose(1, 2)).argmax(dim=-1)
        return torch.zeros_like(self.usage).scatter_add_(1, index, torch.ones_like(index, dtype=self.usage.dtype))

    @torch.no_grad()
    def keep(self, usage: torch.Tensor, supply: torch.Tensor) -> list[int]:
        """Keep the archetypes that are not underused (``usage`` (M, K) and ``supply`` (M, G) are
        counts over the training set) and, for every group with samples, at least its most used
        archetype; returns K_stable per branch and records the groups no archetype decides."""
        groups = self.archetype_groups()
        keep = ~self.underused(usage, supply, groups)
        for j in range(self.m):
            self.uncovered[j] = []
            for g in torch.nonzero(supply[j] > 0).flatten().tolist():
                mine = (groups[j] == g) & (usage[j] > 0)
                if not mine.any():
                    self.uncovered[j].append(g)  # no archetype decides it: it can never be predicted
                elif not keep[j][mine].any():
                    keep[j, torch.where(mine, usage[j], -1).argmax()] = True
            if not keep[j].any():  # degenerate: nothing labelled was counted; keep the most used one
                keep[j, usage[j].argmax()] = True
        self.active.copy_(keep)
        return self.active.sum(-1).tolist()


def _balanced_picks(groups: torch.Tensor, covered: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` sample indices: one from each present group that is not ``covered`` first, the rest
    from groups drawn uniformly among those present (unlabelled batches: any sample)."""
    present = torch.unique(groups[groups >= 0])
    if present.numel() == 0:
        return torch.randint(0, groups.numel(), (n,), device=groups.device)
    uncovered = present[~covered[present]]
    uncovered = uncovered[torch.randperm(uncovered.numel(), device=groups.device)][:n]
    drawn = present[torch.randint(0, present.numel(), (n - uncovered.numel(),), device=groups.device)]
    picks = []
    for g in torch.cat([uncovered, drawn]).tolist():
        members = torch.nonzero(groups == g).flatten()
        picks.append(members[torch.randint(0, members.numel(), (1,), device=groups.device)])
    return torch.cat(picks)


# -- the head ----------------------------------------------------------------------------------------
class AuraHead(Head):
    """AURA for one task. ``x``: (B, in_dim) global features, or (B, P, in_dim) patch tokens."""

    uses_archetypes = True

    def __init__(self, cfg: AuraConfig, n_patches: int = 0):
        super().__init__()
        self.cfg = cfg
        self.task = get_task(cfg.task)
        self.norm = InputNorm(cfg.in_dim)
        self.patches = None
        branch_in, semantic_in, n_semantic = cfg.in_dim, cfg.ctx_dim, cfg.n_tokens
        if cfg.input == "patch":
            if n_patches <= 0:
                raise ValueError("patch input needs n_patches")
            self.patches = PatchEncoder(
                cfg.in_dim, n_patches, cfg.n_tokens, cfg.patch_dim, cfg.patch_layers, cfg.patch_heads, cfg.ctx_dropout
            )
            branch_in = cfg.patch_dim
        n_branches = self.task.n_branches(cfg.n_outputs)
        n_out = cfg.n_outputs if self.task.categorical else 1
        self.branches = ArchetypeBranches(cfg, n_branches, branch_in, n_out, semantic_in, n_semantic)
        if cfg.use_contextualisation:
            if cfg.input == "global":
                self.semantic = SemanticTokens(
                    cfg.in_dim, cfg.n_tokens, cfg.ctx_dim, cfg.ctx_heads, cfg.normalise_tokens
                )
            else:  # AU-specific linear maps of the N_tok semantic tokens' outputs
                self.semantic_maps = StackedLinear(n_branches, cfg.patch_dim, cfg.ctx_dim)

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(standardised input, branch input, encoded patch tokens or None)."""
        x = self.norm(x)
        if self.patches is None:
            return x, x, None
        return x, *self.patches(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Every branch's ℓ2-normalised projected features (M, B, d): the space its archetypes live in."""
        return self.branches.embed(self._inputs(x)[1])

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, archetype index per branch): FER (B, C) logits; VA (B, 2); AU (B, M) logits."""
        _, z, _ = self._inputs(x)
        outs, index = self.branches.predict(z)
        return self.task.from_branches(outs), index.T

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (summed over branches)."""
        cfg = self.cfg
        x, z, tokens = self._inputs(x)
        semantic = None
        if cfg.use_contextualisation:
            m, n = self.branches.m, cfg.ctx_samples or x.shape[0]
            # the global feature's semantic tokens are the same for every branch: computed once
            semantic = (
                self.semantic(x[:n]).expand(m, -1, -1, -1) if tokens is None else self.semantic_maps.shared(tokens[:n])
            )
        target = self.task.to_branches(target)
        parts = self.branches.losses(z, target, semantic, class_weights)
        arc = sum(parts.get(k, 0) for k in ("assign", "dis", "compact", "separate", "diversity", "attract", "repel"))
        total = cfg.lambda_proj * parts["vas"] + cfg.lambda_arc * arc + cfg.lambda_contx * parts.get("contx", 0)
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def reset_unused(self, x: torch.Tensor, y: torch.Tensor) -> int:
        _, z, _ = self._inputs(x)
        return self.branches.reset_unused(z, self.task.to_branches(y))

    @torch.no_grad()
    def prune(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> list[int]:
        """Usage over ``x`` (the training set, eval mode, in batches) against what each group of ``y``
        supplies; keeps the archetypes that are not underused (see the module docstring)."""
        counts = torch.zeros_like(self.branches.usage)
        for i in range(0, x.shape[0], batch_size):
            _, z, _ = self._inputs(x[i : i + batch_size])
            counts += self.branches.counts(z)
        return self.branches.keep(counts, self.branches.group_counts(self.task.to_branches(y)))

    def uncovered(self) -> list[list[int]]:
        """Per branch, the groups (Task.sample_groups) with training samples that no archetype decides."""
        return self.branches.uncovered

    def k_stable(self) -> list[int]:
        return self.branches.active.sum(-1).tolist()


# 6: usage judged per group (class, AU state, VA bin) in resets and pruning; 7: ctx_samples;
# 8: Eq. 8–10 as the paper writes them, N_tok semantic tokens prepended to the patch sequence
@register_head(
    "aura", version=9, config=AuraConfig, tasks=TASKS, inputs=("global", "patch"), presets={"paper": {"ctx_samples": 0}}
)
def aura(task: str, in_dim: int, n_outputs: int, config: AuraConfig, n_patches: int = 0) -> AuraHead:
    """AURA archetype head; options are AuraConfig fields."""
    if n_patches and config.input != "patch":
        raise ValueError("these features are patch tokens: use head option input=patch")
    return AuraHead(config, n_patches)
