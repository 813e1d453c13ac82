"""The audit step kind: ``audits/<dataset>/<audit>/<key>``, keyed on the audited head steps' keys.

* ``faithfulness`` (FACR): on the audited head's test split, do(AU_i = 0) and do(AU_i = 1) on its AU
  layer for every AU and sample; the AUs that move a class's logit by more than ``threshold`` on
  average over that class's samples are the ones it *invokes*; agreement (F1 or Jaccard) with the
  causal AUs of a structure G per class and averaged; every sample's rationale and whether
  ablating each AU it mentions moves the prediction.
* ``circumplex``: the affect geometry of a class head's errors — accuracy (RAF-DB's, AffectNet's
  and FER2013's official score), macro-F1, the affective distance of errors (mean circumplex
  distance between true and predicted class over misclassifications), and the confusion rows of
  the rarest classes with each cell's circumplex distance.

With ``seeds`` the audit also trains (or finds: they are keyed head steps) the audited head's
controls on as many seeds — faithfulness: the same head without the objective and with G's AU
labels permuted; circumplex: the same head with a uniform-cost term and without a term — and
reports Wilcoxon signed-rank tests over the paired seeds. The step keeps per-sample arrays of the
audited head, ``audit.json`` and ``report.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepOutput, StepSpec
from heads.audit_report import circumplex_markdown, faithfulness_markdown
from heads.faithfulness import audit
from heads.metrics import affective_distance, confusion, paired_test
from heads.tasks import get_task
from heads.trainer import TrainConfig, evaluate, predict
from stages.circumplex import transport_costs, transport_key
from stages.faithfulness_structures import structure_key, structure_of
from stages.head_steps import head_data, load_head, train_head
from stages.sources.labels import FACS_NAMES, au_number

AUDIT_STEP = "audit"
RAREST = 2  # the circumplex audit shows the confusion rows of this many rarest classes


def audit_step(store: FeatureStore, audit_name: str, head_paths: list[str], params: dict[str, Any]) -> Step:
    """``audits/<dataset>/<audit>/<key>`` over the head steps at ``head_paths`` (the audited one first)."""
    heads = [GroupReader.open(store, path) for path in head_paths]
    spec = StepSpec(AUDIT_STEP, get_audit(audit_name).version, {"audit": audit_name, **params})
    return Step("audit", spec, tuple(h.step.key for h in heads), "audits", (heads[0].meta["dataset"], audit_name))


def retrain(store: FeatureStore, path: str, seed: int, options: dict | None = None, train: dict | None = None) -> str:
    """The head at ``path`` trained by its own recipe with other ``options`` / trainer knobs and
    ``seed`` (found, not retrained, when that head step is done); its path."""
    head = GroupReader.open(store, path)
    p = head.meta["spec"]["params"]
    config = TrainConfig(**{**p["train"], **(train or {}), "seed": seed}, progress=False)
    features = head.meta.get("features_paths", head.meta["features_path"])
    group, _, _ = train_head(
        store,
        features,
        p["head"],
        p["task"],
        p["array"],
        {**p["options"], **(options or {})},
        config,
        p["expressions"],
        p["test_fold"],
        p.get("folds"),
    )
    return group.path


# -- faithfulness ------------------------------------------------------------------------------
def faithfulness_of(store: FeatureStore, path: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """FACR's audit of the head at ``path`` (``options``: structure, threshold, measure): (summary,
    per-sample arrays)."""
    structure, threshold, measure = options["structure"], options["threshold"], options["measure"]
    model, config = load_head(store, path)
    if not (hasattr(model, "au_layer") and hasattr(model, "from_aus")):
        raise ValueError(
            f"{path}: head {config['head']!r} has no AU layer to intervene on (au_layer / from_aus); "
            "facr and causal heads have one"
        )
    params, _, data = head_data(store, path)
    names = list(data.label_names)
    m = get_task("au_fer").n_aus(names)
    if not m or m == len(names) or params["task"] != "au_fer":
        raise ValueError(f"{path}: the faithfulness audit needs an au_fer head (AUs, then classes)")
    aus, classes = names[:m], names[m:]
    if structure is None:
        if "structure" not in config:
            raise ValueError(f"{path}: head {config['head']!r} was trained without a structure: name one (--structure)")
        g, source = torch.tensor(config["structure"]["matrix"]), config["options"].get("structure", "prototypes")
    else:
        g, source = structure_of(store, {"structure": structure}, names), structure
    x, y = data.x["test"], data.y["test"]
    result = audit(
        model,
        x,
        y[:, m],
        g,
        aus,
        {a: FACS_NAMES[au_number(a)] for a in aus},
        classes,
        threshold=threshold,
        measure=measure,
    )
    scores = evaluate("au_fer", predict(model, x), y.numpy(), len(names), names)
    summary = {
        "head_path": path,
        "head": config["head"],
        "options": config["options"],
        "structure": source,
        "measure": measure,
        "threshold": threshold,
        "samples": int(x.shape[0]),
        "mean_agreement": result["mean_agreement"],
        "classes": [
            {
                "class": c,
                "causal": [f"{aus[i]}{'+' if g[k, i] > 0 else '−'}" for i in range(m) if g[k, i] != 0],
                "invoked": [aus[i] for i in range(m) if result["invoked"][k, i]],
                "agreement": float(result["agreement"][k]),
                "defined": bool((g[k] != 0).any()),
            }
            for k, c in enumerate(classes)
        ],
        "rationale_faithfulness": result["rationale_faithfulness"],
        "examples": _examples(result, y[:, m].numpy(), classes),
        "au_mean_f1": scores["mean_f1"],
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
    }
    arrays = {
        "row": data.rows["test"],
        "predicted": result["predicted"].numpy().astype(np.int16),
        "effect": result["effect_on_predicted"].numpy().astype(np.float16),
        "mentioned": result["mentioned"].numpy(),
        "moved": result["moved"].numpy(),
    }
    return summary, arrays


def _examples(result: dict[str, Any], target: np.ndarray, classes: list[str], per_class: int = 1) -> list[dict]:
    """The first test sample predicted as each class: its rationale and which mentioned AUs move it."""
    out = []
    predicted = result["predicted"].numpy()
    for k, name in enumerate(classes):
        for b in np.flatnonzero(predicted == k)[:per_class]:
            out.append(
                {
                    "sample": int(b),
                    "label": classes[target[b]] if target[b] >= 0 else "—",
                    "rationale": result["rationales"][b],
                }
            )
    return out


def faithfulness_runs(summary: dict[str, Any]) -> dict[str, float]:
    return {k: summary[k] for k in ("mean_agreement", "au_mean_f1", "macro_f1", "rationale_faithfulness")}


# -- circumplex --------------------------------------------------------------------------------
def circumplex_of(store: FeatureStore, path: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """The affect geometry of the head at ``path``'s test errors: (summary, per-sample arrays)."""
    model, config = load_head(store, path)
    params, _, data = head_data(store, path)
    classes = get_task(params["task"]).transport_classes(data.label_names)  # fer, au_fer: the classes' names
    m = len(data.label_names) - len(classes)
    y = data.y["test"].numpy()
    target = y if y.ndim == 1 else y[:, m]
    logits = predict(model, data.x["test"])[:, m:]
    cost = transport_costs("circumplex", classes).numpy()
    pred = logits.argmax(-1)
    counts = confusion(pred, target, len(classes))
    present = counts.sum(1)
    rarest = [int(c) for c in np.argsort(present, kind="stable") if present[c] > 0][:RAREST]
    scores = get_task("fer").metrics(logits, target, classes)
    summary = {
        "head_path": path,
        "head": config["head"],
        "transport": GroupReader.open(store, path).meta["spec"]["params"]["train"].get("transport", "none"),
        "samples": int((target >= 0).sum()),
        "accuracy": scores["accuracy"],
        "macro_f1": scores["macro_f1"],
        "affective_distance": affective_distance(pred, target, cost),
        "errors": int(((target >= 0) & (pred != target)).sum()),
        "classes": classes,
        "rarest": [
            {
                "class": classes[c],
                "n": int(present[c]),
                "predicted": {classes[j]: int(counts[c, j]) for j in range(len(classes)) if counts[c, j]},
                "distance": {classes[j]: round(float(cost[c, j]), 3) for j in range(len(classes)) if j != c},
            }
            for c in rarest
        ],
    }
    return summary, {"row": data.rows["test"], "target": target.astype(np.int16), "predicted": pred.astype(np.int16)}


