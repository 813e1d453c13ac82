"""CausalAffect: signed AU→AU and AU→expression causal graphs over disentangled AU features.

From a cached image feature z (standardised), one small head per AU gives an AU feature fᵢ
(``feature_dim``, 64) and a base logit a⁰ᵢ. The graph stage then predicts:

* **GC**, the global graph: signed edge weights W_AA (M × M, zero diagonal; [j, i] is AU j → AU i)
  and W_AE (M × C; [i, c] is AU i → class c), initialised in ±``init_range``, both signs allowed.
  AU logits aᵢ = a⁰ᵢ + Σⱼ (σ(a⁰ⱼ) − μⱼ) W_AA[j, i], μⱼ AU j's mean base probability (a running
  mean over training batches: an edge carries how far its source is from usual, so it cannot act
  as a second bias of its target; with σ(a⁰ⱼ) uncentred the edges learnt offsets and the planted
  AU → AU edges ranked at precision 0.33, centred 1.00, docs/methods.md#au-au-graph); expression
  logits e_c = g Σᵢ σ(aᵢ) W_AE[i, c] + b_c, g > 0 a learned gain (starting at ``expression_gain``;
  exported graphs are g · W_AE). W_AA is also scored as the AU labels' logistic structural
  equations (``lambda_structure``): AU i's label from bᵢ + Σⱼ (yⱼ − μⱼ) W_AA[j, i] — the score
  NOTEARS pairs with the acyclicity penalty below. Without it W_AA learns only what the image
  features leave unexplained, nearly nothing where every AU is visible (docs/methods.md#au-au-graph).
* **SAC**, the sample-adaptive graph: ``sac_layers`` layers of signed multi-head attention
  (``sac_heads``) over the AU features, whose scores tanh(q·k/√d) ∈ [−1, 1] are per-sample signed
  edges (a token never attends to itself); the last layer's mean over heads S (B × M × M) adds
  s_A Σⱼ S[i, j] σ(a⁰ⱼ) to aᵢ. For AU→expression, learned expression prototypes (``feature_dim``)
  are the queries: edges E = tanh(P·K(t)/√d) (B × C × M), and class c adds
  ⟨P_c, Σᵢ E[c, i] σ(aᵢ) V(tᵢ) / M⟩ / √d. With both GC and SAC off (the ablation's backbone), a
  linear readout of the AU features gives the expression logits.
* **Dis**, disentanglement by HSIC (RBF kernels, median-heuristic bandwidth, tr(KHLH)/(n − 1)²):
  λ_IB · mean HSIC(fᵢ, z) (an information bottleneck), − λ_align · mean HSIC(fᵢ, yᵢ) with yᵢ the AU's
  label, or its pseudo-label 1[σ(a⁰ᵢ) > ½] where unlabelled (a delta kernel on labels), and
  λ_dec · mean_{i≠j} HSIC(fᵢ, fⱼ), on the first ``hsic_samples`` (128) of each shuffled batch.
* **DAG**, the soft acyclicity penalty λ_DAG · h(W_AA), h(W) = tr(exp(W ∘ W)) − M: reciprocal pairs
  are discouraged, not forbidden.
* **CF**, counterfactual intervention: per batch, a source AU s and ε ~ N(0, σ²) per sample. The
  intervention adds ε to f_s and g_t W_AA[s, t] ε to every other fₜ, where the gate
  g_t = sigmoid(γ (|W_AA[s, t]| − τ)) says how much of an edge s → t there is; the graph stage runs
  again on the intervened features. A consistency loss Σₜ (1 − g_t) Δₜ² keeps targets unchanged
  where the gate says "no edge", a discrepancy loss Σₜ g_t max(0, m − |Δₜ|) makes them move by the
  margin where it says "edge", both on the AU logits and on the SAC tokens (‖Δ‖/√d), λ 0.5 each,
  each level weighted by the appendix's δ (consistency) and η (discrepancy), 1.0 each.
  The intervention and the counterfactual pass read W_AA detached: the two losses shape the
  features and SAC to follow the graph, and do not move the graph itself (let through, they shrank
  every edge to zero: the consistency loss is cheapest to meet with no edges at all). Without GC
  (the ablation's SAC + CF rows) the edges s → t are each sample's SAC edges S[t, s], detached too.

Every module is a switch of :class:`CausalConfig` (``use_dis``, ``use_gc``, ``use_sac``, ``use_cf``,
``use_dag``), so the paper's ablation is one sweep. Losses are taken only on labelled entries: AU
BCE on labelled (sample, AU) pairs, class-weighted expression CE where an expression is labelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head
from heads.losses import au_loss, centred, dag_penalty, expression_loss, hsic, rbf_gram
from heads.registry import register_head
from heads.standardise import InputNorm
from heads.tasks import Task, get_task


@dataclass
class CausalConfig:
    task: str = "au_fer"
    in_dim: int = 0
    n_outputs: int = 0
    label_names: tuple[str, ...] = ()  # the AU names, then the classes (filled in by the head step)
    feature_dim: int = 64
    use_dis: bool = True
    use_gc: bool = True
    use_sac: bool = True
    use_cf: bool = True
    use_dag: bool = True
    init_range: float = 0.01
    expression_gain: float = 10.0  # initial g in e = g · σ(a) W_AE (kept positive)
    # g learned (ours) or held at expression_gain; the paper has no gain: expression_gain=1,
    # learn_expression_gain=False (docs/methods.md says what the gain buys)
    learn_expression_gain: bool = True
    lambda_ib: float = 1.0
    lambda_align: float = 1.0
    lambda_decorrelate: float = 0.2
    hsic_samples: int = 128  # Dis's HSIC on the first n of each shuffled batch (0: all; O(n²) per AU)
    lambda_dag: float = 0.5
    # the global AU → AU graph's own score: each AU's label read from the others' through W_AA
    # (a logistic structural equation model, the score NOTEARS pairs with the acyclicity penalty
    # above); 0 leaves W_AA only what the AU and expression losses ask of it (docs/methods.md#au-au-graph)
    lambda_structure: float = 1.0
    sac_heads: int = 8
    sac_layers: int = 2
    cf_sigma: float = 0.2
    cf_gamma: float = 10.0
    cf_threshold: float = 0.1  # τ: where the gate is half open (appendix F.3: 0.5; docs/methods.md says why 0.1)
    cf_margin: float = 1.0
    lambda_consist: float = 0.5
    lambda_discrep: float = 0.5
    # appendix F.2–F.3's level weights, 1.0 each: δ on the consistency terms and η on the discrepancy
    # terms (our reading: the appendix does not say which is which, and its sensitivity rows set δ
    # and η of one level together, so either reading gives the same rows), at the feature (SAC
    # tokens) and logit levels
    delta_feat: float = 1.0
    delta_logit: float = 1.0
    eta_feat: float = 1.0
    eta_logit: float = 1.0


def intervene(
    features: torch.Tensor, source: int, eps: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """AU features (B, M, d) after adding ``eps`` (B, d) to the source AU's and ``gate[t] · weight[t]
    · eps`` to every other AU t's: the intervention reaches a target only through its gated edge.
    ``gate`` and ``weight`` are (M,) for the global graph's edges or (B, M) for per-sample ones."""
    push = torch.where(torch.arange(features.shape[1], device=features.device) == source, 1.0, gate * weight)
    return features + push.expand(features.shape[0], -1)[:, :, None] * eps[:, None, :]


