"""AURA: frozen features projected into a learnable archetype space; inference is cosine matching.

One :class:`ArchetypeBranch` is one output space: a projector (VAS) to d dimensions, a codebook of
K_max archetypes, a task head φ, the adaptive regulariser and (training only) the archetype
contextualiser. :class:`AuraHead` holds the branches of a task: one shared codebook for the
expression classes, one each for valence and arousal, one per AU.

Losses (all λ = 1 by default)::

    λ_Proj · L_VAS + λ_Arc · (L_assign + L_dis + L_reg) + λ_Contx · L_contx

* L_VAS    task loss of φ on the ℓ2-normalised projected feature f̂;
* L_assign ‖sg[f̂] − â‖² + β‖f̂ − sg[â]‖², â the nearest archetype by cosine;
* L_dis    task loss of φ on the assigned archetype, passed straight-through (its value is â, its
           gradient reaches both â and the projector);
* L_reg    expressions: Σ(1 − w_k)(1 − cos(â_k, μ_c)) compactness, hinge(cos(μ_c, μ_c') − m)
           separation, −(mean + variance of ‖â_k − ā‖) diversity, where c_k = argmax φ(â_k) and
           w_k its softmax confidence; AU / VA: score-aware attraction (pairs whose predicted scores
           differ by less than m: (1 − cos)(1 − gap/m)) and repulsion (pairs ≥ m apart:
           hinge(cos − (1 − gap))), plus the same diversity term;
* L_contx  task loss of the contextualiser: the top-K archetypes as distance-aware tokens
           (W_proj â + W_dist d + b), semantic tokens from the input (N_tok learnable queries over
           per-token key/value projections of the global feature, or AU-specific maps of encoded
           patch tokens), [c_sem; T; c_arc; Â] + positions → transformer → softmax gate over the two
           CLS outputs → head.

Usage: archetype usage is counted in training; during warm-up archetypes used by fewer than τ of
the samples are re-initialised from batch features plus small noise; after training they are
pruned, leaving K_stable. Inference is projector → nearest kept archetype → φ, nothing else.
Every component has a switch (``AuraConfig``) so the paper's ablations are one change each.
Deviation: the encoders are frozen and features cached (the paper's CLIP is frozen as well).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from heads.losses import au_loss, expression_loss, va_loss
from heads.standardise import InputNorm

TASKS = ("fer", "va", "au")


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
    va_alpha: float = 1.0
    tau: float = 0.01
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
    # The contextualiser's size is not fixed by the method. Attention over ~11 tokens costs per
    # (sample, head) on CPU, and AU heads run one contextualiser per AU, so the defaults are small:
    # width 32, 2 heads, 1 layer (measured in bench/heads.py); larger ones are one option away.
    ctx_dim: int = 32
    ctx_heads: int = 2
    ctx_layers: int = 1
    # Dropout inside the contextualiser's transformer. The paper gives 0.2 for the projector only;
    # here it defaults to 0: on CPU the dropout masks cost more than the rest of the transformer.
    ctx_dropout: float = 0.0
    input: str = "global"  # global | patch (AU: patch tokens through a light transformer)
    patch_layers: int = 2

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

    def to_json(self) -> dict:
        return {**asdict(self), "regularisers": list(self.regularisers)}


REGULARISERS = {
    "fer": ("compact", "separate", "diversity"),
    "va": ("attract", "repel", "diversity"),
    "au": ("attract", "repel", "diversity"),
}


# -- pieces ------------------------------------------------------------------------------------
def projector(in_dim: int, hidden: int, d: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))


class SemanticTokens(nn.Module):
    """N_tok learnable queries attending over per-token key/value projections of one global feature."""

    def __init__(self, in_dim: int, n_tokens: int, width: int, heads: int):
        super().__init__()
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
        return out


class Contextualiser(nn.Module):
    """[c_sem; T; c_arc; Â] + positions → transformer → gated fusion of the two CLS outputs → head."""

    def __init__(self, cfg: AuraConfig, n_out: int, semantic_in: int, n_semantic: int):
        super().__init__()
        w = cfg.ctx_dim
        self.arc_proj = nn.Linear(cfg.d, w, bias=False)
        self.dist_proj = nn.Linear(1, w, bias=True)  # W_dist d_k + b
        self.semantic_proj = nn.Linear(semantic_in, w) if semantic_in != w else nn.Identity()
        self.cls = nn.Parameter(torch.randn(2, w) * 0.02)  # c_sem, c_arc
        self.positions = nn.Parameter(torch.randn(2 + n_semantic + cfg.top_k, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, cfg.ctx_heads, 2 * w, cfg.ctx_dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.ctx_layers, enable_nested_tensor=False)
        self.gate = nn.Linear(2 * w, 2)
        self.head = nn.Linear(w, n_out)
        self.n_semantic = n_semantic

    def forward(self, semantic: torch.Tensor, archetypes: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        b = semantic.shape[0]
        arc_tokens = self.arc_proj(archetypes) + self.dist_proj(distances.unsqueeze(-1))
        c_sem, c_arc = self.cls[0].expand(b, 1, -1), self.cls[1].expand(b, 1, -1)
        seq = torch.cat([c_sem, self.semantic_proj(semantic), c_arc, arc_tokens], dim=1) + self.positions
        out = self.encoder(seq)
        sem, arc = out[:, 0], out[:, 1 + self.n_semantic]
        g = torch.softmax(self.gate(torch.cat([sem, arc], dim=-1)), dim=-1)
        return self.head(g[:, :1] * sem + g[:, 1:] * arc)


class PatchEncoder(nn.Module):
    """Patch tokens → a light transformer with a learnable CLS and positional encodings."""

    def __init__(self, token_dim: int, n_tokens: int, width: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.inp = nn.Linear(token_dim, width)
        self.cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, n_tokens + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), self.inp(tokens)], dim=1) + self.positions
        out = self.encoder(x)
        return out[:, 0], out[:, 1:]


# -- one archetype space -------------------------------------------------------------------------
class ArchetypeBranch(nn.Module):
    def __init__(self, cfg: AuraConfig, in_dim: int, n_out: int, kind: str, semantic_in: int, n_semantic: int):
        super().__init__()
        self.cfg, self.kind, self.n_out = cfg, kind, n_out
        self.project = projector(in_dim, cfg.hidden, cfg.d, cfg.dropout) if cfg.use_projector else nn.Identity()
        self.archetypes = nn.Parameter(F.normalize(torch.randn(cfg.k_max, cfg.d), dim=-1))
        self.head = nn.Linear(cfg.d, n_out)
        self.register_buffer("usage", torch.zeros(cfg.k_max))
        self.register_buffer("active", torch.ones(cfg.k_max, dtype=torch.bool))
        self.context = Contextualiser(cfg, n_out, semantic_in, n_semantic) if cfg.use_contextualisation else None

    def normalised(self) -> torch.Tensor:
        return F.normalize(self.archetypes, dim=-1)

    def assign(self, f_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(index of the nearest kept archetype, cosine similarities to all) per sample."""
        sims = f_hat @ self.normalised().T
        sims_kept = sims.masked_fill(~self.active, -2.0)
        return sims_kept.argmax(dim=-1), sims

    def output(self, z: torch.Tensor) -> torch.Tensor:
        """φ's raw output: class logits, AU logit, or a VA value squashed into [−1, 1]."""
        out = self.head(z)
        return torch.tanh(out.squeeze(-1)) if self.kind == "va" else out.squeeze(-1) if self.kind == "au" else out

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: projector → nearest kept archetype → φ. Returns (output, archetype index)."""
        index, _ = self.assign(F.normalize(self.project(x), dim=-1))
        return self.output(self.normalised()[index]), index

    def task_loss(self, out: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "fer":
            return expression_loss(out, target, weights)
        if self.kind == "va":
            return va_loss(out, target, self.cfg.va_alpha)
        return au_loss(out, target)

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, semantic: torch.Tensor | None, weights: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        f_hat = F.normalize(self.project(x), dim=-1)
        a_hat = self.normalised()
        index, sims = self.assign(f_hat)
        assigned = a_hat[index]
        with torch.no_grad():
            self.usage += torch.bincount(index, minlength=cfg.k_max).float()
        parts = {"vas": self.task_loss(self.output(f_hat), target, weights)}
        parts["assign"] = ((f_hat.detach() - assigned) ** 2).sum(-1).mean() + cfg.beta * (
            (f_hat - assigned.detach()) ** 2
        ).sum(-1).mean()
        if cfg.use_dis:
            straight_through = assigned + f_hat - f_hat.detach()  # value â; gradient to â and to f̂
            parts["dis"] = self.task_loss(self.output(straight_through), target, weights)
        if cfg.use_reg:
            parts.update(self.regularisation(a_hat))
        if self.context is not None and semantic is not None:
            top = sims.masked_fill(~self.active, -2.0).topk(min(cfg.top_k, int(self.active.sum())), dim=-1)
            tokens = a_hat[top.indices]
            parts["contx"] = self.task_loss(self.context_output(semantic, tokens, 1 - top.values), target, weights)
        return parts

    def context_output(self, semantic: torch.Tensor, tokens: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        out = self.context(semantic, tokens, distances)
        return torch.tanh(out.squeeze(-1)) if self.kind == "va" else out.squeeze(-1) if self.kind == "au" else out

    # -- adaptive regularisation --
    def regularisation(self, a_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        a = a_hat[self.active]
        use = set(self.cfg.regularisers)
        parts = {}
        if self.kind == "fer":
            probs = torch.softmax(self.head(a), dim=-1)
            confidence, cls = probs.max(dim=-1)
            present = cls.unique()
            centres = F.normalize(torch.stack([a[cls == c].mean(0) for c in present]), dim=-1)
            centre_of = centres[torch.searchsorted(present, cls)]
            if "compact" in use:
                parts["compact"] = ((1 - confidence.detach()) * (1 - (a * centre_of).sum(-1))).mean()
            if "separate" in use and present.numel() > 1:
                cos = centres @ centres.T
                off = ~torch.eye(present.numel(), dtype=torch.bool, device=a.device)
                parts["separate"] = F.relu(cos[off] - self.cfg.margin).mean()
        else:
            score = self.output(a)
            score = torch.sigmoid(score) if self.kind == "au" else (score + 1) / 2  # both in [0, 1]
            gap = (score[:, None] - score[None, :]).abs().detach()
            cos = a @ a.T
            off = ~torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
            near, far = off & (gap < self.cfg.margin), off & (gap >= self.cfg.margin)
            if "attract" in use and near.any():
                parts["attract"] = ((1 - cos[near]) * (1 - gap[near] / self.cfg.margin)).mean()
            if "repel" in use and far.any():
                parts["repel"] = F.relu(cos[far] - (1 - gap[far])).mean()
        if "diversity" in use:
            spread = (a - a.mean(0)).norm(dim=-1)
            parts["diversity"] = -(spread.mean() + spread.var(unbiased=False))
        return parts

    # -- usage --
    @torch.no_grad()
    def reset_unused(self, features: torch.Tensor, noise: float = 0.01) -> int:
        """Re-initialise archetypes used by < τ of the counted samples from batch features + noise."""
        total = self.usage.sum()
        if total == 0:
            return 0
        dead = (self.usage / total) < self.cfg.tau
        n = int(dead.sum())
        if n:
            f_hat = F.normalize(self.project(features), dim=-1)
            picks = f_hat[torch.randint(0, f_hat.shape[0], (n,), device=f_hat.device)]
            self.archetypes[dead] = F.normalize(picks + noise * torch.randn_like(picks), dim=-1)
        self.usage.zero_()
        return n

    @torch.no_grad()
    def counts(self, z: torch.Tensor) -> torch.Tensor:
        """How many of ``z`` each archetype (kept or not) is nearest to."""
        index = (F.normalize(self.project(z), dim=-1) @ self.normalised().T).argmax(dim=-1)
        return torch.bincount(index, minlength=self.cfg.k_max).float()

    @torch.no_grad()
    def keep(self, usage: torch.Tensor) -> int:
        """Keep archetypes whose usage ratio is ≥ τ; returns K_stable."""
        self.active.copy_(usage >= self.cfg.tau)
        if not self.active.any():  # degenerate: keep the most used one
            self.active[usage.argmax()] = True
        return int(self.active.sum())


# -- the head ----------------------------------------------------------------------------------------
class AuraHead(nn.Module):
    """AURA for one task. ``x``: (B, in_dim) global features, or (B, P, in_dim) patch tokens."""

    def __init__(self, cfg: AuraConfig, n_patches: int = 0):
        super().__init__()
        self.cfg = cfg
        self.norm = InputNorm(cfg.in_dim)
        self.patches = None
        branch_in, semantic_in, n_semantic = cfg.in_dim, cfg.ctx_dim, cfg.n_tokens
        if cfg.input == "patch":
            if n_patches <= 0:
                raise ValueError("patch input needs n_patches")
            self.patches = PatchEncoder(
                cfg.in_dim, n_patches, cfg.ctx_dim, cfg.patch_layers, cfg.ctx_heads, cfg.ctx_dropout
            )
            branch_in, n_semantic = cfg.ctx_dim, n_patches
        n_branches = {"fer": 1, "va": 2, "au": cfg.n_outputs}[cfg.task]
        n_out = cfg.n_outputs if cfg.task == "fer" else 1
        self.branches = nn.ModuleList(
            ArchetypeBranch(cfg, branch_in, n_out, cfg.task, semantic_in, n_semantic) for _ in range(n_branches)
        )
        if cfg.use_contextualisation:
            if cfg.input == "global":
                self.semantic = SemanticTokens(cfg.in_dim, cfg.n_tokens, cfg.ctx_dim, cfg.ctx_heads)
            else:  # AU-specific linear maps of the encoded patch tokens
                self.semantic_maps = nn.ModuleList(nn.Linear(cfg.ctx_dim, cfg.ctx_dim) for _ in range(n_branches))

    def _inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(standardised input, branch input, encoded patch tokens or None)."""
        x = self.norm(x)
        if self.patches is None:
            return x, x, None
        return x, *self.patches(x)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, archetype index per branch): FER (B, C) logits; VA (B, 2); AU (B, M) logits."""
        _, z, _ = self._inputs(x)
        outs, indices = zip(*(branch.predict(z) for branch in self.branches))
        if self.cfg.task == "fer":
            return outs[0], indices[0][:, None]
        return torch.stack(outs, dim=-1), torch.stack(indices, dim=-1)

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and its parts (summed over branches)."""
        cfg = self.cfg
        x, z, tokens = self._inputs(x)
        parts: dict[str, torch.Tensor] = {}
        # the global feature's semantic tokens are the same for every branch: computed once
        shared = self.semantic(x) if cfg.use_contextualisation and tokens is None else None
        for j, branch in enumerate(self.branches):
            semantic = shared
            if cfg.use_contextualisation and tokens is not None:
                semantic = self.semantic_maps[j](tokens)
            t = target if cfg.task == "fer" else target[:, j]
            for name, value in branch.losses(z, t, semantic, class_weights).items():
                parts[name] = parts.get(name, 0) + value
        arc = sum(parts.get(k, 0) for k in ("assign", "dis", "compact", "separate", "diversity", "attract", "repel"))
        total = cfg.lambda_proj * parts["vas"] + cfg.lambda_arc * arc + cfg.lambda_contx * parts.get("contx", 0)
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def reset_unused(self, x: torch.Tensor) -> int:
        _, z, _ = self._inputs(x)
        return sum(branch.reset_unused(z) for branch in self.branches)

    @torch.no_grad()
    def prune(self, x: torch.Tensor, batch_size: int = 4096) -> list[int]:
        """Usage over ``x`` (the training set, eval mode), in batches; keeps archetypes used ≥ τ."""
        counts = [torch.zeros(b.cfg.k_max, device=x.device) for b in self.branches]
        for i in range(0, x.shape[0], batch_size):
            _, z, _ = self._inputs(x[i : i + batch_size])
            for c, branch in zip(counts, self.branches):
                c += branch.counts(z)
        return [branch.keep(c / x.shape[0]) for c, branch in zip(counts, self.branches)]

    def k_stable(self) -> list[int]:
        return [int(b.active.sum()) for b in self.branches]
