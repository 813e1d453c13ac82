"""The graphs of a trained graph head as files: pure builders (``stages/training/head_steps.py`` stores them).

For each global graph a head returns (``Head.graphs``: CausalAffect's AU→AU and AU→expression):

* ``graph-<name>.csv``  the signed matrix, sources as rows, targets as columns;
* ``graph-<name>.png``  a heatmap, excitatory edges red and inhibitory blue on a scale symmetric
                        about zero, so a sign is never a shade of the other;
* ``graph.md``          the strongest edges into each target, and next to the AU→AU graph the
                        training labels' co-occurrence P(AU_j | AU_i), what a graph that only
                        memorised co-occurrence would show, and their partial correlations
                        (``partial-correlation-au_au.csv``), its strongest edges beside both;
* ``prototypes.csv``    the AU→expression graph against the FACS prototypes (EMFACS AU sets per
                        class): per class the best-matching set and the graph's precision@k on it.
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


def partial_correlations(au_labels: np.ndarray) -> np.ndarray:
    """The AU labels' partial correlations [i, j] (each pair's correlation with every other AU held
    fixed: −P_ij / √(P_ii P_jj) of the correlation matrix's (pseudo-)inverse P), over the samples
    with every AU labelled; NaN for an AU that never varies there, 1 on the diagonal. A direct link
    shows here; a co-occurrence explained by a third AU fades."""
    y = np.asarray(au_labels, float)
    y = y[(y >= 0).all(1)]
    m = y.shape[1]
    out = np.full((m, m), np.nan)
    varies = y.std(0) > 0 if len(y) > 1 else np.zeros(m, bool)
    if varies.sum() >= 2:
        precision = np.linalg.pinv(np.corrcoef(y[:, varies].T))
        # a singular correlation matrix (AUs that always co-occur) leaves diagonal entries at 0 or a
        # rounding error below it: those pairs have no partial correlation (NaN), not a warning
        diagonal = np.diag(precision)
        scale = np.sqrt(np.outer(diagonal, diagonal).clip(min=0))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[np.ix_(varies, varies)] = np.where(scale > 1e-12, -precision / scale, np.nan)
    np.fill_diagonal(out, 1.0)
    return out


def learned_beside_labels(graph: np.ndarray, au_labels: np.ndarray, aus: list[str], k: int = 10) -> list[str]:
    """The graph's k strongest AU → AU edges as a markdown table, each beside what the training
    labels alone show for the pair: P(target | source), the target's base rate, and the pair's
    partial correlation — what the graph adds over them is where it disagrees."""
    y = np.asarray(au_labels)
    given, partial = cooccurrence(y), partial_correlations(y)
    labelled = (y >= 0).sum(0)
    base = np.where(labelled > 0, (y == 1).sum(0) / np.maximum(labelled, 1), np.nan)
    sources, targets = np.nonzero(~np.eye(len(aus), dtype=bool))
    strongest = np.argsort(-np.abs(graph[sources, targets]), kind="stable")[:k]
    lines = ["| edge | learnt w | P(target \\| source) | P(target) | partial correlation |", "|---|---|---|---|---|"]
    for e in strongest:
        i, j = sources[e], targets[e]
        lines.append(
            f"| {aus[i]} → {aus[j]} | {graph[i, j]:+.3f} | {given[i, j]:.2f} | {base[j]:.2f} | {partial[i, j]:+.2f} |"
        )
    return lines


Prototypes = dict[str, list[tuple[str, frozenset[str]]]]  # class → (prototype | variant, AU set)


def prototype_agreement(matrix: np.ndarray, aus: list[str], classes: list[str], prototypes: Prototypes) -> list[dict]:
    """Per class with prototypes, the AU set (restricted to the AUs the head has) that the graph's
    strongest excitatory edges match best: its k coded AUs against the graph's top k, precision@k.
    Ties go to a prototype over a variant, then to the larger set."""
    rows = []
    for c, name in enumerate(classes):
        best = None
        for kind, full in prototypes.get(name, []):
            coded = full & set(aus)
            if not coded:
                continue
            top = [aus[i] for i in np.argsort(-matrix[:, c])[: len(coded)] if matrix[i, c] > 0]
            score = (len(coded & set(top)) / len(coded), kind == "prototype", len(coded))
            if best is None or score > best[0]:
                best = (score, kind, full, coded, top)
        if best is not None:
            (precision, _, _), kind, full, coded, top = best
            rows.append(
                {"class": name, "kind": kind, "aus": sorted(full, key=_number), "coded": sorted(coded, key=_number)}
                | {"graph_top": top, "precision_at_k": precision}
            )
    return rows


def _number(au: str) -> int:
    return int(au.removeprefix("AU"))


def prototype_markdown(rows: list[dict]) -> list[str]:
    lines = ["## AU → expression edges against the FACS prototypes (`prototypes.csv`)", ""]
    lines += ["Per class, the prototype or variant AU set (AUs this head has; the others struck) that the"]
    lines += ["graph's strongest excitatory edges match best, and the share of it among the graph's top k.", ""]
    lines += ["| class | AU set | kind | graph's top k | precision@k |", "|---|---|---|---|---|"]
    for r in rows:
        shown = " + ".join(a if a in r["coded"] else f"~~{a}~~" for a in r["aus"])
        top = ", ".join(r["graph_top"]) or "—"
        lines.append(f"| {r['class']} | {shown} | {r['kind']} | {top} | {r['precision_at_k']:.2f} |")
    return [*lines, ""]


def graph_files(
    graphs: dict[str, np.ndarray],
    aus: list[str],
    classes: list[str],
    au_labels: np.ndarray,
    prototypes: Prototypes | None = None,
) -> dict[str, bytes]:
    """Every file of the module's docstring from the global graphs of a head over ``aus`` and
    ``classes``; with ``prototypes`` (class → AU sets), the AU → expression graph beside them too."""
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
        files["partial-correlation-au_au.csv"] = edges_csv(partial_correlations(au_labels), aus, aus)
        lines += [
            "Beside the AU → AU graph: the training labels' co-occurrence P(AU_j | AU_i) in",
            "`cooccurrence-au_au.csv` / `.png` (what a graph that only memorised co-occurrence would show)",
            "and their partial correlations in `partial-correlation-au_au.csv`; its strongest edges beside both:",
            "",
        ]
        lines += [*learned_beside_labels(graphs["au_au"], au_labels, aus), ""]
    if "au_expression" in graphs and prototypes:
        rows = prototype_agreement(graphs["au_expression"], aus, classes, prototypes)
        lines += prototype_markdown(rows)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["class", "kind", "aus", "coded", "graph_top", "precision_at_k"])
        for r in rows:
            sets = ["+".join(r[k]) for k in ("aus", "coded", "graph_top")]
            writer.writerow([r["class"], r["kind"], *sets, f"{r['precision_at_k']:.4f}"])
        files["prototypes.csv"] = out.getvalue().encode()
    files["graph.md"] = "\n".join(lines).encode()
    return files


# A sample's sub-graph keeps the AUs and AU → AU messages of at least this size (in logits), and a
# label is audited when the head is this sure of another class and the AUs alone favour that class
# over the label by this many logits (e² ≈ 7.4 times as likely) — the head's evidence is in the AUs,
# not in the biases. Neither number is the paper's: it describes no audit.
MIN_EDGE = 0.05
AUDIT_CONFIDENCE = 0.8
AUDIT_GAP = 2.0


def sample_subgraph(evidence: dict[str, np.ndarray], aus: list[str], classes: list[str]) -> dict:
    """One sample's predicted class and only its sub-graph: the AUs whose contribution to that class
    is at least ``MIN_EDGE`` (strongest first, with their probabilities) and the AU → AU messages
    between them. ``evidence``: one sample's :meth:`Head.explain` arrays."""
    c = int(np.argmax(evidence["expression"]))
    contribution = evidence["contribution"][c]
    nodes = [i for i in np.argsort(-np.abs(contribution)) if abs(contribution[i]) >= MIN_EDGE]
    messages = evidence["messages"]
    return {
        "class": classes[c],
        "probability": float(evidence["expression"][c]),
        "aus": [
            {"au": aus[i], "probability": float(evidence["au"][i]), "contribution": float(contribution[i])}
            for i in nodes
        ],
        "edges": [
            {"source": aus[j], "target": aus[i], "message": float(messages[j, i])}
            for j in nodes
            for i in nodes
            if i != j and abs(messages[j, i]) >= MIN_EDGE
        ],
    }


