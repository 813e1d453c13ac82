"""The tensors a head trains and is evaluated on, by split (built by ``stages/training/head_data.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class TaskData:
    x: dict[str, torch.Tensor]  # split → features
    y: dict[str, torch.Tensor]  # split → labels in the task's form
    rows: dict[str, np.ndarray]  # split → row indices in the source
    n_outputs: int
    label_names: list[str]
    protocol: str
    # several datasets trained together: their names, and per split each row's dataset (an index
    # into ``datasets``); ``rows`` are then indices into each row's own source
    datasets: list[str] = field(default_factory=list)
    dataset: dict[str, np.ndarray] | None = None
