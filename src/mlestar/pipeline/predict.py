"""Predictions on new rows from a run's final solution: ``mlestar predict`` and the server's
``POST /api/runs/{id}/predict``.

The final script behind the run's submission runs again, in the sandbox, on a fresh input folder:
the competition's public files with the new rows in place of the test file and a sample submission
for those rows (the competition's own when the rows are the test file's rows). An expert final
script kept every model it fitted (``./final/fitted``, see ``core/contract.py``); it gets them at
``./fitted`` and loads them instead of training, so the predictions come from the very models behind
the submission. Any other final script (an LLM's, or one whose models could not be kept) trains
again, as it did in the final run.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mlestar.core.contract import FINAL_DIR, FITTED_DIR, SUBMISSION_NAME
from mlestar.core.task import Task
from mlestar.errors import InvalidSubmission, PredictionError
from mlestar.exec.models import ExecLimits, ScriptJob
from mlestar.exec.pool import Executor, LocalExecutor
from mlestar.exec.workspace import build_input_dir, make_writable, prepare_script_dir
from mlestar.grading import validate_submission
from mlestar.metrics import get_metric
from mlestar.pipeline.run import FOLDS_PATH
from mlestar.settings import Settings
from mlestar.store import NodeRecord, RunStore, open_run
from mlestar.task.profile import read_table
from mlestar.task.views import input_view, private_paths

PREDICTIONS_DIR = "predictions"  # inside the run folder; a prediction's folder is removed once it succeeded
_PARQUET = (".parquet", ".pq")
_TEXT_TABLES = (".csv", ".tsv", ".txt")


@dataclass
class Prediction:
    """What ``predict`` wrote and how."""

    output: Path
    rows: int
    loaded_models: bool  # the final run's fitted models were loaded, nothing was trained
    wall_s: float
    notes: list[str] = field(default_factory=list)


def predict(
    run_id: str, rows: Path | str, output: Path | str, *, runs_dir: Path | str | None = None
) -> Prediction:
    """Apply run ``run_id``'s final solution to the table ``rows``; write predictions to ``output``."""
    with open_run(runs_dir if runs_dir is not None else Settings.load().runs_dir, run_id) as store:
        return predict_with(store, Path(rows), Path(output))


def predict_with(
    store: RunStore, rows_path: Path, output: Path, *, executor: Executor | None = None
) -> Prediction:
    started = time.monotonic()
    task = Task.model_validate(store.get_meta("task"))
    settings = Settings.for_run(store.get_meta("config"))
    node = _final_node(store)
    test_path = _test_path(task)
    frame, notes = _read_rows(rows_path, test_path, task.id_column)
    folder = store.run_dir / PREDICTIONS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    keep = False  # a failed script's folder stays, for its output; anything else is removed
    try:
        script_dir, sample_path, loaded = _lay_out(folder, store, task, node, test_path, rows_path, frame)
        result = _run(script_dir, settings, task, store, executor)
        keep = True
        if result.returncode != 0 or result.timed_out or result.memory_exceeded or result.cancelled:
            last = (result.error_text().strip().splitlines() or ["no output"])[-1]
            raise PredictionError(f"the final script failed on the new rows ({last}); see {script_dir}")
        produced = script_dir / FINAL_DIR / SUBMISSION_NAME
        _check(produced, sample_path, task, script_dir)
        keep = False
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(f".{output.name}.partial")
        shutil.copyfile(produced, partial)
        partial.replace(output)
    finally:
        if not keep:
            _remove(folder)
    # The printed line holds ten digits; the node's score may be recomputed at full precision.
    if loaded and node.score is not None and not _same_score(result.score, node.score):
        notes.append(
            f"the loaded models scored {result.score} on the validation rows where the final run scored "
            f"{node.score}: the training data may have changed since the run"
        )
    if not loaded:
        notes.append("the final script kept no fitted models, so it trained again on the run's data")
    return Prediction(
        output=output, rows=len(frame), loaded_models=loaded, wall_s=time.monotonic() - started, notes=notes
    )


