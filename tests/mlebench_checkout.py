"""A fake MLE-bench checkout laid out like the upstream repository (openai/mle-bench), for the tests.

``mlebench/`` is a package whose ``grade_helpers`` defines ``InvalidSubmissionError`` and imports
``mlebench.utils``, which configures logging on import as upstream's does; ``mlebench/competitions``
has no ``__init__.py`` and holds one folder per competition (hyphenated ids) with ``config.yaml``
naming ``mlebench.competitions.<id>.grade:grade``, ``grade.py``, sometimes modules of its own, and
``leaderboard.csv``. ``experiments/splits`` lists the splits. The competitions:

- ``tiny-churn``: ROC AUC; ``grade.py`` imports its column names relatively (``from .columns``);
- ``tiny-prices``: RMSE through a helper module of its folder, imported inside ``grade()``;
  its leaderboard is a Git LFS pointer, as in a clone without git-lfs;
- ``tiny-strict``: accuracy; its grader raises ``InvalidSubmissionError`` for anything but 0/1 labels
  and counts the hits in a spawned worker process;
- ``tiny-needs-package``: its grader imports a package that is not installed;
- ``tiny-unprepared``: like tiny-churn; the tests never prepare its data.

The lite split (``low.txt``) is tiny-churn, tiny-prices and tiny-unprepared.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd

ABSENT_PACKAGE = "mlestar_fixture_absent_package"
LITE = ["tiny-churn", "tiny-prices", "tiny-unprepared"]
ALL = ["tiny-churn", "tiny-needs-package", "tiny-prices", "tiny-strict", "tiny-unprepared"]

UTILS = """
import logging

import yaml  # upstream's utils import third-party packages too (py7zr, yaml, tqdm)


def get_logger(name):
    logging.basicConfig(level=logging.INFO, format="[mlebench] %(message)s")
    return logging.getLogger(name)
"""
GRADE_HELPERS = '''
from mlebench.utils import get_logger

logger = get_logger(__name__)


class InvalidSubmissionError(Exception):
    """A submission the grader cannot score."""
'''
COMPETITION_UTILS = '''
from mlebench.grade_helpers import InvalidSubmissionError


def aligned(submission, answers, id_column, target):
    """(truth, predictions) matched by id; InvalidSubmissionError when the submission does not fit."""
    for column in (id_column, target):
        if column not in submission.columns:
            raise InvalidSubmissionError(f"submission has no '{column}' column")
    if len(submission) != len(answers):
        raise InvalidSubmissionError(f"expected {len(answers)} rows, got {len(submission)}")
    merged = answers.merge(submission, on=id_column, suffixes=("_true", "_pred"))
    if len(merged) != len(answers):
        raise InvalidSubmissionError("the submission's ids do not match the answers")
    return merged[target + "_true"].to_numpy(), merged[target + "_pred"].to_numpy()
'''
CHURN_COLUMNS = """
ID = "id"
TARGET = "target"
"""
CHURN_GRADE = """
from sklearn.metrics import roc_auc_score

from mlebench.competitions.utils import aligned

from .columns import ID, TARGET


def grade(submission, answers):
    print("grading tiny churn")  # upstream graders print progress to stdout
    y_true, y_score = aligned(submission, answers, ID, TARGET)
    return roc_auc_score(y_true, y_score)
"""
PRICES_METRIC = """
import numpy as np

from mlebench.competitions.utils import aligned

OFFSET = 0.0


def rmse(submission, answers):
    y_true, y_pred = aligned(submission, answers, "id", "target")
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2))) + OFFSET
"""
PRICES_GRADE = """
def grade(submission, answers):
    from .metric import rmse  # imported when grading, not when the grader is loaded

    return rmse(submission, answers)
"""
STRICT_GRADE = """
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

from mlebench.grade_helpers import InvalidSubmissionError


def agree(pair):
    return pair[0] == pair[1]


