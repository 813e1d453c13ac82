"""The extraction step: (encoder spec, source key) → a feature group, computed chunk by chunk.

Plain functions, no Prefect: ``flows/extract.py`` holds the step (``FeatureStore.chunked_step``
of :func:`feature_step`) and maps :func:`extract_chunk` over its undone chunks. Each chunk is
written by exactly one call, with aligned regions, and marked done only after its data is written.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from featurestore import ArraySpec, FeatureStore, GroupReader, SampleStatus, Step, StepGroup, StepOutput, StepSpec
from stages.extraction.encoders import EncodedBatch, Encoder, loaded_encoder
from stages.extraction.face_tracks import FaceTracks
from stages.extraction.images import Decoded, decode_image, preprocess_array
from stages.extraction.media import MediaError, is_video, probe_video, read_frames, sample_frames
from stages.extraction.sources import Manifest
from stages.extraction.sources.labels import EXPRESSIONS, VA_NAMES
from stages.extraction.sources.packed import FrameFiles, frame_locations

SOURCE_STEP_VERSION = 1
EXTRACT_STEP = "extract"
EXTRACT_STEP_VERSION = 1

_SOURCE_DETAIL = {
    SampleStatus.PATH_ESCAPE: "path escapes the dataset root; not read",
    SampleStatus.MISSING_FILE: "file not found",
    SampleStatus.DECODE_ERROR: "could not be read while listing the dataset",
}


# -- source groups ---------------------------------------------------------------------------
def source_step(manifest: Manifest) -> Step:
    """``sources/<dataset>/<manifest key>``: the manifest's key is the step's (it covers every file read)."""
    spec = StepSpec("source", SOURCE_STEP_VERSION, {"layout": manifest.source, "options": manifest.options})
    return Step("source", spec, (), "sources", (manifest.dataset,), key=manifest.key)


def write_source(store: FeatureStore, manifest: Manifest) -> tuple[StepGroup, str]:
    """Store the manifest as ``sources/<dataset>/<key>``; returns (group, "skipped" | "new")."""

    def table() -> StepOutput:
        arrays = {
            "path": np.array(manifest.paths, dtype=str),
            "status": np.asarray(manifest.status, dtype=np.int8),
            "status_detail": np.array(
                [
                    (manifest.details[i] if manifest.details else "") or _SOURCE_DETAIL.get(SampleStatus(s), "")
                    for i, s in enumerate(manifest.status)
                ],
                dtype=str,
            ),
            **manifest.labels,
        }
        meta = {
            "dataset": manifest.dataset,
            "root_at_creation": str(manifest.root),  # informational only: never part of a key
            "au_names": manifest.au_annotated,  # the `au` columns: the FACS AUs this dataset codes
            "au_annotated": manifest.au_annotated,
            "au_other_names": manifest.au_other,  # the `au_other` columns: codes outside FACS
            "expressions": list(EXPRESSIONS),
            "va_names": list(VA_NAMES),
        }
        return StepOutput(arrays, meta)

    return store.run_step(source_step(manifest), table)


# -- feature groups --------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceCrop:
    """Preprocessing option: crop each image to the face box found by ``mediapipe-face`` (its
    feature group is an input of the step), as a square ``scale`` × the box's longer side."""

    scale: float
    faces_key: str
    faces_path: str

    def spec(self) -> dict[str, Any]:
        return {"detector": "mediapipe-face", "scale": self.scale}


def feature_step(encoder: Encoder, source_key: str, dataset: str, face_crop: FaceCrop | None = None) -> Step:
    """``features/<dataset>/<encoder>/<key>``: the encoder's spec (weights, preprocessing, outputs)
    over the source, and the face boxes' group when images are cropped to them."""
    params = encoder.spec_params()
    if face_crop is not None:
        params = {**params, "face_crop": face_crop.spec()}
    inputs = (source_key, *([face_crop.faces_key] if face_crop else []))
    return Step(
        "features", StepSpec(EXTRACT_STEP, EXTRACT_STEP_VERSION, params), inputs, "features", (dataset, encoder.name)
    )


