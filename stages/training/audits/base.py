"""The audit step kind and its registry: ``audits/<dataset>/<audit>/<key>``, keyed on the audited
head steps' keys. Each audit kind registers itself where it is defined (``register_audit``, as heads,
tasks and resources do): stages/training/audits/faithfulness.py and stages/training/audits/circumplex.py.

With ``seeds`` an audit also trains (or finds: they are keyed head steps) the audited head's
controls on as many seeds and reports Wilcoxon signed-rank tests over the paired seeds. The step
keeps per-sample arrays of the audited head, ``audit.json`` and ``report.md``.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurestore import FeatureStore, GroupReader, Step, StepGroup, StepOutput, StepSpec
from heads.metrics import paired_test
from heads.trainer import TrainConfig
from stages.training.head_steps import train_head

AUDIT_STEP = "audit"


@dataclass(frozen=True)
class Audit:
    """One audit kind: its step version, what of the options keys it, the audit of one head, the
    scores compared over seeds, the controls of a head, the report, and which way each score
    should move for the method to have helped (one-sided Wilcoxon; the others: two-sided, a change
    either way is news); ``headline``: one line of an audit against its controls (with seeds)."""

    version: int
    key: Callable[[dict[str, Any]], dict[str, Any]]
    of: Callable[[FeatureStore, str, dict[str, Any]], tuple[dict[str, Any], dict]]
    scores: Callable[[dict[str, Any]], dict[str, float]]
    controls: Callable[[FeatureStore, str], dict[str, tuple[dict, dict]]]
    markdown: Callable[[dict[str, Any]], str]
    headline: Callable[[dict[str, Any]], str]
    directions: dict[str, str]


AUDITS: dict[str, Audit] = {}


def register_audit(name: str, audit: Audit) -> Audit:
    if name in AUDITS and AUDITS[name] != audit:
        raise ValueError(f"audit {name!r} is registered twice")
    AUDITS[name] = audit
    return audit


def get_audit(name: str) -> Audit:
    if name not in AUDITS:
        raise ValueError(f"unknown audit {name!r}; audits: {', '.join(AUDITS)}")
    return AUDITS[name]


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


def compare(runs: dict[str, list[dict[str, float]]], directions: dict[str, str]) -> list[dict[str, Any]]:
    """Per score, every variant against every later one over paired seeds (Wilcoxon, scipy): the
    method against each control, and the controls against each other (does a permuted G gain over
    no objective? does a uniform cost alone move the errors?)."""
    names = list(runs)
    rows = []
    for score in runs[names[0]][0]:
        for i, first in enumerate(names):
            for other in names[i + 1 :]:
                a, b = [r[score] for r in runs[first]], [r[score] for r in runs[other]]
                alternative = directions.get(score, "two-sided")
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
                {
                    "seeds": seeds,
                    "variants": variants,
                    "runs": runs,
                    "summary": summarise(runs),
                    "tests": compare(runs, kind.directions),
                }
            )
        files = {"audit.json": json.dumps(result, indent=1).encode(), "report.md": kind.markdown(result).encode()}
        meta = {"dataset": head.meta["dataset"], "audit": audit_name, "head_path": head_path}
        return StepOutput(arrays, meta, files)

    group, state = store.run_step(step, compute)
    return group, state, json.loads(store.get_file(group.path, "audit.json"))
