"""The graphs of a trained graph head as files: pure builders (``stages/head_steps.py`` stores them).

For each global graph a head returns (``Head.graphs``: CausalAffect's AU→AU and AU→expression):

* ``graph-<name>.csv``  the signed matrix, sources as rows, targets as columns;
* ``graph-<name>.png``  a heatmap, excitatory edges red and inhibitory blue on a scale symmetric
                        about zero, so a sign is never a shade of the other;
* ``graph.md``          the strongest edges into each target, and next to the AU→AU graph the
                        training labels' co-occurrence P(AU_j | AU_i), what a graph that only
                        memorised co-occurrence would show.
"""

from __future__ import annotations

import csv
import io

import numpy as np


def edges_csv(matrix: np.ndarray, sources: list[str], targets: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["source", *targets])
    for name, row in zip(sources, matrix, strict=True):
        writer.writerow([name, *(f"{v:.6g}" for v in row)])
    return out.getvalue().encode()


def heatmap_png(matrix: np.ndarray, sources: list[str], targets: list[str], title: str) -> bytes:
    from matplotlib.figure import Figure  # the object API: no global pyplot state

    scale = float(np.abs(matrix).max()) or 1.0
    fig = Figure(figsize=(1.2 + 0.45 * len(targets), 1.0 + 0.4 * len(sources)))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-scale, vmax=scale)
    ax.set_xticks(range(len(targets)), targets, rotation=60, ha="right")
    ax.set_yticks(range(len(sources)), sources)
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="edge weight (+ excites, − inhibits)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def top_edges(matrix: np.ndarray, sources: list[str], targets: list[str], k: int = 3) -> dict[str, list]:
    """Per target, its ``k`` strongest excitatory and strongest inhibitory sources with their weights."""
    out = {}
    for j, target in enumerate(targets):
        column = matrix[:, j]
        order = np.argsort(-column)
        out[target] = {
            "excites": [(sources[i], float(column[i])) for i in order[:k] if column[i] > 0],
            "inhibits": [(sources[i], float(column[i])) for i in order[::-1][:k] if column[i] < 0],
        }
    return out


def cooccurrence(au_labels: np.ndarray) -> np.ndarray:
    """P(AU_j present | AU_i present) over samples where both are labelled; [i, j], NaN where AU i is
    never present."""
    y = np.asarray(au_labels)
    present, labelled = (y == 1).astype(float), (y >= 0).astype(float)
    both = present.T @ (present * labelled)  # i present, j present (and labelled)
    given = present.T @ labelled  # i present, j labelled
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(given > 0, both / np.maximum(given, 1), np.nan)


def graph_files(
    graphs: dict[str, np.ndarray], aus: list[str], classes: list[str], au_labels: np.ndarray
) -> dict[str, bytes]:
    """Every file of the module's docstring from the global graphs of a head over ``aus`` and ``classes``."""
    names = {"au_au": (aus, aus, "AU → AU"), "au_expression": (aus, classes, "AU → expression")}
    files: dict[str, bytes] = {}
    lines = ["# Causal graphs", ""]
    for name, matrix in graphs.items():
        sources, targets, title = names[name]
        files[f"graph-{name}.csv"] = edges_csv(matrix, sources, targets)
        files[f"graph-{name}.png"] = heatmap_png(matrix, sources, targets, title)
        lines += [f"## {title} (`graph-{name}.csv`, `graph-{name}.png`)", "", "| target | excites | inhibits |"]
        lines.append("|---|---|---|")
        for target, edges in top_edges(matrix, sources, targets).items():
            excite = ", ".join(f"{s} {w:+.3f}" for s, w in edges["excites"]) or "—"
            inhibit = ", ".join(f"{s} {w:+.3f}" for s, w in edges["inhibits"]) or "—"
            lines.append(f"| {target} | {excite} | {inhibit} |")
        lines.append("")
    if "au_au" in graphs and au_labels.size:
        p = cooccurrence(au_labels)
        files["cooccurrence-au_au.csv"] = edges_csv(p, aus, aus)
        files["cooccurrence-au_au.png"] = heatmap_png(np.nan_to_num(p), aus, aus, "training P(AU_j | AU_i)")
        lines += ["Beside the AU → AU graph: the training labels' co-occurrence P(AU_j | AU_i) in", ""]
        lines += ["`cooccurrence-au_au.csv` / `.png` (what a graph that only memorised co-occurrence would show).", ""]
    files["graph.md"] = "\n".join(lines).encode()
    return files