def _lay_out(
    folder: Path,
    store: RunStore,
    task: Task,
    node: NodeRecord,
    test_path: Path,
    rows_path: Path,
    frame: pd.DataFrame,
) -> tuple[Path, Path | None, bool]:
    """The prediction's folder: the new rows and their sample, an input view with them in place of
    the test file and sample submission, the final script, and the final run's fitted models.

    Returns the script's folder, the sample submission it sees and whether models were linked."""
    new_files = folder / "rows"
    new_files.mkdir(parents=True)
    replaced = {os.path.normpath(str(task.test_file)): _rows_file(rows_path, frame, test_path, new_files)}
    sample_path = _sample_for(task, frame, new_files)
    if sample_path is not None and task.sample_submission_file is not None:
        replaced[os.path.normpath(task.sample_submission_file)] = sample_path
    links = [
        (source, inner)
        for source, inner in input_view(task, final=True).links
        if os.path.normpath(str(inner)) not in replaced
    ]
    links += [(source, Path(inner)) for inner, source in replaced.items()]
    view = build_input_dir(folder / "input", links, folds_csv=store.run_dir / FOLDS_PATH)
    code = (store.run_dir / node.script_path).read_text(encoding="utf-8")
    script_dir = prepare_script_dir(folder / "script", code, view)
    fitted = (store.run_dir / node.script_path).parent / FINAL_DIR / FITTED_DIR
    loaded = fitted.is_dir() and any(fitted.iterdir())
    if loaded:
        # A copy inside the script's own folder: the sandbox shows a script nothing of the run
        # folder, and hard links would let the script change the run's own models.
        shutil.copytree(fitted, script_dir / FITTED_DIR)
    return script_dir, sample_path, loaded


def _remove(folder: Path) -> None:
    if folder.exists():
        make_writable(folder / "input")  # the input view is read-only
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # the last prediction leaves no empty folder behind
        folder.parent.rmdir()


def _final_node(store: RunStore) -> NodeRecord:
    node_id = (store.get_meta("submission") or {}).get("final_node_id")
    node = store.get_node(int(node_id)) if node_id else None
    if node is None or not (store.run_dir / node.script_path).is_file():
        raise PredictionError(f"run {store.run_id} has no submission yet, so no final solution to apply")
    return node


def _test_path(task: Task) -> Path:
    if task.test_file is None:
        raise PredictionError(f"{task.name} has no test table, so there is no format for new rows")
    path = task.data_path(task.test_file)
    if not path.is_file():
        raise PredictionError(f"the test file is gone from {path}; new rows are checked against it")
    return path


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _columns(path: Path) -> list[str]:
    if _is_parquet(path):
        import pyarrow.parquet as pq

        return [str(name) for name in pq.read_schema(path).names]
    return [str(c) for c in pd.read_csv(path, nrows=0, sep=_separator(path)).columns]


def _read_rows(path: Path, test_path: Path, id_column: str | None) -> tuple[pd.DataFrame, list[str]]:
    """The new rows, with the test file's columns in its order; CSV cells are kept as written."""
    if not path.is_file():
        raise PredictionError(f"no file {path}")
    if not _is_parquet(path) and path.suffix.lower() not in _TEXT_TABLES:
        raise PredictionError(f"{path.name}: give the new rows as CSV, TSV or parquet")
    try:
        if _is_parquet(path):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise PredictionError(f"{path.name} cannot be read as a table: {exc}") from None
    frame.columns = [str(c) for c in frame.columns]
    wanted = _columns(test_path)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise PredictionError(
            f"{path.name} lacks {len(missing)} of the test file's columns: {_names(missing)} "
            f"(the test file has {_names(wanted)})"
        )
    if frame.empty:
        raise PredictionError(f"{path.name} has no rows")
    if id_column in frame.columns and frame[id_column].duplicated().any():
        repeated = [str(v) for v in frame.loc[frame[id_column].duplicated(), id_column].unique()[:5]]
        raise PredictionError(f"{path.name} repeats ids ({', '.join(repeated)}): each row needs its own id")
    extra = [c for c in frame.columns if c not in wanted]
    notes = [f"ignored {len(extra)} column(s) the test file does not have: {_names(extra)}"] if extra else []
    return frame[wanted], notes


