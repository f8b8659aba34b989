"""The ``mlestar profile`` and ``mlestar grade`` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlestar.cli import main
from mlestar.core.task import Task

MLESTAR = Path(sys.executable).with_name("mlestar")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _submission(competition: Path, *, valid: bool = True) -> Path:
    answers = pd.read_csv(competition / "private" / "answers.csv")
    rng = np.random.default_rng(0)
    proba = np.clip(0.5 * answers.target + 0.5 * rng.random(len(answers)), 0, 1)
    frame = pd.DataFrame({"id": answers.id, "target": proba})
    if not valid:
        frame = frame.iloc[:-3]
    path = competition.parent / ("sub.csv" if valid else "bad.csv")
    frame.to_csv(path, index=False)
    return path


def test_profile_prints_tables(tiny_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["profile", str(tiny_binary)], capsys)
    assert code == 0, err
    for text in (
        "Task: tiny-binary",
        "binary",
        "roc_auc",
        "train.csv",
        "sample_submission",
        "Columns of train.csv",
        "target",
        "city",
        "categorical",
    ):
        assert text in out, text
    assert "answers.csv" in out  # shown as the private answers path in the summary


def test_profile_json_is_only_the_task(tiny_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["profile", str(tiny_binary), "--json", "--metric", "logloss", "--id", "id"], capsys)
    assert code == 0
    task = Task.model_validate_json(out)  # the whole of stdout is the Task
    assert (task.metric, task.metric_source) == ("log_loss", "override")
    assert json.loads(out)["target_columns"] == ["target"]


def test_profile_target_option(tiny_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["profile", str(tiny_binary), "--json", "--target", "x1"], capsys)
    assert code == 0 and json.loads(out)["target_columns"] == ["x1"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["profile", "{missing}"], "competition folder not found"),
        (["profile", "{comp}", "--metric", "bleu"], "unknown metric 'bleu'"),
        (["profile", "{comp}", "--target", "nope"], "target column 'nope'"),
        (
            ["grade", "{comp}/sample_submission.csv"],
            "pass --answers FILE with --metric, or --competition DIR",
        ),
        (
            ["grade", "{comp}/sample_submission.csv", "--answers", "{comp}/private/answers.csv"],
            "--metric is required",
        ),
        (
            [
                "grade",
                "{comp}/sample_submission.csv",
                "--competition",
                "{comp}",
                "--leaderboard",
                "{missing}",
            ],
            "leaderboard file not found",
        ),
    ],
)
def test_bad_input_is_one_error_line(
    tiny_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    argv = [a.format(comp=tiny_binary, missing=tmp_path / "missing") for a in args]
    code, out, err = _run(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], err
    assert "Traceback" not in err + out


def test_grade_valid_submission(tiny_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = _submission(tiny_binary)
    code, out, _ = _run(["grade", str(sub), "--competition", str(tiny_binary)], capsys)
    assert code == 0 and out.startswith("score: ") and "roc_auc, higher is better" in out
    code, out, _ = _run(
        [
            "grade",
            str(sub),
            "--answers",
            str(tiny_binary / "private" / "answers.csv"),
            "--metric",
            "auc",
            "--json",
        ],
        capsys,
    )
    payload = json.loads(out)
    assert code == 0 and payload["valid"] and payload["metric"] == "roc_auc" and 0.5 < payload["score"] <= 1


def test_grade_invalid_submission_exits_1(tiny_binary: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _submission(tiny_binary, valid=False)
    code, out, err = _run(["grade", str(bad), "--competition", str(tiny_binary)], capsys)
    assert code == 1 and out == ""
    assert err.strip() == "error: invalid submission: submission has 97 rows, the sample submission has 100"
    code, out, _ = _run(["grade", str(bad), "--competition", str(tiny_binary), "--json"], capsys)
    payload = json.loads(out)
    assert (
        code == 1
        and payload["valid"] is False
        and payload["score"] is None
        and "97 rows" in payload["reason"]
    )


def test_subprocess_errors_have_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b,target\n1,2,0\n3,4,5,6\n")
    done = subprocess.run(
        [str(MLESTAR), "profile", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert done.stderr.startswith("error: cannot parse train.csv") and "Traceback" not in done.stderr
    assert done.stdout == ""
