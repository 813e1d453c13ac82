"""The layer contracts (pyproject.toml, run by ``make test``) hold, and fail when broken."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import BIN, REPO

PACKAGES = ("affectflow", "flows", "stages", "featurestore", "heads")


def _lint(root) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # ahead of the editable install: the copy is analysed
    return subprocess.run(
        [str(BIN / "lint-imports"), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def tree(tmp_path):
    """A copy of the four packages and the contracts, to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_its_layers(tree):
    done = _lint(tree)
    assert done.returncode == 0 and "4 kept, 0 broken" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("module", "code", "contract", "chain"),
    [
        (
            "heads/upward.py",
            "import stages.training.head_steps\n",
            "Layers",
            "heads.upward -> stages.training.head_steps",
        ),
        ("heads/peek.py", "import featurestore\n", "Layers", "heads.peek -> featurestore"),
        ("featurestore/upward.py", "import heads.aura\n", "Layers", "featurestore.upward -> heads.aura"),
        ("stages/direct_zarr.py", "import zarr\n", "Only featurestore imports zarr", "stages.direct_zarr -> zarr"),
        (
            "stages/extraction/upward.py",
            "import stages.training.head_steps\n",
            "The two stages",
            "stages.extraction.upward -> stages.training.head_steps",
        ),
        (
            "stages/training/generated.py",
            "import stages.synthetic.face_generator\n",
            "The two stages",
            "stages.training.generated -> stages.synthetic.face_generator",
        ),
        # the plans importing the flows that run them: the circle flows/run.py exists to break
        ("flows/heads.py", "import flows.train\n", "flows in layers", "flows.heads -> flows.train"),
    ],
)
def test_a_module_that_breaks_a_contract_fails_the_check(tree, module, code, contract, chain):
    (tree / module).write_text(code)
    done = _lint(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    broken = done.stdout[done.stdout.index("Broken contracts") :]
    assert contract in broken and chain in broken, broken
