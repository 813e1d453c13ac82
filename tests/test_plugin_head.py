"""A head family and a task added in one module, with no edit anywhere else: registered here, trained
through the Python API, the ``train-heads`` flow and the command line (``--plugin``), keyed and
skipped on rerun like every head. This is the path new head families take."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
from torch import nn

import affectflow
from featurestore import FeatureStore
from heads.base import Head
from heads.metrics import expression_metrics
from heads.registry import register_head
from heads.tasks import Labels, Task, register_task
from tests.conftest import BIN, REPO, write_feature_group


@register_task
class ValenceSign(Task):
    """Toy task: is the valence positive? Two classes from the canonical ``va`` column."""

    name = "toy-valence-sign"
    headline = "accuracy"
    categorical = True

    def labels(self, source, expressions=None) -> Labels:
        valence = source.numpy("va")[:, 0]
        y = np.where(np.isfinite(valence), (valence > 0).astype(np.int64), -1)
        return Labels(y, y >= 0, ["negative", "positive"])

    def loss(self, out, target, weights, alpha=1.0):
        return nn.functional.cross_entropy(out, target)

    def branch_loss(self, out, target, weights, alpha=1.0):
        return self.loss(out[0], target[0], weights)

    def metrics(self, outputs, target, names):
        return expression_metrics(outputs.argmax(-1), target, len(names))


@dataclass
class ToyConfig:
    temperature: float = 1.0


class ToyHead(Head):
    """A bias-free linear map, its logits divided by a temperature."""

    def __init__(self, task: str, in_dim: int, n_outputs: int, config: ToyConfig):
        super().__init__()
        from heads.tasks import get_task

        self.task, self.config = get_task(task), config
        self.linear = nn.Linear(in_dim, n_outputs, bias=False)

    def predict(self, x):
        return self.linear(x) / self.config.temperature, None

    def losses(self, x, target, class_weights=None):
        loss = self.task.loss(self.predict(x)[0], target, class_weights)
        return loss, {"task": float(loss.detach())}


@register_head("toy-linear", version=1, config=ToyConfig, tasks=("toy-valence-sign",))
def toy_linear(task: str, in_dim: int, n_outputs: int, config: ToyConfig) -> ToyHead:
    return ToyHead(task, in_dim, n_outputs, config)


def _cached_features(store: FeatureStore, n: int = 600, dim: int = 8) -> str:
    """A source and a complete feature group whose first dimension carries the valence's sign."""
    rng = np.random.default_rng(0)
    valence = rng.uniform(-1, 1, n).astype(np.float32)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 0] += 3 * np.sign(valence)
    subject = np.arange(n) % 30
    split = np.array(["train"] * 20 + ["val"] * 5 + ["test"] * 5)[subject]
    labels = {
        "expression": np.full(n, -1, np.int8),
        "va": np.stack([valence, np.zeros(n, np.float32)], 1),
        "subject": subject.astype(str),
        "split": split,
    }
    return write_feature_group(store, "toy", {"global": x}, labels)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    store = FeatureStore(str(tmp_path_factory.mktemp("toy") / "store"))
    return store, _cached_features(store)


KNOBS = {"epochs": 30, "lr": 1e-2, "batch_size": 64, "patience": 10}


def test_a_head_and_task_from_one_module_train_through_the_python_api(toy_store):
    store, features = toy_store
    first = affectflow.train(features, "toy-valence-sign", "toy-linear", store=store.url, **KNOBS)
    assert first.state == "new" and first.path.startswith("heads/toy/toy-linear-toy-valence-sign/")
    assert first.metrics["test"]["accuracy"] > 0.9  # the sign sits in one input dimension
    assert first.metrics["protocol"] == "official train / val / test splits"
    again = affectflow.train(features, "toy-valence-sign", "toy-linear", store=store.url, **KNOBS)
    assert (again.state, again.key, again.metrics) == ("skipped", first.key, first.metrics)
    hotter = affectflow.train(
        features, "toy-valence-sign", "toy-linear", store=store.url, options={"temperature": 2.0}, **KNOBS
    )
    assert hotter.state == "new" and hotter.key != first.key  # an option is part of the key
    with pytest.raises(ValueError, match=r"head 'toy-linear' has no option k_max; its options: temperature"):
        affectflow.train(features, "toy-valence-sign", "toy-linear", store=store.url, options={"k_max": 3})
    with pytest.raises(ValueError, match=r"serves tasks toy-valence-sign, not 'fer'"):
        affectflow.train(features, "fer", "toy-linear", store=store.url)


@pytest.mark.usefixtures("prefect_harness")
def test_the_same_heads_through_the_train_heads_flow_and_the_command_line(toy_store, monkeypatch):
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.train import train_heads

    store, features = toy_store
    config = affectflow.HeadConfig(head="toy-linear", task="toy-valence-sign", features=features, seeds=[0, 5], **KNOBS)
    (seed0, seed5) = train_heads([config], store=store.url)["runs"]
    api = affectflow.train(features, "toy-valence-sign", "toy-linear", store=store.url, **KNOBS)
    assert api.state == "skipped" and api.key == seed0["key"]  # the flow's step is the API's step
    assert seed5["state"] == "new" and seed5["metrics"]["test"]["accuracy"] > 0.9
    args = ["train", "--features", features, "--task", "toy-valence-sign", "--head", "toy-linear", "--store", store.url]
    args += ["--plugin", __name__, "--seed", "5", "--epochs", "30", "--lr", "1e-2", "--batch-size", "64"]
    args += ["--patience", "10"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "toy-linear" in result.output and "accuracy" in result.output
    bad = CliRunner().invoke(app, args + ["--option", "k_max=3"])
    assert bad.exit_code == 2 and "its options: temperature" in bad.output
    # a stored head names the module that registers it: a fresh process evaluates it without --plugin
    # (this module importable there, as an installed plugin package would be)
    evaluate = [str(BIN / "affectflow"), "evaluate", seed5["path"], "--store", store.url]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(evaluate, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "accuracy" in done.stdout, done.stdout + done.stderr

    # against a server, a run is planned once: the train-heads flow is handed the plan and makes none
    from prefect.settings import PREFECT_API_URL

    import flows.train
    from flows.run import train_heads_here

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    monkeypatch.setattr(flows.train, "plan_heads", lambda *a, **k: pytest.fail("the flow planned the run again"))
    out = train_heads_here([config.model_copy(update={"seeds": [7]})], store=store.url)
    assert out["flow_run"] is True and [(r["state"], r["seed"]) for r in out["runs"]] == [("new", 7)]
