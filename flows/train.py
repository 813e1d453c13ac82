"""The ``train-heads`` flow (and evaluation, reports): the plan of ``flows/heads.py`` run as Prefect
tasks, so a deployment or a run against a server records every head and publishes the reports."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from featurestore import FeatureStore
from flows.audits import audit_heads_here
from flows.credentials import store_options
from flows.demo import HEAD_PLANS
from flows.heads import HeadConfig, PlannedHead, evaluation, plan_heads, results, train_one
from flows.lasca import lasca_grid
from heads.tasks import get_task
from stages.training.head_reports import write_report
from stages.training.lasca_steps import LascaGrid


@task(cache_policy=NO_CACHE, task_run_name="{planned.config.head}-{planned.config.task} seed {planned.seed}")
def train_head_task(store_url: str, storage_options: dict, planned: PlannedHead, device: str | None) -> dict[str, Any]:
    run = train_one(FeatureStore(store_url, storage_options), planned, device)
    if "report" in run:
        create_markdown_artifact(markdown=run["report"], key="head-report", description=f"report of {run['path']}")
    return run


@task(cache_policy=NO_CACHE, task_run_name="report {head_path}")
def head_report_task(
    store_url: str,
    storage_options: dict,
    head_path: str,
    force: bool = False,
    prototypes: str | None = None,
    samples: list[str] | None = None,
) -> dict[str, Any]:
    """The interpretability report beside the checkpoint (kept when it exists and nothing new is
    asked of it), as an artifact too."""
    fstore = FeatureStore(store_url, storage_options)
    if force or prototypes or samples or not fstore.has_file(head_path, "report.md"):
        write_report(fstore, head_path, prototypes=prototypes, samples=samples)
    text = fstore.get_file(head_path, "report.md").decode()
    create_markdown_artifact(markdown=text, key="head-report", description=f"report of {head_path}")
    return {"path": head_path, "markdown": text}


@flow(name="train-heads", log_prints=True)
def train_heads(
    heads: list[HeadConfig] | None = None,
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    device: str | None = None,
    plan: str | None = None,
    storage_secret: str | None = None,
    planned: list[PlannedHead] | None = None,
) -> dict[str, Any]:
    """Train every head config for each of its seeds on cached features (skipped when keyed done).

    ``plan`` names a head plan (``demo``: flows/demo.py) worked out from the store when the run
    starts, on the latest feature groups it holds: what a deployment triggered by an extraction
    passes, since the feature keys are not known when it is deployed. Its heads come before ``heads``.
    ``planned``: the steps already planned by the caller (flows/run.py), run as they are, not
    planned again. ``storage_secret``: a Prefect Secret block with the store's credentials, read
    inside the run.
    """
    logger = get_run_logger()
    storage_options = store_options(storage_options, storage_secret)
    fstore = FeatureStore(store, storage_options)
    if plan is not None and plan not in HEAD_PLANS:
        raise ValueError(f"unknown head plan {plan!r}; plans: {', '.join(HEAD_PLANS)}")
    heads = [*(HEAD_PLANS[plan](fstore) if plan else []), *(heads or [])]
    if not heads and planned is None:
        raise ValueError("train-heads needs heads, a plan or planned steps")
    runs = []
    for step in [*(planned or []), *(plan_heads(heads, fstore) if heads else [])]:
        run = train_head_task(store, storage_options, step, device)
        headline = get_task(run["task"]).headline
        logger.info(
            "%s %s seed %d: %s, test %s = %.4f",
            run["head"],
            run["task"],
            run["seed"],
            run["state"],
            headline,
            run["metrics"]["test"][headline],
        )
        runs.append(run)
    out = results(runs, fstore)
    create_markdown_artifact(markdown=out["report"], key="train-heads-summary", description="train-heads run")
    return out


@flow(name="evaluate-heads", log_prints=True)
def evaluate_heads(
    paths: list[str],
    split: str = "test",
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """Every metric of trained heads on a split, as a markdown artifact (and the returned table)."""
    out = evaluation(FeatureStore(store, store_options(storage_options, storage_secret)), paths, split)
    create_markdown_artifact(markdown=out["report"], key="evaluate-heads", description=f"heads on the {split} split")
    return out


@flow(name="head-report", log_prints=True)
def head_reports(
    paths: list[str],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    force: bool = False,
    prototypes: str | None = None,
    samples: list[str] | None = None,
    storage_secret: str | None = None,
) -> list[dict[str, Any]]:
    """Write (or, with ``force``, rewrite) the reports of trained archetype, graph and attention-map heads; a graph
    head's with a user's ``prototypes`` table and chosen ``samples`` (stages/training/head_reports.py)."""
    options = store_options(storage_options, storage_secret)
    return [head_report_task(store, options, path, force, prototypes, samples) for path in paths]


@flow(name="audit-heads", log_prints=True)
def audit_heads(
    audit: str,
    paths: list[str],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    seeds: int = 0,
    structure: str | None = None,
    threshold: float = 0.5,
    measure: str = "f1",
    storage_secret: str | None = None,
) -> list[dict[str, Any]]:
    """Audit trained heads (``faithfulness`` or ``circumplex``, stages/training/audits/), each a keyed
    audit step with its report as an artifact; with ``seeds`` > 1 against its controls on as many seeds."""
    options = store_options(storage_options, storage_secret)
    audits = audit_heads_here(audit, paths, store, options, seeds, structure, threshold, measure)
    for a in audits:
        create_markdown_artifact(
            markdown=a["markdown"], key=f"{audit}-audit", description=f"{audit} audit of {a['path']}"
        )
    return audits


@flow(name="lasca-grid", log_prints=True)
def lasca_grid_flow(
    grid: dict[str, Any],
    store: str = "./store",
    storage_options: dict[str, Any] | None = None,
    out: str | None = None,
    workers: int | None = None,
    storage_secret: str | None = None,
) -> dict[str, Any]:
    """LaScA's grid (``stages.training.lasca_steps.LascaGrid``'s fields) over the store's windows: every
    learner a keyed step, trained in ``workers`` processes (None: one per core when enough are
    new); the accuracy and significance tables and the prompt statistics as an artifact (and
    written to ``out``)."""
    options = store_options(storage_options, storage_secret)
    result = lasca_grid(LascaGrid(**grid), store, options, out, workers=workers)
    create_markdown_artifact(markdown=result["report"], key="lasca-grid", description=f"LaScA grid on {store}")
    return result
