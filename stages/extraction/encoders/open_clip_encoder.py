"""Any open_clip architecture: global image embedding, optional patch tokens, and the text tower.

Patch tokens come in two forms, named for what they are:

* ``patch_raw``  (P, width): the transformer's output tokens before ``ln_post`` — what
  ``output_tokens=True`` style access gives before the final norm; good for probing.
* ``patch_proj`` (P, embed_dim): the same tokens through ``ln_post`` and ``proj``, i.e. in the
  joint image–text space, so they can be compared with text embeddings (FAUD-CLIP, dense maps).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featurestore.keys import digest_json
from stages.extraction.encoders.base import EncoderError, ImageEncoder, file_weights_digest, register_encoder
from stages.extraction.images import Preprocess

if TYPE_CHECKING:  # torch is imported where a model is built or run (stages/extraction/encoders/context_towers.py)
    import torch

    from stages.extraction.encoders.context_towers import ClipContextTower


@functools.cache
def _open_clip():
    """open_clip, imported on first use with the project's model configs added: it and torchvision
    take ~3.5 s to import, which every process that registers encoders (each CLI command, flow run
    and Dask worker) would otherwise pay whether or not it uses CLIP."""
    import open_clip

    open_clip.add_model_config(Path(__file__).parent / "model_configs")
    return open_clip


class OpenClipEncoder(ImageEncoder):
    has_text_tower = True

    def __init__(
        self,
        arch: str,
        pretrained: str | None = None,
        tokens: bool = False,
        seed: int = 0,
        name: str | None = None,
        cache_dir: str | None = None,
    ):
        super().__init__()
        self.config = _open_clip().get_model_config(arch)
        if self.config is None:
            raise EncoderError(f"unknown open_clip architecture {arch!r}; see open_clip.list_models()")
        self.arch, self.pretrained, self.tokens, self.seed = arch, pretrained, tokens, seed
        self.cache_dir = cache_dir
        vision = self.config["vision_cfg"]
        if tokens and (isinstance(vision.get("layers"), list) or "timm_model_name" in vision):
            raise EncoderError(f"{arch}: patch tokens are supported for ViT image towers only")
        tag = self._tag()
        weights = tag if tag else Path(pretrained).stem if pretrained else "random"
        self.name = (name or f"open_clip-{arch}-{weights}").replace("/", "_").replace("@", "_")
        pcfg = _open_clip().get_pretrained_cfg(arch, tag) if tag else {}
        size = vision["image_size"]
        self.preprocess = Preprocess(
            size=size if isinstance(size, int) else size[0],
            mean=tuple(pcfg.get("mean", _open_clip().OPENAI_DATASET_MEAN)),
            std=tuple(pcfg.get("std", _open_clip().OPENAI_DATASET_STD)),
            interpolation=pcfg.get("interpolation", "bicubic"),
            resize_mode=pcfg.get("resize_mode", "shortest"),
        )
        self._weights_path: str | None = None
        self.text_dim = self.config["embed_dim"]

    def _tag(self) -> str | None:
        if self.pretrained is None or os.path.isfile(self.pretrained):
            return None
        if not _open_clip().get_pretrained_cfg(self.arch, self.pretrained):
            known = _open_clip().list_pretrained_tags_by_model(self.arch)
            raise EncoderError(f"{self.arch}: {self.pretrained!r} is neither a checkpoint file nor a known tag {known}")
        return self.pretrained

    def weights_path(self) -> str | None:
        """Local file with the weights: the checkpoint given, or the hub file (downloaded once)."""
        if self.pretrained is None:
            return None
        if self._weights_path is None:
            tag = self._tag()
            if tag is None:
                self._weights_path = self.pretrained
            else:
                try:
                    self._weights_path = _open_clip().download_pretrained(
                        _open_clip().get_pretrained_cfg(self.arch, tag), cache_dir=self.cache_dir
                    )
                except Exception as err:  # network, hub or cache errors all mean the same here
                    raise EncoderError(
                        f"weights for {self.arch}@{tag} are not in the local cache and could not be "
                        f"downloaded ({type(err).__name__}: {err}); pass a local checkpoint path as "
                        f"open_clip:{self.arch}@/path/to/checkpoint"
                    ) from None
        return self._weights_path

    def architecture(self) -> dict[str, Any]:
        return {"family": "open_clip", "arch": self.arch, "config": self.config}

    def weights_digest(self) -> str:
        path = self.weights_path()
        if path is None:
            import torch  # open_clip, imported by the constructor, has imported it

            # Random init is reproducible only for a given torch release: it is part of the digest.
            return "random:" + digest_json({"seed": self.seed, "torch": torch.__version__})
        return file_weights_digest(path)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"global": (self.config["embed_dim"],)}
        if self.tokens:
            vision = self.config["vision_cfg"]
            grid = self.preprocess.size // vision["patch_size"]
            shapes["patch_raw"] = (grid * grid, vision["width"])
            shapes["patch_proj"] = (grid * grid, self.config["embed_dim"])
        return shapes

    def build(self) -> torch.nn.Module:
        import torch

        torch.manual_seed(self.seed)
        return _open_clip().create_model(self.arch, pretrained=self.weights_path())

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.tokens:
            return {"global": self.model.encode_image(pixels)}
        visual = self.model.visual
        x = visual.transformer(visual._embeds(pixels))
        pooled, _ = visual._pool(x)
        raw = x[:, 1:]
        return {
            "global": pooled @ visual.proj,
            "patch_raw": raw,
            "patch_proj": visual.ln_post(raw) @ visual.proj,
        }

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Text-tower embeddings (unnormalised) of ``prompts``, in the same space as ``global``."""
        import torch

        self.load()  # outside inference mode (see ImageEncoder.encode)
        tokens = _open_clip().get_tokenizer(self.arch)(prompts).to(self.device)
        with torch.inference_mode():
            return self.model.encode_text(tokens).float().cpu()

    def context_tower(self, prompts: list[str]) -> ClipContextTower:
        from stages.extraction.encoders.context_towers import ClipContextTower

        self.load()
        return ClipContextTower(self.model, _open_clip().get_tokenizer(self.arch), prompts)


@register_encoder("open_clip")
def open_clip_encoder(arch: str, pretrained: str | None = None, **options: Any) -> OpenClipEncoder:
    return OpenClipEncoder(arch, pretrained, **options)


def _preset(name: str, arch: str, tag: str) -> None:
    register_encoder(name)(lambda **options: OpenClipEncoder(arch, tag, name=name, **options))


_preset("clip-vit-b-32", "ViT-B-32", "openai")
_preset("clip-vit-b-16", "ViT-B-16", "openai")
_preset("clip-vit-l-14", "ViT-L-14", "openai")


@register_encoder("test-clip-tiny")
def tiny_clip(**options: Any) -> OpenClipEncoder:
    """Random-weight 2-layer ViT (64 px, 32-d): the real open_clip code path in milliseconds."""
    return OpenClipEncoder("affectflow-test-vit", None, name="test-clip-tiny", **options)
