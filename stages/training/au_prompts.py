"""Behaviour prompts for AU heads that read text (FAUD-CLIP): the sentences, their embeddings, their key.

The sentences live in a versioned data file (data/au_behaviours.csv: au, region, behaviour; a user
can name their own). A head step keys on the file's content and on the text encoder's spec, so an
edited sentence or other weights retrain the heads that read them. Fixed prompts are embedded once
per text model through the store's prompt cache (stages/training/prompt_cache.py); learnable context needs
the tower itself, which the head runs behind its context vectors while it trains.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
import xxhash

from featurestore import FeatureStore
from heads.base import PromptText
from stages.extraction.encoders import create_encoder
from stages.extraction.sources.labels import DATA
from stages.training.head_resources import Resource, register_resource
from stages.training.prompt_cache import embed_prompts

PACKAGED = DATA / "au_behaviours.csv"


def prompt_file(path: str = "") -> Path:
    file = Path(path) if path else PACKAGED
    if not file.is_file():
        raise ValueError(f"behaviour-prompt file {file} does not exist (columns: au, region, behaviour)")
    return file


def behaviours(path: str = "") -> dict[str, str]:
    """ "AU<code>" → its behaviour sentence, from ``path`` (default: the packaged file)."""
    file = prompt_file(path)
    lines = [line for line in file.read_text().splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.DictReader(lines))
    if not rows or not {"au", "behaviour"} <= set(rows[0]):
        raise ValueError(f"{file}: a behaviour-prompt file needs the columns au, region, behaviour")
    return {f"AU{int(row['au'])}": row["behaviour"].strip() for row in rows}


def au_prompts(names: list[str], path: str = "") -> list[str]:
    """The prompt of each AU in ``names`` (``AU12`` …), in order; an AU without one is an error."""
    known = behaviours(path)
    if missing := [n for n in names if n not in known]:
        raise ValueError(f"{prompt_file(path)} has no behaviour for {', '.join(missing)}: add a row per AU")
    return [known[n] for n in names]


def text_inputs(options: dict[str, Any]) -> dict[str, Any]:
    """What a text-reading head's prompts depend on, for its step key: the prompt file's content
    digest and the text encoder's spec (model and weights digest)."""
    encoder = create_encoder(options["text_encoder"])
    return {
        "prompts": xxhash.xxh3_128_hexdigest(prompt_file(options["prompts"]).read_bytes()),
        "text_encoder": encoder.text_spec_params(),
    }


def prompt_text(store: FeatureStore, options: dict[str, Any], names: list[str]) -> PromptText:
    """The head's prompts for AUs ``names``: with ``context`` > 0 the frozen tower the head trains
    its context through, else the embeddings, computed once per text model and cached in ``store``."""
    # loaded by the tower or on a cache miss only: a rerun's prompts are in the store (a load is seconds)
    encoder = create_encoder(options["text_encoder"])
    prompts = au_prompts(names, options["prompts"])
    if options["context"]:
        tower = encoder.context_tower(prompts)
        return PromptText(len(names), encoder.text_dim, tower.token_dim, tower=tower)
    vectors, _ = embed_prompts(store, encoder, prompts)
    return PromptText(len(names), vectors.shape[1], embeddings=torch.from_numpy(vectors))


register_resource(
    Resource(
        "text",
        key=text_inputs,
        load=prompt_text,
        # the prompts' shape: a stored text head is rebuilt without its text tower
        describe=lambda text: {"n": text.n, "dim": text.dim, "token_dim": text.token_dim},
        rebuild=lambda entry: PromptText(**entry),
    )
)
