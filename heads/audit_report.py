"""Markdown of the audits (pure: from the audit's JSON-able result to text; stages write it)."""

from __future__ import annotations

from typing import Any


def _f(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"  # NaN: nothing to score


def _variants(result: dict[str, Any]) -> list[str]:
    """The controls section: each variant's mean ± std over seeds and the paired tests."""
    if "summary" not in result:
        return []
    scores = list(next(iter(result["summary"].values())))
    lines = [
        "",
        f"## Against its controls over {result['seeds']} seeds",
        "",
        "| variant | " + " | ".join(scores) + " |",
        "|---" * (len(scores) + 1) + "|",
    ]
    for variant, summary in result["summary"].items():
        lines.append(f"| {variant} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in summary.values()) + " |")
    lines += [
        "",
        "Wilcoxon signed-rank tests over the paired seeds (scipy; one-sided where the method should move a score "
        "one way, two-sided otherwise; with 5 pairs the smallest p is 0.031 one-sided, 0.062 two-sided):",
        "",
        "| score | variant | against | alternative | mean difference | p |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t['score']} | {t['variant']} | {t['against']} | {t['alternative']} | "
        f"{t['mean_difference']:+.3f} | {_f(t['p'])} |"
        for t in result["tests"]
    ]
    return lines


def faithfulness_markdown(result: dict[str, Any]) -> str:
    measure = "F1" if result["measure"] == "f1" else "Jaccard"
    lines = [
        f"# Faithfulness audit (FACR) of `{result['head_path']}`",
        "",
        f"Structure G: `{result['structure']}`. For every AU and every one of {result['samples']} test samples, "
        f"do(AU = 0) and do(AU = 1) on the head's AU layer; an AU is *invoked* for a class when it moves the class's "
        f"logit by more than {result['threshold']} on average over the class's samples. Agreement: {measure} between "
        "the invoked AUs and the AUs G marks causal.",
        "",
        f"**Mean agreement {_f(result['mean_agreement'])}** over the classes G defines · AU mean F1 "
        f"{_f(result['au_mean_f1'])} · expression macro-F1 {_f(result['macro_f1'])} · rationale faithfulness "
        f"{_f(result['rationale_faithfulness'])} (share of the AUs the rationales mention whose ablation moves the "
        "predicted class's probability by more than 0.05)",
        "",
        f"| class | causal in G | invoked | {measure} |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {c['class']} | {', '.join(c['causal']) or '—'} | {', '.join(c['invoked']) or '—'} | "
        f"{_f(c['agreement']) if c['defined'] else '(not in G)'} |"
        for c in result["classes"]
    ]
    lines += ["", "## Rationales (the first test sample predicted as each class)", "", "| sample | label | rationale |"]
    lines += ["|---|---|---|"] + [f"| {e['sample']} | {e['label']} | {e['rationale']} |" for e in result["examples"]]
    return "\n".join(lines + _variants(result)) + "\n"


def circumplex_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Circumplex audit of `{result['head_path']}`",
        "",
        f"Transport term: {result['transport']}. {result['samples']} labelled test samples, {result['errors']} errors.",
        "",
        f"**Affective distance of errors {_f(result['affective_distance'])}** (mean circumplex distance between true "
        f"and predicted class over the errors) · macro-F1 {_f(result['macro_f1'])} · accuracy {_f(result['accuracy'])} "
        "(the official score of RAF-DB, AffectNet and FER2013)",
        "",
        "## The rarest classes: where their errors go (count, circumplex distance)",
        "",
    ]
    for row in result["rarest"]:
        cells = ", ".join(
            f"{name} {n}" + (f" (d {row['distance'][name]})" if name in row["distance"] else " (correct)")
            for name, n in sorted(row["predicted"].items(), key=lambda kv: -kv[1])
        )
        lines.append(f"- **{row['class']}** ({row['n']} samples): {cells}")
    return "\n".join(lines + _variants(result)) + "\n"


def _p_values(result: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    return {(t["score"], t["variant"], t["against"]): t["p"] for t in result["tests"]}


def faithfulness_headline(result: dict[str, Any]) -> str:
    """One line: the objective's agreement with G against its controls, over the seeds (means)."""
    s, p = result["summary"], _p_values(result)
    return (
        f"agreement with G {s['objective']['mean_agreement'][0]:.3f} vs "
        f"{s['no objective']['mean_agreement'][0]:.3f} without the objective "
        f"(p {p[('mean_agreement', 'objective', 'no objective')]:.3f}) and "
        f"{s['permuted G']['mean_agreement'][0]:.3f} with permuted G; AU F1 "
        f"{s['objective']['au_mean_f1'][0]:.3f} vs {s['no objective']['au_mean_f1'][0]:.3f}"
    )


def circumplex_headline(result: dict[str, Any]) -> str:
    """One line: the term's affective distance of errors against its controls, over the seeds."""
    s, p = result["summary"], _p_values(result)
    return (
        f"affective distance of errors {s['circumplex']['affective_distance'][0]:.3f} vs "
        f"{s['uniform']['affective_distance'][0]:.3f} uniform cost "
        f"(p {p[('affective_distance', 'circumplex', 'uniform')]:.3f}), "
        f"{s['none']['affective_distance'][0]:.3f} no term "
        f"(p {p[('affective_distance', 'circumplex', 'none')]:.3f}); macro-F1 "
        f"{s['circumplex']['macro_f1'][0]:.3f} / {s['uniform']['macro_f1'][0]:.3f} / "
        f"{s['none']['macro_f1'][0]:.3f}"
    )