def feature_arrays(encoder: Encoder) -> dict[str, ArraySpec]:
    dtypes = encoder.output_dtypes()
    arrays = {name: ArraySpec(shape, dtypes[name], np.nan) for name, shape in encoder.output_shapes().items()}
    arrays["status"] = ArraySpec((), np.int8, 0)
    arrays["status_detail"] = ArraySpec((), str, "")
    return arrays


def feature_meta(
    dataset: str,
    encoder: Encoder,
    source_path: str,
    face_crop: FaceCrop | None = None,
    encoder_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "encoder": encoder.name,
        # how to rebuild the encoder (`affectflow predict`); the key covers what they change
        "encoder_id": encoder.created_as or encoder.name,
        "encoder_options": encoder_options or {},
        "source_path": source_path,
        **encoder.output_meta(),
        **({"face_crop": {"scale": face_crop.scale, "faces_path": face_crop.faces_path}} if face_crop else {}),
    }


# -- one chunk -------------------------------------------------------------------------------
def record_batch(
    batch: EncodedBatch, rows: list[int], outputs: dict[str, np.ndarray], status: np.ndarray, detail
) -> None:
    """Put an encoded batch's values at ``rows`` (in the outputs' dtypes) and take the encoder's
    own verdict (e.g. no face found) for the frames it did not encode."""
    ok = batch.status == SampleStatus.OK
    for name, values in batch.outputs.items():
        outputs[name][np.asarray(rows)[ok]] = values[ok].astype(outputs[name].dtype)
    for j in np.flatnonzero(~ok):
        status[rows[j]], detail[rows[j]] = batch.status[j], batch.detail[j]


@dataclass
class ChunkReport:
    chunk: int
    samples: int
    ok: int
    seconds: float
    failures: list[tuple[int, str, str, str]] = field(default_factory=list)  # row, path, status, detail

    def to_json(self) -> dict[str, Any]:
        return self.__dict__


@functools.lru_cache(maxsize=8)
def _open_store(url: str, storage_options_json: str) -> FeatureStore:
    return FeatureStore(url, json.loads(storage_options_json))


def decode_threads(requested: int | None, encoder: Encoder) -> int:
    """Decode threads per chunk; ``None`` chooses by where the model runs.

    On an accelerator, up to 8 threads keep it fed. On the CPU, the cores torch's threads leave
    free, so none on a machine torch fills: there decoding runs on the task thread between batches.
    Decoding is cheap beside the model (0.4 ms of CPU per 224² JPEG against ~26 ms for
    EfficientNet-Lite0), but a decode thread that preempts one of torch's OpenMP threads leaves the
    other spinning at the team's barrier: on 2 cores, 2 decode threads cost the flow ~15 % of
    its images per second and ~20 % more user CPU per image (bench/extract.py, ``decode_workers``).
    """
    if requested is not None:
        return requested
    import torch

    device = getattr(encoder, "device", None)
    cores = len(os.sched_getaffinity(0))
    if device is not None and torch.device(device).type != "cpu":
        return min(8, cores)
    return max(0, cores - torch.get_num_threads())


def _prefetched(pool: ThreadPoolExecutor, fn, items: list, window: int) -> Iterator:
    """``map(fn, items)`` in order, keeping ``window`` decodes in flight ahead of the consumer."""
    it = iter(items)
    pending = deque(pool.submit(fn, item) for item in islice(it, window))
    while pending:
        future = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield future.result()


