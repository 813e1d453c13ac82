"""The README cannot drift from the CLI: its worked walkthrough runs verbatim here."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import BIN, write_csv_dataset

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = "<!-- walkthrough: tests/test_readme.py runs this block verbatim -->"


def test_the_readme_demo_table_is_what_this_commits_demo_printed():
    """bench/demo.py runs `affectflow demo` and renders its head runs into the README; the JSON it
    writes records the digest of the code the demo ran, which must be this checkout's."""
    import importlib.util
    import sys

    sys.path.append(str(REPO / "bench"))  # bench/demo.py imports its sibling `common`
    spec = importlib.util.spec_from_file_location("bench_demo", REPO / "bench" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    result = json.loads((REPO / "bench" / "results" / "demo.json").read_text())
    assert result["code_digest"] == demo.code_digest(), (
        "the code changed since bench/results/demo.json: run `python bench/demo.py` to refresh the README's demo table"
    )
    assert demo.readme_table(result) in README.read_text(), "the README's demo table is not bench/results/demo.json's"
    trained = {(h, t) for h in ("aura", "linear", "mlp") for t in ("fer", "va", "au")} | {
        ("causal", "au_fer"),
        ("faud", "au"),
        ("facr", "au_fer"),
    }
    assert {(r["head"], r["task"]) for r in result["rows"]} == trained | {
        ("lasca", "rank")
    }  # every head `make demo` trains
    # the audits: FACR's faithfulness and the circumplex term's, each against its controls
    assert [a["audit"] for a in result["audits"]] == ["faithfulness", "circumplex"]
    # LaScA's demo grid: features and fused for each modality (flows/demo.py's demo_lasca_grid)
    assert sorted(r["array"] for r in result["rows"] if r["task"] == "rank") == [
        f"{m}-{v}" for m in ("audio", "both", "face") for v in ("features", "fused")
    ]


def walkthrough() -> str:
    text = README.read_text()
    assert MARK in text, "the README's walkthrough block lost its marker"
    block = re.match(r"\s*```bash\n(.*?)```", text[text.index(MARK) + len(MARK) :], re.S)
    assert block, "the marker is not followed by a bash block"
    return block.group(1)


def write_rafdb(root: Path, n_train: int = 42, n_test: int = 14) -> Path:
    """RAF-DB's layout (EmoLabel/list_patition_label.txt, Image/aligned/<stem>_aligned.jpg) over
    real photos; labels cycle through RAF-DB's seven codes."""
    photos = sorted((write_csv_dataset(root / "photos", n_train + n_test) / "img").glob("*.jpg"))
    stems = [f"train_{i + 1:05d}" for i in range(n_train)] + [f"test_{i + 1:04d}" for i in range(n_test)]
    (root / "rafdb" / "Image" / "aligned").mkdir(parents=True)
    (root / "rafdb" / "EmoLabel").mkdir()
    lines = []
    for i, (stem, photo) in enumerate(zip(stems, photos, strict=True)):
        Image.open(photo).save(root / "rafdb" / "Image" / "aligned" / f"{stem}_aligned.jpg")
        lines.append(f"{stem}.jpg {i % 7 + 1}")
    (root / "rafdb" / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root / "rafdb"


@pytest.mark.slow
def test_the_readme_walkthrough_runs_verbatim_on_a_tiny_rafdb_and_a_local_checkpoint(tmp_path, prefect_api):
    from stages.extraction.encoders import create_encoder

    data = write_rafdb(tmp_path)
    checkpoint = tmp_path / "models" / "tiny-clip.pt"
    checkpoint.parent.mkdir()
    torch.save(create_encoder("test-clip-tiny").load("cpu").model.state_dict(), checkpoint)
    env = {
        **os.environ,
        **prefect_api,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        # the README's two variables, pointed at the tiny dataset and a local checkpoint file
        "DATA": str(data),
        "CLIP": f"open_clip:affectflow-test-vit@{checkpoint}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    # the stored name the README states: open_clip-<arch>-<checkpoint's file stem>
    assert "features/rafdb/open_clip-affectflow-test-vit-tiny-clip/" in out
    assert "official train / test splits; val = subject-exclusive 15% of train" in out  # the protocol stated
    assert "head runs in ./store" in out and "macro_f1" in out  # results
    assert "test_0001_aligned.jpg" in out and "archetype #" in out  # predict's answer and its archetype
    rows = json.loads(
        subprocess.run(
            [str(BIN / "affectflow"), "results", "--store", "./store", "--json", "-"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert sorted(r["head"] for r in rows) == ["aura", "linear"] and {r["dataset"] for r in rows} == {"rafdb"}
