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


def test_training_a_task_whose_labels_the_dataset_lacks_names_the_labels_it_has(tmp_path, monkeypatch):
    """``train --task va`` on an expression-only set: not "empty split (train 0 …)" but what is missing
    and which tasks the set's labels serve."""
    import numpy as np
    import pytest

    from featurestore import FeatureStore
    from heads.trainer import TrainConfig
    from stages.training.head_steps import train_head
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
    group, state, _ = train_head(store, features, "linear", "fer", train=TrainConfig(epochs=1, progress=False))
    assert state == "new"
    # a head stored by another version of its code is refused by name, not with a state-dict error
    import dataclasses

    from heads.registry import HEADS
    from stages.training.head_steps import load_head

    monkeypatch.setitem(HEADS, "linear", dataclasses.replace(HEADS["linear"], version=HEADS["linear"].version + 1))
    with pytest.raises(ValueError, match=r"trained by linear version \d+; this code's is version \d+: train it again"):
        load_head(store, group.path)
    monkeypatch.undo()
    # `results --task ferr` (a typo): what the store has, and a non-zero exit, not an empty table
    out = CliRunner().invoke(app, ["results", "--task", "ferr", "--store", str(tmp_path / "store")])
    assert out.exit_code == 1, out.output
    assert "no complete head runs match" in out.output and "tasks: fer" in out.output, out.output
    assert "heads: linear" in out.output and "datasets: exprs" in out.output, out.output


def test_layouts_describes_every_layout_in_whole_sentences():
    """`affectflow layouts` prints each layout's first docstring paragraph, not its first line
    (the csv layout's description was cut mid-sentence)."""
    from stages.extraction.sources import SOURCES

    text = CliRunner().invoke(app, ["layouts"], terminal_width=400).output
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == len(SOURCES)
    assert all(line.rstrip().endswith(".") for line in lines), [line for line in lines if not line.endswith(".")]
    assert "subject, split, AU<n> columns" in text


def test_the_demo_keeps_its_logs_in_a_file_and_shows_their_end_when_it_fails(tmp_path):
    """`affectflow demo` without -v: what goes to standard error (Python's logging, progress bars, a
    native library's or child process's writes to fd 2) lands in demo.log, not on the terminal;
    after it, standard error is the terminal's again. A failure prints the log's last lines."""
    import subprocess
    import sys

    from tests.conftest import REPO

    script = """
import logging, os, subprocess, sys
from pathlib import Path
from flows.cli.demo import _logs_to
with _logs_to(Path(sys.argv[1])):
    logging.getLogger("demo").warning("a logged warning")
    os.write(2, b"a native write to fd 2\\n")
    subprocess.run([sys.executable, "-c", "import sys; print('a child process', file=sys.stderr)"], check=True)
    print("progress bars", os.environ["TQDM_DISABLE"], file=sys.stderr)
print("after", "TQDM_DISABLE" in os.environ, file=sys.stderr)
with _logs_to(Path(sys.argv[2])):
    print("the step that broke", file=sys.stderr)
    raise RuntimeError("boom")
"""
    logs = [tmp_path / "demo.log", tmp_path / "failed.log"]
    done = subprocess.run([sys.executable, "-c", script, *map(str, logs)], cwd=REPO, capture_output=True, text=True)
    assert logs[0].read_text().splitlines() == [
        "a logged warning",
        "a native write to fd 2",
        "a child process",
        "progress bars 1",
    ]
    assert done.returncode == 1 and done.stderr.startswith("after False\n"), done.stderr
    assert "RuntimeError: boom" in done.stderr  # the traceback, on the restored terminal
    assert "the step that broke" in done.stdout and "the demo failed" in done.stdout and str(logs[1]) in done.stdout
