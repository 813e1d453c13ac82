"""``affectflow predict``: new images → the trained head's answer, the archetype that decided it and
that archetype's nearest training examples.

Images are encoded by the very encoder that wrote the head's training features (checked against
the feature group's spec) and cast to the stored dtype, and framed as the training frames were
(stages/training/framing.py): every face MediaPipe finds is cropped to its box × the training
frames' scale, one result per face (a photo's left to right, a video's by track across its frames);
a photo without a face is ``no_face``. A head
whose training frames were whole images (no faces in them) sees whole images.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, SampleStatus
from heads.report import branch_names
from heads.tasks import get_task
from stages.extraction.extract import encode_files, encoder_of_group
from stages.training.framing import framing_of
from stages.training.head_reports import read_archetypes
from stages.training.head_steps import load_head
from stages.training.thumbnails import dataset_root


def predict_images(
    store: FeatureStore,
    head_path: str,
    images: list[Path],
    n_nearest: int = 3,
    raw: bool = False,
    framing: str = "auto",
    fps: float | None = 2.0,
) -> list[dict[str, Any]]:
    """One result per image: status, the answer, and (archetype heads) per branch the deciding
    archetype with its label, usage and nearest training examples (absolute paths). A class head's
    probabilities are calibrated by the temperature fitted on its validation split
    (heads/calibration.py; ``raw``: the unscaled softmax); the argmax is the same either way.
    ``framing``: auto (the training frames'), whole, or a face-box scale (stages/training/framing.py).
    A video gives a row per face per frame sampled at ``fps`` (None: every frame), with its time."""
    head = GroupReader.open(store, head_path)
    model, config = load_head(store, head_path)
    features = GroupReader.open(store, head.meta["features_path"])
    source = GroupReader.open(store, features.meta["source_path"])
    encoder = encoder_of_group(features.meta)
    framed = framing_of(store, features, framing)
    encoded = encode_files(encoder, images, framed.scale, framed.seen, fps)
    status, detail = encoded.status, encoded.detail
    x = torch.from_numpy(encoded.outputs[config["array"]].astype(np.float32))
    task, labels = get_task(config["task"]), config["labels"]
    archetypes = read_archetypes(store, head_path) if model.uses_archetypes else None
    root = dataset_root(source)
    results = []
    with torch.no_grad():
        answers, index = model.predict(x)
    classes, temperature = task.classes(labels), config.get("temperature")
    calibrated = classes is not None and temperature is not None and not raw
    if calibrated:
        answers[:, classes] /= temperature
    for i, (file, face, time) in enumerate(zip(encoded.file, encoded.face, encoded.time, strict=True)):
        result: dict[str, Any] = {
            "image": str(images[file]),
            "time": None if np.isnan(time) else round(float(time), 6),
            "face": int(face) if face >= 0 else None,
            "framing": framed.how,
            "status": SampleStatus(int(status[i])).label,
        }
        if status[i] != SampleStatus.OK:
            result["detail"] = detail[i]
            results.append(result)
            continue
        result.update(task.answer(answers[i].numpy(), labels))
        if classes is not None:
            result["calibrated"] = calibrated
        if archetypes is not None:
            result["archetypes"] = []
            for j, name in enumerate(branch_names(task, labels)):
                branch = archetypes["branches"][j]
                entry = next(a for a in branch["archetypes"] if a["index"] == int(index[i, j]))
                result["archetypes"].append(
                    {
                        "branch": name,
                        "archetype": entry["index"],
                        "says": entry["label"],
                        "usage": entry["usage"],
                        "nearest": [str(root / n["path"]) for n in entry["nearest"][:n_nearest]],
                    }
                )
        results.append(result)
    return results


def timeline_png(results: list[dict[str, Any]]) -> bytes | None:
    """The class probabilities over time of each video's faces (one panel per video and face), or
    None when no result is a video frame with class scores."""
    from matplotlib.figure import Figure  # the object API: no global pyplot state

    tracks: dict[tuple[str, int | None], list[dict]] = {}
    for r in results:
        if r["time"] is not None and "scores" in r:
            tracks.setdefault((r["image"], r["face"]), []).append(r)
    if not tracks:
        return None
    fig = Figure(figsize=(9, 2.6 * len(tracks)))
    for n, ((video, face), rows) in enumerate(tracks.items()):
        ax = fig.add_subplot(len(tracks), 1, n + 1)
        times = [r["time"] for r in rows]
        for name in rows[0]["scores"]:
            ax.plot(times, [r["scores"][name] for r in rows], label=name, lw=1.2)
        ax.set(ylim=(0, 1), xlabel="time (s)", ylabel="probability")
        ax.set_title(Path(video).name + ("" if face is None else f", face {face}"), fontsize=9)
        ax.legend(loc="upper right", fontsize=7, ncol=4)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def flat_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results one flat record each (``--csv``, the Python API's DataFrame): image, time, face,
    status, the answer's fields, one ``p_<name>`` per class or AU probability, and per archetype
    branch the deciding archetype."""
    rows = []
    for r in results:
        row = {k: r.get(k) for k in ("image", "time", "face", "status", "detail", "framing", "calibrated")}
        row.update({k: r[k] for k in ("expression", "valence", "arousal") if k in r})
        row.update({f"p_{name}": p for name, p in r.get("scores", {}).items()})
        row.update({f"p_{name}": p for name, p in r.get("aus", {}).items()})
        row.update({f"archetype_{a['branch']}": a["archetype"] for a in r.get("archetypes", [])})
        rows.append(row)
    return rows


def write_rows_csv(path: str | Path, results: list[dict[str, Any]]) -> None:
    """The results' flat records (:func:`flat_rows`) as CSV, every field any row has as a column."""
    import csv

    rows = flat_rows(results)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(rows)
