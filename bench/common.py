"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# A script's own directory (bench/) is first on sys.path; once this module is imported it must go:
# bench/heads.py would otherwise shadow the project's `heads` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]


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


def publish(name: str, result: dict, table: str) -> None:
    """Write ``bench/results/<name>.json`` and replace the README block ``<!-- bench:<name>:… -->``."""
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    readme = REPO / "README.md"
    begin, end = marks(name)
    text = readme.read_text()
    if begin in text:
        readme.write_text(text[: text.index(begin)] + table + text[text.index(end) + len(end) :])
    print(table)


def marks(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