class SignedAttention(nn.Module):
    """Multi-head self-attention whose scores are signed, tanh(q·k/√d) ∈ [−1, 1] instead of a softmax,
    so a source AU can excite (+) or inhibit (−) a target; the diagonal is zero (no self-edges)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature_dim {dim} is not a multiple of sac_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens after the layer, edges (B, M, M) [target, source] averaged over heads)."""
        b, m, d = tokens.shape
        q, k, v = self.qkv(tokens).reshape(b, m, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        off_diagonal = 1.0 - torch.eye(m, device=tokens.device)
        scores = torch.tanh(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)) * off_diagonal
        mixed = (scores @ v) / max(m - 1, 1)  # a signed sum over the other tokens, scaled to a mean
        tokens = self.norm(tokens + self.out(mixed.transpose(1, 2).reshape(b, m, d)))
        return tokens, scores.mean(1)


class CausalHead(Head):
    def __init__(self, task: Task | str, in_dim: int, n_outputs: int, config: CausalConfig):
        super().__init__()
        self.task, self.config = get_task(task), config
        self.m = self.task.n_aus(config.label_names)
        self.c = n_outputs - self.m
        if self.m < 2 or self.c < 2:
            raise ValueError(f"a causal graph needs ≥ 2 AUs and ≥ 2 classes; the labels have {self.m} and {self.c}")
        if config.use_cf and not (config.use_gc or config.use_sac):
            raise ValueError("CF intervenes along AU → AU edges: it needs GC or SAC (use_cf=False for the backbone)")
        m, c, d = self.m, self.c, config.feature_dim
        self.norm = InputNorm(in_dim)
        # Dis: one small head per AU, stacked into one batched product
        self.au_in = nn.Parameter(torch.randn(m, in_dim, d) / math.sqrt(in_dim))
        self.au_in_bias = nn.Parameter(torch.zeros(m, d))
        self.au_out = nn.Parameter(torch.randn(m, d) / math.sqrt(d))
        self.au_out_bias = nn.Parameter(torch.zeros(m))
        r = config.init_range
        self.w_aa = nn.Parameter(torch.empty(m, m).uniform_(-r, r))
        self.w_ae = nn.Parameter(torch.empty(m, c).uniform_(-r, r))
        # W_AE starts at ±0.01 (the paper's initialisation): a positive learned gain, in log form so
        # its sign never flips an edge's, lets the expression logits reach useful sizes in the few
        # hundred steps a small dataset gives, without changing which edges are strong
        self.expression_log_gain = nn.Parameter(
            torch.tensor(math.log(config.expression_gain)), requires_grad=config.learn_expression_gain
        )
        self.register_buffer("off_diagonal", 1.0 - torch.eye(m))
        self.structure_bias = nn.Parameter(torch.zeros(m))  # each AU's rate in the structural equations
        # each AU's mean base probability (a running mean over training batches): the global graph's
        # messages are deviations from it, so an edge cannot serve as a second bias (see au_stage)
        self.register_buffer("au_mean", torch.full((m,), 0.5))
        self.sac = nn.ModuleList(SignedAttention(d, config.sac_heads) for _ in range(config.sac_layers))
        self.sac_scale = nn.Parameter(torch.zeros(()))  # SAC's AU→AU messages start silent
        self.prototypes = nn.Parameter(torch.randn(c, d) / math.sqrt(d))
        self.proto_key = nn.Linear(d, d)
        self.proto_value = nn.Linear(d, d)
        self.expression_bias = nn.Parameter(torch.zeros(c))
        # the backbone row of the ablation: no graph at all, the AU features read out linearly
        self.readout = nn.Linear(m * d, c) if not (config.use_gc or config.use_sac) else None

    # -- the graph ---------------------------------------------------------------------------------
    @property
    def au_expression_graph(self) -> torch.Tensor:
        """g · W_AE: [i, c] is the signed edge AU i → class c, in logits of c per unit of AU i's probability."""
        return self.expression_log_gain.exp() * self.w_ae

    @property
    def au_graph(self) -> torch.Tensor:
        """W_AA with its diagonal held at zero: [j, i] is the signed edge AU j → AU i."""
        return self.w_aa * self.off_diagonal

    def au_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised input z (B, D), AU features f (B, M, d))."""
        z = self.norm(x)
        return z, F.gelu(torch.einsum("bd,mdk->bmk", z, self.au_in) + self.au_in_bias)

    def au_stage(self, f: torch.Tensor, graph: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """AU features → base and final AU logits, the SAC tokens and AU → AU edges; ``graph``: the
        AU → AU graph to read (default the head's; the counterfactual pass gives it detached)."""
        cfg = self.config
        graph = self.au_graph if graph is None else graph
        a0 = (f * self.au_out).sum(-1) + self.au_out_bias
        p0 = torch.sigmoid(a0)
        a, tokens, edges_aa = a0, f, None
        if cfg.use_sac:
            for layer in self.sac:
                tokens, edges_aa = layer(tokens)
            a = a + self.sac_scale * torch.einsum("bij,bj->bi", edges_aa, p0)
        if cfg.use_gc:
            a = a + (p0 - self.au_mean) @ graph
        return {"a0": a0, "au": a, "tokens": tokens, "edges_aa": edges_aa}

    def expression_stage(
        self, p: torch.Tensor, f: torch.Tensor, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """AU probabilities p (with the AU features and SAC tokens they came from) → expression
        logits and AU → expression edges: the class map FACR's do() intervenes before."""
        e = self.expression_bias.expand(p.shape[0], -1)
        edges_ae = None
        if self.config.use_gc:
            e = e + p @ self.au_expression_graph
        if self.config.use_sac:
            d = f.shape[-1]
            edges_ae = torch.tanh(torch.einsum("cd,bmd->bcm", self.prototypes, self.proto_key(tokens)) / math.sqrt(d))
            context = torch.einsum("bcm,bm,bmd->bcd", edges_ae, p, self.proto_value(tokens)) / self.m
            e = e + torch.einsum("bcd,cd->bc", context, self.prototypes) / math.sqrt(d)
        if self.readout is not None:
            e = e + self.readout(f.flatten(1))
        return e, edges_ae

    def graph_stage(self, f: torch.Tensor, graph: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """AU features → base and final AU logits, expression logits, SAC tokens and edges."""
        out = self.au_stage(f, graph)
        e, edges_ae = self.expression_stage(torch.sigmoid(out["au"]), f, out["tokens"])
        return {**out, "expression": e, "edges_ae": edges_ae}

    def au_layer(self, x: torch.Tensor) -> torch.Tensor:
        """The AU probabilities σ(a) the expression logits are read from (FACR's AU layer)."""
        return torch.sigmoid(self.au_stage(self.au_features(x)[1])["au"])

    def from_aus(self, aus: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Expression logits from AU probabilities ``aus`` (intervened or not) for inputs ``x``."""
        f = self.au_features(x)[1]
        return self.expression_stage(aus, f, self.au_stage(f)["tokens"])[0]

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        out = self.graph_stage(self.au_features(x)[1])
        return torch.cat([out["au"], out["expression"]], 1), None

    @torch.no_grad()
    def sample_graphs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample signed edges: ``au_au`` (B, M, M) [target, source] and ``au_expression``
        (B, C, M) [class, AU] from SAC (None where it is off)."""
        out = self.graph_stage(self.au_features(x)[1])
        return {"au_au": out["edges_aa"], "au_expression": out["edges_ae"]}

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per sample, the additive evidence behind its outputs:

        * ``contribution`` (B, C, M): AU i's part of class c's logit, g·W_AE[i, c]·σ(aᵢ) (GC) plus
          E[c, i]·σ(aᵢ)·⟨P_c, V(tᵢ)⟩ / (M √d) (SAC); a class logit is the sum over AUs plus its bias
          (and, in the ablation's backbone, the linear readout's term, which no AU owns);
        * ``messages`` (B, M, M) [source j, target i]: AU j's part of AU i's logit, (σ(a⁰ⱼ) − μⱼ)·W_AA[j, i]
          (GC) plus s_A·S[i, j]·σ(a⁰ⱼ) (SAC); an AU logit is the sum over sources plus its base logit;
        * ``au``, ``au_base`` and ``expression`` (probabilities) and ``base_logit`` a⁰, ``bias``."""
        f = self.au_features(x)[1]
        out = self.graph_stage(f)
        p, p0 = torch.sigmoid(out["au"]), torch.sigmoid(out["a0"])
        b = x.shape[0]
        contribution = x.new_zeros(b, self.c, self.m)
        messages = x.new_zeros(b, self.m, self.m)
        if self.config.use_gc:
            contribution += self.au_expression_graph.T[None] * p[:, None, :]
            messages += (p0 - self.au_mean)[:, :, None] * self.au_graph[None]
        if self.config.use_sac:
            d = f.shape[-1]
            value = torch.einsum("bmd,cd->bcm", self.proto_value(out["tokens"]), self.prototypes) / math.sqrt(d)
            contribution += out["edges_ae"] * p[:, None, :] * value / self.m
            messages += self.sac_scale * out["edges_aa"].transpose(1, 2) * p0[:, :, None]
        return {
            "contribution": contribution,
            "messages": messages,
            "au": p,
            "au_base": p0,
            "base_logit": out["a0"],
            "expression": torch.softmax(out["expression"], -1),
            "bias": self.expression_bias.detach(),
        }

    # -- training ----------------------------------------------------------------------------------
    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        z, f = self.au_features(x)
        out = self.graph_stage(f)
        au_target, expression_target = target[:, : self.m], target[:, self.m]
        with torch.no_grad():  # the running mean the global graph's messages are centred on
            self.au_mean.lerp_(torch.sigmoid(out["a0"]).mean(0), 0.1)
        parts = {
            "au": au_loss(out["au"], au_target),
            "expression": expression_loss(out["expression"], expression_target, class_weights),
        }
        if cfg.use_dis and x.shape[0] > 2:
            parts.update(self.disentanglement(z, f, out["a0"], au_target))
        if cfg.use_gc and cfg.lambda_structure:
            parts["structure"] = cfg.lambda_structure * self.structure_loss(out["a0"], au_target)
        if cfg.use_dag and cfg.use_gc:
            parts["dag"] = cfg.lambda_dag * dag_penalty(self.au_graph)
        if cfg.use_cf:
            parts.update(self.counterfactual(f))
        total = sum(parts.values())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def structure_loss(self, a0: torch.Tensor, au_target: torch.Tensor) -> torch.Tensor:
        """The logistic structural equations of the AU labels under W_AA: AU i's label from
        bᵢ + Σⱼ (xⱼ − μⱼ) W_AA[j, i], xⱼ AU j's label (its detached base probability where unlabelled).
        The AU loss alone asks of W_AA only what the image features leave unexplained, which on
        faces whose every AU is visible is next to nothing; this score asks it how the AUs depend on
        each other, as NOTEARS's least-squares or logistic score does for its graph."""
        x = torch.where(au_target >= 0, au_target.float(), torch.sigmoid(a0).detach())
        return au_loss(self.structure_bias + (x - self.au_mean) @ self.au_graph, au_target)

    def disentanglement(
        self, z: torch.Tensor, f: torch.Tensor, a0: torch.Tensor, au_target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        if cfg.hsic_samples:  # the batch is shuffled: its first n are a random subset
            z, f, a0, au_target = (t[: cfg.hsic_samples] for t in (z, f, a0, au_target))
        n = z.shape[0]
        k_f = rbf_gram(f.transpose(0, 1))  # (M, n, n)
        k_z = rbf_gram(z)
        pseudo = (a0.detach() > 0).long()
        label = torch.where(au_target >= 0, au_target, pseudo).T.float()  # (M, n)
        k_y = (label[:, :, None] == label[:, None, :]).float()  # a delta kernel on the AU's label
        # every pair's HSIC at once: ⟨HKᵢH, Kⱼ⟩ / (n − 1)², one (M × n²) · (n² × M) product
        pairwise = centred(k_f).flatten(1) @ k_f.flatten(1).T / (n - 1) ** 2
        return {
            "hsic_ib": cfg.lambda_ib * hsic(k_f, k_z[None]).mean(),
            "hsic_align": -cfg.lambda_align * hsic(k_f, k_y).mean(),
            "hsic_decorrelate": cfg.lambda_decorrelate * pairwise[self.off_diagonal.bool()].mean(),
        }

    def counterfactual(self, f: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        source = int(torch.randint(self.m, (1,)))
        eps = torch.randn(f.shape[0], f.shape[-1], device=f.device) * cfg.cf_sigma
        # The intervention and the counterfactual pass read the global graph as it stands (detached):
        # the two losses then teach the features and SAC to respond as the graph says. Let through to
        # W_AA, the consistency loss is cheapest to satisfy by shrinking every edge below the gate,
        # which then gates even less: W_AA collapsed to 0.000 (max |w|) from its ±0.01 start on
        # planted AU → AU data, against 0.085 without CF (docs/methods.md, tests/test_causal.py).
        # Without GC (the ablation's SAC + CF rows) the edges are each sample's SAC edges, detached
        # for the same reason.
        graph = self.au_graph.detach()
        factual = self.au_stage(f, graph)
        if self.config.use_gc:
            weight = graph[source]  # (M,): source → every target
        else:
            weight = factual["edges_aa"].detach()[:, :, source]  # (B, M): [target, source] per sample
        gate = torch.sigmoid(cfg.cf_gamma * (weight.abs() - cfg.cf_threshold))
        cf = self.au_stage(intervene(f, source, eps, gate, weight), graph)
        targets = torch.arange(self.m, device=f.device) != source
        d_logit = (cf["au"] - factual["au"])[:, targets]
        d_token = (cf["tokens"] - factual["tokens"]).norm(dim=-1)[:, targets] / math.sqrt(f.shape[-1])
        g = gate[..., targets]
        consist = (
            cfg.delta_logit * ((1 - g) * d_logit.square()).mean() + cfg.delta_feat * ((1 - g) * d_token.square()).mean()
        )
        discrep = (
            cfg.eta_logit * (g * F.relu(cfg.cf_margin - d_logit.abs())).mean()
            + cfg.eta_feat * (g * F.relu(cfg.cf_margin - d_token.abs())).mean()
        )
        return {"cf_consist": cfg.lambda_consist * consist, "cf_discrep": cfg.lambda_discrep * discrep}

    def graphs(self) -> dict[str, torch.Tensor]:
        """The global signed graphs: ``au_au`` (M × M, [source, target]) and ``au_expression`` (M × C)."""
        return {"au_au": self.au_graph.detach(), "au_expression": self.au_expression_graph.detach()}


# 2: the counterfactual pass reads the AU → AU graph detached (its losses no longer shrink the graph)
# 3: messages centred on each source's running mean
# 4: the AU → AU graph's structural score (lambda_structure)
# --preset causal is the appendix's training: its optimiser (heads/trainer.py) and no expression gain
@register_head(
    "causal",
    version=4,
    config=CausalConfig,
    tasks=("au_fer",),
    inputs=("global",),
    presets={"causal": {"expression_gain": 1.0, "learn_expression_gain": False}},
)
def causal(task: Task | str, in_dim: int, n_outputs: int, config: CausalConfig) -> CausalHead:
    """CausalAffect's graph head on cached features (the encoder frozen; see heads/causal.py)."""
    return CausalHead(task, in_dim, n_outputs, config)
