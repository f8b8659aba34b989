"""The pipeline's own score of a script: its saved fold-0 predictions against the train file's target.

A script's printed score is what the script says; a model may compute it on the wrong rows, with
the wrong metric or the wrong way round. Every script that saves ``./final/val_predictions.csv``
(``row`` plus the prediction columns) is scored again here with the run's metric, on the rows of
the fixed split the contract names (fold 0 of the development rows, or every development row for
scripts that score out of fold), and that score is the one every selection uses. A script without
predictions keeps its printed score, marked as such.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.contract import FINAL_DIR, VAL_PREDICTIONS_NAME
from mlestar.core.task import Task
from mlestar.errors import InvalidSubmission, MlestarError
from mlestar.grading import score_submission
from mlestar.metrics import Metric
from mlestar.task.profile import read_table

RECOMPUTED, PRINTED = "recomputed", "printed"
# A printed score this close to the recomputed one agrees (scripts round what they print).
AGREE_REL, AGREE_ABS = 1e-3, 1e-6


@dataclass(frozen=True)
class ScoreCheck:
    score: float | None  # the score to use
    source: str  # RECOMPUTED or PRINTED
    printed: float | None
    problem: str = ""  # why the predictions could not be used, or how the printed score disagrees


class Rescorer:
    """Scores saved predictions of a run's scripts; reads the target and the split once."""

    def __init__(self, task: Task, metric: Metric, folds_path: Path) -> None:
        self.task = task
        self.metric = metric
        self.folds_path = folds_path
        self._truth: pd.DataFrame | None = None
        self._lock = threading.Lock()

    def _answers(self) -> pd.DataFrame:
        """``row``, ``fold``, ``dev`` and the target columns, for rows that have a target."""
        with self._lock:
            if self._truth is None:
                train = read_table(
                    self.task.data_path(self.task.train_file), usecols=self.task.target_columns
                )
                folds = pd.read_csv(self.folds_path).sort_values("row").reset_index(drop=True)
                truth = pd.concat([folds[["row", "fold", "dev"]], train.reset_index(drop=True)], axis=1)
                self._truth = truth[truth[self.task.target_columns].notna().all(axis=1)]
            return self._truth

    def check(self, script_dir: Path, printed: float | None, *, final: bool) -> ScoreCheck:
        path = script_dir / FINAL_DIR / VAL_PREDICTIONS_NAME
        if not path.is_file():
            return ScoreCheck(printed, PRINTED, printed, f"no ./{FINAL_DIR}/{VAL_PREDICTIONS_NAME}")
        try:
            score = self.score_file(path, final=final)
        except (MlestarError, ValueError, KeyError, OSError) as exc:
            reason = " ".join(str(exc).split())[:300]
            return ScoreCheck(printed, PRINTED, printed, f"{VAL_PREDICTIONS_NAME} cannot be scored: {reason}")
        if printed is not None and not math.isclose(printed, score, rel_tol=AGREE_REL, abs_tol=AGREE_ABS):
            return ScoreCheck(
                score, RECOMPUTED, printed, f"it printed {printed:.6g}, its predictions score {score:.6g}"
            )
        return ScoreCheck(score, RECOMPUTED, printed)

    def score_file(self, path: Path, *, final: bool) -> float:
        predictions = read_table(path)
        predictions.columns = [str(c) for c in predictions.columns]
        if "row" not in predictions.columns:
            raise InvalidSubmission("it has no 'row' column")
        answers = self._answers()
        rows = pd.to_numeric(predictions["row"], errors="coerce")
        if rows.isna().any() or (rows % 1 != 0).any():
            raise InvalidSubmission("its 'row' column holds values that are not row numbers")
        predictions["row"] = rows.astype("int64")
        labelled = set(answers["row"].tolist())
        predictions = predictions[predictions["row"].isin(labelled)]  # rows without a target are not scored
        scope = answers if final else answers[answers["dev"] == 1]
        expected = {
            "fold 0": set(scope.loc[scope["fold"] == 0, "row"].tolist()),
            "out of fold": set(scope["row"].tolist()),
        }
        got = set(predictions["row"].tolist())
        if got not in expected.values():
            missing = len(expected["fold 0"] - got)
            extra = len(got - expected["fold 0"])
            raise InvalidSubmission(
                f"its rows are not the split's fold-0 rows ({missing} missing, {extra} not in fold 0)"
            )
        truth = answers[answers["row"].isin(got)][["row", *self.task.target_columns]]
        value = score_submission(predictions, truth, self.metric, id_column="row")
        if not np.isfinite(value):
            raise InvalidSubmission(f"{self.metric.name} is not finite")
        return float(value)
