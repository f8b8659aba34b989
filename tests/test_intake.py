"""Task intake: layouts, detection of every Task field, overrides, large files and bad input."""

from __future__ import annotations

import time
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

from mlestar.errors import MetricError, MlestarError, TaskError
from mlestar.task import FileRole, Modality, TaskType, load_task
from mlestar.task.description import evaluation_section, find_metric
from mlestar.task.profile import column_kind


def _roles(task) -> dict[str, str]:
    return {f.path: f.role.value for f in task.files}


# --- plain folders ---------------------------------------------------------------------------------


def test_plain_binary_competition(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "tiny", "binary", n_rows=200)
    task = load_task(root)
    assert task.name == "tiny"
    assert task.data_dir == root.resolve()
    assert (task.train_file, task.test_file, task.sample_submission_file) == (
        "train.csv",
        "test.csv",
        "sample_submission.csv",
    )
    assert task.answers_file == (root / "private" / "answers.csv").resolve()
    assert task.answers_file.is_absolute()
    assert task.id_column == "id"
    assert task.target_columns == ["target"]
    assert task.task_type is TaskType.BINARY
    assert task.classes == ["0", "1"]
    assert (task.metric, task.lower_is_better, task.metric_source) == ("roc_auc", False, "description")
    assert task.submission_kind == "proba"
    assert task.submission_columns == ["id", "target"]
    assert task.feature_columns == ["x1", "x2", "city", "x3", "plan"]
    assert task.categorical_columns == ["city", "plan"]
    assert task.modality is Modality.TABULAR
    assert (task.n_train_rows, task.n_test_rows) == (200, 50)
    assert "Evaluation" in task.description
    kinds = {c.name: c.kind for c in task.columns}
    assert kinds == {
        "id": "id",
        "x1": "numeric",
        "x2": "numeric",
        "city": "categorical",
        "x3": "numeric",
        "plan": "categorical",
        "target": "boolean",
    }
    x3 = next(c for c in task.columns if c.name == "x3")
    assert 0.02 < x3.missing_share < 0.25
    roles = _roles(task)
    assert roles["train.csv"] == "train" and roles["test.csv"] == "test"
    assert roles["sample_submission.csv"] == "sample_submission" and roles["description.md"] == "description"
    # private answers are never listed as public data: only as the absolute ANSWERS entry
    public = [f for f in task.files if f.role is not FileRole.ANSWERS]
    assert not any("private" in f.path for f in public)
    answers = [f for f in task.files if f.role is FileRole.ANSWERS]
    assert [Path(f.path) for f in answers] == [task.answers_file]
    train_file = next(f for f in task.files if f.role is FileRole.TRAIN)
    assert (train_file.rows, train_file.columns, train_file.rows_estimated) == (200, 7, False)


def test_regression_metric_from_description(tmp_path: Path) -> None:
    task = load_task(make_competition(tmp_path / "reg", "regression", n_rows=120))
    assert task.task_type is TaskType.REGRESSION
    assert (task.metric, task.lower_is_better) == ("rmse", True)
    assert task.classes == [] and task.submission_kind == "label"


def test_multiclass_probability_submission(tmp_path: Path) -> None:
    task = load_task(multiclass_competition(tmp_path / "species"))
    assert task.target_columns == ["species"]
    assert task.task_type is TaskType.MULTICLASS
    assert task.submission_kind == "proba"
    assert task.classes == sorted(SPECIES)
    assert task.submission_columns == ["id", *SPECIES]
    assert (task.metric, task.lower_is_better) == ("log_loss", True)
    assert task.answers_file is not None and task.answers_file.name == "test.csv"
    assert task.id_column == "id"
    assert "species" not in task.feature_columns and "id" not in task.feature_columns


def test_multilabel_text_competition(tmp_path: Path) -> None:
    task = load_task(multilabel_competition(tmp_path / "toxic"))
    assert task.task_type is TaskType.MULTILABEL
    assert task.target_columns == ["toxic", "insult", "threat"]
    assert task.modality is Modality.TEXT
    assert task.text_columns == ["comment_text"]
    assert task.metric == "roc_auc" and task.submission_kind == "proba"


