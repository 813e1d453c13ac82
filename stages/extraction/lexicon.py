"""Prompt embeddings from an encoder's text tower, as a step: (text-tower spec, prompts) → group.

A lexicon is a named, ordered list of prompts ("a photo of a happy face", AU descriptions …). Its
embeddings sit in the same space as the image encoder's ``global`` (and ``patch_proj``) outputs,
so heads can match images against text without loading the model again. The prompts themselves
are the step's input: their digest is the input key, and the group stores them beside the vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featurestore import FeatureStore, Step, StepGroup, StepOutput, StepSpec
from featurestore.keys import digest_json
from stages.extraction.encoders import Encoder, EncoderError

LEXICON_STEP = "lexicon"
LEXICON_STEP_VERSION = 1


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per line; blank lines and lines starting with ``#`` are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no prompts (one per line expected)")
    return prompts


def lexicon_step(encoder: Encoder, prompts: list[str], name: str) -> Step:
    """``lexicon/<name>/<encoder>/<key>``: the text tower's weights and the prompts themselves."""
    if not encoder.has_text_tower:
        raise EncoderError(f"encoder {encoder.name!r} has no text tower; prompt embeddings need a CLIP-like encoder")
    spec = StepSpec(LEXICON_STEP, LEXICON_STEP_VERSION, encoder.text_spec_params())
    return Step("lexicon", spec, ("prompts:" + digest_json(list(prompts)),), "lexicon", (name, encoder.name))


def embed_lexicon(
    store: FeatureStore, name: str, encoder: Encoder, prompts: list[str], batch_size: int = 256
) -> tuple[StepGroup, str]:
    """Embed ``prompts`` under ``lexicon/<name>/<encoder>/<key>``; returns (group, "skipped" | "new")."""

    def embed() -> StepOutput:
        vectors = np.concatenate(
            [encoder.encode_text(prompts[i : i + batch_size]).numpy() for i in range(0, len(prompts), batch_size)]
        )
        return StepOutput(
            {"text": vectors.astype(np.float16), "prompt": np.array(prompts, dtype=str)},
            {"lexicon": name, "encoder": encoder.name},
        )

    return store.run_step(lexicon_step(encoder, prompts, name), embed)
