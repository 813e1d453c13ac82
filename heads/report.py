"""The interpretability report of a trained archetype head: pure builders of its tables and figures.

For every branch (the expression codebook, valence, arousal, one per AU) it lists the kept
archetypes with their usage on the training split, what φ says of each (class and confidence, or
score), and their nearest training samples. From that it builds (``stages/training/head_reports.py`` writes
them beside the checkpoint):

* ``report.md``       archetypes per class / per score bin with usage ranges (the AURA paper's
                      Table 3 layout), every archetype with its purity and the catch-all flag,
                      the classes (AU states, VA bins) no archetype decides — an error: they can
                      never be predicted — and the annotation audit's top entries;
* ``archetypes.json`` every kept archetype: usage, label, confidence, nearest training rows;
                      ``affectflow predict`` reads its "nearest examples" from here;
* ``nearest-<branch>.png``  a thumbnail sheet: one line per archetype, its nearest samples;
* ``map.png``         a 2-D map (PCA, or UMAP when ``umap-learn`` is installed) of the training
                      features in the archetype space and the archetypes, sized by usage;
* ``audit.csv``       the annotation audit: samples whose label disagrees confidently with the
                      archetype that decides them (candidates for label noise, not verdicts).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from heads.aura import AuraHead
from heads.data import TaskData
from heads.tasks import Task, get_task

MAX_SHEET_ROWS = 30
# A catch-all archetype: the labels of the samples it decides are spread over its output space's
# groups (classes, AU states, VA bins) with at least this normalised entropy (1: uniform), in the
# training split or over the held-out samples it decides (when there are at least MIN_HELD_OUT).
# 0.75 of log 7 is about as spread as a uniform choice among 4.3 of 7 classes, far beyond the two or
# three neighbouring expressions a real archetype mixes; for an AU, a minority state above 21 %.
# Its verdicts are not evidence about a label, so the audit leaves them out.
CATCH_ALL_ENTROPY = 0.75
MIN_HELD_OUT = 5
REPORT_FILES = ("report.md", "archetypes.json", "audit.csv", "map.png")


@dataclass
class Branch:
    name: str
    kept: np.ndarray  # indices of the kept archetypes
    usage: np.ndarray  # usage ratio on the training split, per kept archetype
    label: np.ndarray  # what it says (Task.reading): a class index, or a score (VA value, AU probability)
    confidence: np.ndarray  # how decided that is (softmax confidence; a score's distance from undecided)
    members: np.ndarray  # training samples it decides
    agreement: np.ndarray  # share of them whose label agrees with it (VA: 1 − mean |gap| / 2)
    nearest: np.ndarray  # (kept, n) training rows, most similar first
    similarity: np.ndarray  # (kept, n) their cosine similarities
    train_embedding: np.ndarray  # (n_train, d) training features in the archetype space
    archetypes: np.ndarray  # (kept, d)
    decides: np.ndarray  # the group (class, AU state, VA bin) each kept archetype decides
    purity: np.ndarray  # share of its labelled training members in their most common group (NaN: none)
    # the entropy of its members' groups / log(number of groups), in [0, 1], the larger of training's
    # and the held-out samples' it decides (NaN: no labelled member)
    label_entropy: np.ndarray
    uncovered: list[int]  # groups with training samples that no kept archetype decides

    @property
    def catch_all(self) -> np.ndarray:
        return np.nan_to_num(self.label_entropy) >= CATCH_ALL_ENTROPY


def branch_names(task: Task | str, labels: list[str]) -> list[str]:
    return ["expression"] if get_task(task).categorical else list(labels)


@torch.no_grad()
def _embed(model: AuraHead, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """ℓ2-normalised projected features of every branch (M, N, d): the space the archetypes live in."""
    return torch.cat([model.embed(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)], dim=1)


@torch.no_grad()
def analyse(model: AuraHead, data: TaskData, task: Task | str, n_nearest: int = 8) -> list[Branch]:
    task = get_task(task)
    embedded = _embed(model, data.x["train"])
    others = {split: _embed(model, data.x[split]) for split in ("val", "test") if data.x[split].shape[0]}
    rows = data.rows["train"]
    stack = model.branches
    archetypes = stack.normalised()
    all_outputs = stack.output(archetypes)  # φ of every archetype of every branch
    branches = []
    for j, (name, f_hat) in enumerate(zip(branch_names(task, data.label_names), embedded)):
        kept = torch.nonzero(stack.active[j]).squeeze(1)
        a_hat = archetypes[j][kept]
        sims = f_hat @ a_hat.T  # (n_train, kept)
        assigned = sims.argmax(-1).numpy()
        members = np.bincount(assigned, minlength=kept.numel())
        usage = members / f_hat.shape[0]
        label, confidence = task.reading(all_outputs[j][kept])
        top = sims.T.topk(min(n_nearest, f_hat.shape[0]), dim=-1)
        agreement = _agreement(task, label.numpy(), assigned, data.y["train"].numpy(), j)
        decides = task.archetype_groups(all_outputs[j][kept]).numpy()
        # spread in training, and over the held-out samples it decides: an archetype whose training
        # members agree can still be where unseen subjects of every class land
        n_groups = task.n_groups(data.n_outputs)
        train_groups = _groups(task, data.y["train"], j)
        purity, entropy = _spread(train_groups, assigned, kept.numel(), n_groups)
        if others:
            held_groups = np.concatenate([_groups(task, data.y[split], j) for split in others])
            held_assigned = np.concatenate([(e[j] @ a_hat.T).argmax(-1).numpy() for e in others.values()])
            _, held_entropy = _spread(held_groups, held_assigned, kept.numel(), n_groups)
            enough = np.bincount(held_assigned[held_groups >= 0], minlength=kept.numel()) >= MIN_HELD_OUT
            entropy = np.where(enough, np.fmax(entropy, held_entropy), entropy)
        present = np.unique(train_groups[train_groups >= 0])
        branches.append(
            Branch(
                name=name,
                kept=kept.numpy(),
                usage=usage,
                label=label.numpy(),
                confidence=confidence.numpy(),
                members=members,
                agreement=agreement,
                nearest=rows[top.indices.numpy()],
                similarity=top.values.numpy(),
                train_embedding=f_hat.numpy(),
                archetypes=a_hat.numpy(),
                decides=decides,
                purity=purity,
                label_entropy=entropy,
                uncovered=[int(g) for g in present if g not in set(decides.tolist())],
            )
        )
    return branches


def _groups(task: Task, y: torch.Tensor, branch: int) -> np.ndarray:
    """The group (Task.sample_groups) of each sample's label in one branch; −1 unlabelled."""
    return task.sample_groups(torch.from_numpy(task.of_branch(y.numpy(), branch))).numpy()


