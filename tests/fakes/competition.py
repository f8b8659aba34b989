"""A small tabular competition built in a temporary folder, and a runner for contract scripts.

The runner mirrors docs/script-contract.md (./input with folds.csv, ./working, ./final) so tests
can execute what the LLM brain writes without the pipeline.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.brain.protocol import BrainContext
from mlestar.core.task import DataFile, FileRole, Modality, Task, TaskType

SCORE_RE = re.compile(r"Final Validation Performance:\s*([-+0-9.eEnaNinf]+)")


def make_competition(root: Path, *, kind: str = "binary", rows: int = 300, seed: int = 0) -> Path:
    """train.csv / test.csv / sample_submission.csv / description.md; the target depends on x1, x2, color."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)

    def frame(n: int, start: int) -> pd.DataFrame:
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        color = rng.choice(["red", "green", "blue"], size=n)
        x3 = rng.normal(size=n)
        x3[rng.random(n) < 0.1] = np.nan
        signal = 1.5 * x1 - x2 + (color == "red") * 1.0
        data = pd.DataFrame({"id": np.arange(start, start + n), "x1": x1, "x2": x2, "x3": x3, "color": color})
        if kind == "binary":
            data["target"] = (signal + rng.normal(scale=0.5, size=n) > 0).astype(int)
        else:
            data["target"] = signal * 10 + 50 + rng.normal(scale=2.0, size=n)
        return data

    train = frame(rows, 0)
    test = frame(rows // 3, rows).drop(columns=["target"])
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    fill = 0.5 if kind == "binary" else 50.0
    pd.DataFrame({"id": test["id"], "target": fill}).to_csv(root / "sample_submission.csv", index=False)
    metric = "roc_auc" if kind == "binary" else "rmse"
    (root / "description.md").write_text(
        f"# Toy {kind} competition\n\nPredict `target` for each row of test.csv from x1, x2, x3 and color.\n"
        f"Submissions are evaluated with {metric}. Submit a CSV with columns id,target.\n",
        encoding="utf-8",
    )
    return root


def make_task(root: Path, *, kind: str = "binary") -> Task:
    train = pd.read_csv(root / "train.csv")
    binary = kind == "binary"
    return Task(
        name=root.name,
        root=root,
        data_dir=root,
        description=(root / "description.md").read_text(encoding="utf-8"),
        files=[
            DataFile(path="train.csv", role=FileRole.TRAIN, rows=len(train)),
            DataFile(path="test.csv", role=FileRole.TEST),
            DataFile(path="sample_submission.csv", role=FileRole.SAMPLE_SUBMISSION),
        ],
        train_file="train.csv",
        test_file="test.csv",
        sample_submission_file="sample_submission.csv",
        id_column="id",
        target_columns=["target"],
        task_type=TaskType.BINARY if binary else TaskType.REGRESSION,
        modality=Modality.TABULAR,
        classes=["0", "1"] if binary else [],
        submission_columns=["id", "target"],
        submission_kind="proba" if binary else "label",
        metric="roc_auc" if binary else "rmse",
        lower_is_better=not binary,
        feature_columns=["x1", "x2", "x3", "color"],
        categorical_columns=["color"],
        n_train_rows=len(train),
        n_test_rows=len(train) // 3,
    )


def data_report(task: Task) -> str:
    train = pd.read_csv(task.data_path(task.train_file))
    lines = [f"{task.train_file}: {len(train)} rows, {train.shape[1]} columns"]
    for column in train.columns:
        series = train[column]
        lines.append(
            f"- {column}: {series.dtype}, {series.isna().mean():.0%} missing, {series.nunique()} unique,"
            f" e.g. {', '.join(map(str, series.dropna().head(3).tolist()))}"
        )
    return "\n".join(lines)


def make_context(task: Task, seed: int = 0) -> BrainContext:
    return BrainContext(
        task=task,
        data_report=data_report(task),
        seed=seed,
        n_dev_rows=task.n_train_rows,
        script_timeout_s=120,
        threads=1,
        available_packages=["numpy", "pandas", "scikit-learn"],
    )


def write_folds(task: Task, path: Path, seed: int = 0) -> None:
    n = task.n_train_rows
    rng = np.random.default_rng(seed)
    folds = np.arange(n) % 5
    rng.shuffle(folds)
    pd.DataFrame({"row": np.arange(n), "fold": folds, "dev": 1}).to_csv(path, index=False)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    score: float | None
    workdir: Path


def run_script(code: str, task: Task, workdir: Path, *, final: bool = False, timeout_s: float = 120) -> Ran:
    """Run ``code`` as the executor would: its own folder, ./input (test files only when final)."""
    inputs = workdir / "input"
    inputs.mkdir(parents=True, exist_ok=True)
    (workdir / "working").mkdir(exist_ok=True)
    names = [task.train_file]
    if final:
        names += [task.test_file or "", task.sample_submission_file or ""]
    for name in filter(None, names):
        link = inputs / name
        if not link.exists():
            link.symlink_to(task.data_path(name))
    write_folds(task, inputs / "folds.csv")
    (workdir / "script.py").write_text(code, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "script.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"},
    )
    scores = SCORE_RE.findall(proc.stdout)
    score = float(scores[-1]) if scores else None
    return Ran(proc.returncode, proc.stdout, proc.stderr, score, workdir)
