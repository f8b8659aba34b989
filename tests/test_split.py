"""The run's one fixed split: stratified, grouped or time-ordered folds and the dev subsample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlestar.core.task import Task, TaskType
from mlestar.errors import TaskError
from mlestar.pipeline.split import make_folds, write_folds


def task_for(root: Path, frame: pd.DataFrame, task_type: TaskType, **fields: object) -> Task:
    root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(root / "train.csv", index=False)
    return Task(
        name="t",
        root=root,
        data_dir=root,
        train_file="train.csv",
        target_columns=["y"],
        task_type=task_type,
        metric="accuracy",
        lower_is_better=False,
        **fields,
    )


def test_classes_are_stratified_and_the_split_depends_only_on_the_seed(tmp_path: Path) -> None:
    y = np.array(["a"] * 900 + ["b"] * 100)
    task = task_for(tmp_path, pd.DataFrame({"x": np.arange(1000), "y": y}), TaskType.BINARY)
    folds = make_folds(task, seed=3)
    assert list(folds.columns) == ["row", "fold", "dev"] and folds["row"].tolist() == list(range(1000))
    for fold in range(5):
        members = y[folds["fold"] == fold]
        assert len(members) == 200 and (members == "b").sum() == 20
    assert make_folds(task, seed=3).equals(folds)
    assert not make_folds(task, seed=4)["fold"].equals(folds["fold"])


def test_rare_classes_fall_back_to_plain_shuffling(tmp_path: Path) -> None:
    y = ["a"] * 97 + ["b"] * 3  # 3 rows cannot be spread over 5 folds
    task = task_for(tmp_path, pd.DataFrame({"x": range(100), "y": y}), TaskType.MULTICLASS)
    assert sorted(make_folds(task, seed=0)["fold"].value_counts().tolist()) == [20] * 5


def test_groups_stay_on_one_side(tmp_path: Path) -> None:
    frame = pd.DataFrame({"g": np.repeat(np.arange(50), 4), "y": np.tile([0, 1], 100)})
    task = task_for(tmp_path, frame, TaskType.BINARY, group_column="g")
    folds = make_folds(task, seed=0)
    assert (frame.assign(fold=folds["fold"]).groupby("g")["fold"].nunique() == 1).all()


def test_time_ordered_tasks_validate_on_the_latest_rows(tmp_path: Path) -> None:
    days = pd.date_range("2024-01-01", periods=100, freq="D")
    frame = pd.DataFrame({"day": days[::-1].strftime("%Y-%m-%d"), "y": range(100)})  # newest first
    task = task_for(tmp_path, frame, TaskType.REGRESSION, time_column="day")
    folds = make_folds(task, seed=0)
    newest = pd.to_datetime(frame["day"])[folds["fold"] == 0]
    assert newest.min() > pd.to_datetime(frame["day"])[folds["fold"] != 0].max()


def test_the_dev_subsample_keeps_fold_shares(tmp_path: Path) -> None:
    task = task_for(tmp_path, pd.DataFrame({"x": range(5000), "y": [0, 1] * 2500}), TaskType.BINARY)
    folds = make_folds(task, seed=0, dev_max_rows=1000)
    dev = folds[folds["dev"] == 1]
    assert len(dev) == 1000 and dev["fold"].value_counts().tolist() == [200] * 5
    assert make_folds(task, seed=0, dev_max_rows=10_000)["dev"].all()


def test_too_few_rows_and_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    task = task_for(tmp_path / "few", pd.DataFrame({"x": range(6), "y": [0, 1] * 3}), TaskType.BINARY)
    with pytest.raises(TaskError, match="only 6 rows"):
        make_folds(task, seed=0)
    (tmp_path / "few" / "train.csv").write_bytes(b"\x00\x01garbage\xff")
    with pytest.raises(TaskError):
        write_folds(task.model_copy(update={"train_file": "missing.csv"}), tmp_path / "f.csv", seed=0)
