"""Prompt embeddings, each unique prompt encoded once per text model and kept in the store.

LaScA's prompts repeat a lot (a few salient cues make the same sentence in many windows), so a
window set embeds its *distinct* prompts, and only those no earlier set has embedded with the same
model. The cache is made of lexicon steps (stages/lexicon.py): each batch of newly embedded prompts
is one immutable group ``lexicon/prompt-cache/<model>/<key>``, keyed by the model's text spec and
the prompts. A lookup reads every complete group of the model whose spec matches (different
weights under the same name never mix); two runs that embed the same new prompts at once write
the same key once. Nothing is rewritten, so a killed run loses at most its own new batch.
"""

from __future__ import annotations

import numpy as np

from featurestore import FeatureStore, GroupReader
from stages.encoders import Encoder
from stages.lexicon import embed_lexicon

CACHE = "prompt-cache"


def cached_vectors(store: FeatureStore, encoder: Encoder) -> dict[str, np.ndarray]:
    """Every prompt this model has embedded in ``store`` → its vector."""
    params = encoder.text_spec_params()  # what lexicon_step keys a prompt's embedding on
    known: dict[str, np.ndarray] = {}
    for group in store.list_steps(f"lexicon/{CACHE}/{encoder.name}"):
        if not group.is_complete or group.meta["spec"]["params"] != params:
            continue
        reader = GroupReader(group)
        known.update(zip(reader.numpy("prompt").tolist(), reader.numpy("text").astype(np.float32)))
    return known


def embed_prompts(store: FeatureStore, encoder: Encoder, prompts: list[str]) -> tuple[np.ndarray, int]:
    """(vectors of ``prompts`` in order (n, dim), how many distinct prompts were encoded now)."""
    known = cached_vectors(store, encoder)
    new = [p for p in dict.fromkeys(prompts) if p not in known]
    if new:
        group, _ = embed_lexicon(store, CACHE, encoder, sorted(new))
        reader = GroupReader(group)
        known.update(zip(reader.numpy("prompt").tolist(), reader.numpy("text").astype(np.float32)))
    return np.stack([known[p] for p in prompts]), len(new)
