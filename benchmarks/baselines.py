"""Baselines that mlestar is measured against, all run on the same competition folder and budget.

- ``plain``: scikit-learn defaults: HistGradientBoosting on tabular data (categoricals ordinal
  encoded and handled natively), TF-IDF + LogisticRegression / Ridge when the task has text.
- ``autogluon`` / ``autogluon-best``: AutoGluon's TabularPredictor, presets ``medium_quality`` /
  ``best_quality``, ``time_limit`` = the budget.
- ``flaml``: FLAML's AutoML, ``time_budget`` = the budget.

The AutoML tools come with the ``bench`` extra; without it they stop with a one-line error.
Every baseline reads the task through ``load_task`` and writes a submission in the sample
submission's shape (probabilities or labels as the task asks). For an RMSLE task every baseline
fits log1p(target), the usual way to optimise that metric.

Run one from the shell (``benchmarks/compare.py`` does so, one process per run)::

    python benchmarks/baselines.py plain examples/churn --time-limit 60 --out /tmp/plain
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.task import Task, TaskType
from mlestar.errors import MlestarError

SEED = 0


@dataclass
class _Data:
    x_train: pd.DataFrame
    y_train: pd.Series
    x_test: pd.DataFrame
    test_ids: pd.Series | None


# ---------------------------------------------------------------------------------------------
# Reading the task and writing the submission


def _feature_columns(task: Task, train: pd.DataFrame) -> list[str]:
    skip = set(task.target_columns) | {task.id_column, task.group_column}
    columns = task.feature_columns or list(train.columns)
    # The group key only says which rows belong together; as a feature it cannot generalise.
    return [c for c in columns if c not in skip and c in train.columns]


def _read(task: Task) -> _Data:
    if len(task.target_columns) != 1:
        raise MlestarError(f"{task.name}: the baselines handle one target column, this task has {len(task.target_columns)}")
    if not task.test_file:
        raise MlestarError(f"{task.name}: no test file, so there is nothing to predict")
    train = pd.read_csv(task.data_path(task.train_file))
    test = pd.read_csv(task.data_path(task.test_file))
    features = _feature_columns(task, train)
    missing = [c for c in features if c not in test.columns]
    if missing:
        raise MlestarError(f"{task.name}: test file lacks feature columns {missing[:5]}")
    train = train[train[task.target].notna()]
    test_ids = test[task.id_column] if task.id_column and task.id_column in test.columns else None
    return _Data(train[features], train[task.target], test[features], test_ids)


def _positive_class(task: Task, classes: list) -> object:
    """The class whose probability a binary submission holds: the larger label, as the metrics read it."""
    by_text = {str(c): c for c in classes}
    if task.classes and task.classes[-1] in by_text:
        return by_text[task.classes[-1]]
    return sorted(classes, key=str)[-1]


def _submission_frame(task: Task, data: _Data, values: pd.DataFrame) -> pd.DataFrame:
    """Lay predictions (one row per test row, columns = submission columns) out like the sample."""
    if data.test_ids is not None:
        values = values.copy()
        values.insert(0, task.id_column, data.test_ids.to_numpy())
    if not task.sample_submission_file:
        return values
    sample = pd.read_csv(task.data_path(task.sample_submission_file))
    if data.test_ids is not None and task.id_column in sample.columns:
        # Follow the sample's row order, which need not be the test file's.
        values = values.set_index(task.id_column).reindex(sample[task.id_column].to_numpy()).reset_index()
        values = values.rename(columns={"index": task.id_column})
    return values[[c for c in sample.columns if c in values.columns]]


def _predictions_frame(
    task: Task,
    predict: Callable[[pd.DataFrame], np.ndarray],
    predict_proba: Callable[[pd.DataFrame], np.ndarray] | None,
    classes: list,
    x_test: pd.DataFrame,
) -> pd.DataFrame:
    """Turn a fitted model's outputs into the submission's value columns."""
    columns = [c for c in task.submission_columns if c != task.id_column] or [task.target]
    if task.task_type is TaskType.REGRESSION:
        return pd.DataFrame({task.target: predict(x_test)})
    if task.submission_kind != "proba" or predict_proba is None:
        return pd.DataFrame({task.target: predict(x_test)})
    proba = np.asarray(predict_proba(x_test), dtype=float)
    index = {str(c): j for j, c in enumerate(classes)}
    if task.task_type is TaskType.BINARY and len(columns) == 1:
        return pd.DataFrame({columns[0]: proba[:, index[str(_positive_class(task, classes))]]})
    # One column per class; a class never seen in training gets probability 0.
    return pd.DataFrame({c: proba[:, index[c]] if c in index else 0.0 for c in columns})


def _write(frame: pd.DataFrame, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "submission.csv"
    frame.to_csv(path, index=False)
    return path


def _log_target(task: Task) -> bool:
    return task.task_type is TaskType.REGRESSION and task.metric == "rmsle"


# ---------------------------------------------------------------------------------------------
# plain


def _datetime_to_days(series: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(series, errors="coerce")
    return (parsed - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)


def _column_kinds(task: Task) -> dict[str, str]:
    return {c.name: c.kind for c in task.columns}


def _tabular_model(task: Task, x: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    kinds = _column_kinds(task)
    dates = [c for c in x.columns if kinds.get(c) == "datetime" and not pd.api.types.is_numeric_dtype(x[c])]
    numeric = [c for c in x.columns if c not in dates and pd.api.types.is_numeric_dtype(x[c])]
    categorical = [c for c in x.columns if c not in dates and c not in numeric]
    # HistGradientBoosting takes at most 255 categories natively; wider ones stay ordinal codes.
    native = [x[c].nunique() < 255 for c in categorical]
    encode = ColumnTransformer(
        [
            ("num", "passthrough", numeric),
            ("date", FunctionTransformer(lambda f: f.apply(_datetime_to_days)), dates),
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan),
                categorical,
            ),
        ],
        sparse_threshold=0,
    )
    mask = [False] * (len(numeric) + len(dates)) + native
    if task.task_type is TaskType.REGRESSION:
        model = HistGradientBoostingRegressor(categorical_features=mask or None, random_state=SEED)
    else:
        model = HistGradientBoostingClassifier(categorical_features=mask or None, random_state=SEED)
    return make_pipeline(encode, model)


def _text_model(task: Task, x: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    texts = [c for c in task.text_columns if c in x.columns]
    rest = [c for c in x.columns if c not in texts]
    numeric = [c for c in rest if pd.api.types.is_numeric_dtype(x[c])]
    categorical = [c for c in rest if c not in numeric]
    parts = [
        (f"tfidf_{c}", TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), c) for c in texts
    ]
    if numeric:
        parts.append(("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric))
    if categorical:
        parts.append(
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                  OneHotEncoder(handle_unknown="ignore", min_frequency=5)), categorical)
        )
    encode = ColumnTransformer(parts)
    if task.task_type is TaskType.REGRESSION:
        return make_pipeline(encode, Ridge())
    return make_pipeline(encode, LogisticRegression(max_iter=2000))


def _prepare_text(task: Task, frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in task.text_columns:
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    return frame


def run_plain(task: Task, time_limit: float, out_dir: Path) -> Path:
    """scikit-learn with default settings; ``time_limit`` is not needed by models this quick."""
    data = _read(task)
    use_text = any(c in data.x_train.columns for c in task.text_columns)
    x_train, x_test = data.x_train, data.x_test
    if use_text:
        x_train, x_test = _prepare_text(task, x_train), _prepare_text(task, x_test)
        model = _text_model(task, x_train)
    else:
        model = _tabular_model(task, x_train)
    y = np.log1p(data.y_train.astype(float)) if _log_target(task) else data.y_train
    model.fit(x_train, y)

    def predict(x: pd.DataFrame) -> np.ndarray:
        pred = model.predict(x)
        return np.expm1(pred) if _log_target(task) else pred

    classes = list(model.classes_) if hasattr(model, "classes_") else []
    values = _predictions_frame(task, predict, getattr(model, "predict_proba", None), classes, x_test)
    return _write(_submission_frame(task, data, values), out_dir)


# ---------------------------------------------------------------------------------------------
# AutoGluon


_AUTOGLUON_METRICS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced_accuracy",
    "f1": "f1",
    "f1_macro": "f1_macro",
    "roc_auc": "roc_auc",
    "log_loss": "log_loss",
    "rmse": "root_mean_squared_error",
    "rmsle": "root_mean_squared_error",  # fitted on log1p(target)
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "mape": "mean_absolute_percentage_error",
    "r2": "r2",
    "qwk": "quadratic_kappa",
}


def _require(module: str, tool: str) -> None:
    if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
        raise MlestarError(f"{tool} is not installed; install the benchmark extra: pip install 'mlestar[bench]'")


def _run_autogluon(task: Task, time_limit: float, out_dir: Path, presets: str) -> Path:
    _require("autogluon.tabular", "autogluon")
    from autogluon.tabular import TabularPredictor

    data = _read(task)
    label = "__target__"
    train = data.x_train.copy()
    train[label] = np.log1p(data.y_train.astype(float)) if _log_target(task) else data.y_train.to_numpy()
    problem_type = {
        TaskType.BINARY: "binary",
        TaskType.MULTICLASS: "multiclass",
        TaskType.REGRESSION: "regression",
    }.get(task.task_type)
    predictor = TabularPredictor(
        label=label,
        problem_type=problem_type,
        eval_metric=_AUTOGLUON_METRICS.get(task.metric),
        path=str(out_dir / "autogluon_models"),
        verbosity=0,
    ).fit(train, presets=presets, time_limit=time_limit)

    def predict(x: pd.DataFrame) -> np.ndarray:
        pred = predictor.predict(x).to_numpy()
        return np.expm1(pred) if _log_target(task) else pred

    classification = task.task_type in (TaskType.BINARY, TaskType.MULTICLASS)
    classes: list = list(predictor.class_labels) if classification else []

    def predict_proba(x: pd.DataFrame) -> np.ndarray:
        return predictor.predict_proba(x, as_multiclass=True)[classes].to_numpy()

    values = _predictions_frame(task, predict, predict_proba if classification else None, classes, data.x_test)
    return _write(_submission_frame(task, data, values), out_dir)


def run_autogluon(task: Task, time_limit: float, out_dir: Path) -> Path:
    return _run_autogluon(task, time_limit, out_dir, "medium_quality")


def run_autogluon_best(task: Task, time_limit: float, out_dir: Path) -> Path:
    return _run_autogluon(task, time_limit, out_dir, "best_quality")


# ---------------------------------------------------------------------------------------------
# FLAML


_FLAML_METRICS = {
    "accuracy": "accuracy",
    "f1": "f1",
    "f1_macro": "macro_f1",
    "roc_auc": "roc_auc",
    "log_loss": "log_loss",
    "rmse": "rmse",
    "rmsle": "rmse",  # fitted on log1p(target)
    "mse": "mse",
    "mae": "mae",
    "mape": "mape",
    "r2": "r2",
}


def _flaml_frame(task: Task, frame: pd.DataFrame) -> pd.DataFrame:
    """FLAML wants numbers or pandas categories; dates become day counts, strings categories."""
    kinds = _column_kinds(task)
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column]):
            continue
        if kinds.get(column) == "datetime":
            out[column] = _datetime_to_days(out[column])
        else:
            out[column] = out[column].astype("category")
    return out


def run_flaml(task: Task, time_limit: float, out_dir: Path) -> Path:
    _require("flaml", "flaml")
    from flaml import AutoML

    data = _read(task)
    x_train = _flaml_frame(task, data.x_train)
    x_test = _flaml_frame(task, data.x_test)
    # Test categories must match the training ones for the tree learners.
    for column in x_train.columns:
        if isinstance(x_train[column].dtype, pd.CategoricalDtype):
            x_test[column] = pd.Categorical(x_test[column], categories=x_train[column].cat.categories)
    y = np.log1p(data.y_train.astype(float)) if _log_target(task) else data.y_train
    out_dir.mkdir(parents=True, exist_ok=True)
    automl = AutoML()
    automl.fit(
        x_train,
        y,
        task="regression" if task.task_type is TaskType.REGRESSION else "classification",
        metric=_FLAML_METRICS.get(task.metric, "auto"),
        time_budget=time_limit,
        seed=SEED,
        verbose=0,
        log_file_name=str(out_dir / "flaml.log"),
    )

    def predict(x: pd.DataFrame) -> np.ndarray:
        pred = np.asarray(automl.predict(x))
        return np.expm1(pred) if _log_target(task) else pred

    classes = list(automl.classes_) if task.task_type is not TaskType.REGRESSION else []
    values = _predictions_frame(task, predict, automl.predict_proba if classes else None, classes, x_test)
    return _write(_submission_frame(task, data, values), out_dir)


# ---------------------------------------------------------------------------------------------
# Registry and command line

BASELINES: dict[str, Callable[[Task, float, Path], Path]] = {
    "plain": run_plain,
    "autogluon": run_autogluon,
    "autogluon-best": run_autogluon_best,
    "flaml": run_flaml,
}


def run_baseline(tool: str, competition: Path | Task, time_limit: float, out_dir: Path) -> Path:
    """Run baseline ``tool`` on a competition folder (or a loaded task); return its submission path."""
    if tool not in BASELINES:
        raise MlestarError(f"unknown baseline {tool!r}; choose from {', '.join(BASELINES)}")
    if time_limit <= 0:
        raise MlestarError("the time limit must be positive")
    if isinstance(competition, Task):
        task = competition
    else:
        from mlestar.task.intake import load_task

        task = load_task(competition)
    return BASELINES[tool](task, float(time_limit), Path(out_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/baselines.py", description="Run one baseline.")
    parser.add_argument("tool", choices=list(BASELINES))
    parser.add_argument("competition", type=Path)
    parser.add_argument("--time-limit", type=float, required=True, help="seconds")
    parser.add_argument("--out", type=Path, required=True, help="folder for the submission")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        path = run_baseline(args.tool, args.competition, args.time_limit, args.out)
    except MlestarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{args.tool}: wrote {path} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
