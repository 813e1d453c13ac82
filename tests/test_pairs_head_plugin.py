"""A head that reads LaScA's window pairs, added in this one module: registered with
``inputs=("pairs",)``, it trains through the one path every head takes (plan → keyed step →
trainer), from the Python API and the ``train`` command, on the prompts and pairs of a grid cell,
in its own step folder beside LaScA's learner — no flow or stage names it."""

from __future__ import annotations

import json
from dataclasses import dataclass

from torch import nn

import affectflow
from featurestore import FeatureStore
from heads.baselines import TaskHead
from heads.registry import register_head
from stages.synthetic.windows import arousal_walk_windows


@dataclass
class DifferenceProbeConfig:
    """No options."""


@register_head("toy-difference-probe", version=1, config=DifferenceProbeConfig, tasks=("rank",), inputs=("pairs",))
def difference_probe(task: str, in_dim: int, n_outputs: int, config: DifferenceProbeConfig) -> TaskHead:
    """A logistic regression on the window difference: does the affect rise?"""
    return TaskHead(task, in_dim, nn.Linear(in_dim, n_outputs))


CELL = {"window": "5s", "affect": "arousal", "tau": 0.1, "modality": "both", "variant": "features"}
KNOBS = {"epochs": 100, "lr": 1e-2}  # LaScA's preset (25 epochs at 1e-3) leaves a logistic regression at 0.61


def test_a_pairs_head_from_one_module_trains_keyed_through_the_api_and_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    store = FeatureStore(tmp_path / "store")
    arousal_walk_windows(store, subjects=12, per=60)
    first = affectflow.train(
        "clips", "rank", "toy-difference-probe", store=str(store.root), cell=CELL, folds=3, **KNOBS
    )
    assert first.state == "new" and first.path.startswith("heads/clips/toy-difference-probe-rank/")
    # jaw opening and loudness follow arousal: the difference of two windows tells its direction (measured 0.906)
    assert first.metrics["test"]["accuracy"] > 0.8, first.metrics["test"]
    lasca = affectflow.train("clips", "rank", "lasca", store=str(store.root), cell=CELL, folds=3)
    assert lasca.state == "new" and lasca.path.startswith("heads/clips/lasca-rank/")
    prompts_and_pairs = {g.path for g in store.list_steps() if g.path.split("/")[0] in ("prompts", "pairs")}
    assert len(prompts_and_pairs) == 2  # both heads read the one cell's prompts and pairs
    args = ["train", "--features", "clips", "--task", "rank", "--head", "toy-difference-probe", "--folds", "3"]
    args += ["--plugin", __name__, "--store", str(store.root), "--test-fold", "1", "--epochs", "100", "--lr", "1e-2"]
    args += [a for k, v in CELL.items() for a in ("--cell", f"{k}={v}")]
    again = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "run.json")])
    assert again.exit_code == 0, again.output
    (run,) = json.loads((tmp_path / "run.json").read_text())["runs"]
    assert (run["head"], run["state"], run["key"]) == ("toy-difference-probe", "skipped", first.key)
