"""The report step of a trained head: reads its checkpoint and data, writes the files that the pure
builders make beside the checkpoint — an archetype head's (``heads/report.py``: usage, thumbnail
sheets, map, annotation audit) or a graph head's (``heads/graph_report.py``: graphs, FACS prototypes,
per-sample sub-graphs, label audit)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader
from heads.calibration import calibration_markdown
from heads.graph_report import (
    audit_csv,
    audit_markdown,
    graph_files,
    label_audit,
    sample_subgraph,
    samples_markdown,
)
from heads.registry import create_head
from heads.report import analyse, report_files, sheet_rows
from heads.tasks import get_task
from heads.trainer import TrainConfig, evaluate, fit, predict, seed_everything
from stages.extraction.sources.labels import expression_prototypes
from stages.training.head_data import load_task_data
from stages.training.head_steps import feature_paths, head_data, load_head
from stages.training.thumbnails import placeholder, thumbnails, to_image


def write_report(
    store: FeatureStore,
    head_path: str,
    n_nearest: int = 8,
    thumb_size: int = 64,
    prototypes: str | None = None,
    samples: list[str] | None = None,
) -> dict[str, Any]:
    """Build every report file of an archetype, graph or attention-map head beside its checkpoint
    (``report.md`` first among them, ending in the head's calibration where it has classes);
    returns the summary. ``prototypes`` and ``samples``: see :func:`write_graph_report`."""
    model, config = load_head(store, head_path)  # first: it registers a plugin head's task too
    if model.graphs():
        summary = write_graph_report(store, head_path, prototypes, samples, model)
    elif model.draws_maps:
        summary = write_map_report(store, head_path, model)
    else:
        summary = write_archetype_report(store, head_path, n_nearest, thumb_size, model, config)
    metrics = json.loads(store.get_file(head_path, "metrics.json"))
    if "calibration" in metrics and "val" in metrics["calibration"]:
        report = store.get_file(head_path, "report.md").decode().rstrip("\n")
        store.put_file(head_path, "report.md", f"{report}\n\n{calibration_markdown(metrics['calibration'])}\n".encode())
    return summary


def write_archetype_report(
    store: FeatureStore, head_path: str, n_nearest: int, thumb_size: int, model, config: dict[str, Any]
) -> dict[str, Any]:
    """An archetype head's report: its archetypes' nearest samples, thumbnails, map and audit."""
    params, source, data = head_data(store, head_path)
    if not model.uses_archetypes:
        raise ValueError(
            f"{head_path} is a {config['head']} head: "
            "reports are for archetype (aura), graph (causal) and attention-map (faud) heads"
        )
    if data.dataset is not None:  # its thumbnails, nearest samples and audit read one dataset's source
        raise ValueError(f"{head_path} trained on {' and '.join(data.datasets)}: archetype reports are per dataset")
    task = get_task(params["task"])
    branches = analyse(model, data, task, n_nearest)
    rows = sheet_rows(branches)  # decoded once: AU branches share most of their nearest samples
    pictures = {row: to_image(pixels, thumb_size) for row, pixels in thumbnails(source, rows, thumb_size).items()}
    files, summary = report_files(
        head_path,
        model,
        data,
        task,
        source.numpy("path"),
        pictures,
        n_nearest,
        thumb_size,
        seed=params["train"]["seed"],
        branches=branches,
    )
    for name, payload in files.items():
        store.put_file(head_path, name, payload)
    return summary


def read_archetypes(store: FeatureStore, head_path: str) -> dict[str, Any]:
    """The report's archetypes.json, written first if the head has no report yet."""
    if not store.has_file(head_path, "archetypes.json"):
        write_report(store, head_path)
    return json.loads(store.get_file(head_path, "archetypes.json"))


def write_graph_report(
    store: FeatureStore,
    head_path: str,
    prototypes: str | None = None,
    samples: list[str] | None = None,
    model: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """A graph head's report: its global graph files again (with ``prototypes``, a user's AU-set
    table with the packaged one's columns, instead of the EMFACS table), ``samples.json`` with the
    sub-graphs of chosen samples (``samples``: source rows, ``DATASET:ROW`` for a head trained on
    several datasets; by default each class's most confident correctly predicted test sample), and
    the label audit of every labelled sample (``audit.csv``); ``report.md`` puts them together.
    ``model``: the head already loaded (write_report's), else it is loaded here."""
    model = model if model is not None else load_head(store, head_path)[0]
    params, _, data = head_data(store, head_path)
    task = get_task(params["task"])
    names = data.label_names
    m = task.n_aus(names)
    aus, classes = names[:m], names[m:]
    meta = GroupReader.open(store, head_path).meta
    datasets = data.datasets or [meta["dataset"]]
    sources = [GroupReader.open(store, p) for p in meta.get("source_paths", [meta["source_path"]])]
    paths = [source.numpy("path") for source in sources]
    evidence, where = {}, []  # every split's rows explained, in one order
    for split in ("train", "val", "test"):
        parts = [model.explain(chunk) for chunk in data.x[split].split(1024)]
        evidence[split] = {k: np.concatenate([p[k].numpy() for p in parts]) for k in parts[0] if k != "bias"}
        owner = data.dataset[split] if data.dataset else np.zeros(data.rows[split].size, int)
        where += [(split, k, int(d), int(r)) for k, (d, r) in enumerate(zip(owner, data.rows[split]))]

    def located(split: str, k: int, d: int, row: int) -> dict[str, Any]:
        return {"dataset": datasets[d], "split": split, "row": row, "path": str(paths[d][row])}

    def one(split: str, k: int) -> dict[str, np.ndarray]:
        return {name: values[k] for name, values in evidence[split].items()}

    files = graph_files(
        {k: v.numpy() for k, v in model.graphs().items()},
        aus,
        classes,
        data.y["train"].numpy()[:, :m],
        expression_prototypes(prototypes),
    )
    chosen = _chosen_samples(samples, where, datasets) if samples else _gallery(where, evidence, data, m)
    subgraphs = [located(*w) | sample_subgraph(one(w[0], w[1]), aus, classes) for w in chosen]
    flagged, checked = [], 0
    for split in ("train", "val", "test"):
        labels = data.y[split].numpy()[:, m]
        checked += int((labels >= 0).sum())
        mine = [w for w in where if w[0] == split]
        for f in label_audit(evidence[split]["contribution"], evidence[split]["expression"], labels, aus, classes):
            flagged.append(located(*mine[f.pop("index")]) | f)
    flagged.sort(key=lambda f: -f["au_gap"])
    files["samples.json"] = json.dumps(subgraphs, indent=1).encode()
    files["audit.csv"] = audit_csv(flagged)
    report = [files["graph.md"].decode(), *samples_markdown(subgraphs), *audit_markdown(flagged, checked)]
    files["report.md"] = "\n".join(report).encode()
    for name, payload in files.items():
        store.put_file(head_path, name, payload)
    return {"path": head_path, "samples": subgraphs, "audit": flagged, "checked": checked}


def _gallery(where: list[tuple], evidence: dict, data, m: int) -> list[tuple]:
    """Per class, the test sample predicted as it most confidently among those labelled so."""
    test = [w for w in where if w[0] == "test"]
    probabilities = evidence["test"]["expression"]
    labels = data.y["test"].numpy()[:, m]
    best: dict[int, tuple[float, tuple]] = {}
    for k, w in enumerate(test):
        c = int(probabilities[k].argmax())
        if labels[k] == c and probabilities[k, c] > best.get(c, (-1.0, None))[0]:
            best[c] = (float(probabilities[k, c]), w)
    return [best[c][1] for c in sorted(best)]


def _chosen_samples(samples: list[str], where: list[tuple], datasets: list[str]) -> list[tuple]:
    """``ROW`` or ``DATASET:ROW`` (source rows) → their place among the head's explained rows."""
    index = {(datasets[d], row): (split, k, d, row) for split, k, d, row in where}
    chosen = []
    for sample in samples:
        dataset, _, row = str(sample).rpartition(":")
        key = (dataset or datasets[0], int(row))
        if key not in index:
            raise ValueError(f"sample {sample}: not a labelled, usable row of {' or '.join(datasets)} for this head")
        chosen.append(index[key])
    return chosen


def _landmarks(store: FeatureStore, source_path: str, dataset: str) -> np.ndarray | None:
    """Face-mesh landmarks (rows, 478, 3) of a source, from its latest complete face-landmark group."""
    group = store.latest(
        f"features/{dataset}",
        lambda g: g.meta.get("source_path") == source_path and "landmarks" in GroupReader(g).names(),
    )
    return GroupReader(group).numpy("landmarks").astype(np.float32) if group else None


def _picture_sizes(source: GroupReader, rows: np.ndarray) -> np.ndarray:
    """(width, height) of what each row's encoders saw: its crop box, else its image file; NaN for
    video frames and unreadable files (left out of the measure)."""
    from PIL import Image

    from stages.training.thumbnails import dataset_root

    names = set(source.names())
    sizes = np.full((rows.size, 2), np.nan)
    if "frame" in names:
        return sizes
    base, paths = dataset_root(source), source.numpy("path")
    crops = source.numpy("crop") if "crop" in names else np.full((len(paths), 4), np.nan)
    for k, row in enumerate(rows):
        if np.isfinite(crops[row]).all():
            sizes[k] = crops[row][2:4]
            continue
        try:
            with Image.open(base / str(paths[row])) as image:
                sizes[k] = image.size
        except OSError:
            pass
    return sizes


def write_map_report(
    store: FeatureStore, head_path: str, model: torch.nn.Module, n_faces: int = 8, size: int = 96
) -> dict[str, Any]:
    """A map head's report (FAUD-CLIP): ``per_au.json`` and its table, each AU's test F1 beside its
    prevalence and a linear probe's F1 on the same images (:func:`probe_f1`), so an AU the head
    never detects shows; ``attention.png``, each AU's attention map over test faces (per AU, its most
    confident detected test face), and ``locality.json``: how much of each AU's map falls on the
    face region it acts in (heads/attention_report.py), measured on every test face with face-mesh
    landmarks in the store (MediaPipe's group of the same source) and a plain image file (the
    landmarks are mapped into the encoder's centred square crop). A variant without maps
    (``attention=none``) gets the table and says why it has no maps."""
    from PIL import Image

    from heads.attention_report import (
        landmark_cells,
        locality,
        locality_markdown,
        map_sheet,
        per_au_markdown,
        per_au_rows,
    )
    from stages.training.face_regions import AU_REGIONS, into_centre_crop, region_points

    params, source, data = head_data(store, head_path)
    names = data.label_names
    x, rows = data.x["test"], data.rows["test"]
    logits = predict(model, x)
    probe_path, probe = probe_f1(store, head_path, params)
    per_au = per_au_rows(names, (logits > 0).astype(int), data.y["test"].numpy(), data.y["train"].numpy(), probe)
    files = {"per_au.json": json.dumps({"probe": probe_path, "aus": per_au}, indent=1).encode()}
    report = [f"# FAUD-CLIP head `{head_path}`", *per_au_markdown(per_au, probe_path)]
    measured: list[dict[str, Any]] = []
    n_measured = 0
    if not model.has_maps():
        report += ["", f"`attention={params['options'].get('attention', 'none')}` reads the tokens' mean: no maps."]
        files["locality.json"] = json.dumps({"faces": 0, "aus": []}, indent=1).encode()
        files["report.md"] = "\n".join(report).encode()
        for name, payload in files.items():
            store.put_file(head_path, name, payload)
        return {"path": head_path, "per_au": per_au, "locality": [], "faces": 0}
    maps = torch.cat([model.attention_maps(chunk) for chunk in x.split(256)]).numpy()
    probs = 1 / (1 + np.exp(-logits))
    chosen = list(dict.fromkeys(int(probs[:, j].argmax()) for j in range(len(names))))[:n_faces]
    pictures = thumbnails(source, [int(rows[k]) for k in chosen], size)
    captions = []
    for k in chosen:
        found = [names[j] for j in np.flatnonzero(probs[k] >= 0.5)]
        captions.append(
            f"row {int(rows[k])}\n" + " ".join(found[:4]) + ("\n" + " ".join(found[4:8]) if found[4:] else "")
        )
    faces = [pictures[int(rows[k])] for k in chosen]
    faces = [Image.fromarray(p) if p is not None else Image.fromarray(placeholder(size)) for p in faces]
    files["attention.png"] = map_sheet(maps[chosen], faces, names, captions, size)
    landmarks = _landmarks(store, source.path, GroupReader.open(store, head_path).meta["dataset"])
    if landmarks is not None:
        sizes = _picture_sizes(source, rows)
        ok = np.isfinite(sizes).all(1) & np.isfinite(landmarks[rows]).all((1, 2))
        if ok.any():
            points = region_points(landmarks[rows[ok]])
            grid = maps.shape[-2:]
            regions = {
                name: landmark_cells(into_centre_crop(p, sizes[ok, 0:1], sizes[ok, 1:2]), grid)
                for name, p in points.items()
            }
            measured, n_measured = locality(maps[ok], regions, AU_REGIONS, names), int(ok.sum())
    files["locality.json"] = json.dumps({"faces": n_measured, "aus": measured}, indent=1).encode()
    report += [
        "",
        "Each AU's attention on the token grid over the test faces it is most confident about "
        "(brighter: more attention).",
        "",
        "![attention](attention.png)",
        *locality_markdown(measured, n_measured),
    ]
    files["report.md"] = "\n".join(report).encode()
    for name, payload in files.items():
        store.put_file(head_path, name, payload)
    return {"path": head_path, "per_au": per_au, "locality": measured, "faces": n_measured}


def probe_f1(store: FeatureStore, head_path: str, params: dict[str, Any]) -> tuple[str | None, dict[str, float] | None]:
    """(what the probe read, its per-AU test F1): a linear probe on the same feature group's pooled
    ``global`` array, on the head's own task, protocol, fold and seed (so the head's splits), trained
    here by the one trainer at the fast preset and not stored (a report adds no head to the store);
    (None, None) when the group has no pooled array."""
    meta = GroupReader.open(store, head_path).meta
    paths = feature_paths(meta.get("features_paths", meta["features_path"]))
    if not all("global" in GroupReader.open(store, p).names() for p in paths):
        return None, None
    seed = params["train"]["seed"]
    task = params["task"]
    data = load_task_data(
        store, paths, task, "global", params["expressions"], params["test_fold"], seed, params.get("folds")
    )
    seed_everything(seed)
    probe = create_head("linear", task, data.x["train"].shape[1], data.n_outputs, 0, tuple(data.label_names))
    config = TrainConfig(seed=seed, progress=False)
    groups = data.dataset["train"] if data.dataset else None
    fit(probe, task, (data.x["train"], data.y["train"]), (data.x["val"], data.y["val"]), data.n_outputs, config, groups)
    scores = evaluate(task, predict(probe, data.x["test"]), data.y["test"].numpy(), data.n_outputs, data.label_names)
    return f"linear on {', '.join(paths)} [global]", {k[3:]: v for k, v in scores.items() if k.startswith("f1_")}
