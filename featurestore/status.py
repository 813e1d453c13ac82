"""Per-sample status codes. Stored as an ``int8`` array in every group; names live in its attributes."""

from __future__ import annotations

from enum import IntEnum


class SampleStatus(IntEnum):
    OK = 0
    MISSING_FILE = 1
    EMPTY_FILE = 2
    NOT_AN_IMAGE = 3
    DECODE_ERROR = 4
    TOO_LARGE = 5
    PATH_ESCAPE = 6
    BAD_CROP = 7
    NO_FACE = 8
    BAD_LABEL = 9
    NO_AUDIO = 10
    NOT_A_VIDEO = 11
    NO_VIDEO = 12  # an audio-only recording given to a picture encoder

    @property
    def label(self) -> str:
        return self.name.lower()


def status_names() -> dict[str, str]:
    """JSON-able code → name table written to every group's attributes."""
    return {str(int(s)): s.label for s in SampleStatus}
