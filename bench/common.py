"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# A script's own directory (bench/) is first on sys.path, where bench/heads.py would shadow the
# project's `heads` package: the repository goes first and bench/ last. bench/ stays on the path
# because Dask's worker processes start from this sys.path and import the script again (as
# __mp_main__), and with it this module.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "bench")]
sys.path.append(str(REPO / "bench"))


AUS = ["AU1", "AU2", "AU4", "AU5", "AU6", "AU9", "AU12", "AU15", "AU17", "AU20", "AU25", "AU26"]  # DISFA's 12


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

    if SMOKE and os.environ.get("PREFECT_API_URL"):
        return nullcontext()
    from prefect.testing.utilities import prefect_test_harness  # imports Prefect's server (~2 s): only here

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
        put_block(table)
        print(table)
    from summary import summary_table  # the README's summary reads every result, this one's too

    put_block(summary_table())


def put_block(table: str) -> None:
    """Replace the block ``table``'s first line opens, in the one page (README.md or
    docs/benchmarks.md) that has it."""
    begin = table.splitlines()[0]
    end = begin.replace(":begin -->", ":end -->")
    pages = [p for p in (REPO / "README.md", REPO / "docs" / "benchmarks.md") if begin in p.read_text()]
    if len(pages) != 1 or end not in pages[0].read_text():
        raise KeyError(f"no one page (README.md, docs/benchmarks.md) has the block {begin} … {end}")
    text = pages[0].read_text()
    pages[0].write_text(text[: text.index(begin)] + table + text[text.index(end) + len(end) :])


