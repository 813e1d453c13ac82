"""Cached features + canonical labels → train / val / test tensors, by each dataset's own protocol.

* official ``split`` column (RAF-DB train/test, AffectNet train/validation, CSV ``split``, image
  folders ``<split>/<class>/``): test is the dataset's test (or validation when it has no test,
  as AffectNet); val is the dataset's val when it has one *and* a separate test, else a
  subject-exclusive slice of train;
* ``fold`` column (DISFA, BP4D): ``test_fold`` is the test fold, the others train;
* ``folds`` = k asked for, on a dataset without an official split or stored folds (CK+, a CSV with
  subjects): subject-exclusive k-fold, fold ``test_fold`` the test. The folds are scikit-learn's
  ``GroupKFold`` over the source group's whole ``subject`` column, so they depend on the dataset
  alone: every head, task and feature group of it sees the same folds;
* none of these: subject-exclusive train / val / test slices.
The validation rows that drive early stopping never include a test row or a test subject.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from featurestore import FeatureStore, GroupReader, SampleStatus
from heads.data import TaskData
from heads.tasks import Labels, Task, get_task


def _subject_slice(rows: np.ndarray, subjects: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` by subject: (rest, about ``fraction`` of the subjects' rows)."""
    unique = np.unique(subjects[rows])
    rng = np.random.default_rng(seed)
    chosen = set(rng.permutation(unique)[: max(1, round(fraction * len(unique)))].tolist())
    held = np.array([subjects[r] in chosen for r in rows], dtype=bool)
    return rows[~held], rows[held]


def subject_folds(subjects: np.ndarray, folds: int) -> np.ndarray:
    """Fold 1..``folds`` of every row, subject-exclusive and balanced in rows (GroupKFold)."""
    from sklearn.model_selection import GroupKFold

    if len(np.unique(subjects)) < folds:
        raise ValueError(f"{folds} folds need at least {folds} subjects, the dataset has {len(np.unique(subjects))}")
    fold = np.zeros(subjects.size, np.int64)
    for k, (_, test) in enumerate(GroupKFold(n_splits=folds).split(subjects, groups=subjects), 1):
        fold[test] = k
    return fold


def labels_present(source: GroupReader) -> list[str]:
    """The kinds of label ``source`` holds for at least one sample, with the tasks that read them."""
    present, names = [], source.names()
    if "expression" in names and (source.numpy("expression") >= 0).any():
        present.append("expressions (task fer)")
    if "va" in names and np.isfinite(source.numpy("va")).any():
        present.append("valence/arousal (task va)")
    if "au" in source.names() and (source.numpy("au") >= 0).any():
        present.append("action units (task au)")
    return present


def task_data(
    features: GroupReader,
    source: GroupReader,
    task: Task | str,
    array: str = "global",
    expressions: list[int] | None = None,
    test_fold: int = 1,
    val_fraction: float = 0.15,
    seed: int = 0,
    folds: int | None = None,
    labels: Labels | None = None,
) -> TaskData:
    """The splits of ``features`` for ``task`` by the dataset's protocol (see the module docstring);
    ``folds`` asks for k-fold, ``test_fold`` (1-based) picks the test fold; ``labels``: the task's
    labels of ``source`` already in a joint output space (:func:`joint_task_data`)."""
    task = get_task(task)
    labels = labels or task.labels(source, expressions)
    y, labelled, names = labels.y, labels.labelled, labels.names
    if not labelled.any():
        present = labels_present(source)
        raise ValueError(
            f"{task.name} on {source.path}: no sample has the task's labels; the dataset has "
            f"{', '.join(present) if present else 'no labels at all'}: choose a task that reads them"
        )
    usable = np.flatnonzero(labelled & (features.status() == SampleStatus.OK))
    subjects = source.numpy("subject")
    # samples without a subject id are their own unit (RAF-DB, AffectNet)
    subjects = np.where(subjects == "", np.char.add("row", np.arange(subjects.size).astype(str)), subjects)
    split = source.numpy("split")
    stored_folds = source.numpy("fold") if "fold" in source.names() else None
    if folds is not None:
        if (split[usable] != "").any():
            raise ValueError(f"{source.path} has official splits: k-fold (folds={folds}) is for datasets without one")
        if stored_folds is not None and folds != stored_folds.max():
            raise ValueError(f"{source.path} has its own {stored_folds.max()} folds, not {folds}")
        if not 1 <= test_fold <= folds:
            raise ValueError(f"test fold {test_fold} is not one of 1..{folds}")
    if folds is not None and stored_folds is None:
        fold = subject_folds(subjects, folds)
        test, train = usable[fold[usable] == test_fold], usable[fold[usable] != test_fold]
        train, val = _subject_slice(train, subjects, val_fraction, seed)
        protocol = (
            f"subject-exclusive {folds}-fold (GroupKFold over the dataset's subjects): test fold {test_fold}; "
            f"val = {val_fraction:.0%} of training subjects"
        )
    elif (split[usable] != "").any():
        values = set(split[usable].tolist())
        test_name = "test" if "test" in values else "val"
        test = usable[split[usable] == test_name]
        train = usable[split[usable] == "train"]
        if test_name == "test" and "val" in values:
            val, protocol = usable[split[usable] == "val"], "official train / val / test splits"
        else:
            train, val = _subject_slice(train, subjects, val_fraction, seed)
            protocol = f"official train / {test_name} splits; val = subject-exclusive {val_fraction:.0%} of train"
    elif stored_folds is not None:
        fold = stored_folds
        test, train = usable[fold[usable] == test_fold], usable[(fold[usable] != test_fold) & (fold[usable] > 0)]
        train, val = _subject_slice(train, subjects, val_fraction, seed)
        protocol = f"subject-exclusive folds: test fold {test_fold}; val = {val_fraction:.0%} of training subjects"
    else:
        rest, test = _subject_slice(usable, subjects, 0.2, seed)
        train, val = _subject_slice(rest, subjects, val_fraction, seed + 1)
        protocol = "no official split: subject-exclusive 20 % test, then val from the rest"
    if min(train.size, val.size, test.size) == 0:
        raise ValueError(
            f"{task.name} on {source.path}: empty split (train {train.size}, val {val.size}, test {test.size})"
        )
    values = features.numpy(array).astype(np.float32)
    splits = {"train": train, "val": val, "test": test}
    return TaskData(
        x={k: torch.from_numpy(values[r]) for k, r in splits.items()},
        y={k: torch.from_numpy(y[r]) for k, r in splits.items()},
        rows=splits,
        n_outputs=len(names),
        label_names=names,
        protocol=protocol,
    )