def _names(columns: list[str], limit: int = 12) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _rows_file(given: Path, frame: pd.DataFrame, test_path: Path, folder: Path) -> Path:
    """The file the script reads as its test file: the given one when it already has the test file's
    layout, else the rows written in the test file's format."""
    same_format = _is_parquet(given) == _is_parquet(test_path) and _separator(given) == _separator(test_path)
    if same_format and _columns(given) == list(frame.columns):
        return given.resolve()
    target = folder / test_path.name
    if _is_parquet(test_path):
        if not _is_parquet(given):  # cells read as text: give them the test file's types
            import pyarrow.parquet as pq

            types = pq.read_schema(test_path).empty_table().to_pandas().dtypes
            frame = pd.read_csv(given, sep=_separator(given))[list(frame.columns)]
            frame = frame.astype({c: types[c] for c in frame.columns if c in types}, errors="ignore")
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, sep=_separator(test_path), index=False)
    return target


def _sample_for(task: Task, frame: pd.DataFrame, folder: Path) -> Path | None:
    """The sample submission the script fills in: the competition's when the rows are the test file's
    rows (so predicting the test file reproduces the submission), else one row per new row."""
    if task.sample_submission_file is None:
        return None
    path = task.data_path(task.sample_submission_file)
    if _is_parquet(path):
        sample = pd.read_parquet(path)
    else:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False)
    key = task.id_column
    if key and key in sample.columns and key in frame.columns:
        if len(sample) == len(frame) and sorted(map(str, sample[key])) == sorted(map(str, frame[key])):
            return path.resolve()
    if len(sample):  # the first row's values, one copy per new row
        made = sample.iloc[[0] * len(frame)].reset_index(drop=True)
    else:
        made = sample.reindex(range(len(frame)))
    if key and key in made.columns and key in frame.columns:
        made[key] = frame[key].to_numpy()
    target = folder / path.name
    if _is_parquet(path):
        made.to_parquet(target, index=False)
    else:
        made.to_csv(target, index=False)
    return target


def _run(script_dir: Path, settings: Settings, task: Task, store: RunStore, executor: Executor | None):
    alone = settings.model_copy(update={"workers": 1})  # one script: the machine is its own
    limits = ExecLimits(
        timeout_s=settings.script_timeout_s,
        memory_mb=alone.resolved_memory_mb(),
        threads=alone.resolved_threads(),
        network=settings.network,
    )
    store_files = [Path(f"{store.db_path}{suffix}") for suffix in ("", "-wal", "-shm")]
    job = ScriptJob(workdir=script_dir, limits=limits, hide=private_paths(task, final=True) + store_files)
    own = executor is None
    runner = executor or LocalExecutor(1)
    try:
        return runner.submit(job).result()
    finally:
        if own:
            runner.shutdown()


def _check(produced: Path, sample_path: Path | None, task: Task, script_dir: Path) -> None:
    if not produced.is_file():
        raise PredictionError(f"the final script wrote no ./{FINAL_DIR}/{SUBMISSION_NAME} (see {script_dir})")
    if sample_path is None:
        return
    try:
        validate_submission(
            read_table(produced),
            read_table(sample_path),
            id_column=task.id_column,
            metric=get_metric(task.metric),
        )
    except InvalidSubmission as exc:
        raise PredictionError(f"the predictions do not fit the submission format: {exc}") from None


def _same_score(printed: float | None, recorded: float) -> bool:
    return printed is not None and math.isclose(printed, recorded, rel_tol=1e-8, abs_tol=1e-10)
