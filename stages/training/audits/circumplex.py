"""The ``circumplex`` audit: the affect geometry of a class head's errors — accuracy (RAF-DB's,
AffectNet's and FER2013's official score), macro-F1, the affective distance of errors (mean
circumplex distance between true and predicted class over misclassifications), and the confusion
rows of the rarest classes with each cell's circumplex distance. Its controls: the same head with a
uniform-cost term and without a term.
"""

from typing import Any

import numpy as np

from featurestore import FeatureStore, GroupReader
from heads.audit_report import circumplex_headline, circumplex_markdown
from heads.metrics import affective_distance, confusion
from heads.tasks import get_task
from heads.trainer import predict
from stages.training.audits.base import Audit, register_audit
from stages.training.circumplex import transport_costs, transport_key
from stages.training.head_steps import head_data, load_head

RAREST = 2  # the circumplex audit shows the confusion rows of this many rarest classes


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


def circumplex_controls(store: FeatureStore, path: str) -> dict[str, tuple[dict, dict]]:
    train = GroupReader.open(store, path).meta["spec"]["params"]["train"]
    if train.get("transport", "none") != "circumplex":
        raise ValueError(f"{path}: controls compare a head trained with the circumplex term (--transport circumplex)")
    return {"circumplex": ({}, {}), "uniform": ({}, {"transport": "uniform"}), "none": ({}, {"transport": "none"})}


# which way each score should move for the term / objective to have helped (one-sided Wilcoxon);


register_audit(
    "circumplex",
    # keyed on the positions file the distances come from
    Audit(
        1,
        lambda options: transport_key("circumplex"),
        circumplex_of,
        circumplex_runs,
        circumplex_controls,
        circumplex_markdown,
        circumplex_headline,
        {"affective_distance": "less"},
    ),
)
