"""Submission validation and grading against private answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from competitions import (
    SPECIES,
    make_competition,
    mlebench_competition,
    multiclass_competition,
    multilabel_competition,
)
from sklearn import metrics as skm

from mlestar.errors import InvalidSubmission, MetricError, TaskError
from mlestar.grading import GradeResult, grade_competition, grade_submission, validate_submission
from mlestar.metrics import get_metric

# --- validate_submission ---------------------------------------------------------------------------

SAMPLE = pd.DataFrame({"id": [1, 2, 3], "target": [0.5, 0.5, 0.5]})


def _reason(submission: pd.DataFrame, metric: str | None = "roc_auc") -> str:
    with pytest.raises(InvalidSubmission) as info:
        validate_submission(submission, SAMPLE, id_column="id", metric=get_metric(metric) if metric else None)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_submission_passes() -> None:
    validate_submission(
        pd.DataFrame({"id": [3, 1, 2], "target": [0.1, 1.0, 0.0]}),
        SAMPLE,
        id_column="id",
        metric=get_metric("auc"),
    )


@pytest.mark.parametrize(
    ("submission", "expected"),
    [
        (pd.DataFrame({"id": [1, 2, 3]}), "missing column(s) 'target'"),
        (pd.DataFrame({"id": [1, 2, 3], "target": [0.1] * 3, "x": 1}), "unexpected column(s) 'x'"),
        (pd.DataFrame({"target": [0.1] * 3, "id": [1, 2, 3]}), "columns are out of order"),
        (
            pd.DataFrame({"id": [1, 2], "target": [0.1, 0.2]}),
            "submission has 2 rows, the sample submission has 3",
        ),
        (pd.DataFrame({"id": [1, 1, 3], "target": [0.1] * 3}), "id '1' appears more than once"),
        (pd.DataFrame({"id": [1, 2, 4], "target": [0.1] * 3}), "1 ids of the sample submission are missing"),
        (
            pd.DataFrame({"id": [1, 2, 3], "target": [0.1, np.nan, 0.2]}),
            "column 'target' has 1 missing values",
        ),
        (pd.DataFrame({"id": [1, 2, 3], "target": [0.1, np.inf, 0.2]}), "infinite values"),
        (pd.DataFrame({"id": [1, 2, 3], "target": [0.1, 1.5, 0.2]}), "probabilities in [0, 1]"),
        (pd.DataFrame({"id": [1, 2, 3], "target": ["a", "b", "c"]}), "must hold probabilities, found 'a'"),
    ],
)
def test_invalid_submissions(submission: pd.DataFrame, expected: str) -> None:
    assert expected in _reason(submission)


def test_label_metric_allows_any_values_but_not_missing() -> None:
    validate_submission(
        pd.DataFrame({"id": [1, 2, 3], "target": ["a", "b", "c"]}),
        SAMPLE,
        id_column="id",
        metric=get_metric("acc"),
    )
    assert "missing values" in _reason(
        pd.DataFrame({"id": [1, 2, 3], "target": ["a", None, "c"]}), "accuracy"
    )


# --- grade_submission ------------------------------------------------------------------------------


def test_binary_probability_grade_aligns_by_id(tiny_binary: Path) -> None:
    answers = pd.read_csv(tiny_binary / "private" / "answers.csv")
    rng = np.random.default_rng(0)
    proba = np.clip(0.5 * answers.target + 0.5 * rng.random(len(answers)), 0, 1)
    submission = pd.DataFrame({"id": answers.id, "target": proba}).sample(frac=1, random_state=1)
    path = tiny_binary / "submission.csv"
    submission.to_csv(path, index=False)
    result = grade_submission(
        path,
        tiny_binary / "private" / "answers.csv",
        metric="auc",
        sample_path=tiny_binary / "sample_submission.csv",
    )
    assert isinstance(result, GradeResult)
    assert result.valid and result.reason == ""
    assert (result.metric, result.lower_is_better) == ("roc_auc", False)
    assert result.score == pytest.approx(skm.roc_auc_score(answers.target, proba))
    # graded through the competition folder: the same answer
    assert grade_competition(path, tiny_binary).score == pytest.approx(result.score)


def test_regression_grade_and_metric_override(tiny_regression: Path) -> None:
    answers = pd.read_csv(tiny_regression / "private" / "answers.csv")
    pred = answers.target + 1.0
    path = tiny_regression / "sub.csv"
    pd.DataFrame({"id": answers.id, "target": pred}).to_csv(path, index=False)
    assert grade_competition(path, tiny_regression).score == pytest.approx(1.0)
    mae = grade_competition(path, tiny_regression, metric="mae")
    assert (mae.metric, mae.score, mae.lower_is_better) == ("mae", pytest.approx(1.0), True)


def test_label_grade_with_string_labels(tmp_path: Path) -> None:
    answers = pd.DataFrame({"id": range(6), "animal": ["cat", "dog", "cat", "emu", "dog", "cat"]})
    answers.to_csv(tmp_path / "answers.csv", index=False)
    submission = answers.copy()
    submission.loc[[0, 1], "animal"] = ["dog", "cat"]
    submission.to_csv(tmp_path / "sub.csv", index=False)
    result = grade_submission(tmp_path / "sub.csv", tmp_path / "answers.csv", metric="accuracy")
    assert result.valid and result.score == pytest.approx(4 / 6)
    macro = grade_submission(
        tmp_path / "sub.csv", tmp_path / "answers.csv", metric="f1_macro", id_column="id"
    )
    assert macro.score == pytest.approx(skm.f1_score(answers.animal, submission.animal, average="macro"))


def test_multiclass_probability_columns_against_label_answers(tmp_path: Path) -> None:
    root = multiclass_competition(tmp_path / "species")
    answers = pd.read_csv(root / "private" / "test.csv")
    rng = np.random.default_rng(3)
    proba = rng.random((len(answers), 3)) + 0.1
    proba /= proba.sum(axis=1, keepdims=True)
    submission = pd.DataFrame(proba, columns=SPECIES)
    submission.insert(0, "id", answers.id)
    submission.to_csv(root / "sub.csv", index=False)
    result = grade_competition(root / "sub.csv", root)
    assert result.valid and result.metric == "log_loss"
    assert result.score == pytest.approx(skm.log_loss(answers.species, proba, labels=SPECIES))
    auc = grade_competition(root / "sub.csv", root, metric="roc_auc")
    assert auc.score == pytest.approx(
        skm.roc_auc_score(answers.species, proba, multi_class="ovr", labels=SPECIES)
    )


def test_multiclass_one_hot_answers(tmp_path: Path) -> None:
    labels = np.array(["a", "b", "c", "a", "b", "c", "a"])
    onehot = pd.get_dummies(pd.Series(labels)).astype(int)
    answers = pd.concat([pd.DataFrame({"id": range(7)}), onehot], axis=1)
    answers.to_csv(tmp_path / "answers.csv", index=False)
    proba = np.full((7, 3), 0.2)
    proba[np.arange(7), [0, 1, 2, 0, 1, 1, 2]] = 0.6
    submission = pd.concat(
        [pd.DataFrame({"id": range(7)}), pd.DataFrame(proba, columns=["a", "b", "c"])], axis=1
    )
    submission.to_csv(tmp_path / "sub.csv", index=False)
    result = grade_submission(tmp_path / "sub.csv", tmp_path / "answers.csv", metric="log_loss")
    assert result.score == pytest.approx(skm.log_loss(labels, proba))
    accuracy = grade_submission(tmp_path / "sub.csv", tmp_path / "answers.csv", metric="accuracy")
    assert accuracy.score == pytest.approx(5 / 7)


def test_multilabel_is_column_wise(tmp_path: Path) -> None:
    root = multilabel_competition(tmp_path / "toxic")
    answers = pd.read_csv(root / "private" / "answers.csv")
    columns = ["toxic", "insult", "threat"]
    rng = np.random.default_rng(4)
    proba = np.clip(0.4 * answers[columns].to_numpy() + 0.6 * rng.random((len(answers), 3)), 0, 1)
    submission = pd.DataFrame(proba, columns=columns)
    submission.insert(0, "id", answers.id)
    submission.to_csv(root / "sub.csv", index=False)
    result = grade_competition(root / "sub.csv", root)
    assert result.score == pytest.approx(skm.roc_auc_score(answers[columns], proba, average="macro"))


def test_mlebench_grade(tmp_path: Path) -> None:
    comp = mlebench_competition(tmp_path / "house")
    answers = pd.read_csv(comp / "prepared" / "private" / "test.csv")
    path = tmp_path / "sub.csv"
    pd.DataFrame({"Id": answers.Id, "SalePrice": answers.SalePrice * 1.1}).to_csv(path, index=False)
    result = grade_competition(path, comp)
    assert result.metric == "rmsle"
    assert result.score == pytest.approx(
        skm.root_mean_squared_log_error(answers.SalePrice, answers.SalePrice * 1.1)
    )


def test_invalid_submissions_are_results_not_errors(tiny_binary: Path) -> None:
    answers = tiny_binary / "private" / "answers.csv"
    ids = pd.read_csv(answers).id
    cases = {
        "missing.csv": None,
        "few.csv": pd.DataFrame({"id": ids[:-1], "target": 0.5}),
        "nan.csv": pd.DataFrame({"id": ids, "target": np.nan}),
        "wrongcol.csv": pd.DataFrame({"id": ids, "prediction": 0.5}),
    }
    expected = {
        "missing.csv": "submission file not found",
        "few.csv": "submission has 99 rows, the sample submission has 100",
        "nan.csv": "missing values",
        "wrongcol.csv": "missing column(s) 'target'",
    }
    for name, frame in cases.items():
        if frame is not None:
            frame.to_csv(tiny_binary / name, index=False)
        result = grade_competition(tiny_binary / name, tiny_binary)
        assert not result.valid and result.score is None, name
        assert expected[name] in result.reason, (name, result.reason)
    # without a sample, one prediction column is read against the one answer column, whatever its name...
    assert grade_submission(tiny_binary / "wrongcol.csv", answers, metric="auc").valid
    # ...but columns the answers cannot explain are caught
    pd.DataFrame({"id": ids, "a": 0.5, "b": 0.5}).to_csv(tiny_binary / "two.csv", index=False)
    result = grade_submission(tiny_binary / "two.csv", answers, metric="auc")
    assert not result.valid and "do not match the answers" in result.reason
    (tiny_binary / "empty.csv").write_text("")
    assert "empty" in grade_submission(tiny_binary / "empty.csv", answers, metric="auc").reason


def test_grader_side_problems_raise(tiny_binary: Path, tmp_path: Path) -> None:
    sub = tiny_binary / "sample_submission.csv"
    with pytest.raises(TaskError, match="answers file not found"):
        grade_submission(sub, tmp_path / "none.csv", metric="auc")
    with pytest.raises(MetricError, match="unknown metric"):
        grade_submission(sub, tiny_binary / "private" / "answers.csv", metric="bleu")
    plain = make_competition(tmp_path / "nopriv", "binary", n_rows=40)
    for item in (plain / "private").iterdir():
        item.unlink()
    with pytest.raises(TaskError, match="no private answers"):
        grade_competition(plain / "sample_submission.csv", plain)


def test_grading_needs_only_the_answers_the_sample_and_a_metric(tiny_binary: Path) -> None:
    answers = pd.read_csv(tiny_binary / "private" / "answers.csv")
    rng = np.random.default_rng(0)
    submission = tiny_binary / "sub.csv"
    scores = np.clip(answers["target"] * 0.4 + rng.uniform(0, 0.6, len(answers)), 0, 1)
    pd.DataFrame({"id": answers["id"], "target": scores}).to_csv(submission, index=False)
    with_train = grade_competition(submission, tiny_binary)
    (tiny_binary / "train.csv").unlink()
    (tiny_binary / "test.csv").unlink()
    without = grade_competition(submission, tiny_binary)
    assert without.valid and without.metric == "roc_auc" and without.score == pytest.approx(with_train.score)
    short = tiny_binary / "short.csv"
    pd.read_csv(submission).iloc[:-2].to_csv(short, index=False)
    assert not grade_competition(short, tiny_binary).valid  # still checked against the sample submission
    (tiny_binary / "description.md").write_text("# No metric named here\n")
    with pytest.raises(TaskError, match=r"no train file .* name the metric \(--metric\)"):
        grade_competition(submission, tiny_binary)
    assert grade_competition(submission, tiny_binary, metric="auc").score == pytest.approx(with_train.score)
