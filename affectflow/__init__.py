"""affectflow from Python: retrain heads on cached features in a notebook.

``affectflow.train(features, task, head, ...)`` trains one head as a keyed step of the store (a
rerun with the same key reads the result back) and keeps the loaded features in this process for
the next call; ``affectflow.train_heads([HeadConfig(...)], store)`` is what ``affectflow train``
runs. Neither imports Prefect unless a server is configured (``PREFECT_API_URL``).
``affectflow.table(store, "rafdb/open_clip")`` is a feature group with its labels, split, subject
and status as one pandas DataFrame (``arrays(...)``: a dict of row-aligned NumPy arrays);
``affectflow.results(store)`` is every head run in the store, seeds as mean ± std;
``affectflow.predict(store, head, files)`` a head's answers on photos and videos, a row per face
and frame. Extraction,
the deployments and everything else are the ``affectflow`` command (flows/cli/).
"""

from flows.heads import HeadConfig, TrainedHead, train
from flows.notebook import arrays, predict, results, table
from flows.run import train_heads_here as train_heads

__all__ = ["HeadConfig", "TrainedHead", "arrays", "predict", "results", "table", "train", "train_heads"]
