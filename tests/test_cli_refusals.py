"""Commands that refuse a newcomer's mistakes with the reason instead of an empty success."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app


def test_reading_commands_refuse_a_store_that_is_not_there_and_make_none(tmp_path):
    """A mistyped --store: ls, results and evaluate say there is no store there and exit non-zero,
    instead of creating an empty one and printing an empty table."""
    for command in (["ls"], ["results"], ["evaluate", "x/linear-fer"]):
        out = CliRunner().invoke(app, [*command, "--store", str(tmp_path / "stor")])
        assert out.exit_code != 0 and "no feature store at" in out.output, (command, out.output)
    assert not (tmp_path / "stor").exists()


def test_train_help_names_every_registered_head():
    import heads.aura  # noqa: F401  (each head registers itself where it is defined)
    import heads.baselines  # noqa: F401
    import heads.causal  # noqa: F401
    import heads.facr  # noqa: F401
    import heads.faud  # noqa: F401
    import heads.lasca  # noqa: F401
    from heads.registry import HEADS

    ours = [name for name, entry in HEADS.items() if entry.build.__module__.startswith("heads.")]  # not plugins
    text = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    assert len(ours) >= 7 and all(name in text for name in ours), (ours, text)


def test_training_a_task_whose_labels_the_dataset_lacks_names_the_labels_it_has(tmp_path):
    """``train --task va`` on an expression-only set: not "empty split (train 0 …)" but what is missing
    and which tasks the set's labels serve."""
    import numpy as np
    import pytest

    from featurestore import FeatureStore
    from heads.trainer import TrainConfig
    from stages.head_steps import train_head
    from tests.conftest import write_feature_group

    store = FeatureStore(str(tmp_path / "store"))
    n = 40
    labels = {
        "expression": (np.arange(n) % 3).astype(np.int8),
        "va": np.full((n, 2), np.nan, np.float32),
        "subject": (np.arange(n) % 8).astype(str),
        "split": np.array([""] * n),
    }
    features = write_feature_group(store, "exprs", {"global": np.random.default_rng(0).normal(size=(n, 4))}, labels)
    with pytest.raises(ValueError, match=r"va on .*no sample has the task's labels; the dataset has expressions"):
        train_head(store, features, "linear", "va", train=TrainConfig(epochs=1, progress=False))
    assert train_head(store, features, "linear", "fer", train=TrainConfig(epochs=1, progress=False))[1] == "new"
