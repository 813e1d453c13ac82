"""FAUD-CLIP's behaviour-prompted AU detector on cached patch tokens (the image encoder frozen).

1. **Tokens**: the cached h × w grid (EfficientNet-Lite0's 7 × 7 ``spatial``, a ViT's 14 × 14
   ``patch_proj`` …), standardised, projected to the head's width with learned positions, then
   ``layers`` blocks of [attention + MLP]. ``attention`` picks the block's attention: ``tree``
   (coarse-to-fine tree attention, heads/tree_attention.py: the paper's), ``self`` (plain multi-head
   self-attention), ``cbam`` (CBAM's channel then spatial gates), ``activation`` (activation-based
   spatial attention: tokens weighted by their softmaxed energy Σ_c x_c²), or ``none`` (no blocks:
   the paper's baseline, the tokens' mean is the image feature).
2. **Behaviour prompts**: one sentence per AU (stages/extraction/sources/data/au_behaviours.csv), embedded by a
   frozen text encoder behind ``context`` learnable context vectors (CoOp; 0: the sentences'
   embeddings are computed once and fixed), then a two-layer GELU projector into the head's width:
   the AU text embeddings F_t.
3. **Grounding**: each AU's F_t queries the token grid with the block attention's kind (tree
   attention for ``tree``, plain cross-attention otherwise; the mean token for ``none``), keyed on
   the tokens as they enter and reading the blocks' output (see :class:`Grounding`); the attention
   it puts on the grid is the AU's map (:meth:`FaudHead.attention_maps`).
4. **Feature interaction** (``interaction``): a transformer encoder over [image tokens; AU tokens]
   updates the AU tokens to F_t'. Logit_i = s · cos(F_t'_i, F_t_i) + b_i, a learnable scale s and
   per-AU bias b (the paper's "F_t' · F_t → sigmoid"; the cosine and scale keep the dot product in
   a trainable range whatever the width).
5. **Loss**: λ1 · weighted asymmetric BCE + λ2 · weighted dice (heads/losses.py), w_i from the
   training set's inverse occurrence rates (the AU task's class weights), λ1 = λ2 = 1.

Deviations, stated in the README: the image encoder is frozen (the paper fine-tunes it at lr 1e-5);
the head runs at its own width (``width``, default 128) rather than the encoder's, which keeps
four tree-attention layers over 1,280-d EfficientNet tokens affordable on a CPU.

The ablation rows of the paper are switches: baseline = ``attention=none, interaction=False,
context=0``; + feature interaction; + tree attention; + learnable prompts (``context=16``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from heads.base import Head, PromptText
from heads.dropout import Dropout
from heads.losses import asymmetric_au_loss, dice_au_loss
from heads.registry import register_head
from heads.standardise import InputNorm
from heads.tasks import Task, get_task
from heads.tree_attention import TreeAttention

ATTENTIONS = ("tree", "self", "cbam", "activation", "none")


@dataclass
class FaudConfig:
    width: int = 128  # the head's token width (image tokens and AU text embeddings are projected into it)
    layers: int = 4  # [attention + MLP] blocks over the image tokens (the paper's four)
    heads: int = 4
    attention: str = "tree"  # tree | self | cbam | activation | none (see the module docstring)
    levels: int = 3  # tree attention: pyramid levels
    top_k: int = 2  # tree attention: regions kept per level
    interaction: bool = True  # the transformer over [image tokens; AU tokens]
    interaction_layers: int = 1
    context: int = 16  # learnable CoOp context vectors before each prompt (0: fixed prompt embeddings)
    context_lr: float = 1.0  # the context vectors' learning rate over the rest's (the paper: 1e-4 / 1e-3)
    text_encoder: str = "all-MiniLM-L6-v2"  # the frozen text tower the step embeds prompts with
    prompts: str = ""  # a behaviour-prompt file (au, region, behaviour); "" the packaged one
    asymmetric_weight: float = 1.0  # λ1
    dice_weight: float = 1.0  # λ2
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, not {self.attention!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must divide into {self.heads} heads")
        if self.context < 0 or self.layers < 0:
            raise ValueError("context and layers must be ≥ 0")
        if self.context_lr <= 0:
            raise ValueError(f"context_lr must be > 0, not {self.context_lr}")


def square_grid(n_tokens: int) -> tuple[int, int]:
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise ValueError(f"FAUD reads a square token grid; {n_tokens} tokens are not one")
    return side, side


class CbamGate(nn.Module):
    """CBAM (Woo et al. 2018) on a token grid: a channel gate from the average- and max-pooled
    tokens through a shared MLP, then a spatial gate from a 7 × 7 convolution over the per-token
    channel mean and max."""

    def __init__(self, width: int, grid: tuple[int, int], reduction: int = 8):
        super().__init__()
        self.grid = grid
        self.channel = nn.Sequential(
            nn.Linear(width, width // reduction), nn.ReLU(), nn.Linear(width // reduction, width)
        )
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.sigmoid(self.channel(x.mean(1, keepdim=True)) + self.channel(x.amax(1, keepdim=True)))
        maps = torch.stack([x.mean(-1), x.amax(-1)], 1).view(x.shape[0], 2, *self.grid)
        return x * torch.sigmoid(self.spatial(maps)).flatten(1).unsqueeze(-1)


class ActivationGate(nn.Module):
    """Activation-based spatial attention (Zagoruyko & Komodakis 2017): a token's weight is the
    softmax over the grid of its energy Σ_c x_c² (scaled by 1/√width), times the token count so a
    uniform map leaves the tokens as they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = x.pow(2).sum(-1) / math.sqrt(x.shape[-1])
        return x * (energy.softmax(-1) * x.shape[1]).unsqueeze(-1)