def label_audit(
    contribution: np.ndarray, expression: np.ndarray, labels: np.ndarray, aus: list[str], classes: list[str]
) -> list[dict]:
    """Labelled samples whose predicted class differs from their label with probability at least
    ``AUDIT_CONFIDENCE`` and rests on AU evidence: Σᵢ contribution[pred, i] − contribution[label, i] ≥
    ``AUDIT_GAP``. Per flagged sample (index into the arrays): its label, the prediction, the gap,
    and the AUs that favour the prediction most. Strongest gap first."""
    predicted = expression.argmax(1)
    flagged = []
    for r in np.flatnonzero((labels >= 0) & (predicted != labels) & (expression.max(1) >= AUDIT_CONFIDENCE)):
        favour = contribution[r, predicted[r]] - contribution[r, labels[r]]
        if favour.sum() < AUDIT_GAP:
            continue
        flagged.append(
            {
                "index": int(r),
                "label": classes[labels[r]],
                "predicted": classes[predicted[r]],
                "probability": float(expression[r].max()),
                "au_gap": float(favour.sum()),
                "evidence": [aus[i] for i in np.argsort(-favour)[:3] if favour[i] >= MIN_EDGE],
            }
        )
    return sorted(flagged, key=lambda f: -f["au_gap"])


def samples_markdown(samples: list[dict]) -> list[str]:
    lines = ["## Per-sample graphs (`samples.json`)", ""]
    lines += ["Each sample's predicted class and only its sub-graph: AU → class contributions (logits) and"]
    lines += [f"the AU → AU messages between those AUs (|value| ≥ {MIN_EDGE}).", ""]
    lines += ["| sample | predicted | AU → class (p, contribution) | AU → AU |", "|---|---|---|---|"]
    for s in samples:
        nodes = ", ".join(f"{a['au']} ({a['probability']:.2f}, {a['contribution']:+.2f})" for a in s["aus"][:5])
        edges = ", ".join(f"{e['source']}→{e['target']} {e['message']:+.2f}" for e in s["edges"][:4])
        where = f"`{s['path']}` ({s['split']} row {s['row']})"
        lines.append(f"| {where} | {s['class']} {s['probability']:.2f} | {nodes or '—'} | {edges or '—'} |")
    return [*lines, ""]


def audit_markdown(flagged: list[dict], n_checked: int, limit: int = 20) -> list[str]:
    lines = ["## Label audit (`audit.csv`)", ""]
    lines += [f"{len(flagged)} of {n_checked} labelled samples: predicted another class with probability ≥"]
    lines += [f"{AUDIT_CONFIDENCE} where the AUs alone favour it by ≥ {AUDIT_GAP} logits (strongest first).", ""]
    if flagged:
        lines += ["| sample | label | predicted (p) | AU gap | evidence |", "|---|---|---|---|---|"]
        for f in flagged[:limit]:
            lines.append(
                f"| `{f['path']}` ({f['split']} row {f['row']}) | {f['label']} | {f['predicted']} "
                f"({f['probability']:.2f}) | {f['au_gap']:.2f} | {', '.join(f['evidence'])} |"
            )
    return [*lines, ""]


def audit_csv(flagged: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = ["dataset", "split", "row", "path", "label", "predicted", "probability", "au_gap", "evidence"]
    writer.writerow(columns)
    for f in flagged:
        writer.writerow([*(f[k] for k in columns[:-1]), "+".join(f["evidence"])])
    return out.getvalue().encode()
