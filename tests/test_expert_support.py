"""Shared helpers for the expert-brain tests: tiny competitions laid out per the script contract.

No tests here; ``test_expert_*.py`` modules import these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from competitions import make_competition

from mlestar.brain.protocol import BrainContext
from mlestar.core.task import Task
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.sandbox import run_script
from mlestar.exec.workspace import build_input_dir, prepare_script_dir
from mlestar.pipeline.split import write_folds
from mlestar.task import load_task
from mlestar.task.views import input_view

ROUNDS = 60  # boosting rounds / trees cap: keeps every script to a second or two


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