def circumplex_runs(summary: dict[str, Any]) -> dict[str, float]:
    return {k: summary[k] for k in ("accuracy", "macro_f1", "affective_distance")}


# -- controls over seeds -----------------------------------------------------------------------
def faithfulness_controls(store: FeatureStore, path: str) -> dict[str, tuple[dict, dict]]:
    """The objective's controls: (options, trainer knobs) per variant, the audited head's first."""
    options = GroupReader.open(store, path).meta["spec"]["params"]["options"]
    if not options.get("faithfulness_weight"):
        raise ValueError(
            f"{path}: controls compare a head trained with the faithfulness objective (faithfulness_weight > 0)"
        )
    return {
        "objective": ({}, {}),
        "no objective": ({"faithfulness_weight": 0.0}, {}),
        "permuted G": ({"permuted": True}, {}),
    }


def circumplex_controls(store: FeatureStore, path: str) -> dict[str, tuple[dict, dict]]:
    train = GroupReader.open(store, path).meta["spec"]["params"]["train"]
    if train.get("transport", "none") != "circumplex":
        raise ValueError(f"{path}: controls compare a head trained with the circumplex term (--transport circumplex)")
    return {"circumplex": ({}, {}), "uniform": ({}, {"transport": "uniform"}), "none": ({}, {"transport": "none"})}


