"""A task and brain context for the LLM-brain tests, and a runner for the scripts the brain writes.

The runner lays a script out as the pipeline does (``mlestar.task.views``, ``mlestar.exec``: the
run's split, ./input, ./working, ./final) and runs it through the sandbox, so tests execute what
the LLM brain writes without the rest of the pipeline.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ holds the competition builder
from competitions import make_competition  # noqa: E402

from mlestar.brain.protocol import BrainContext  # noqa: E402
from mlestar.core.task import Task  # noqa: E402
from mlestar.exec.models import ExecLimits  # noqa: E402
from mlestar.exec.sandbox import run_script as sandboxed  # noqa: E402
from mlestar.exec.workspace import build_input_dir, prepare_script_dir  # noqa: E402
from mlestar.pipeline.run import data_report  # noqa: E402
from mlestar.pipeline.split import write_folds  # noqa: E402
from mlestar.task import load_task  # noqa: E402
from mlestar.task.views import input_view  # noqa: E402

__all__ = ["Ran", "make_clean_competition", "make_context", "make_task", "run_script"]


def make_clean_competition(root: Path, *, kind: str = "binary", n_rows: int = 300, seed: int = 0) -> Path:
    """The tests' competition without messy values: the recorded model answers assume clean columns."""
    return make_competition(root, kind, n_rows, seed, clean=True)


def make_task(root: Path, *, kind: str = "binary") -> Task:
    """The task intake reads from the folder (``kind`` is the folder's; intake finds it again)."""
    return load_task(root)


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


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str
    score: float | None
    workdir: Path


def run_script(code: str, task: Task, workdir: Path, *, final: bool = False, timeout_s: float = 120) -> Ran:
    """Run ``code`` as the executor would: its own folder, ./input (the test files only when final)."""
    data = workdir.parent / f"{workdir.name}-data"
    folds = write_folds(task, data / "folds.csv", seed=0)
    inputs = build_input_dir(data / ("final" if final else "dev"), input_view(task, final=final).links,
                             folds_csv=folds)
    folder = prepare_script_dir(workdir, code, inputs)
    result = sandboxed(folder, ExecLimits(timeout_s=timeout_s, threads=1, memory_mb=4096), namespaces=False)
    full_stdout = (folder / "stdout.txt").read_text()
    return Ran(result.returncode, full_stdout, result.stderr, result.score, folder)
