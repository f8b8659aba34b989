"""Shared helpers for the expert-brain tests: tiny competitions laid out per the script contract.

No tests here; ``test_expert_*.py`` modules import these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.brain.protocol import BrainContext
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.sandbox import run_script
from mlestar.exec.workspace import build_input_dir, prepare_script_dir
from mlestar.pipeline.split import write_folds
from mlestar.task import load_task
from mlestar.core.task import Task
from mlestar.task.views import input_view

ROUNDS = 60  # boosting rounds / trees cap: keeps every script to a second or two


def make_competition(root: Path, kind: str, n_rows: int = 300, seed: int = 0, aux: bool = False) -> Path:
    """A tiny competition: categoricals with messy spacing and missing values, a real signal."""
    rng = np.random.default_rng(seed)
    n = n_rows + n_rows // 4
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["paris", "oslo", "lima", "kyiv", " oslo"], size=n)
    effect = pd.Series(city).str.strip().map({"paris": 0.8, "oslo": -0.5, "lima": 0.2, "kyiv": -0.9}).to_numpy()
    x3 = np.where(rng.random(n) < 0.15, np.nan, rng.uniform(0, 10, n))
    plan = np.where(rng.random(n) < 0.1, None, rng.choice(["basic", "pro", "team"], size=n))
    signal = 1.5 * x1 - x2 + effect + 0.1 * np.nan_to_num(x3, nan=5.0)
    frame = pd.DataFrame({"id": np.arange(n) + 1000, "x1": x1.round(4), "x2": x2.round(4), "city": city,
                          "x3": x3.round(3), "plan": plan})
    if kind == "text":
        good, bad = ["good", "great", "fine", "love", "nice"], ["bad", "awful", "meh", "hate", "poor"]
        words = np.array(good + bad)
        docs = [" ".join(rng.choice(np.concatenate([words, good if s > 0.3 else bad]), size=rng.integers(5, 15)))
                for s in signal]
        frame = pd.DataFrame({"id": np.arange(n), "review": docs, "hint": x2.round(3)})
        frame["label"] = np.where(signal > 0.3, "positive", "negative")
        target, sample_value, metric = "label", "positive", "Submissions are evaluated on accuracy."
    elif kind == "binary":
        frame["target"] = (signal + rng.normal(scale=0.7, size=n) > 0.3).astype(int)
        target, sample_value, metric = "target", 0.5, "Evaluated on area under the ROC curve."
    elif kind == "multiclass":
        frame["species"] = np.select([signal < -0.5, signal < 1.0], ["a", "b"], "c")
        target, sample_value, metric = "species", None, "Submissions are evaluated with multi-class log loss."
    elif kind == "regression":
        frame["target"] = (10 + 3 * signal + rng.normal(size=n)).round(3)
        target, sample_value, metric = "target", 0.0, "Scored by root mean squared error (RMSE)."
    else:
        raise ValueError(kind)
    root.mkdir(parents=True, exist_ok=True)
    train, test = frame.iloc[:n_rows], frame.iloc[n_rows:]
    train.to_csv(root / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(root / "test.csv", index=False)
    if kind == "multiclass":
        sample = pd.DataFrame({"id": test["id"], "a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    else:
        sample = pd.DataFrame({"id": test["id"], target: sample_value})
    sample.to_csv(root / "sample_submission.csv", index=False)
    if aux:
        pd.DataFrame({"city": ["paris", "oslo", "lima", "kyiv"], "population": [2.1, 0.7, 10.0, 2.9]}).to_csv(
            root / "cities.csv", index=False
        )
    (root / "description.md").write_text(f"# Tiny {kind}\n\nPredict `{target}`.\n\n## Evaluation\n\n{metric}\n")
    return root


@dataclass
class Fixture:
    task: Task
    ctx: BrainContext
    dev: Path
    final: Path
    root: Path


def build(root: Path, kind: str, *, aux: bool = False, seed: int = 0, timeout_s: float = 120.0) -> Fixture:
    competition = make_competition(root / "competition", kind, aux=aux)
    task = load_task(competition)
    folds = write_folds(task, root / "data" / "folds.csv", seed=seed)
    dev = build_input_dir(root / "data" / "dev", input_view(task, final=False).links, folds_csv=folds)
    final = build_input_dir(root / "data" / "final", input_view(task, final=True).links, folds_csv=folds)
    n_dev = int(pd.read_csv(folds)["dev"].sum())
    ctx = BrainContext(task=task, seed=seed, n_dev_rows=n_dev, script_timeout_s=timeout_s, threads=1,
                       available_packages=["sklearn", "lightgbm", "xgboost", "catboost", "numpy", "pandas", "scipy"])
    return Fixture(task=task, ctx=ctx, dev=dev, final=final, root=root)


def run_code(code: str, input_dir: Path, where: Path, timeout_s: float = 120.0) -> ExecResult:
    """Run a script per the contract: its own folder with input/, working/ and final/."""
    folder = prepare_script_dir(where, code, input_dir)
    return run_script(folder, ExecLimits(timeout_s=timeout_s, threads=1, memory_mb=4096), namespaces=False)


def assert_ran(result: ExecResult) -> float:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.score is not None, result.stdout[-2000:]
    assert result.stdout.count("Final Validation Performance") == 1, result.stdout[-2000:]
    return result.score


def assert_submission_matches(folder: Path, task: Task) -> pd.DataFrame:
    submission = pd.read_csv(folder / "final" / "submission.csv")
    assert task.sample_submission_file is not None
    sample = pd.read_csv(task.data_path(task.sample_submission_file))
    assert list(submission.columns) == list(sample.columns)
    assert len(submission) == len(sample)
    assert (submission[task.id_column].to_numpy() == sample[task.id_column].to_numpy()).all()
    assert not submission.isna().any().any()
    return submission