class TokenBlock(nn.Module):
    """Pre-norm [attention + MLP] over the token grid, with the configured attention kind."""

    def __init__(self, cfg: FaudConfig, grid: tuple[int, int]):
        super().__init__()
        self.kind, self.grid = cfg.attention, grid
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        if cfg.attention == "tree":
            self.attend = TreeAttention(cfg.width, cfg.heads, cfg.levels, cfg.top_k)
        elif cfg.attention == "self":
            self.attend = nn.MultiheadAttention(cfg.width, cfg.heads, dropout=cfg.dropout, batch_first=True)
        elif cfg.attention == "cbam":
            self.attend = CbamGate(cfg.width, grid)
        else:
            self.attend = ActivationGate()
        self.mlp = nn.Sequential(
            nn.Linear(cfg.width, 2 * cfg.width), nn.GELU(), Dropout(cfg.dropout), nn.Linear(2 * cfg.width, cfg.width)
        )
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        if self.kind == "tree":
            h = self.attend(h, h, self.grid)
        elif self.kind == "self":
            h = self.attend(h, h, h, need_weights=False)[0]
        else:
            h = self.attend(h)
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.norm2(x)))


class Grounding(nn.Module):
    """Each AU's text embedding queries the token grid: tree attention for the ``tree`` variant,
    plain multi-head cross-attention for the others. Where it looks is decided by the tokens as
    they enter the head (``local``: each still mostly its own patch), what it reads there is the
    blocks' output (``tokens``: in context); keyed on the mixed tokens instead, every AU's map
    spread over the face centre on the generated faces (brow AUs' mass on the brows 0.97–1.0 × a
    uniform map's, against 1.13–1.21 keyed locally). Returns (AU visual features (B, n, width),
    each AU's map on the grid (B, n, h·w), averaged over heads)."""

    def __init__(self, cfg: FaudConfig, grid: tuple[int, int]):
        super().__init__()
        self.grid, self.tree = grid, cfg.attention == "tree"
        self.norm = nn.LayerNorm(cfg.width)
        if self.tree:
            self.attend = TreeAttention(cfg.width, cfg.heads, cfg.levels, cfg.top_k)
        else:
            self.attend = nn.MultiheadAttention(cfg.width, cfg.heads, batch_first=True)

    def forward(
        self, queries: torch.Tensor, local: torch.Tensor, tokens: torch.Tensor, maps: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        local, tokens = self.norm(local), self.norm(tokens)
        if self.tree:
            if not maps:
                return self.attend(queries, local, self.grid, values=tokens), None
            out, grid_maps = self.attend(queries, local, self.grid, maps=True, values=tokens)
            return out, grid_maps.mean(1)
        return self.attend(queries, local, tokens, need_weights=maps, average_attn_weights=True)


class FaudHead(Head):
    draws_maps = True

    def __init__(
        self, task: Task | str, in_dim: int, n_outputs: int, cfg: FaudConfig, n_patches: int, text: PromptText
    ):
        super().__init__()
        self.task, self.cfg = get_task(task), cfg
        if n_patches <= 0:
            raise ValueError("FAUD reads patch tokens: train it on a token array (spatial, patch_proj …)")
        if text.n != n_outputs:
            raise ValueError(f"{text.n} prompts for {n_outputs} AUs")
        self.grid = square_grid(n_patches)
        width = cfg.width
        self.norm = InputNorm(in_dim)
        self.embed = nn.Linear(in_dim, width)
        self.positions = nn.Parameter(torch.randn(1, n_patches, width) * 0.02)
        self.blocks = nn.ModuleList(
            [TokenBlock(cfg, self.grid) for _ in range(cfg.layers if cfg.attention != "none" else 0)]
        )
        self.grounding = Grounding(cfg, self.grid) if cfg.attention != "none" else None
        # The prompts' last embeddings (n, text_dim): fixed ones as given, learnt ones refreshed on
        # every forward pass, so the checkpoint predicts without the text tower.
        self.register_buffer("prompt_embeddings", torch.zeros(text.n, text.dim))
        if text.embeddings is not None:
            self.prompt_embeddings.copy_(text.embeddings)
        # The tower is frozen and not part of the head's weights: kept out of the module tree.
        self.__dict__["tower"] = text.tower if cfg.context else None
        if cfg.context and not text.token_dim:
            raise ValueError("learnable context needs the text tower's token width (PromptText.token_dim)")
        self.context = nn.Parameter(torch.randn(cfg.context, text.token_dim) * 0.02) if cfg.context else None
        self.projector = nn.Sequential(nn.Linear(text.dim, width), nn.GELU(), nn.Linear(width, width))
        self.interaction = (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(
                    width, cfg.heads, 2 * width, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
                ),
                cfg.interaction_layers,
                enable_nested_tensor=False,
            )
            if cfg.interaction
            else None
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.zeros(n_outputs))

    def prompts(self) -> torch.Tensor:
        """The AU prompts' text embeddings (n, text_dim): through the tower behind the learnt context
        while it is attached, else the stored ones."""
        if self.tower is None or self.context is None:
            return self.prompt_embeddings
        self.tower.to(self.context.device)
        embeddings = self.tower(self.context)
        with torch.no_grad():
            self.prompt_embeddings.copy_(embeddings)
        return embeddings

    def tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the embedded tokens with their positions, the same after the blocks)."""
        local = t = self.embed(self.norm(x)) + self.positions
        for block in self.blocks:
            t = block(t)
        return local, t

    def forward(self, x: torch.Tensor, maps: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(AU logits (B, n), with ``maps`` each AU's map on the grid (B, n, h·w), else None)."""
        local, tokens = self.tokens(x)
        text = self.projector(self.prompts())  # F_t (n, width)
        queries = text.expand(x.shape[0], -1, -1)
        if self.grounding is None:
            visual, maps = tokens.mean(1, keepdim=True).expand_as(queries), None
        else:
            visual, maps = self.grounding(queries, local, tokens, maps)
        au = queries + visual
        if self.interaction is not None:
            au = self.interaction(torch.cat([tokens, au], 1))[:, tokens.shape[1] :]
        logits = self.logit_scale.exp() * (F.normalize(au, dim=-1) * F.normalize(queries, dim=-1)).sum(-1)
        return logits + self.bias, maps

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self(x)[0], None

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """The learnable prompts at ``context_lr`` × the base rate, every other module at the base rate."""
        if self.context is None or self.cfg.context_lr == 1.0:
            return super().parameter_groups()
        rest = [p for p in self.parameters() if p is not self.context]
        return [(rest, 1.0), ([self.context], self.cfg.context_lr)]

    def has_maps(self) -> bool:
        return self.grounding is not None  # attention=none reads the tokens' mean: no maps

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Each AU's attention on the token grid (B, n, h, w), summing to 1 per AU."""
        if self.grounding is None:
            raise ValueError("attention=none has no attention maps")
        maps = self(x, maps=True)[1]
        return maps.view(*maps.shape[:2], *self.grid)

    def losses(
        self, x: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits, _ = self(x)
        weights = class_weights if class_weights is not None else torch.ones(logits.shape[1], device=logits.device)
        asymmetric = asymmetric_au_loss(logits, target, weights)
        dice = dice_au_loss(logits, target, weights)
        loss = self.cfg.asymmetric_weight * asymmetric + self.cfg.dice_weight * dice
        return loss, {"asymmetric": float(asymmetric.detach()), "dice": float(dice.detach())}


@register_head(
    "faud", version=1, config=FaudConfig, tasks=("au",), inputs=("patch", "text"), presets={"faud": {"context_lr": 0.1}}
)
def faud(
    task: Task | str, in_dim: int, n_outputs: int, config: FaudConfig, n_patches: int, text: PromptText
) -> FaudHead:
    """FAUD-CLIP's behaviour-prompted AU detector over cached patch tokens (see heads/faud.py)."""
    return FaudHead(task, in_dim, n_outputs, config, n_patches, text)
