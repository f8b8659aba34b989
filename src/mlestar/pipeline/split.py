"""The run's one fixed validation split (``folds.csv``), shared by every stage.

Every script of a run reads the same split, so scores of candidates, merges, refinements and
ensembles are comparable. See docs/script-contract.md for the columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.task import Task, TaskType
from mlestar.errors import TaskError
from mlestar.task.media import class_folder_rows

N_FOLDS = 5


def read_train_columns(task: Task, columns: list[str]) -> pd.DataFrame:
    path = task.data_path(task.train_file)
    if task.media is not None and task.media.layout == "class_folders":
        # the rows are the folder's files in sorted order, labelled by their folder
        return class_folder_rows(path).rename(columns={"label": task.target})
    usecols = [c for c in dict.fromkeys(columns) if c]
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path, columns=usecols or None)
        return pd.read_csv(path, usecols=usecols or None, low_memory=False)
    except (ValueError, OSError) as exc:
        raise TaskError(f"cannot read {path.name} to build the validation split: {exc}") from exc


def _assign_folds(frame: pd.DataFrame, task: Task, seed: int, n_folds: int) -> np.ndarray:
    # Imported here: scikit-learn takes seconds to import, and a command that fails on its input
    # (or only lists runs) should answer without paying for it.
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    n = len(frame)
    folds = np.zeros(n, dtype=int)
    if task.time_column and task.time_column in frame:
        # Validation must be the latest rows, and folds follow time so fold 0 is the future.
        order = np.argsort(pd.to_datetime(frame[task.time_column], errors="coerce").to_numpy(), kind="stable")
        chunks = np.array_split(order, n_folds)
        for fold, chunk in zip(range(n_folds - 1, -1, -1), chunks, strict=True):
            folds[chunk] = fold
        return folds
    indices = np.arange(n)
    if task.group_column and task.group_column in frame:
        groups = frame[task.group_column].astype(str).to_numpy()
        rng = np.random.default_rng(seed)
        # GroupKFold is deterministic; shuffle group labels first so the seed decides membership.
        unique = np.unique(groups)
        relabel = dict(zip(unique, rng.permutation(len(unique)), strict=True))
        shuffled = np.array([relabel[g] for g in groups])
        splitter = GroupKFold(n_splits=min(n_folds, len(unique)))
        split_iter = splitter.split(indices, groups=shuffled)
    elif task.task_type in (TaskType.BINARY, TaskType.MULTICLASS) and task.target in frame:
        labels = frame[task.target].astype(str).to_numpy()
        counts = pd.Series(labels).value_counts()
        if counts.min() >= n_folds:
            split_iter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(indices, labels)
        else:
            # Rare classes cannot be stratified; plain shuffling keeps the split valid.
            split_iter = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(indices)
    else:
        split_iter = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(indices)
    for fold, (_, valid_idx) in enumerate(split_iter):
        folds[valid_idx] = fold
    return folds


def make_folds(task: Task, *, seed: int, n_folds: int = N_FOLDS, dev_max_rows: int = 30_000) -> pd.DataFrame:
    """Build the split: columns ``row``, ``fold`` (0 = validation) and ``dev`` (development subsample)."""
    wanted = [task.target] if task.target_columns else []
    for column in (task.group_column, task.time_column):
        if column:
            wanted.append(column)
    frame = read_train_columns(task, wanted)
    n = len(frame)
    if n < n_folds * 2:
        raise TaskError(f"the train file has only {n} rows; at least {n_folds * 2} are needed")
    folds = _assign_folds(frame, task, seed, n_folds)
    dev = np.ones(n, dtype=int)
    if n > dev_max_rows:
        dev[:] = 0
        rng = np.random.default_rng(seed + 1)
        # Keep fold proportions in the subsample: sample the same share from every fold.
        for fold in range(n_folds):
            members = np.flatnonzero(folds == fold)
            take = int(round(dev_max_rows * len(members) / n))
            dev[rng.choice(members, size=min(take, len(members)), replace=False)] = 1
    return pd.DataFrame({"row": np.arange(n), "fold": folds, "dev": dev})


def write_folds(task: Task, path: Path, *, seed: int, n_folds: int = N_FOLDS, dev_max_rows: int = 30_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_folds(task, seed=seed, n_folds=n_folds, dev_max_rows=dev_max_rows).to_csv(path, index=False)
    return path
