"""Frozen encoders. Importing this package registers every built-in encoder."""

from stages.encoders import efficientnet_lite, open_clip_encoder  # noqa: F401  (registration)
from stages.encoders.base import EncoderError, ImageEncoder, create_encoder, list_encoders, loaded_encoder

__all__ = ["EncoderError", "ImageEncoder", "create_encoder", "list_encoders", "loaded_encoder"]