def test_label_submission_without_description_uses_default_metric(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 90
    frame = pd.DataFrame(
        {
            "PassengerId": np.arange(1, n + 1),
            "Age": rng.uniform(1, 80, n),
            "Embarked": rng.choice(["S", "C", "Q"], n),
            "Survived": rng.integers(0, 2, n),
        }
    )
    frame.iloc[:60].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[60:].drop(columns="Survived").to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"PassengerId": frame.PassengerId[60:], "Survived": 0}).to_csv(
        tmp_path / "gender_submission.csv", index=False
    )
    task = load_task(tmp_path)
    assert task.sample_submission_file == "gender_submission.csv"
    assert task.id_column == "PassengerId" and task.target_columns == ["Survived"]
    assert (task.metric, task.metric_source, task.submission_kind) == ("accuracy", "default", "label")


def test_target_without_sample_submission_is_the_train_only_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"row_id": np.arange(80), "a": rng.normal(size=80), "price": rng.uniform(1, 9, 80)})
    frame.iloc[:60].to_csv(tmp_path / "houses_train.csv", index=False)
    frame.iloc[60:].drop(columns="price").to_csv(tmp_path / "houses_test.csv", index=False)
    task = load_task(tmp_path)
    assert (task.train_file, task.test_file, task.sample_submission_file) == (
        "houses_train.csv",
        "houses_test.csv",
        None,
    )
    assert task.target_columns == ["price"] and task.task_type is TaskType.REGRESSION
    assert task.id_column == "row_id"
    assert task.submission_columns == ["row_id", "price"]
    assert (task.metric, task.metric_source) == ("rmse", "default")


def test_parquet_tables_and_column_kinds(tmp_path: Path) -> None:
    n = 120
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "when": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "flag": rng.choice(["yes", "no"], n),
            "constant": 7,
            "review": [f"this product was really quite good number {i} and I liked it" for i in range(n)],
            "grade": rng.integers(1, 6, n),
        }
    )
    frame.to_parquet(tmp_path / "train.parquet")
    frame.drop(columns="grade").to_parquet(tmp_path / "test.parquet")
    task = load_task(tmp_path)
    assert task.train_file == "train.parquet"
    kinds = {c.name: c.kind for c in task.columns}
    assert kinds == {
        "id": "id",
        "when": "datetime",
        "flag": "boolean",
        "constant": "constant",
        "review": "text",
        "grade": "numeric",
    }
    assert task.target_columns == ["grade"]
    assert task.task_type is TaskType.MULTICLASS and task.classes == ["1", "2", "3", "4", "5"]
    assert task.feature_columns == ["when", "flag", "review"]
    assert task.categorical_columns == ["flag"]
    assert task.modality is Modality.TEXT
    assert next(f for f in task.files if f.role is FileRole.TRAIN).format == "parquet"


def test_image_folder_and_auxiliary_files(tmp_path: Path) -> None:
    for folder in ("train", "test"):
        (tmp_path / folder).mkdir()
        for i in range(12):
            (tmp_path / folder / f"{folder}_{i}.png").write_bytes(b"\x89PNG fake")
    labels = pd.DataFrame({"id": [f"train_{i}" for i in range(12)], "label": ["cat", "dog"] * 6})
    labels.to_csv(tmp_path / "train_labels.csv", index=False)
    pd.DataFrame({"id": [f"test_{i}" for i in range(12)], "label": 0.5}).to_csv(
        tmp_path / "sample_submission.csv", index=False
    )
    pd.DataFrame({"id": ["train_0"], "photographer": ["ann"]}).to_csv(tmp_path / "metadata.csv", index=False)
    (tmp_path / "notes.xyz").write_text("geometry")
    task = load_task(tmp_path)
    assert task.train_file == "train_labels.csv" and task.test_file is None
    assert task.modality is Modality.IMAGE
    assert task.task_type is TaskType.BINARY and task.classes == ["cat", "dog"]
    roles = _roles(task)
    assert roles["train"] == "image_dir" and roles["test"] == "image_dir"
    assert roles["metadata.csv"] == "auxiliary" and roles["notes.xyz"] == "auxiliary"
    assert next(f for f in task.files if f.path == "train").rows == 12
    assert task.n_test_rows == 12
    assert task.submission_kind == "proba"  # 0.5 placeholders are probabilities


