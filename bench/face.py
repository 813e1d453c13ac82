"""Face and voice benchmark → bench/results/face.json and its table in docs/benchmarks.md.

* face: frames/s of ``mediapipe-face`` inside the ``extract-features`` flow (video decode, VIDEO-mode
  tracking, writes) against MediaPipe alone (``detect_for_video``) on the same frames decoded
  beforehand → ``in_flow_vs_mediapipe`` (target ≥ 0.9). Each side is the best of ``--repeat`` runs,
  alternated, because single runs on a shared 2-core machine vary by ±10 %;
* voice: seconds to decode a video's audio track and compute MFCC/RMS/YIN rows at every frame
  timestamp, per minute of audio → ``audio_seconds_per_minute``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is the script's directory, so it is on sys.path
from common import SMOKE, machine, marks, prefect_server, publish

BEGIN, END = marks("face")


def mediapipe_alone(root: Path) -> tuple[int, float]:
    """Frames and seconds of MediaPipe VIDEO mode over every video's frames, decoded beforehand."""
    import mediapipe as mp

    from stages.extraction.encoders import create_encoder
    from stages.extraction.media import probe_video, read_frames

    enc = create_encoder("mediapipe-face")
    videos = sorted(root.rglob("*.mp4"))
    decoded = []
    for path in videos:
        stamps = probe_video(path).timestamps
        decoded.append(
            [
                (np.ascontiguousarray(im), int(round(stamps[i] * 1000)))
                for i, im in read_frames(path, stamps, range(stamps.size))
            ]
        )
    n, seconds = 0, 0.0
    for frames in decoded:
        landmarker = enc._create(video=True)
        t0 = time.perf_counter()
        for image, ms in frames:
            landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=image), ms)
        seconds += time.perf_counter() - t0
        n += len(frames)
        landmarker.close()
    return n, seconds


def audio_per_minute(work: Path, minutes: float) -> float:
    from stages.extraction.encoders import create_encoder
    from stages.extraction.media import load_audio, probe_video, write_video
    from stages.synthetic.face_videos import speech

    fps, rate = 25, 16000
    seconds = minutes * 60
    # calm speech (arousal 0), a sentence every 4 s, cut to the length
    samples = speech(np.zeros(int(np.ceil(seconds / 4))), 4.0, rate, 0)[0][: int(seconds * rate)]
    path = work / "audio.mp4"
    write_video(path, [np.full((64, 64, 3), 100, np.uint8)] * int(seconds * fps), fps, (samples, rate))
    stamps = probe_video(path).timestamps
    voice = create_encoder("mfcc")
    t0 = time.perf_counter()
    audio, start = load_audio(path, voice.sample_rate)
    voice.features(audio, start, stamps)
    return (time.perf_counter() - t0) / minutes


def readme_table(r: dict) -> str:
    m = r["machine"]
    return "\n".join(
        [
            BEGIN,
            f"Measured by `make bench` on {m['cpus']} CPUs ({m['processor']}, torch {m['torch']}"
            f"{', GPU ' + m['cuda'] if m['cuda'] else ', no GPU'}); {r['frames']} frames of {r['videos']} generated "
            f"videos ({r['frame_size']} px), audio: {r['audio_source']}.",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| MediaPipe alone (VIDEO mode, frames decoded beforehand) | {r['mediapipe_frames_per_s']:.1f} frames/s | |",  # noqa: E501 (one line: a table row or the layout's one-line summary)
            f"| `mediapipe-face` in the flow (decode + track + write) | {r['in_flow_frames_per_s']:.1f} frames/s | |",
            f"| `in_flow_vs_mediapipe` | {r['in_flow_vs_mediapipe']:.3f} | ≥ 0.9 |",
            f"| `audio_seconds_per_minute` (decode + MFCC/RMS/YIN at 25 fps) | {r['audio_seconds_per_minute']:.2f} s | |",  # noqa: E501 (one line: a table row or the layout's one-line summary)
            END,
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--audio-minutes", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, printed and not published (common.SMOKE)")
    args = ap.parse_args()
    if SMOKE:
        args.videos, args.seconds, args.audio_minutes, args.repeat = 1, 1.0, 0.1, 1
    work = args.work or Path(tempfile.mkdtemp(prefix="affectflow-bench-face-"))
    os.environ.setdefault("AFFECTFLOW_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.extract import DatasetConfig, EncoderConfig, extract_features
    from stages.extraction.encoders import create_encoder
    from stages.synthetic.face_generator import CANVAS
    from stages.synthetic.face_videos import write_generated_videos

    face = create_encoder("mediapipe-face").load()
    root, report = write_generated_videos(work / "videos", face.find_face, n_videos=args.videos, seconds=args.seconds)
    r: dict = {"machine": machine(), "videos": args.videos, "frame_size": CANVAS, "audio_source": report["audio"][0]}
    alone, in_flow = [], []
    with prefect_server():
        for k in range(args.repeat):
            n, seconds = mediapipe_alone(root)
            alone.append(n / seconds)
            result = extract_features(
                datasets=[DatasetConfig(layout="videofolder", root=str(root), name="bench")],
                encoders=[EncoderConfig(name="mediapipe-face")],
                store=str(work / f"store-{k}"),
            )
            in_flow.append(result["steps"][0]["images_per_s"])
    r["frames"], r["mediapipe_frames_per_s"], r["in_flow_frames_per_s"] = n, max(alone), max(in_flow)
    r["runs"] = {"mediapipe_frames_per_s": alone, "in_flow_frames_per_s": in_flow}
    r["in_flow_vs_mediapipe"] = r["in_flow_frames_per_s"] / r["mediapipe_frames_per_s"]
    r["audio_seconds_per_minute"] = audio_per_minute(work, args.audio_minutes)
    publish("face", r, readme_table(r))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
