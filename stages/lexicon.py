"""Prompt embeddings from an encoder's text tower, as a step: (text-tower spec, prompts) → group.

A lexicon is a named, ordered list of prompts ("a photo of a happy face", AU descriptions …). Its
embeddings sit in the same space as the image encoder's ``global`` (and ``patch_proj``) outputs,
so heads can match images against text without loading the model again. The prompts themselves
are the step's input: their digest is the input key, and the group stores them beside the vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featurestore import ArraySpec, FeatureStore, StepGroup, StepSpec, step_key
from featurestore.keys import digest_json
from stages.encoders import Encoder, EncoderError

LEXICON_STEP = "lexicon"
LEXICON_STEP_VERSION = 1


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no prompts (one per line expected)")
    return prompts


def lexicon_key(encoder: Encoder, prompts: list[str]) -> str:
    if not encoder.has_text_tower:
        raise EncoderError(f"encoder {encoder.name!r} has no text tower; prompt embeddings need a CLIP-like encoder")
    spec = StepSpec(LEXICON_STEP, LEXICON_STEP_VERSION, encoder.text_spec_params())
    return step_key(spec, ["prompts:" + digest_json(list(prompts))])


def embed_lexicon(
    store: FeatureStore, name: str, encoder: Encoder, prompts: list[str], batch_size: int = 256
) -> tuple[StepGroup, str]:
    """Embed ``prompts`` under ``lexicon/<name>/<encoder>/<key>``; returns (group, "skipped" | "new")."""
    key = lexicon_key(encoder, prompts)
    path = store.lexicon_path(name, encoder.name, key)
    with store.lock(key):
        existing = store.open_step(path)
        if existing is not None and existing.is_complete:
            return existing, "skipped"
        group = store.create_step(
            path,
            kind="lexicon",
            spec=StepSpec(LEXICON_STEP, LEXICON_STEP_VERSION, encoder.text_spec_params()),
            key=key,
            inputs=["prompts:" + digest_json(list(prompts))],
            n_samples=len(prompts),
            arrays={"text": ArraySpec((encoder.text_dim,), np.float16, np.nan), "prompt": ArraySpec((), str, "")},
            chunk_size=max(len(prompts), 1),
            extra_meta={"lexicon": name, "encoder": encoder.name},
        )
        vectors = np.concatenate(
            [encoder.encode_text(prompts[i : i + batch_size]).numpy() for i in range(0, len(prompts), batch_size)]
        )
        group.group["text"][:] = vectors.astype(np.float16)
        group.group["prompt"][:] = np.array(prompts, dtype=str)
        group.mark_chunk_done(0)
        group.mark_complete()
        return group, "new"