def joint_task_data(
    parts: list[tuple[GroupReader, GroupReader]],
    task: Task | str,
    array: str = "global",
    expressions: list[int] | None = None,
    test_fold: int = 1,
    seed: int = 0,
    folds: int | None = None,
) -> TaskData:
    """Several datasets' (features, source) as one training set for one head: each dataset split by
    its own protocol, its labels in the union of the datasets' outputs (an AU or a class a dataset
    does not code is missing there, −1, and no loss is taken on it), the splits concatenated with
    each row's dataset recorded (the trainer balances batches across them)."""
    task = get_task(task)
    dims = {features.path: features.shape(array)[1:] for features, _ in parts}
    if len({tuple(d) for d in dims.values()}) > 1:
        raise ValueError(f"one head over several datasets needs features of one shape: {dims}")
    vocabularies = {tuple(source.meta["expressions"]) for _, source in parts}
    if len(vocabularies) > 1:
        raise ValueError(f"the datasets' canonical expression spaces differ: {sorted(vocabularies)}")
    merged = task.merge([task.labels(source, expressions) for _, source in parts], list(vocabularies.pop()))
    datas = [
        task_data(features, source, task, array, expressions, test_fold, seed=seed, folds=folds, labels=labels)
        for (features, source), labels in zip(parts, merged)
    ]
    splits = ("train", "val", "test")
    return TaskData(
        x={k: torch.cat([d.x[k] for d in datas]) for k in splits},
        y={k: torch.cat([d.y[k] for d in datas]) for k in splits},
        rows={k: np.concatenate([d.rows[k] for d in datas]) for k in splits},
        n_outputs=datas[0].n_outputs,
        label_names=datas[0].label_names,
        protocol="; ".join(f"{features.meta['dataset']}: {d.protocol}" for (features, _), d in zip(parts, datas)),
        datasets=[features.meta["dataset"] for features, _ in parts],
        dataset={k: np.concatenate([np.full(d.rows[k].size, i) for i, d in enumerate(datas)]) for k in splits},
    )


_LOADED: OrderedDict[tuple, TaskData] = OrderedDict()
_LOADED_MAX = 4  # a few feature groups' splits: the same features retrained with other heads and seeds


def load_task_data(
    store: FeatureStore,
    features_path: str | list[str],
    task: str,
    array: str = "global",
    expressions: list[int] | None = None,
    test_fold: int = 1,
    seed: int = 0,
    folds: int | None = None,
) -> TaskData:
    """:func:`task_data` of a complete feature group (:func:`joint_task_data` of several), kept for
    the next call in this process: a group's content never changes under its key, so retraining
    another head (or seed) on the same features reads nothing again. The tensors are shared: heads
    and the trainer never write them."""
    paths = [features_path] if isinstance(features_path, str) else list(features_path)
    groups = [GroupReader.open(store, path) for path in paths]
    key = (store.url, *(g.step.key for g in groups), task, array, tuple(expressions or ()), test_fold, seed, folds)
    if key in _LOADED:
        _LOADED.move_to_end(key)
        return _LOADED[key]
    parts = [(g, GroupReader.open(store, g.meta["source_path"])) for g in groups]
    if len(parts) == 1:
        data = task_data(*parts[0], task, array, expressions, test_fold, seed=seed, folds=folds)
    else:
        data = joint_task_data(parts, task, array, expressions, test_fold, seed, folds)
    _LOADED[key] = data
    while len(_LOADED) > _LOADED_MAX:
        _LOADED.popitem(last=False)
    return data