# --- MLE-bench layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["", "prepared", "prepared/public"])
def test_mlebench_layouts(tmp_path: Path, entry: str) -> None:
    comp = mlebench_competition(tmp_path / "house-prices")
    task = load_task(comp / entry if entry else comp)
    assert task.name == "house-prices"
    assert task.data_dir == (comp / "prepared" / "public").resolve()
    assert task.answers_file == (comp / "prepared" / "private" / "test.csv").resolve()
    assert task.id_column == "Id" and task.target_columns == ["SalePrice"]
    assert task.task_type is TaskType.REGRESSION
    # "RMSE between the logarithm of the predicted value and the logarithm of the observed price"
    assert (task.metric, task.metric_source) == ("rmsle", "description")
    assert task.categorical_columns == ["Quality"]
    assert all(f.role is FileRole.ANSWERS or not Path(f.path).is_absolute() for f in task.files)


def test_mlebench_public_without_private(tmp_path: Path) -> None:
    comp = mlebench_competition(tmp_path / "comp", with_private=False)
    task = load_task(comp / "prepared" / "public")
    assert task.answers_file is None
    assert not any(f.role is FileRole.ANSWERS for f in task.files)


# --- task.yaml and overrides -----------------------------------------------------------------------


def _custom_folder(root: Path) -> Path:
    rng = np.random.default_rng(4)
    n = 100
    frame = pd.DataFrame(
        {
            "key": np.arange(n),
            "store": rng.integers(0, 5, n),
            "day": np.arange(n) % 7,
            "units": rng.integers(0, 3, n),
            "other": rng.normal(size=n),
        }
    )
    root.mkdir()
    frame.iloc[:80].to_csv(root / "history.csv", index=False)
    frame.iloc[80:].drop(columns=["units"]).to_csv(root / "future.csv", index=False)
    (root / "description.txt").write_text("Submissions are evaluated on accuracy.\n")
    (root / "task.yaml").write_text(
        "name: demand\ntrain: history.csv\ntest: future.csv\ntarget: units\nid: key\n"
        "metric: mae\ntask_type: regression\ngroup_column: store\ntime_column: day\n"
    )
    return root


def test_task_yaml_overrides_detection(tmp_path: Path) -> None:
    task = load_task(_custom_folder(tmp_path / "custom"))
    assert task.name == "demand"
    assert (task.train_file, task.test_file) == ("history.csv", "future.csv")
    assert task.target_columns == ["units"] and task.id_column == "key"
    assert (task.metric, task.metric_source) == ("mae", "task.yaml")
    assert task.task_type is TaskType.REGRESSION
    assert (task.group_column, task.time_column) == ("store", "day")
    assert "task.yaml" not in _roles(task)


def test_arguments_override_task_yaml(tmp_path: Path) -> None:
    task = load_task(_custom_folder(tmp_path / "custom"), metric="R^2", target="other", id_column="key")
    assert task.target_columns == ["other"]
    assert (task.metric, task.metric_source, task.lower_is_better) == ("r2", "override", False)


def test_metric_override_beats_description(tmp_path: Path) -> None:
    task = load_task(make_competition(tmp_path / "c", "binary", n_rows=60), metric="logloss")
    assert (task.metric, task.metric_source, task.lower_is_better) == ("log_loss", "override", True)


# --- large files -----------------------------------------------------------------------------------


