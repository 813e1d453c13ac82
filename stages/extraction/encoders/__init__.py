"""Frozen encoders. Importing this package registers every built-in encoder."""

from stages.extraction.encoders import efficientnet_lite, face_landmarker, open_clip_encoder, sentence, voice  # noqa: F401  (registration)
from stages.extraction.encoders.base import (
    EncodedBatch,
    Encoder,
    EncoderError,
    ImageEncoder,
    create_encoder,
    list_encoders,
    loaded_encoder,
)

__all__ = [
    "EncodedBatch",
    "Encoder",
    "EncoderError",
    "ImageEncoder",
    "create_encoder",
    "list_encoders",
    "loaded_encoder",
]
