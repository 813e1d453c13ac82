"""Voice features aligned to video frames: MFCCs (librosa), RMS energy and a YIN pitch estimate.

For every frame row the audio is read around that frame's own timestamp, so the MFCC rows are
aligned one-to-one with the face rows of the same source (LaScA pools both over the same windows).
Per frame: librosa's periodic Hann window of ``window_ms`` centred on the timestamp → power
spectrum (our framing, at arbitrary centres; identical to ``librosa.stft(center=True)`` when the
frames are evenly spaced) → librosa's mel filter bank, dB without the ``top_db`` floor (which would
make a frame depend on its neighbours) and DCT (``librosa.feature.mfcc(S=…)``).
``f0`` is YIN over the whole track at a 10 ms hop, linearly interpolated at the timestamps; it is
not voicing-gated (unvoiced frames carry YIN's best guess; use ``rms`` to gate).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import librosa
import numpy as np

from featurestore.status import SampleStatus
from stages.extraction.encoders.base import EncodedBatch, Encoder, register_encoder
from stages.extraction.media import load_audio


@functools.lru_cache(maxsize=1)
def _audio(path: str, sample_rate: int) -> tuple[np.ndarray, float] | None:
    return load_audio(path, sample_rate)


def yin_track(samples: np.ndarray, start: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(times in s, f0 in Hz) of YIN over the whole track at a 10 ms hop."""
    hop = sample_rate // 100
    f0 = librosa.yin(
        samples,
        fmin=65.0,
        fmax=500.0,
        sr=sample_rate,
        frame_length=2048 if sample_rate > 24000 else 1024,
        hop_length=hop,
    )
    return start + librosa.frames_to_time(np.arange(f0.size), sr=sample_rate, hop_length=hop), f0


@functools.lru_cache(maxsize=1)
def _pitch(path: str, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    samples, start = _audio(path, sample_rate)
    return yin_track(samples, start, sample_rate)


class VoiceEncoder(Encoder):
    modality = "audio"
    preprocess = None

    def __init__(
        self,
        n_mfcc: int = 15,
        sample_rate: int = 16000,
        window_ms: float = 40.0,
        n_mels: int = 40,
        fmin: float = 0.0,
        fmax: float | None = None,
        pitch: bool = True,
        name: str = "mfcc",
    ):
        self.name = name
        self.n_mfcc, self.sample_rate, self.window_ms, self.n_mels = n_mfcc, sample_rate, window_ms, n_mels
        self.fmin, self.fmax, self.pitch = fmin, fmax, pitch
        self.win_length = int(round(sample_rate * window_ms / 1000))
        self.n_fft = 1 << (self.win_length - 1).bit_length()

    def architecture(self) -> dict[str, Any]:
        return {
            "family": "mfcc",
            "n_mfcc": self.n_mfcc,
            "sample_rate": self.sample_rate,
            "window_ms": self.window_ms,
            "n_fft": self.n_fft,
            "n_mels": self.n_mels,
            "fmin": self.fmin,
            "fmax": self.fmax,
            "pitch": self.pitch,
            "audio": "first track, mono mix, libswresample",
        }

    def weights_digest(self) -> str:
        # no weights: the numerics are librosa's (and FFmpeg's resampler, pinned with PyAV)
        import av

        return f"librosa:{librosa.__version__};av:{av.__version__}"

    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"mfcc": (self.n_mfcc,), "rms": (1,)}
        if self.pitch:
            shapes["f0"] = (1,)
        return shapes

    def output_dtypes(self) -> dict[str, Any]:
        return {name: np.float32 for name in self.output_shapes()}

    def load(self, device: str | None = None) -> VoiceEncoder:
        return self

    def encode_batch(self, frames: list[np.ndarray]) -> EncodedBatch:
        raise TypeError("the voice encoder reads a video's audio track (encode_audio), not frames")

    def windows(self, samples: np.ndarray, start: float, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, win_length) raw sample windows centred on ``timestamps`` (zero-padded at the edges)
        and a mask of the timestamps that fall inside the track."""
        centres = np.round((np.asarray(timestamps, np.float64) - start) * self.sample_rate).astype(np.int64)
        inside = (centres >= 0) & (centres < samples.size)
        half = self.win_length // 2
        padded = np.pad(samples, (half, self.win_length))
        index = centres[:, None] + np.arange(self.win_length)[None, :]  # shifted by the pad
        return padded[np.clip(index, 0, padded.size - 1)], inside

    def features(
        self,
        samples: np.ndarray,
        start: float,
        timestamps: np.ndarray,
        pitch_track: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        frames, inside = self.windows(samples, start, timestamps)
        import scipy.signal  # here: its import takes ~1 s of every process that registers encoders

        window = scipy.signal.get_window("hann", self.win_length, fftbins=True)  # librosa's default
        power = np.abs(np.fft.rfft(frames * window, n=self.n_fft, axis=1)) ** 2  # (n, n_fft/2+1)
        mel = librosa.feature.melspectrogram(
            S=power.T, sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=self.fmin, fmax=self.fmax
        )
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=self.n_mfcc).T
        out = {"mfcc": mfcc.astype(np.float32), "rms": np.sqrt((frames**2).mean(1, keepdims=True)).astype(np.float32)}
        if self.pitch:
            times, f0 = pitch_track if pitch_track is not None else yin_track(samples, start, self.sample_rate)
            out["f0"] = np.interp(timestamps, times, f0)[:, None].astype(np.float32)
        return out, inside

    def encode_audio(self, path: Path, timestamps: np.ndarray) -> EncodedBatch:
        n = len(timestamps)
        audio = _audio(str(path), self.sample_rate)
        status = np.zeros(n, np.int8)
        if audio is None or audio[0].size == 0:
            status[:] = SampleStatus.NO_AUDIO
            empty = {k: np.full((n, *s), np.nan, np.float32) for k, s in self.output_shapes().items()}
            return EncodedBatch(empty, status, ["the video has no audio track"] * n)
        # the YIN track covers the whole file: computed once per file, not once per chunk
        track = _pitch(str(path), self.sample_rate) if self.pitch else None
        out, inside = self.features(audio[0], audio[1], timestamps, track)
        status[~inside] = SampleStatus.NO_AUDIO
        detail = ["" if ok else "frame outside the audio track" for ok in inside]
        return EncodedBatch(out, status, detail)


@register_encoder("mfcc")
def mfcc(**options: Any) -> VoiceEncoder:
    """LaScA's default is 15 coefficients (the default here)."""
    return VoiceEncoder(**options)