def marks(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def demo_store(work: Path, encoders: tuple[str, ...] | None = None, au_rules: bool = False):
    """The demo's generated catalogue (20 subjects × 42 faces; 10 × 7 in a smoke run) extracted with the
    demo's encoders (or only ``encoders``) through the real flow into ``work/store``, as ``make demo``
    does (``au_rules``: with the generator's planted AU → AU rules); returns the FeatureStore.

    A smoke run given ``AFFECTFLOW_BENCH_SMOKE_CACHE`` (tests/test_bench.py's session folder) builds
    each kind of store there once and copies it into ``work``: the benches that read the same
    catalogue then extract it once per test session, not once each (suite time)."""
    import shutil

    from featurestore import FeatureStore
    from featurestore.keys import digest_json

    cache = os.environ.get("AFFECTFLOW_BENCH_SMOKE_CACHE")
    if not (SMOKE and cache):
        return _build_demo_store(work, encoders, au_rules)
    from flows.demo import DEMO_IMAGE_ENCODERS

    names = sorted(e["name"] for e in DEMO_IMAGE_ENCODERS if encoders is None or e["name"] in encoders)
    built = Path(cache) / digest_json({"encoders": names, "au_rules": au_rules})
    if not (built / "store").is_dir():
        _build_demo_store(built, encoders, au_rules)
    for part in ("generated", "store"):  # the catalogue too: a bench may read its files (causal's partial labels)
        shutil.copytree(built / part, work / part)
    return FeatureStore(str(work / "store"))


def _build_demo_store(work: Path, encoders: tuple[str, ...] | None, au_rules: bool):
    from featurestore import FeatureStore
    from flows.demo import DEMO_IMAGE_ENCODERS, DEMO_PER_SUBJECT
    from flows.extract import DatasetConfig, EncoderConfig, extract_features
    from stages.extraction.encoders import create_encoder
    from stages.synthetic.face_generator import write_generated_dataset

    face = create_encoder("mediapipe-face").load()
    # a smoke run: 10 subjects (two each of test and val) × every expression once
    size = {"per_subject": 7, "n_morphs": 3, "n_lfw": 7} if SMOKE else {"per_subject": DEMO_PER_SUBJECT}
    root, _ = write_generated_dataset(work / "generated", face.find_face, au_rules=au_rules, **size)
    extract_features(
        datasets=[DatasetConfig(layout="csv", root=str(root), name="generated")],
        encoders=[EncoderConfig(**e) for e in DEMO_IMAGE_ENCODERS if encoders is None or e["name"] in encoders],
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


def catalogue_digest(root: Path) -> str:
    """xxh3-128 over a generated catalogue's files (relative paths and bytes, in path order): the
    generator's output, which the demo's figures depend on as much as on the code."""
    import xxhash

    digest = xxhash.xxh3_128()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def write_cached_features(
    store, n: int, dim: int, seed: int = 0, shares: tuple[float, ...] | None = None, expression: float = 0.3
) -> str:
    """A source and a complete float16 feature group of ``n`` synthetic samples (expressions drawn
    uniformly, or with ``shares``; ``expression`` is the length of the expression direction, against
    noise of ~0.04 along any one direction); returns its path."""
    from featurestore import Step, StepOutput, StepSpec, step_key
    from stages.extraction.extract import write_source
    from stages.extraction.sources.base import Manifest

    rng = np.random.default_rng(seed)
    n_subjects, classes = 400, 7
    subject = rng.integers(0, n_subjects, n)
    strength, expression = (
        expression,
        rng.choice(classes, n, p=np.asarray(shares) / np.sum(shares)) if shares else rng.integers(0, classes, n),
    )
    prototypes = (rng.random((classes, len(AUS))) < 0.3).astype(float)
    au = (rng.random((n, len(AUS))) < 0.1 + 0.75 * prototypes[expression]).astype(np.int64)
    centres = rng.uniform(-0.7, 0.7, (classes, 2))
    va = np.clip(centres[expression] + rng.normal(0, 0.2, (n, 2)), -1, 1).astype(np.float32)
    directions = rng.normal(size=(classes + len(AUS) + 2 + n_subjects, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)  # unit directions; noise of norm ~1.5
    x = (
        strength * directions[expression]
        + 0.25 * au @ directions[classes : classes + len(AUS)]
        + 0.4 * va @ directions[classes + len(AUS) : classes + len(AUS) + 2]
        + 0.8 * directions[classes + len(AUS) + 2 + subject]
        + 1.5 / np.sqrt(dim) * rng.normal(size=(n, dim))
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(n_subjects)
    split_of = np.empty(n_subjects, dtype=object)
    split_of[order[: int(0.7 * n_subjects)]] = "train"
    split_of[order[int(0.7 * n_subjects) : int(0.85 * n_subjects)]] = "val"
    split_of[order[int(0.85 * n_subjects) :]] = "test"
    options = {"n": n, "dim": dim, "seed": seed}
    if shares:
        options["shares"] = list(shares)
    if strength != 0.3:
        options["expression"] = strength
    manifest = Manifest(
        dataset="bench-heads",
        source="synthetic",
        version=1,
        options=options,
        root=Path("."),
        key=step_key(StepSpec("source", 1, {"synthetic": options}), []),
        paths=[f"sample{i:05d}" for i in range(n)],
        status=np.zeros(n, np.int8),
        labels={
            "expression": expression.astype(np.int64),
            "va": va,
            "au": au.astype(np.int8),  # the AUs coded, in FACS order (AUS), as sources store them
            "subject": np.array([f"s{s:03d}" for s in subject]),
            "split": split_of[subject].astype(str),
        },
        au_annotated=AUS,
    )
    source, _ = write_source(store, manifest)
    spec = StepSpec("extract", 1, {"encoder": "synthetic-clip-like", **options})
    step = Step("features", spec, (source.key,), "features", ("bench-heads", "synthetic-clip-like"))
    meta = {"dataset": "bench-heads", "encoder": "synthetic-clip-like", "source_path": source.path}
    group, _ = store.run_step(
        step, lambda: StepOutput({"global": x.astype(np.float16), "status": np.zeros(n, np.int8)}, meta)
    )
    return group.path