def grade(submission, answers):
    if not submission["target"].isin([0, 1]).all():
        raise InvalidSubmissionError("predictions must be 0 or 1 labels")
    merged = answers.merge(submission, on="id", suffixes=("_true", "_pred"))
    pairs = list(zip(merged["target_true"].tolist(), merged["target_pred"].tolist()))
    # Upstream graders use process pools; a spawned worker imports this module by name.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        hits = list(pool.map(agree, pairs))
    return sum(hits) / len(hits)
"""
NEEDS_PACKAGE_GRADE = f"""
import {ABSENT_PACKAGE}


def grade(submission, answers):
    return 0.0
"""
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 20480\n"
)


def _config(competition_id: str, grader_name: str) -> str:
    return textwrap.dedent(f"""\
        id: {competition_id}
        name: {competition_id.replace("-", " ").title()}
        competition_type: simple
        awards_medals: false
        prizes: null
        description: mlebench/competitions/{competition_id}/description.md

        dataset:
          answers: {competition_id}/prepared/private/test.csv
          sample_submission: {competition_id}/prepared/public/sample_submission.csv

        grader:
          name: {grader_name}
          grade_fn: mlebench.competitions.{competition_id}.grade:grade

        preparer: mlebench.competitions.{competition_id}.prepare:prepare
        """)


def _leaderboard(scores: list[float]) -> str:
    frame = pd.DataFrame(
        {"teamId": range(len(scores)), "teamName": [f"team {i}" for i in range(len(scores))], "score": scores}
    )
    return frame.to_csv(index=False)


# 50 teams, best first: gold = the 5th score, silver = the 10th, bronze = the 20th, median between 25th/26th.
AUC_BOARD = [round(0.99 - 0.01 * i, 4) for i in range(50)]  # 0.99 .. 0.50
ACCURACY_BOARD = [round(0.95 - 0.005 * i, 4) for i in range(50)]


def make_checkout(root: Path, *, namespace: bool = False, prices_offset: float = 0.0) -> Path:
    """Write the fake checkout at ``root``. ``namespace``: no ``mlebench/__init__.py`` (a namespace
    package); ``prices_offset`` is added to tiny-prices' RMSE (to tell two checkouts apart)."""
    package = root / "mlebench"
    competitions = package / "competitions"
    competitions.mkdir(parents=True)
    if not namespace:
        (package / "__init__.py").write_text("")
    (package / "utils.py").write_text(UTILS)
    (package / "grade_helpers.py").write_text(GRADE_HELPERS)
    (competitions / "utils.py").write_text(COMPETITION_UTILS)
    churn = {"grade.py": CHURN_GRADE, "columns.py": CHURN_COLUMNS}
    metric = PRICES_METRIC.replace("OFFSET = 0.0", f"OFFSET = {prices_offset}")
    files = {
        "tiny-churn": ("auc-roc", churn, _leaderboard(AUC_BOARD)),
        "tiny-prices": ("rmse", {"grade.py": PRICES_GRADE, "metric.py": metric}, LFS_POINTER),
        "tiny-strict": ("accuracy", {"grade.py": STRICT_GRADE}, _leaderboard(ACCURACY_BOARD)),
        "tiny-needs-package": ("accuracy", {"grade.py": NEEDS_PACKAGE_GRADE}, _leaderboard(ACCURACY_BOARD)),
        "tiny-unprepared": ("auc-roc", churn, _leaderboard(AUC_BOARD)),
    }
    for competition_id, (grader_name, modules, board) in files.items():
        folder = competitions / competition_id
        folder.mkdir()
        (folder / "config.yaml").write_text(_config(competition_id, grader_name))
        (folder / "description.md").write_text(f"# {competition_id}\n")
        (folder / "leaderboard.csv").write_text(board)
        for name, text in modules.items():
            (folder / name).write_text(text)
    splits = root / "experiments" / "splits"
    splits.mkdir(parents=True)
    (splits / "low.txt").write_text("\n".join(LITE) + "\n")
    (splits / "split75.txt").write_text("\n".join(ALL) + "\n")
    return root
