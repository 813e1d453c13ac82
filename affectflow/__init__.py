"""affectflow from Python: retrain heads on cached features in a notebook.

``affectflow.train(features, task, head, ...)`` trains one head as a keyed step of the store (a
rerun with the same key reads the result back) and keeps the loaded features in this process for
the next call; ``affectflow.train_heads([HeadConfig(...)], store)`` is what ``affectflow train``
runs. Neither imports Prefect unless a server is configured (``PREFECT_API_URL``). Extraction, the
deployments and everything else are the ``affectflow`` command (flows/cli.py).
"""

from flows.heads import HeadConfig, TrainedHead, train
from flows.heads import train_heads_here as train_heads

__all__ = ["HeadConfig", "TrainedHead", "train", "train_heads"]