# which way each score should move for the term / objective to have helped (one-sided Wilcoxon);
# macro-F1, accuracy and AU F1: two-sided (a change either way is news)
DIRECTION = {"mean_agreement": "greater", "affective_distance": "less", "rationale_faithfulness": "greater"}


def compare(runs: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    """Per score, every variant against every later one over paired seeds (Wilcoxon, scipy): the
    method against each control, and the controls against each other (does a permuted G gain over
    no objective? does a uniform cost alone move the errors?)."""
    names = list(runs)
    rows = []
    for score in runs[names[0]][0]:
        for i, first in enumerate(names):
            for other in names[i + 1 :]:
                a, b = [r[score] for r in runs[first]], [r[score] for r in runs[other]]
                alternative = DIRECTION.get(score, "two-sided")
                rows.append(
                    {"score": score, "variant": first, "against": other, "alternative": alternative}
                    | paired_test(a, b, alternative)
                )
    return rows


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, list[float]]]:
    return {
        v: {k: [float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))] for k in rs[0]}
        for v, rs in runs.items()
    }


def faithfulness_key(options: dict[str, Any]) -> dict[str, Any]:
    """G's content, not its name (an edited structure file is a new audit), the threshold, the measure."""
    structure = options["structure"]
    return {"structure": structure_key({"structure": structure}) if structure else None} | {
        k: options[k] for k in ("threshold", "measure")
    }


@dataclass(frozen=True)
class Audit:
    """One audit kind: its step version, what of the options keys it, the audit of one head, the
    scores compared over seeds, the controls of a head, the report."""

    version: int
    key: Callable[[dict[str, Any]], dict[str, Any]]
    of: Callable[[FeatureStore, str, dict[str, Any]], tuple[dict[str, Any], dict]]
    scores: Callable[[dict[str, Any]], dict[str, float]]
    controls: Callable[[FeatureStore, str], dict[str, tuple[dict, dict]]]
    markdown: Callable[[dict[str, Any]], str]


AUDITS = {
    "faithfulness": Audit(
        1, faithfulness_key, faithfulness_of, faithfulness_runs, faithfulness_controls, faithfulness_markdown
    ),
    # keyed on the positions file the distances come from
    "circumplex": Audit(
        1,
        lambda options: transport_key("circumplex"),
        circumplex_of,
        circumplex_runs,
        circumplex_controls,
        circumplex_markdown,
    ),
}


def get_audit(name: str) -> Audit:
    if name not in AUDITS:
        raise ValueError(f"unknown audit {name!r}; audits: {', '.join(AUDITS)}")
    return AUDITS[name]


def run_audit(
    store: FeatureStore,
    audit_name: str,
    head_path: str,
    seeds: int = 0,
    structure: str | None = None,
    threshold: float = 0.5,
    measure: str = "f1",
) -> tuple[StepGroup, str, dict[str, Any]]:
    """Audit the head at ``head_path`` (keyed: a rerun is skipped); with ``seeds`` > 1 its controls
    on that many seeds too. Returns (group, "skipped" | "new", the audit.json content)."""
    kind = get_audit(audit_name)
    options = {"structure": structure, "threshold": threshold, "measure": measure}
    head = GroupReader.open(store, head_path)
    variants: dict[str, list[str]] = {}
    if seeds > 1:
        first = head.meta["spec"]["params"]["train"]["seed"]
        for n, (name, (head_options, train)) in enumerate(kind.controls(store, head_path).items()):
            # the first variant is the audited head's recipe: its first seed is the audited head
            variants[name] = [
                head_path if n == 0 and i == 0 else retrain(store, head_path, first + i, head_options, train)
                for i in range(seeds)
            ]
    paths = [head_path, *(p for ps in variants.values() for p in ps if p != head_path)]
    step = audit_step(store, audit_name, paths, {**kind.key(options), "seeds": seeds})

    def compute() -> StepOutput:
        summary, arrays = kind.of(store, head_path, options)
        result = {"audit": audit_name, **summary}
        if variants:  # the audited head is its own first run: audited once
            audited = lambda p: summary if p == head_path else kind.of(store, p, options)[0]  # noqa: E731
            runs = {name: [kind.scores(audited(p)) for p in ps] for name, ps in variants.items()}
            result.update(
                {"seeds": seeds, "variants": variants, "runs": runs, "summary": summarise(runs), "tests": compare(runs)}
            )
        files = {"audit.json": json.dumps(result, indent=1).encode(), "report.md": kind.markdown(result).encode()}
        meta = {"dataset": head.meta["dataset"], "audit": audit_name, "head_path": head_path}
        return StepOutput(arrays, meta, files)

    group, state = store.run_step(step, compute)
    return group, state, json.loads(store.get_file(group.path, "audit.json"))
