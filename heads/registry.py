"""Heads by name, like encoders and sources: ``create_head("aura", task=…, in_dim=…, …)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from heads.aura import AuraConfig, AuraHead
from heads.baselines import linear_probe, mlp

HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        HEADS[name] = factory
        return factory

    return wrap


def create_head(name: str, task: str, in_dim: int, n_outputs: int, n_patches: int = 0, **options: Any) -> nn.Module:
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; registered: {', '.join(sorted(HEADS))}")
    try:
        return HEADS[name](task=task, in_dim=in_dim, n_outputs=n_outputs, n_patches=n_patches, **options)
    except TypeError as err:
        raise ValueError(f"head {name!r}: bad options {options}: {err}") from None


@register_head("aura")
def aura(task: str, in_dim: int, n_outputs: int, n_patches: int = 0, **options: Any) -> AuraHead:
    """AURA archetype head (heads/aura.py); options are AuraConfig fields."""
    return AuraHead(AuraConfig(task=task, in_dim=in_dim, n_outputs=n_outputs, **options), n_patches)


@register_head("linear")
def linear(task: str, in_dim: int, n_outputs: int, n_patches: int = 0) -> nn.Module:
    """Linear probe on the same features and losses."""
    return linear_probe(task, in_dim, n_outputs)


@register_head("mlp")
def two_layer(
    task: str, in_dim: int, n_outputs: int, n_patches: int = 0, hidden: int = 256, dropout: float = 0.2
) -> nn.Module:
    """Two-layer MLP on the same features and losses."""
    return mlp(task, in_dim, n_outputs, hidden, dropout)
