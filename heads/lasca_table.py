"""LaScA's grid in the layout of the paper's accuracy tables, with its significance tests.

Rows are modality × model (features, the pretrained visual encoder, text and fused per
sentence-transformer), columns affect × window × τ; a cell is the mean test accuracy over the
subject-exclusive folds. In each column the best cell is bold, and cells not significantly worse
than it (Wilcoxon signed-rank over the folds, paired by fold, two-sided p ≥ 0.05) carry a ◦.
A second table gives, for every variant, the Wilcoxon p-value against the features-only row of
the same modality, signed by which is higher. With k folds the exact test's smallest p is
2 / 2^k: below 6 folds nothing can be significant, and the tables say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ALPHA = 0.05


def fold_accuracies(records: Sequence[dict[str, Any]]) -> dict[tuple, dict[int, float]]:
    """(modality, variant, text model, window, affect, τ) → {fold: accuracy}."""
    cells: dict[tuple, dict[int, float]] = {}
    for r in records:
        key = (r["modality"], r["variant"], r["text_model"], r["window"], r["affect"], r["tau"])
        cells.setdefault(key, {})[r["fold"]] = r["accuracy"]
    return cells


def paired_p(a: dict[int, float], b: dict[int, float]) -> float:
    """Two-sided Wilcoxon signed-rank p of fold-paired accuracies (1.0 when they never differ)."""
    folds = sorted(set(a) & set(b))
    diff = np.array([a[f] - b[f] for f in folds])
    if not np.any(diff):
        return 1.0
    from scipy.stats import wilcoxon  # here: scipy.stats is ~0.5 s of every command's start

    return float(wilcoxon(diff, zero_method="zsplit").pvalue)


def _row_label(variant: str, text_model: str | None, pretrained: str) -> str:
    if variant == "pretrained":
        return f"pretrained ({pretrained})"
    return f"{variant} · {text_model}" if text_model else variant


def _columns(cells) -> list[tuple]:
    """(window, affect, τ) of each column (the cell key's order), affect outermost as in the paper."""
    affects = sorted({k[4] for k in cells}, key=("valence", "arousal").index)
    windows = sorted({k[3] for k in cells}, key=lambda w: float(w.rstrip("s").split("s")[0]))
    taus = sorted({k[5] for k in cells})
    return [(w, a, t) for a in affects for w in windows for t in taus]


def _rows(cells) -> list[tuple]:
    order = {"features": 0, "pretrained": 1, "text": 2, "fused": 3}
    modalities = sorted({k[0] for k in cells}, key=("face", "audio", "both").index)
    rows = sorted({(k[1], k[2]) for k in cells}, key=lambda r: (order.get(r[0], 9), r[1] or ""))
    return [(m, v, t) for m in modalities for v, t in rows if any(k[:3] == (m, v, t) for k in cells)]


def grid_tables(records: Sequence[dict[str, Any]], pretrained: str = "efficientnet-lite0") -> str:
    """The accuracy table and the p-value table, as markdown."""
    cells = fold_accuracies(records)
    columns, rows = _columns(cells), _rows(cells)
    n_folds = max(len(v) for v in cells.values())
    header = "| modality | model | " + " | ".join(f"{a} {w} τ {t:.0%}" for w, a, t in columns) + " |"
    rule = "|---|---|" + "---|" * len(columns)
    best = {}
    for col in columns:
        present = [(m, v, t) for m, v, t in rows if (m, v, t, *col) in cells]
        best[col] = max(present, key=lambda r: np.mean(list(cells[(*r, *col)].values())))
    lines = [
        f"Mean test accuracy over {n_folds} subject-exclusive folds (chance 0.5). **Best** of each column; "
        f"◦ not significantly worse than it (Wilcoxon signed-rank over folds, p ≥ {ALPHA})"
        + (f"; with {n_folds} folds no difference can reach p < {ALPHA}" if 2 / 2**n_folds >= ALPHA else "")
        + ".",
        "",
        header,
        rule,
    ]
    for m, v, t in rows:
        out = []
        for col in columns:
            acc = cells.get((m, v, t, *col))
            if acc is None:
                out.append("–")
                continue
            text = f"{np.mean(list(acc.values())):.3f}"
            top = cells[(*best[col], *col)]
            if best[col] == (m, v, t):
                text = f"**{text}**"
            elif paired_p(acc, top) >= ALPHA:
                text += " ◦"
            out.append(text)
        lines.append(f"| {m} | {_row_label(v, t, pretrained)} | " + " | ".join(out) + " |")
    lines += [
        "",
        "Wilcoxon signed-rank p against features only of the same modality (+: mean above it, −: below).",
        "",
        header,
        rule,
    ]
    for m, v, t in rows:
        if v == "features":
            continue
        out = []
        for col in columns:
            acc, base = cells.get((m, v, t, *col)), cells.get((m, "features", None, *col))
            if acc is None or base is None:
                out.append("–")
                continue
            sign = "+" if np.mean(list(acc.values())) > np.mean(list(base.values())) else "−"
            out.append(f"{sign} {paired_p(acc, base):.3f}")
        lines.append(f"| {m} | {_row_label(v, t, pretrained)} | " + " | ".join(out) + " |")
    return "\n".join(lines)


def prompt_tables(stats: dict[str, dict[str, Any]]) -> str:
    """The prompt statistics of each window set: counts, the histogram of windows per prompt, and
    the five most frequent prompts."""
    lines = [
        "| window | prompt | windows | unique | 1 | 2–4 | 5–9 | 10–49 | ≥50 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for window, kinds in stats.items():
        for kind, s in kinds.items():
            bins = " | ".join(str(n) for n in s["histogram"].values())
            lines.append(f"| {window} | {kind} | {s['windows']} | {s['unique']} | {bins} |")
    lines += ["", "(columns 1 … ≥50: unique prompts by how many windows share them)", ""]
    for window, kinds in stats.items():
        top = kinds["multimodal"]["top"]
        lines.append(f"Most frequent multimodal prompts, {window} windows:")
        lines += [f"{i}. ({n}×) {text}" for i, (text, n) in enumerate(top, 1)]
        lines.append("")
    return "\n".join(lines).rstrip()
