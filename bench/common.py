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
    """Write ``bench/results/<name>.json`` and put each table in the README block its own first line
    opens (``<!-- bench:<block>:begin -->`` … ``end``); in a smoke run, print them only."""
    if SMOKE:
        print(json.dumps(result, default=str))
        print(*tables, sep="\n")
        return
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    readme = REPO / "README.md"
    text = readme.read_text()
    for table in tables:
        begin = table.splitlines()[0]
        end = begin.replace(":begin -->", ":end -->")
        if begin in text:
            text = text[: text.index(begin)] + table + text[text.index(end) + len(end) :]
        print(table)
    readme.write_text(text)


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