def test_large_csv_profiles_from_a_sample(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    block_rows = 40_000
    block = pd.DataFrame(
        {
            "id": np.arange(block_rows),
            "a": rng.normal(size=block_rows).round(6),
            "b": rng.integers(0, 1000, block_rows),
            "c": rng.choice(["alpha", "beta", "gamma"], block_rows),
            "target": rng.integers(0, 2, block_rows),
        }
    ).to_csv(index=False)
    header, body = block.split("\n", 1)
    repeats = 60  # ~63 MB, 2.4 M rows
    with open(tmp_path / "train.csv", "w") as handle:
        handle.write(header + "\n")
        for _ in range(repeats):
            handle.write(body)
    true_rows = block_rows * repeats
    assert (tmp_path / "train.csv").stat().st_size > 40 * 2**20
    start = time.perf_counter()
    task = load_task(tmp_path, target="target")
    elapsed = time.perf_counter() - start
    train = next(f for f in task.files if f.role is FileRole.TRAIN)
    assert train.rows_estimated
    assert abs(task.n_train_rows - true_rows) <= 0.1 * true_rows
    assert train.rows == task.n_train_rows
    assert elapsed < 15  # generous: it reads a few MB, not the whole file
    assert task.task_type is TaskType.BINARY


# --- description parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric"),
    [
        (
            "Submissions are evaluated on area under the ROC curve between prediction and truth.",
            "roc_auc",
        ),
        ("Submissions are judged on AUC.", "roc_auc"),
        ("The evaluation metric is the area under the receiver operating characteristic curve.", "roc_auc"),
        ("Submissions are evaluated using the multi-class logarithmic loss.", "log_loss"),
        ("Submissions are scored on log loss.", "log_loss"),
        ("Submissions are evaluated on Root Mean Squared Error (RMSE).", "rmse"),
        ("The metric is the Root Mean Squared Logarithmic Error.", "rmsle"),
        ("Submissions are scored on RMSLE.", "rmsle"),
        ("Submissions are evaluated on the mean absolute error (MAE) between predicted and actual.", "mae"),
        ("Evaluation uses the mean absolute percentage error.", "mape"),
        ("Submissions are evaluated on the mean squared error.", "mse"),
        (
            "Your score is the percentage of passengers you correctly predict. This is known as accuracy.",
            "accuracy",
        ),
        ("Submissions are evaluated on the F1 score between predicted and expected answers.", "f1"),
        ("Submissions are evaluated using the macro F1 score.", "f1_macro"),
        ("Submissions are scored based on the quadratic weighted kappa.", "qwk"),
        ("Submissions are evaluated on the coefficient of determination (R^2).", "r2"),
        ("The evaluation metric is R-squared.", "r2"),
        ("Submissions are evaluated by balanced accuracy.", "balanced_accuracy"),
    ],
)
def test_find_metric_phrasings(text: str, metric: str) -> None:
    found = find_metric(f"# Title\n\nSome intro.\n\n## Evaluation\n\n{text}\n")
    assert found is not None and found.metric == metric
    assert found.where == "evaluation section"


def test_evaluation_section_wins_over_earlier_mentions() -> None:
    text = (
        "# Overview\n\nWe want to improve the accuracy of fraud alerts.\n\n"
        "## Evaluation\n\nSubmissions are evaluated on area under the ROC curve.\n\n"
        "## Timeline\n\nAccuracy matters.\n"
    )
    assert evaluation_section(text) == "Submissions are evaluated on area under the ROC curve."
    assert find_metric(text).metric == "roc_auc"


def test_unknown_metric_in_evaluation_section_is_not_guessed() -> None:
    text = (
        "# Overview\n\nBoost the accuracy of search.\n\n## Evaluation\n\nSubmissions are scored by MAP@5.\n"
    )
    assert find_metric(text) is None


def test_find_metric_without_sections() -> None:
    text = "Predict the price. Good luck. Entries are scored by RMSE on the hidden test set."
    found = find_metric(text)
    assert found is not None and (found.metric, found.where) == ("rmse", "evaluation sentence")
    assert find_metric("Nothing about scores here.") is None
    assert find_metric("") is None


def test_column_kind_helpers() -> None:
    assert column_kind(pd.Series([1.5, 2.5, 3.5]), "x") == "numeric"
    assert column_kind(pd.Series(["a", "b", "a"]), "x") == "categorical"
    assert column_kind(pd.Series([True, False]), "x") == "boolean"
    assert column_kind(pd.Series([None, None]), "x") == "constant"
    assert column_kind(pd.Series(range(5)), "customer_id") == "id"
    assert column_kind(pd.Series(range(5)), "paid") == "numeric"


# --- bad input -------------------------------------------------------------------------------------


