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