def _background(iterator: Iterator, depth: int) -> Iterator:
    """Run a sequential producer (a video decoder) on a thread, ``depth`` items ahead."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in iterator:
                items.put(item)
        except BaseException as err:  # handed to the consumer, raised there
            items.put(err)
        items.put(done)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _video_frames(
    root: Path, rel: str, frames: np.ndarray, rows: list[int], pre, face_of
) -> Iterator[tuple[int, Decoded]]:
    """(row, Decoded) for ``rows`` of one video, in order; a video that fails mid-way marks the rest."""
    from stages.extraction.sources.videos import probe_cached

    row_of = {int(frames[r]): r for r in rows}
    seen = set()
    try:
        info = probe_cached(root, rel)
        if not info.has_video:
            for r in rows:
                yield r, Decoded(None, SampleStatus.NO_VIDEO, "an audio-only recording has no picture")
            return
        timestamps = info.timestamps
        for index, image in read_frames(root / rel, timestamps, sorted(row_of), max_side=None):
            seen.add(row_of[index])
            yield row_of[index], preprocess_array(image, pre, face_of(row_of[index]))
    except (MediaError, OSError) as err:
        for r in rows:
            if r not in seen:
                yield r, Decoded(None, SampleStatus.DECODE_ERROR, str(err)[:200])


def _segments(rows: list[int], paths: list[str], frames: np.ndarray | None) -> list[tuple[str | None, list[int]]]:
    """Consecutive rows of one video form a segment; image rows form segments of their own kind."""
    out: list[tuple[str | None, list[int]]] = []
    for r in rows:
        video = paths[r] if frames is not None and is_video(paths[r]) else None
        if out and out[-1][0] == video:
            out[-1][1].append(r)
        else:
            out.append((video, [r]))
    return out


def extract_chunk(
    store_url: str,
    storage_options: dict[str, Any],
    feature_path: str,
    dataset_root: str,
    encoder_name: str,
    encoder_options: dict[str, Any],
    chunk: int,
    batch_size: int = 32,
    decode_workers: int | None = None,
    device: str | None = None,
) -> ChunkReport:
    """Decode, encode and write chunk ``chunk`` of the group at ``feature_path``; mark it done."""
    t0 = time.perf_counter()
    store = _open_store(store_url, json.dumps(storage_options, sort_keys=True))
    group = store.open_step(feature_path)
    source = store.open_step(group.meta["source_path"])
    start, stop = group.chunk_bounds(chunk)
    n = stop - start
    chunk_rows = slice(start, stop)
    src = GroupReader(source)
    names = set(src.names())
    paths = [str(p) for p in src.numpy("path", chunk_rows)]
    status = src.numpy("status", chunk_rows).astype(np.int8)
    detail = src.numpy("status_detail", chunk_rows).astype(object)
    crops = src.numpy("crop", chunk_rows)
    # video rows carry their frame index and timestamp (frame folders may have neither)
    has_frames = {"frame", "timestamp"} <= names
    frames = src.numpy("frame", chunk_rows) if has_frames else None
    timestamps = src.numpy("timestamp", chunk_rows) if has_frames else None
    packed = frame_locations(src, chunk_rows)  # rows packed in one file (HDF5, FER2013's CSV)
    face_boxes, face_scale = None, None
    if "face_crop" in group.meta:
        faces = GroupReader.open(store, group.meta["face_crop"]["faces_path"])
        face_boxes, face_scale = faces.numpy("box", chunk_rows), float(group.meta["face_crop"]["scale"])
        no_face = (status == SampleStatus.OK) & (faces.numpy("status", chunk_rows) != SampleStatus.OK)
        status[no_face] = SampleStatus.NO_FACE
        detail[no_face] = "no face box to crop (mediapipe-face found none)"
    encoder = loaded_encoder(encoder_name, encoder_options, device)
    dtypes = encoder.output_dtypes()
    outputs = {k: np.full((n, *s), np.nan, dtypes[k]) for k, s in encoder.output_shapes().items()}
    root = Path(dataset_root)

    def record(rows: list[int], batch: EncodedBatch) -> None:
        record_batch(batch, rows, outputs, status, detail)

    def face_of(i: int):
        return None if face_boxes is None else (tuple(float(v) for v in face_boxes[i]), face_scale)

    todo = [i for i in range(n) if status[i] == SampleStatus.OK]
    decode_workers = decode_threads(decode_workers, encoder)
    inline = decode_workers <= 0  # decode on this thread: a one-thread worker stays on one core
    if encoder.modality == "audio":
        for video, rows in _segments(todo, paths, frames):
            if video is None:
                for r in rows:
                    status[r], detail[r] = SampleStatus.NOT_A_VIDEO, "audio encoders read video files"
                continue
            record(rows, encoder.encode_audio(root / video, timestamps[rows]))
    else:
        with ThreadPoolExecutor(max(1, decode_workers)) as pool, FrameFiles() as packed_files:
            for video, rows in _segments(todo, paths, frames):
                if video is None:

                    def decode(i: int):
                        if packed is not None:
                            return i, preprocess_array(
                                packed_files.read(root / paths[i], int(packed[i])), encoder.preprocess, face_of(i)
                            )
                        crop = None if np.isnan(crops[i]).any() else tuple(float(v) for v in crops[i])
                        return i, decode_image(root / paths[i], encoder.preprocess, crop, face=face_of(i))

                    decoded = map(decode, rows) if inline else _prefetched(pool, decode, rows, window=2 * batch_size)
                else:
                    decoded = _video_frames(root, video, frames, rows, encoder.preprocess, face_of)
                    decoded = decoded if inline else _background(decoded, depth=2 * batch_size)
                # one stream per video segment: tracking encoders (MediaPipe VIDEO mode) keep state
                with encoder.stream(video is not None) as encode:
                    pending: list[int] = []
                    pixels: list[np.ndarray] = []
                    for i, item in decoded:
                        if item.status != SampleStatus.OK:
                            status[i], detail[i] = item.status, item.detail
                            continue
                        pending.append(i)
                        pixels.append(item.pixels)
                        if len(pending) == batch_size:
                            record(pending, encode(pixels, None if video is None else timestamps[pending]))
                            pending, pixels = [], []
                    if pending:
                        record(pending, encode(pixels, None if video is None else timestamps[pending]))

    for name, values in outputs.items():
        group.write(name, values, start)
    group.write("status", status, start)
    group.write("status_detail", detail.astype(str), start)
    group.mark_chunk_done(chunk)
    failures = [
        (start + i, paths[i], SampleStatus(int(status[i])).label, str(detail[i]))
        for i in range(n)
        if status[i] != SampleStatus.OK
    ]
    return ChunkReport(chunk, n, int((status == SampleStatus.OK).sum()), time.perf_counter() - t0, failures)


def failure_counts(reports: list[ChunkReport]) -> dict[str, int]:
    return dict(Counter(f[2] for r in reports for f in r.failures))


def encoder_of_group(features_meta: dict[str, Any]) -> Encoder:
    """The encoder that wrote a feature group, checked against the group's spec (same weights,
    preprocessing and outputs), so new images are encoded exactly as the cached ones were."""
    from featurestore.keys import canonical_json
    from stages.extraction.encoders import create_encoder

    name = features_meta.get("encoder_id", features_meta["encoder"])  # groups written before it: a registered name
    encoder = create_encoder(name, **features_meta.get("encoder_options", {}))
    stored = {k: v for k, v in features_meta["spec"]["params"].items() if k != "face_crop"}
    if canonical_json(encoder.spec_params()) != canonical_json(stored):
        raise ValueError(
            f"encoder {features_meta['encoder']!r} here does not match the one that wrote the features "
            "(different weights, preprocessing or options)"
        )
    return encoder


@dataclass(frozen=True)
class EncodedFiles:
    """Rows of encoded files: ``outputs`` (NaN where not ok), int8 ``status`` and ``detail`` per
    row, which ``file`` and ``face`` (a still's faces left to right, a video's by track across its
    frames: stages/extraction/face_tracks.py; −1 for a whole image or frame) each is, and its
    ``time`` in the video (s; NaN for a still)."""

    outputs: dict[str, np.ndarray]
    status: np.ndarray
    detail: list[str]
    file: np.ndarray
    face: np.ndarray
    time: np.ndarray


def encode_files(
    encoder: Encoder,
    paths: list[Path],
    face_scale: float | None = None,
    whole_within: tuple[float, float] | None = None,
    fps: float | None = 2.0,
    batch_size: int = 32,
) -> EncodedFiles:
    """Encode image and video files as extraction does (decode, the face crop, the stored dtype);
    a video at ``fps`` (the frame on screen at each k / fps; None: every frame). Without
    ``face_scale``: one row per image or frame, whole. With it: one row per face MediaPipe finds in
    it, cropped to its box × ``face_scale`` (none: one ``no_face`` row), except one face whose frame
    (the shorter side) ÷ face box lies in ``whole_within``: framed as wanted already, taken whole."""
    from stages.extraction.encoders import create_encoder

    finder = create_encoder("mediapipe-face").load() if face_scale is not None else None
    rows: list[tuple[int, int, float]] = []  # (file, face, time)
    status: list[int] = []
    detail: list[str] = []
    encoded: list[tuple[list[int], EncodedBatch]] = []
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if pending:
            encoded.append(([r for r, _ in pending], encoder.encode_batch([p for _, p in pending])))
            pending.clear()

    def add(file: int, face: int, time: float, decoded: Decoded) -> None:
        rows.append((file, face, time))
        status.append(int(decoded.status))
        detail.append(decoded.detail)
        if decoded.status == SampleStatus.OK:
            pending.append((len(rows) - 1, decoded.pixels))
            if len(pending) == batch_size:
                flush()

    def frame(file: int, time: float, crop, seen, tracks: FaceTracks | None = None) -> None:
        """One image or video frame: ``crop(face)`` decodes it for the encoder, ``seen()`` as the
        face finder sees it; ``tracks``: a video's faces so far (its faces are numbered by track,
        a still's left to right)."""
        if finder is None:
            add(file, -1, time, crop(None))
            return
        looked = seen()
        boxes = finder.face_boxes(looked.pixels) if looked.status == SampleStatus.OK else []
        if not boxes:
            none = Decoded(None, SampleStatus.NO_FACE, "no face found to frame as the head's training frames")
            add(file, -1, time, looked if looked.status != SampleStatus.OK else none)
            return
        height, width = looked.pixels.shape[:2]
        framed = [min(width, height) / max(w * width, h * height) for _, _, w, h in boxes]
        index = tracks.assign(boxes, time) if tracks is not None else list(range(len(boxes)))
        if len(boxes) == 1 and whole_within is not None and whole_within[0] <= framed[0] <= whole_within[1]:
            add(file, index[0], time, crop(None))
            return
        for j, box in enumerate(boxes):
            add(file, index[j], time, crop((box, face_scale)))

    looking = finder.preprocess if finder is not None else None
    for i, path in enumerate(map(Path, paths)):
        if not is_video(path):
            frame(
                i,
                float("nan"),
                lambda face, path=path: decode_image(path, encoder.preprocess, face=face),
                lambda path=path: decode_image(path, looking),
            )
            continue
        try:
            info = probe_video(path)
            if not info.has_video:
                raise MediaError(f"{path}: no picture (an audio-only recording)")
            tracks = FaceTracks()
            for index, rgb in read_frames(path, info.timestamps, sample_frames(info.timestamps, fps)):
                frame(
                    i,
                    float(info.timestamps[index]),
                    lambda face, rgb=rgb: preprocess_array(rgb, encoder.preprocess, face),
                    lambda rgb=rgb: preprocess_array(rgb, looking),
                    tracks,
                )
        except MediaError as err:
            add(i, -1, float("nan"), Decoded(None, SampleStatus.DECODE_ERROR, str(err)[:200]))
    flush()
    n = len(rows)
    dtypes = encoder.output_dtypes()
    outputs = {k: np.full((n, *s), np.nan, dtypes[k]) for k, s in encoder.output_shapes().items()}
    status_array = np.asarray(status, np.int8)
    for batch_rows, batch in encoded:
        record_batch(batch, batch_rows, outputs, status_array, detail)
    file, face, time = (np.asarray([r[k] for r in rows]).reshape(n) for k in range(3))
    return EncodedFiles(outputs, status_array, detail, file.astype(np.int64), face.astype(np.int64), time.astype(float))