def _spread(groups: np.ndarray, assigned: np.ndarray, n_kept: int, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per kept archetype, over the labelled training samples it decides: the share in their most
    common group (purity) and the entropy of their groups over log(n_groups)."""
    labelled = groups >= 0
    counts = np.zeros((n_kept, n_groups))
    np.add.at(counts, (assigned[labelled], groups[labelled]), 1)
    total = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / total
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(1) / np.log(n_groups) + 0.0  # no −0
    none = total[:, 0] == 0
    return np.where(none, np.nan, p.max(1)), np.where(none, np.nan, entropy)


def _agreement(task: Task, label: np.ndarray, assigned: np.ndarray, y: np.ndarray, j: int) -> np.ndarray:
    """Per kept archetype: how far the training labels it decides agree with what it says."""
    out = np.full(label.shape[0], np.nan)
    branch_y = task.of_branch(y, j)
    for k in range(label.shape[0]):
        values = task.agrees(float(label[k]), branch_y[assigned == k])
        if values.size:
            out[k] = float(np.mean(values))
    return out


def table3(task: Task | str, branches: list[Branch], labels: list[str]) -> list[dict[str, Any]]:
    """Archetypes per class or per score bin (the task's groups) with their usage range."""
    task = get_task(task)
    out = []
    for b in branches:
        for bin_name, mask in task.groups(b.label, labels):
            used, members = b.usage[mask], b.members[mask]
            pure = np.nan_to_num(b.purity[mask])
            out.append(
                {
                    "branch": b.name,
                    "bin": bin_name,
                    "archetypes": int(mask.sum()),
                    "usage_min": float(used.min()) if used.size else None,
                    "usage_max": float(used.max()) if used.size else None,
                    "usage_total": float(used.sum()),
                    # the members' share in their archetype's most common group, over all its members
                    "purity": float((pure * members).sum() / members.sum()) if members.sum() else None,
                    "catch_all": int(b.catch_all[mask].sum()),
                }
            )
    return out


def uncovered(task: Task | str, branches: list[Branch], labels: list[str]) -> list[dict[str, str]]:
    """Every (branch, group) with training samples that no kept archetype decides: it can never be
    predicted, so the report states it as an error."""
    names = get_task(task).group_names(labels)
    return [{"branch": b.name, "group": names[g]} for b in branches for g in b.uncovered]


@torch.no_grad()
def audit(
    model: AuraHead, data: TaskData, task: Task | str, branches: list[Branch], paths: np.ndarray
) -> list[dict[str, Any]]:
    """Every labelled sample (all splits) whose label contradicts a trustworthy deciding archetype."""
    task = get_task(task)
    entries = []
    for split in ("train", "val", "test"):
        y, rows = data.y[split].numpy(), data.rows[split]
        _, index = model.predict(data.x[split])
        index = index.numpy()
        for j, b in enumerate(branches):
            position = {int(a): k for k, a in enumerate(b.kept)}
            branch_y = task.of_branch(y, j)
            for i in range(rows.size):
                k = position[int(index[i, j])]
                if b.catch_all[k]:  # its members' labels are spread over many groups: no evidence
                    continue
                says, label = float(b.label[k]), branch_y[i]
                flagged, strength = task.contradicts(says, label, b.agreement[k], b.members[k])
                if flagged:
                    entries.append(
                        _entry(
                            split,
                            rows[i],
                            paths,
                            b.name,
                            b.kept[k],
                            task.label_text(label, data.label_names),
                            task.text(says, data.label_names),
                            strength,
                        )
                    )
    return sorted(entries, key=lambda e: -e["strength"])


def _entry(split, row, paths, branch, archetype, label, archetype_says, strength) -> dict[str, Any]:
    return {
        "split": split,
        "row": int(row),
        "path": str(paths[row]),
        "branch": branch,
        "archetype": int(archetype),
        "label": label,
        "archetype_says": archetype_says,
        "strength": round(float(strength), 4),
    }


# -- pictures --------------------------------------------------------------------------------------
def sheet_order(branch: Branch) -> np.ndarray:
    """The archetypes a sheet shows: by class / score, then by usage, at most MAX_SHEET_ROWS."""
    return np.lexsort((-branch.usage, branch.label))[:MAX_SHEET_ROWS]


def nearest_sheet(task: Task, branch: Branch, labels: list[str], pictures: dict, size: int = 64) -> bytes:
    """PNG: one line per kept archetype (by class / score, then usage), its nearest training samples;
    ``pictures`` maps a training row to its ``size`` × ``size`` PIL thumbnail."""
    from PIL import Image, ImageDraw

    order = sheet_order(branch)
    text_width, pad = 150, 4
    n = branch.nearest.shape[1]
    sheet = Image.new("RGB", (text_width + n * (size + pad), len(order) * (size + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for line, k in enumerate(order):
        y = pad + line * (size + pad)
        label = task.text(float(branch.label[k]), labels)
        draw.text((4, y + 4), f"#{branch.kept[k]}  {label}", fill="black")
        draw.text((4, y + 22), f"usage {100 * branch.usage[k]:.1f} %", fill="black")
        draw.text((4, y + 40), f"agreement {branch.agreement[k]:.2f}", fill="black")
        for col, row in enumerate(branch.nearest[k]):
            sheet.paste(pictures[int(row)], (text_width + col * (size + pad), y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def pca_2d(points: np.ndarray) -> np.ndarray:
    """The first two principal components, as ``sklearn.decomposition.PCA(2)`` gives them (each
    axis's largest loading positive), from numpy's SVD: importing scikit-learn would add 1.1 s to
    every retrain that writes this map."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(1)])[:, None]
    return centred @ axes.T


def _reduce(points: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    try:
        import umap  # optional: the "UMAP when installed"
    except ImportError:
        return pca_2d(points), "PCA"
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(points), "UMAP"


def feature_map(task: Task, branches: list[Branch], data: TaskData, seed: int = 0) -> tuple[bytes, str]:
    """PNG: per branch, training features and kept archetypes (star size ∝ usage) in 2-D."""
    # the object API with the Agg canvas: no pyplot, so no backend machinery is imported
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    shown = branches[:12]
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig = Figure(figsize=(5 * cols, 4.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    y = data.y["train"].numpy()
    method = "PCA"
    for j, (ax, b) in enumerate(zip(axes.ravel(), shown)):
        xy, method = _reduce(np.concatenate([b.train_embedding, b.archetypes]), seed)
        feats, arcs = xy[: len(b.train_embedding)], xy[len(b.train_embedding) :]
        colour = task.of_branch(y, j)
        points = ax.scatter(feats[:, 0], feats[:, 1], c=colour, cmap=task.colormap(), s=6, alpha=0.5, linewidths=0)
        ax.scatter(arcs[:, 0], arcs[:, 1], s=80 + 2000 * b.usage, marker="*", c="black", edgecolors="white")
        ax.set_title(f"{b.name}: {len(b.kept)} archetypes ({method})")
        if task.categorical:
            handles = [
                Line2D([], [], marker="o", ls="", color=points.cmap(points.norm(c)), label=data.label_names[c])
                for c in np.unique(y)
            ]
            ax.legend(handles=handles, fontsize=7, loc="best")
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue(), method


# -- the report ----------------------------------------------------------------------------------------
def markdown(
    head_path: str,
    task: Task,
    table: list[dict],
    audit_rows: list[dict],
    branches: list[Branch],
    method: str,
    labels: list[str],
    missing: list[dict[str, str]],
) -> str:
    lines = [f"# archetype report: `{head_path}`", ""]
    if missing:
        lines += [
            "## Error: groups no archetype decides",
            "",
            "These have training samples but no kept archetype decides them, so the head can never predict them:",
            "",
            *[f"- **{m['branch']}: {m['group']}**" for m in missing],
            "",
        ]
    lines += ["## Archetypes per " + ("class" if task.categorical else "score bin"), ""]
    lines += [
        "| branch | class / bin | archetypes | usage range | total usage | purity | catch-all |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in table:
        span = "—" if t["usage_min"] is None else f"{100 * t['usage_min']:.1f}–{100 * t['usage_max']:.1f} %"
        purity = "—" if t["purity"] is None else f"{t['purity']:.2f}"
        lines.append(
            f"| {t['branch']} | {t['bin']} | {t['archetypes']} | {span} | {100 * t['usage_total']:.1f} % | "
            f"{purity} | {t['catch_all']} |"
        )
    lines += ["", "K_stable per branch: " + ", ".join(f"{b.name} {len(b.kept)}" for b in branches), ""]
    lines += [
        "## Every archetype",
        "",
        "Purity: the share of the training samples it decides that share their most common "
        f"{'class' if task.categorical else 'group'}; spread: the entropy of their groups over its maximum. "
        f"Catch-all: spread ≥ {CATCH_ALL_ENTROPY} (left out of the audit).",
        "",
        "| branch | archetype | says | usage | members | purity | spread | catch-all |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in branches:
        for k in np.lexsort((-b.usage, b.label)):
            pure = "—" if np.isnan(b.purity[k]) else f"{b.purity[k]:.2f}"
            spread = "—" if np.isnan(b.label_entropy[k]) else f"{b.label_entropy[k]:.2f}"
            lines.append(
                f"| {b.name} | #{b.kept[k]} | {task.text(float(b.label[k]), labels)} | {100 * b.usage[k]:.1f} % | "
                f"{b.members[k]} | {pure} | {spread} | {'**yes**' if b.catch_all[k] else ''} |"
            )
    lines += [
        "",
        f"Files beside the checkpoint: `nearest-<branch>.png` (thumbnail sheets), `map.png` ({method}), "
        "`archetypes.json`, `audit.csv`.",
        "",
    ]
    lines += [f"## Annotation audit ({len(audit_rows)} samples; top 20)", ""]
    lines += [
        "| split | row | path | branch | archetype | label | archetype says | strength |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {a['split']} | {a['row']} | `{a['path']}` | {a['branch']} | #{a['archetype']} | {a['label']} | "
        f"{a['archetype_says']} | {a['strength']:.2f} |"
        for a in audit_rows[:20]
    ]
    return "\n".join(lines)


def report_files(
    head_path: str,
    model: AuraHead,
    data: TaskData,
    task: Task,
    paths: np.ndarray,
    pictures: dict,
    n_nearest: int,
    thumb_size: int,
    seed: int,
    branches: list[Branch] | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every report file (name → bytes) and a summary; ``pictures`` holds the thumbnails of the
    rows :func:`sheet_rows` names."""
    branches = branches if branches is not None else analyse(model, data, task, n_nearest)
    table = table3(task, branches, data.label_names)
    missing = uncovered(task, branches, data.label_names)
    audit_rows = audit(model, data, task, branches, paths)
    map_png, method = feature_map(task, branches, data, seed=seed)
    sheets = {f"nearest-{b.name}.png": nearest_sheet(task, b, data.label_names, pictures, thumb_size) for b in branches}
    archetypes = {
        "head": head_path,
        "task": task.name,
        "labels": data.label_names,
        "n_train": int(data.rows["train"].size),
        "branches": [
            {
                "name": b.name,
                "k_stable": int(len(b.kept)),
                "archetypes": [
                    {
                        "index": int(b.kept[k]),
                        "usage": float(b.usage[k]),
                        "label": task.text(float(b.label[k]), data.label_names),
                        "confidence": float(b.confidence[k]),
                        "members": int(b.members[k]),
                        "agreement": None if np.isnan(b.agreement[k]) else float(b.agreement[k]),
                        "purity": None if np.isnan(b.purity[k]) else float(b.purity[k]),
                        "label_entropy": None if np.isnan(b.label_entropy[k]) else float(b.label_entropy[k]),
                        "catch_all": bool(b.catch_all[k]),
                        "nearest": [
                            {"row": int(r), "path": str(paths[r]), "similarity": float(s)}
                            for r, s in zip(b.nearest[k], b.similarity[k])
                        ],
                    }
                    for k in range(len(b.kept))
                ],
            }
            for b in branches
        ],
        "table3": table,
        "uncovered": missing,
    }
    text = markdown(head_path, task, table, audit_rows, branches, method, data.label_names, missing)
    audit_csv = io.StringIO()
    writer = csv.DictWriter(
        audit_csv, ["split", "row", "path", "branch", "archetype", "label", "archetype_says", "strength"]
    )
    writer.writeheader()
    writer.writerows(audit_rows)
    files = {
        "report.md": text.encode(),
        "archetypes.json": json.dumps(archetypes, indent=1).encode(),
        "audit.csv": audit_csv.getvalue().encode(),
        "map.png": map_png,
        **sheets,
    }
    return files, {
        "path": head_path,
        "markdown": text,
        "files": sorted(files),
        "audit": len(audit_rows),
        "table3": table,
        "uncovered": missing,
        "catch_all": int(sum(b.catch_all.sum() for b in branches)),
    }


def sheet_rows(branches: list[Branch]) -> list[int]:
    """The training rows the thumbnail sheets show, once each (AU branches share most of them)."""
    return sorted({int(r) for b in branches for r in b.nearest[sheet_order(b)].ravel()})
