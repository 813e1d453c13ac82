"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A script's own directory (bench/) is first on sys.path, where bench/heads.py would shadow the
# project's `heads` package: the repository goes first and bench/ last. bench/ stays on the path
# because Dask's worker processes start from this sys.path and import the script again (as
# __mp_main__), and with it this module.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "bench")]
sys.path.append(str(REPO / "bench"))


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# ``--smoke`` (every bench): tiny sizes, the whole script run, results printed and not published.
# tests/test_bench.py runs each bench that way, so a bench that cannot start fails CI.
SMOKE = "--smoke" in sys.argv


def prefect_server():
    """A temporary Prefect server for the bench's flow runs; a smoke run given ``PREFECT_API_URL``
    (tests/test_bench.py's one server) uses that instead of starting its own."""
    from contextlib import nullcontext

    from prefect.testing.utilities import prefect_test_harness

    if SMOKE and os.environ.get("PREFECT_API_URL"):
        return nullcontext()
    return prefect_test_harness(server_startup_timeout=120)


def publish(name: str, result: dict, *tables: str) -> None:
    """Write ``bench/results/<name>.json`` and put each table in the block its own first line opens
    (``<!-- bench:<block>:begin -->`` … ``end``), in README.md or docs/benchmarks.md, whichever has
    it; in a smoke run, print them only."""
    if SMOKE:
        print(json.dumps(result, default=str))
        print(*tables, sep="\n")
        return
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for table in tables:
        begin = table.splitlines()[0]
        end = begin.replace(":begin -->", ":end -->")
        pages = [p for p in (REPO / "README.md", REPO / "docs" / "benchmarks.md") if begin in p.read_text()]
        if len(pages) != 1 or end not in pages[0].read_text():
            raise KeyError(f"no one page (README.md, docs/benchmarks.md) has the block {begin} … {end}")
        text = pages[0].read_text()
        pages[0].write_text(text[: text.index(begin)] + table + text[text.index(end) + len(end) :])
        print(table)


def marks(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def demo_store(work: Path):
    """The demo's generated catalogue (20 subjects × 42 faces; 8 × 7 in a smoke run) extracted with the
    demo's encoders through the real flow into ``work/store``, as ``make demo`` does; returns the
    FeatureStore."""
    from featurestore import FeatureStore
    from flows.demo import DEMO_IMAGE_ENCODERS, DEMO_PER_SUBJECT
    from flows.extract import DatasetConfig, EncoderConfig, extract_features
    from stages.encoders import create_encoder
    from stages.synthetic.face_generator import write_generated_dataset

    face = create_encoder("mediapipe-face").load()
    # a smoke run: 8 subjects × every expression once
    size = {"per_subject": 7, "n_morphs": 3, "n_lfw": 5} if SMOKE else {"per_subject": DEMO_PER_SUBJECT}
    root, _ = write_generated_dataset(work / "generated", face.find_face, **size)
    extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(root), name="generated")],
        encoders=[EncoderConfig(**e) for e in DEMO_IMAGE_ENCODERS],
        store=str(work / "store"),
    )
    return FeatureStore(str(work / "store"))


# What the demo's numbers depend on: the code it runs, its data files and the pinned packages.
DIGESTED = ("affectflow", "flows", "stages", "featurestore", "heads")


def code_digest() -> str:
    """xxh3-128 over the tracked files the demo runs (``DIGESTED`` packages, their data files,
    ``constraints.txt``): equal digests, same code."""
    import subprocess

    import xxhash

    files = subprocess.run(
        ["git", "ls-files", *DIGESTED, "constraints.txt"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    digest = xxhash.xxh3_128()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + (REPO / name).read_bytes() + b"\0")
    return digest.hexdigest()
