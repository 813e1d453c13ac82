"""The ``faithfulness`` audit (FACR): on the audited head's test split, do(AU_i = 0) and do(AU_i = 1)
on its AU layer for every AU and sample; the AUs that move a class's logit by more than
``threshold`` on average over that class's samples are the ones it *invokes*; agreement (F1 or
Jaccard) with the causal AUs of a structure G per class and averaged; every sample's rationale and
whether ablating each AU it mentions moves the prediction. Its controls: the same head without the
objective and with G's AU labels permuted.
"""

from typing import Any

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader
from heads.audit_report import faithfulness_headline, faithfulness_markdown
from heads.faithfulness import audit
from heads.tasks import get_task
from heads.trainer import evaluate, predict
from stages.extraction.sources.labels import FACS_NAMES, au_number
from stages.training.audits.base import Audit, register_audit
from stages.training.faithfulness_structures import structure_key, structure_of
from stages.training.head_steps import head_data, load_head


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


def faithfulness_key(options: dict[str, Any]) -> dict[str, Any]:
    """G's content, not its name (an edited structure file is a new audit), the threshold, the measure."""
    structure = options["structure"]
    return {"structure": structure_key({"structure": structure}) if structure else None} | {
        k: options[k] for k in ("threshold", "measure")
    }


register_audit(
    "faithfulness",
    Audit(
        1,
        faithfulness_key,
        faithfulness_of,
        faithfulness_runs,
        faithfulness_controls,
        faithfulness_markdown,
        faithfulness_headline,
        {"mean_agreement": "greater", "rationale_faithfulness": "greater"},
    ),
)