def _one_line_error(exc_type: type[MlestarError], path: Path, **kwargs: object) -> str:
    with pytest.raises(exc_type) as info:
        load_task(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    assert "not found" in _one_line_error(TaskError, tmp_path / "nope")


def test_file_instead_of_folder(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    assert "folder" in _one_line_error(TaskError, tmp_path / "train.csv")


def test_folder_without_train(tmp_path: Path) -> None:
    (tmp_path / "test.csv").write_text("id,a\n1,2\n")
    assert "no train file" in _one_line_error(TaskError, tmp_path)


def test_malformed_csv(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b,target\n1,2,0\n3,4,5,6,7\n")
    message = _one_line_error(TaskError, tmp_path)
    assert "train.csv" in message and "Expected 3 fields" in message


def test_empty_train(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("a,b,target\n")
    assert "has no rows" in _one_line_error(TaskError, tmp_path)
    (tmp_path / "train.csv").write_text("")
    assert "empty" in _one_line_error(TaskError, tmp_path)


def test_target_not_in_train(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    message = _one_line_error(TaskError, root, target="label")
    assert "'label'" in message and "train.csv" in message


def test_sample_submission_row_count_mismatch(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    sample = pd.read_csv(root / "sample_submission.csv")
    sample.iloc[:-1].to_csv(root / "sample_submission.csv", index=False)
    message = _one_line_error(TaskError, root)
    assert message == "sample_submission.csv has 9 rows but test.csv has 10"


def test_sample_submission_id_mismatch(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    sample = pd.read_csv(root / "sample_submission.csv")
    sample.loc[0, "id"] = 99_999
    sample.to_csv(root / "sample_submission.csv", index=False)
    message = _one_line_error(TaskError, root)
    assert "do not match test.csv" in message and "99999" in message


def test_unknown_metric(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    assert "unknown metric 'bleu'" in _one_line_error(MetricError, root, metric="bleu")
    (root / "task.yaml").write_text("metric: nope\n")
    assert "unknown metric 'nope'" in _one_line_error(MetricError, root)


def test_bad_task_yaml(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    (root / "task.yaml").write_text("metric: [unclosed\n")
    assert "not valid YAML" in _one_line_error(TaskError, root)
    (root / "task.yaml").write_text("metirc: auc\n")
    assert "unknown key(s) metirc" in _one_line_error(TaskError, root)
    (root / "task.yaml").write_text("task_type: ranking\n")
    assert "task_type 'ranking'" in _one_line_error(TaskError, root)
    (root / "task.yaml").write_text("train: missing.csv\n")
    assert "missing.csv" in _one_line_error(TaskError, root)
    (root / "task.yaml").write_text("group_column: nope\n")
    assert "group_column 'nope'" in _one_line_error(TaskError, root)


def test_sample_submission_without_prediction_column(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    pd.read_csv(root / "sample_submission.csv")[["id"]].to_csv(root / "sample_submission.csv", index=False)
    assert "no prediction column" in _one_line_error(TaskError, root)


def test_unknown_id_column(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=40)
    assert "id column 'ident'" in _one_line_error(TaskError, root, id_column="ident")


def test_checksums_and_leaderboards_are_not_taken_for_data(tmp_path: Path) -> None:
    root = make_competition(tmp_path / "c", "binary", n_rows=60)
    (root / "CHECKSUMS.sha256").write_text("abc  train.csv\n")
    (root / "train.csv.md5").write_text("abc\n")
    pd.DataFrame({"teamName": ["a"], "score": [0.9]}).to_csv(root / "leaderboard.csv", index=False)
    task = load_task(root)
    assert {f.path for f in task.files} == {"description.md", "sample_submission.csv", "test.csv", "train.csv",
                                            str(task.answers_file)}


def test_the_summary_names_every_categorical_column(tmp_path: Path) -> None:
    # A house-prices-like table has more than 30 string columns; a model told only some of them
    # would pass the others to its model as numbers.
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"id": range(n), "price": rng.normal(size=n)})
    for i in range(45):
        frame[f"cat_{i:02d}"] = rng.choice(["a", "b", "c"], size=n)
    frame.iloc[:90].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[90:].drop(columns=["price"]).to_csv(tmp_path / "test.csv", index=False)
    frame.iloc[90:][["id"]].assign(price=0.0).to_csv(tmp_path / "sample_submission.csv", index=False)
    task = load_task(tmp_path)
    line = next(x for x in task.summary().splitlines() if x.startswith("Categorical columns:"))
    assert all(f"cat_{i:02d}" in line for i in range(45)) and "more)" not in line
