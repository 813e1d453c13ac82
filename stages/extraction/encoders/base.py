"""Frozen encoders: a registry of named factories and the interface the extraction step uses.

An encoder is cheap to construct: it knows its preprocessing, its output shapes and the digest of
its weights (from the weights file, through the stat cache) without loading the model, so a rerun
can decide "already done" without paying for model start-up. ``load`` builds the model lazily.
Encoders do no I/O of their own beyond loading weights.
"""

from __future__ import annotations

import functools
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.fingerprint import fingerprint_files
from featurestore.keys import canonical_json
from stages.extraction.allocator import keep_large_buffers
from stages.extraction.images import Preprocess

if TYPE_CHECKING:
    # torch is imported where a model is built or run: every process that registers encoders imports
    # these modules, and one that finds its steps done, sends its chunks to a Dask cluster or runs
    # MediaPipe and MFCCs only has no model of torch's to run (torch's import is ~2.5 s)
    import torch


class EncoderError(ValueError):
    pass


@dataclass
class EncodedBatch:
    """Outputs for a batch of frames, plus a status per frame (e.g. ``no_face``)."""

    outputs: dict[str, np.ndarray]
    status: np.ndarray  # int8 SampleStatus per frame; rows not OK hold no values
    detail: list[str]


class Encoder(ABC):
    """What the extraction step needs from any frozen per-frame encoder."""

    name: str
    preprocess: Preprocess | None  # None for encoders that read no pixels
    # The name it was created by (``create_encoder``): ``open_clip:<arch>@<path>`` rebuilds it, the
    # store name derived from that does not.
    created_as: str | None = None
    # "image": decoded frames in, via encode_batch; "audio": a video file's sound track in.
    modality = "image"
    # A text tower in the same embedding space (CLIP-like encoders) gives prompt embeddings.
    has_text_tower = False
    text_dim = 0

    @abstractmethod
    def architecture(self) -> dict[str, Any]:
        """JSON description of the architecture (part of the step spec)."""

    @abstractmethod
    def weights_digest(self) -> str:
        """Content digest of the weights, computable without building the model."""

    @abstractmethod
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each output array."""

    def output_dtypes(self) -> dict[str, Any]:
        """Storage dtype per output: float16 unless a value needs more precision."""
        return {name: np.float16 for name in self.output_shapes()}

    def output_meta(self) -> dict[str, Any]:
        """Extra attributes for the feature group (e.g. the names of the blendshape columns)."""
        return {}

    @abstractmethod
    def load(self, device: str | None = None) -> Encoder:
        """Build the model once per process; returns self."""

    @abstractmethod
    def encode_batch(self, frames: list[np.ndarray]) -> EncodedBatch:
        """Decoded RGB uint8 frames (H, W, 3) → outputs and per-frame statuses."""

    @contextmanager
    def stream(self, is_video: bool) -> Iterator[Callable[[list[np.ndarray], np.ndarray | None], EncodedBatch]]:
        """An encode function for one run of frames; ``is_video`` runs are consecutive frames of one
        video with their timestamps (s). Stateless encoders ignore both; trackers keep state here."""
        yield lambda frames, timestamps: self.encode_batch(frames)

    def spec_params(self) -> dict[str, Any]:
        return {
            "encoder": self.name,
            "architecture": self.architecture(),
            "weights": self.weights_digest(),
            "preprocess": self.preprocess.to_json() if self.preprocess else None,
            "outputs": {k: list(v) for k, v in self.output_shapes().items()},
            "dtypes": {k: np.dtype(v).name for k, v in self.output_dtypes().items()},
        }

    def text_spec_params(self) -> dict[str, Any]:
        """What determines a prompt's embedding: the model and its weights, not image preprocessing."""
        return {"encoder": self.name, "architecture": self.architecture(), "weights": self.weights_digest()}

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        raise EncoderError(f"encoder {self.name!r} has no text tower")

    def context_tower(self, prompts: list[str]) -> torch.nn.Module:
        """The frozen text tower as a module that embeds ``prompts`` behind learnable context vectors
        (CoOp): ``forward(context (M, token_dim)) → (len(prompts), text_dim)``, with ``token_dim``;
        with M = 0 it equals :meth:`encode_text`. Its parameters never take gradients."""
        raise EncoderError(f"encoder {self.name!r} cannot embed prompts behind learnable context vectors")


class ImageEncoder(Encoder):
    """A torch image model over fixed-size normalised pixels."""

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None
        self.device: torch.device | None = None  # set by load

    @abstractmethod
    def build(self) -> torch.nn.Module:
        """Construct the model with its weights (called once per process)."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised pixels (B, 3, H, W) on ``self.device`` → outputs by name."""

    def load(self, device: str | torch.device | None = None) -> ImageEncoder:
        if self.model is None:
            import torch

            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model = self.build().to(self.device).eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            self._mean = torch.tensor(self.preprocess.mean, device=self.device).view(1, 3, 1, 1)
            self._std = torch.tensor(self.preprocess.std, device=self.device).view(1, 3, 1, 1)
        return self

    def encode(self, pixels_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        """uint8 (B, H, W, 3) → outputs, normalised here so decode workers stay cheap."""
        self.load()  # outside inference mode: weights made there could never join autograd (a text tower's context)
        return self._encode(pixels_u8)

    def _encode(self, pixels_u8: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch

        with torch.inference_mode():
            x = pixels_u8.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            return {k: v.float().cpu() for k, v in self.forward((x - self._mean) / self._std).items()}

    def encode_batch(self, frames: list[np.ndarray]) -> EncodedBatch:
        import torch

        out = self.encode(torch.from_numpy(np.stack(frames)))
        return EncodedBatch({k: v.numpy() for k, v in out.items()}, np.zeros(len(frames), np.int8), [""] * len(frames))


def file_weights_digest(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"weights file {path} not found")
    (entry,) = fingerprint_files(path.parent, [path.name])
    return f"file:{entry.digest}"


ENCODERS: dict[str, Callable[..., Encoder]] = {}


def register_encoder(name: str) -> Callable:
    def wrap(factory: Callable[..., Encoder]) -> Callable[..., Encoder]:
        ENCODERS[name] = factory
        return factory

    return wrap


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def create_encoder(name: str, **options: Any) -> Encoder:
    """Build an encoder by registered name, or ``open_clip:<arch>@<tag-or-checkpoint-path>``."""
    keep_large_buffers()  # every process that runs a model: the CLI, flow runs, Dask workers, the API
    if name.startswith("open_clip:"):
        arch, _, pretrained = name.removeprefix("open_clip:").partition("@")
        encoder = ENCODERS["open_clip"](arch=arch, pretrained=pretrained or None, **options)
    elif name not in ENCODERS:
        raise EncoderError(
            f"unknown encoder {name!r}; registered: {', '.join(list_encoders())}, "
            "or open_clip:<arch>@<pretrained tag or checkpoint path>"
        )
    else:
        try:
            encoder = ENCODERS[name](**options)
        except TypeError as err:
            raise EncoderError(f"encoder {name!r}: bad options {options}: {err}") from None
    encoder.created_as = name
    return encoder


@functools.lru_cache(maxsize=4)
def _loaded(name: str, options_json: str, device: str | None) -> Encoder:
    return create_encoder(name, **json.loads(options_json)).load(device)


def loaded_encoder(name: str, options: dict[str, Any], device: str | None = None) -> Encoder:
    """Process-wide cache: each worker process loads a given model once."""
    return _loaded(name, canonical_json(options), device)
