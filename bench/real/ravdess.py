"""Build a `videofolder` layout of RAVDESS's speech recordings (audio only) from a public mirror.

Source: the Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone & Russo 2018,
PLoS ONE 13(5): e0196391; zenodo.org/record/1188976), its audio-only speech part (1,440 files:
24 actors × 60 trials, 8 emotions × 2 intensities, two sentences), as mirrored in
github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only. Licence: CC BY-NC-SA 4.0. Not
committed: this script writes ``<out>/<Actor_NN>/actorNN.wav`` and its ``actorNN.va.csv``.

LaScA learns which way valence or arousal moves between consecutive windows of one recording, so
each actor's 60 utterances are joined, in an order drawn with a fixed seed, into one 16 kHz
recording (a session of that speaker), and its continuous labels say, for each utterance's span,
the emotion's place on Russell's circumplex (the project's stages/extraction/sources/data/circumplex.csv;
*calm*, which that file does not place, at 320°, a choice of ours) times its intensity (normal
0.6, strong 1.0; neutral at the origin). These VA traces are derived from the categorical labels,
not rated: they say which way the acted emotion moved, which is what the pairs need. Each
utterance's category is also written per file in ``<out>/utterances.csv``.

    python bench/real/ravdess.py --mirror <the mirror's git dir or checkout> --out DIR
"""

from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from mirror import list_files, main

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

NAME = "ravdess_speech"
SOURCE = "https://zenodo.org/record/1188976 (mirror: github.com/ZenvilleErasmus/RAVDESS-emotions-speech-audio-only)"
LICENCE = "CC BY-NC-SA 4.0"
EMOTIONS = {1: "neutral", 2: "calm", 3: "happiness", 4: "sadness", 5: "anger", 6: "fear", 7: "disgust", 8: "surprise"}
INTENSITY = {1: 0.6, 2: 1.0}
CALM_DEGREES = 320.0
RATE = 16000
SEED = 0


def circumplex() -> dict[str, tuple[float, float]]:
    lines = (REPO / "stages" / "extraction" / "sources" / "data" / "circumplex.csv").read_text().splitlines()
    rows = csv.DictReader(line for line in lines if not line.startswith("#"))
    places = {r["expression"]: (float(r["valence"]), float(r["arousal"])) for r in rows}
    places["calm"] = (math.cos(math.radians(CALM_DEGREES)), math.sin(math.radians(CALM_DEGREES)))
    return places


def _decode(mirror: Path, rel: str) -> np.ndarray:
    from stages.extraction.media import load_audio

    git = next((c for c in (mirror, mirror / ".git") if (c / "objects").is_dir()), None)
    if git is None:
        samples, _ = load_audio(mirror / rel, RATE)
        return samples
    data = subprocess.run(["git", "--git-dir", str(git), "show", f"HEAD:{rel}"], check=True, capture_output=True)
    import av

    with av.open(io.BytesIO(data.stdout)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        chunks = [o.to_ndarray().reshape(-1) for f in container.decode(audio=0) for o in resampler.resample(f)]
        chunks += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def build(mirror: Path, out: Path) -> dict:
    from stages.extraction.media import write_audio

    files: dict[str, str] = {}
    for rel in list_files(mirror):
        name = Path(rel).name
        parts = name[:-4].split("-") if name.endswith(".wav") else []
        if len(parts) == 7 and parts[0] == "03" and parts[1] == "01":  # audio-only speech
            files.setdefault(name, rel)  # a file mirrored twice is read once
    if not files:
        raise ValueError(f"{mirror}: no RAVDESS speech file (03-01-*.wav) found; is this the mirror?")
    places = circumplex()
    rng = np.random.default_rng(SEED)
    by_actor: dict[int, list[str]] = {}
    for name in sorted(files):
        by_actor.setdefault(int(name[:-4].split("-")[6]), []).append(name)
    out.mkdir(parents=True, exist_ok=True)
    table, counts = [], Counter()
    for actor, names in sorted(by_actor.items()):
        folder = out / f"Actor_{actor:02d}"
        folder.mkdir(exist_ok=True)
        order = [names[i] for i in rng.permutation(len(names))]
        pieces, va_rows, t = [], ["time,valence,arousal"], 0.0
        for name in order:
            emotion, intensity = int(name.split("-")[2]), int(name.split("-")[3])
            samples = _decode(mirror, files[name])
            valence, arousal = (INTENSITY[intensity] * v for v in places[EMOTIONS[emotion]])
            end = t + samples.size / RATE
            # piecewise constant over the utterance, to 1 ms before its end (whole milliseconds, so
            # the times strictly increase)
            first, last = round(t * 1000), round(end * 1000) - 1
            va_rows += [
                f"{first / 1000:.3f},{valence:.4f},{arousal:.4f}",
                f"{last / 1000:.3f},{valence:.4f},{arousal:.4f}",
            ]
            table.append([f"Actor_{actor:02d}/actor{actor:02d}.wav", name, f"{t:.3f}", f"{end:.3f}", EMOTIONS[emotion]])
            counts[EMOTIONS[emotion]] += 1
            pieces.append(samples)
            t = end
        write_audio(folder / f"actor{actor:02d}.wav", np.concatenate(pieces), RATE)
        (folder / f"actor{actor:02d}.va.csv").write_text("\n".join(va_rows) + "\n")
    with open(out / "utterances.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["recording", "utterance", "start", "end", "emotion"])
        writer.writerows(table)
    summary = {
        "dataset": NAME,
        "source": SOURCE,
        "licence": LICENCE,
        "actors": len(by_actor),
        "utterances": len(table),
        "classes": dict(sorted(counts.items())),
        "seconds": round(sum(float(r[3]) - float(r[2]) for r in table), 1),
    }
    return summary


if __name__ == "__main__":
    main(build, __doc__.splitlines()[0])
