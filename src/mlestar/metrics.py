"""Metric registry: what each competition metric computes and which way is better.

Every metric is defined ONCE, as a self-contained Python snippet (numpy and scikit-learn imports
only) that defines ``metric_score(y_true, y_pred) -> float``. The registry compiles that snippet
to score, and generated solution scripts embed the very same text, so a script's validation score
and the grader's score can never drift apart.

Shapes the snippets accept:
- labels or values: 1-D ``y_true`` and 1-D ``y_pred``;
- class probabilities: 1-D ``y_true`` labels and a 2-D ``y_pred`` whose columns are the classes
  (a DataFrame's column names are the class labels; a bare array is in sorted class order);
  a 1-D ``y_pred`` for a binary task is the probability of the larger (positive) class;
- several targets (multilabel, multi-output regression): 2-D ``y_true`` and 2-D ``y_pred`` of the
  same width; the score is the mean of the per-column scores (scikit-learn's macro / uniform
  average).
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from mlestar.core.task import TaskType
from mlestar.errors import MetricError

# --- building blocks shared by the snippets ------------------------------------------------------
# Each helper is plain source text; a metric lists the helpers it needs so its snippet stays
# small and self-contained.

_HELPERS: dict[str, str] = {
    "vector": '''
def _vector(values):
    """A 1-D numpy view of a list, Series, array or one-column table."""
    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr
''',
    "columnwise": '''
def _columns(values):
    if hasattr(values, "iloc") and getattr(values, "ndim", 1) == 2:
        return [values.iloc[:, j] for j in range(values.shape[1])]
    arr = np.asarray(values)
    if arr.ndim == 2:
        return [arr[:, j] for j in range(arr.shape[1])]
    return None


def _columnwise(score_one, y_true, y_pred):
    """Score one target, or average the per-column scores of several targets."""
    true_cols = _columns(y_true)
    if true_cols is None or len(true_cols) == 1:
        return float(score_one(y_true, y_pred))
    pred_cols = _columns(y_pred)
    if pred_cols is None or len(pred_cols) != len(true_cols):
        raise ValueError("y_true has %d target columns but y_pred does not" % len(true_cols))
    return float(np.mean([score_one(t, p) for t, p in zip(true_cols, pred_cols)]))
''',
    "label_key": '''
def _label_key(value):
    """Class labels compared as text, with 1.0 and 1 treated as the same label."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return str(value)


def _label_keys(values):
    return np.array([_label_key(v) for v in values], dtype=object)
''',
    "binary_codes": '''
def _binary_codes(y_true):
    """0/1 codes of a binary target; the larger label is the positive class."""
    t = _vector(y_true)
    if t.dtype.kind in "biuf" and set(np.unique(t).tolist()) <= {0, 1}:
        return t.astype(int)
    keys = _label_keys(t)
    if set(keys.tolist()) <= {"0", "1"}:
        return (keys == "1").astype(int)
    classes = np.unique(t)
    if len(classes) != 2:
        raise ValueError("a binary target needs exactly 2 classes, found %d" % len(classes))
    return (t == classes[1]).astype(int)
''',
    "class_matrix": '''
def _is_matrix(y_pred):
    shape = np.shape(y_pred)
    return len(shape) == 2 and shape[1] > 1


def _class_matrix(y_true, y_pred):
    """(codes of y_true into the columns of y_pred, probability matrix)."""
    t = _vector(y_true)
    if hasattr(y_pred, "columns"):
        classes = [_label_key(c) for c in y_pred.columns]
        proba = y_pred.to_numpy(dtype=float)
    else:
        proba = np.asarray(y_pred, dtype=float)
        classes = [_label_key(c) for c in np.unique(t)]
        if proba.shape[1] != len(classes):
            raise ValueError(
                "y_pred has %d columns but y_true has %d classes; pass a DataFrame whose columns "
                "are the class labels" % (proba.shape[1], len(classes))
            )
    index = {c: j for j, c in enumerate(classes)}
    keys = _label_keys(t)
    unknown = sorted(set(keys.tolist()) - set(index))
    if unknown:
        raise ValueError("labels %s are not among the probability columns" % unknown[:5])
    return np.array([index[k] for k in keys], dtype=int), proba
''',
    "labels": '''
def _labels(y_true, y_pred):
    """Comparable (true, predicted) label arrays; probabilities become their most likely class."""
    t = _vector(y_true)
    if _is_matrix(y_pred):
        if hasattr(y_pred, "columns"):
            classes = np.array([_label_key(c) for c in y_pred.columns], dtype=object)
            proba = y_pred.to_numpy(dtype=float)
        else:
            classes = _label_keys(np.unique(t))
            proba = np.asarray(y_pred, dtype=float)
        return _label_keys(t), classes[np.argmax(proba, axis=1)]
    p = _vector(y_pred)
    if t.dtype.kind in "biuf" and p.dtype.kind == "f" and set(np.unique(t).tolist()) <= {0, 1}:
        if not np.all(np.equal(np.mod(p, 1), 0)):
            p = (p >= 0.5).astype(int)  # a probability of the positive class
    if t.dtype.kind in "biuf" and p.dtype.kind in "biuf":
        return t, p
    return _label_keys(t), _label_keys(p)
''',
    "positive_label": '''
def _positive_label(t, p):
    """1 when labels are numeric, otherwise the larger of the two labels ('yes', 'True', ...)."""
    if t.dtype.kind in "biuf":
        return 1
    seen = sorted(set(t.tolist()) | set(p.tolist()))
    return "1" if "1" in seen else seen[-1]
''',
    "floats": """
def _floats(values):
    return _vector(values).astype(float)
""",
}

_HELPER_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "columnwise": (),
    "vector": (),
    "label_key": (),
    "binary_codes": ("vector", "label_key"),
    "class_matrix": ("vector", "label_key"),
    "labels": ("vector", "label_key", "class_matrix"),
    "positive_label": (),
    "floats": ("vector",),
}

_HELPER_ORDER = tuple(_HELPERS)


def _snippet(title: str, helpers: tuple[str, ...], body: str) -> str:
    """Assemble a self-contained snippet: imports, the helpers it needs, then ``metric_score``."""
    needed: set[str] = {"columnwise"}
    stack = list(helpers)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(_HELPER_DEPENDENCIES[name])
    parts = [f"# {title}", "import numpy as np"]
    parts += [_HELPERS[name].strip("\n") for name in _HELPER_ORDER if name in needed]
    parts.append(body.strip("\n"))
    return "\n\n\n".join(parts) + "\n"


# --- the model -----------------------------------------------------------------------------------


class Metric(BaseModel):
    """One competition metric: its direction, what it needs and the code that computes it."""

    name: str
    lower_is_better: bool
    needs_proba: bool = False  # scored on probabilities / scores rather than hard labels
    aliases: list[str] = Field(default_factory=list)
    task_types: list[TaskType] = Field(default_factory=list)
    description: str = ""
    code: str  # defines metric_score(y_true, y_pred) -> float; numpy / scikit-learn only

    _fn: Callable[[Any, Any], float] | None = PrivateAttr(default=None)

    def score(self, y_true: Any, y_pred: Any) -> float:
        """The metric's value; raises ValueError when the inputs do not fit the metric."""
        if self._fn is None:
            filename = f"<metric {self.name}>"
            # registered so tracebacks through the snippet show its source lines
            linecache.cache[filename] = (len(self.code), None, self.code.splitlines(True), filename)
            namespace: dict[str, Any] = {"__name__": f"mlestar_metric_{self.name}"}
            exec(compile(self.code, filename, "exec"), namespace)
            self._fn = namespace["metric_score"]
        return float(self._fn(y_true, y_pred))

    def is_better(self, candidate: float, reference: float | None) -> bool:
        """Strictly better than ``reference`` (any score beats no score)."""
        if reference is None:
            return True
        return candidate < reference if self.lower_is_better else candidate > reference

    @property
    def worst(self) -> float:
        return float("inf") if self.lower_is_better else float("-inf")


# --- the metrics ---------------------------------------------------------------------------------

_CLS = [TaskType.BINARY, TaskType.MULTICLASS]


def _label_metric(name: str, title: str, body: str, **fields: Any) -> Metric:
    code = _snippet(title, ("labels",), body)
    return Metric(name=name, code=code, **fields)


def _build() -> list[Metric]:
    metrics: list[Metric] = []
    add = metrics.append

    add(
        _label_metric(
            "accuracy",
            "accuracy: share of rows whose predicted label equals the true label",
            """
def metric_score(y_true, y_pred):
    def one(t, p):
        t, p = _labels(t, p)
        return np.mean(t == p)

    return _columnwise(one, y_true, y_pred)
""",
            lower_is_better=False,
            aliases=["acc", "accuracy_score", "classification_accuracy", "categorization_accuracy"],
            task_types=[*_CLS, TaskType.MULTILABEL],
            description="Share of correctly predicted labels.",
        )
    )
    add(
        _label_metric(
            "balanced_accuracy",
            "balanced accuracy: mean of the per-class recalls",
            """
def metric_score(y_true, y_pred):
    from sklearn.metrics import balanced_accuracy_score

    def one(t, p):
        t, p = _labels(t, p)
        return balanced_accuracy_score(t, p)

    return _columnwise(one, y_true, y_pred)
""",
            lower_is_better=False,
            aliases=["balanced_acc", "bacc", "mean_per_class_accuracy"],
            task_types=_CLS,
            description="Mean recall over classes.",
        )
    )
    add(
        Metric(
            name="f1",
            code=_snippet(
                "f1: F1 score of the positive class (binary)",
                ("labels", "positive_label"),
                """
def metric_score(y_true, y_pred):
    from sklearn.metrics import f1_score

    def one(t, p):
        t, p = _labels(t, p)
        return f1_score(t, p, pos_label=_positive_label(t, p), average="binary")

    return _columnwise(one, y_true, y_pred)
""",
            ),
            lower_is_better=False,
            aliases=["f1_score", "f1_binary", "fscore", "f_score", "f_measure", "f1score"],
            task_types=[TaskType.BINARY, TaskType.MULTILABEL],
            description="Harmonic mean of precision and recall of the positive class.",
        )
    )
    add(
        _label_metric(
            "f1_macro",
            "f1_macro: unweighted mean of the per-class F1 scores",
            """
def metric_score(y_true, y_pred):
    from sklearn.metrics import f1_score

    def one(t, p):
        t, p = _labels(t, p)
        return f1_score(t, p, average="macro")

    return _columnwise(one, y_true, y_pred)
""",
            lower_is_better=False,
            aliases=["macro_f1", "f1_macro_score", "macro_f1_score", "macro_averaged_f1"],
            task_types=_CLS,
            description="Mean of per-class F1 scores.",
        )
    )
    add(
        Metric(
            name="roc_auc",
            code=_snippet(
                "roc_auc: area under the ROC curve (binary; one-vs-rest macro for class matrices)",
                ("class_matrix", "binary_codes", "floats"),
                """
def metric_score(y_true, y_pred):
    from sklearn.metrics import roc_auc_score

    def one(t, p):
        if _is_matrix(p):
            codes, proba = _class_matrix(t, p)
            if proba.shape[1] == 2:
                return roc_auc_score(codes == 1, proba[:, 1])
            # one-vs-rest, unweighted; a class absent from y_true has no defined AUC
            aucs = [
                roc_auc_score(codes == j, proba[:, j])
                for j in range(proba.shape[1])
                if 0 < np.sum(codes == j) < len(codes)
            ]
            return np.mean(aucs)
        return roc_auc_score(_binary_codes(t), _floats(p))

    return _columnwise(one, y_true, y_pred)
""",
            ),
            lower_is_better=False,
            needs_proba=True,
            aliases=["auc", "rocauc", "auroc", "roc_auc_score", "auc_roc", "area_under_roc", "roc"],
            task_types=[*_CLS, TaskType.MULTILABEL],
            description="Area under the ROC curve.",
        )
    )
    add(
        Metric(
            name="log_loss",
            code=_snippet(
                "log_loss: mean negative log-probability of the true class",
                ("class_matrix", "binary_codes", "floats"),
                """
def metric_score(y_true, y_pred):
    def one(t, p):
        if _is_matrix(p):
            codes, proba = _class_matrix(t, p)
        else:
            codes = _binary_codes(t)
            positive = _floats(p)
            proba = np.column_stack([1.0 - positive, positive])
        # clip and renormalise rows, as Kaggle's graders do
        proba = np.clip(proba, 1e-15, 1 - 1e-15)
        proba = proba / proba.sum(axis=1, keepdims=True)
        return -np.mean(np.log(proba[np.arange(len(codes)), codes]))

    return _columnwise(one, y_true, y_pred)
""",
            ),
            lower_is_better=True,
            needs_proba=True,
            aliases=[
                "logloss",
                "logarithmic_loss",
                "cross_entropy",
                "crossentropy",
                "multi_logloss",
                "mlogloss",
                "multiclass_log_loss",
                "binary_crossentropy",
                "nll",
            ],
            task_types=[*_CLS, TaskType.MULTILABEL],
            description="Logarithmic loss of the predicted class probabilities.",
        )
    )

    def regression(name: str, title: str, expr: str, lower: bool, aliases: list[str], desc: str) -> Metric:
        body = f"""
def metric_score(y_true, y_pred):
    def one(t, p):
        t, p = _floats(t), _floats(p)
        return {expr}

    return _columnwise(one, y_true, y_pred)
"""
        return Metric(
            name=name,
            code=_snippet(title, ("floats",), body),
            lower_is_better=lower,
            aliases=aliases,
            task_types=[TaskType.REGRESSION],
            description=desc,
        )

    add(
        regression(
            "rmse",
            "rmse: root mean squared error",
            "np.sqrt(np.mean((t - p) ** 2))",
            True,
            ["root_mean_squared_error", "root_mean_square_error", "rmsd"],
            "Root mean squared error.",
        )
    )
    add(
        regression(
            "mse",
            "mse: mean squared error",
            "np.mean((t - p) ** 2)",
            True,
            ["mean_squared_error", "mean_square_error", "l2"],
            "Mean squared error.",
        )
    )
    add(
        regression(
            "rmsle",
            "rmsle: root mean squared logarithmic error (negative predictions clipped to 0)",
            "np.sqrt(np.mean((np.log1p(t) - np.log1p(np.clip(p, 0, None))) ** 2))",
            True,
            ["root_mean_squared_log_error", "root_mean_squared_logarithmic_error", "rmsle_score"],
            "Root mean squared error of log(1 + value).",
        )
    )
    add(
        regression(
            "mae",
            "mae: mean absolute error",
            "np.mean(np.abs(t - p))",
            True,
            ["mean_absolute_error", "l1"],
            "Mean absolute error.",
        )
    )
    add(
        regression(
            "mape",
            "mape: mean absolute percentage error (as a fraction, like scikit-learn)",
            "np.mean(np.abs(t - p) / np.maximum(np.abs(t), np.finfo(np.float64).eps))",
            True,
            ["mean_absolute_percentage_error"],
            "Mean absolute error relative to the true value.",
        )
    )
    add(
        Metric(
            name="r2",
            code=_snippet(
                "r2: coefficient of determination",
                ("floats",),
                """
def metric_score(y_true, y_pred):
    def one(t, p):
        t, p = _floats(t), _floats(p)
        residual = np.sum((t - p) ** 2)
        total = np.sum((t - np.mean(t)) ** 2)
        if total == 0:  # constant target: perfect or nothing, as scikit-learn reports it
            return 1.0 if residual == 0 else 0.0
        return 1.0 - residual / total

    return _columnwise(one, y_true, y_pred)
""",
            ),
            lower_is_better=False,
            aliases=["r^2", "r_squared", "rsquared", "r2_score", "coefficient_of_determination"],
            task_types=[TaskType.REGRESSION],
            description="Coefficient of determination.",
        )
    )
    add(
        Metric(
            name="qwk",
            code=_snippet(
                "qwk: quadratic weighted Cohen's kappa (numeric predictions rounded to labels)",
                ("labels",),
                """
def metric_score(y_true, y_pred):
    from sklearn.metrics import cohen_kappa_score

    def one(t, p):
        if not _is_matrix(p):
            tv, pv = _vector(t), _vector(p)
            if tv.dtype.kind in "biuf" and pv.dtype.kind == "f":
                p = np.rint(pv).astype(int)  # a regression output read as an ordinal label
        t, p = _labels(t, p)
        return cohen_kappa_score(t, p, weights="quadratic")

    return _columnwise(one, y_true, y_pred)
""",
            ),
            lower_is_better=False,
            aliases=[
                "quadratic_weighted_kappa",
                "quadratic_kappa",
                "weighted_kappa",
                "kappa",
                "cohen_kappa",
                "cohens_kappa",
            ],
            task_types=[TaskType.MULTICLASS, TaskType.BINARY],
            description="Agreement between ordinal labels, penalising distant disagreements quadratically.",
        )
    )
    return metrics


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).replace("'", "")


METRICS: dict[str, Metric] = {metric.name: metric for metric in _build()}

_LOOKUP: dict[str, str] = {}
for _metric in METRICS.values():
    for _key in (_metric.name, *_metric.aliases):
        _LOOKUP[_normalize(_key)] = _metric.name


def get_metric(name: str) -> Metric:
    """The metric called ``name`` (case-insensitive; aliases like auc, logloss, qwk accepted)."""
    key = _normalize(name)
    if key in _LOOKUP:
        return METRICS[_LOOKUP[key]]
    raise MetricError(f"unknown metric '{name}'; known metrics: {', '.join(METRICS)}")


def default_metric(task_type: TaskType | str, *, submission_kind: str | None = None) -> str:
    """The metric to use when nothing names one.

    ``submission_kind`` ("label" or "proba") refines the choice: a binary task that submits hard
    labels is scored by accuracy, one that submits probabilities (or unknown) by ROC AUC.
    """
    kind = TaskType(task_type)
    if kind is TaskType.REGRESSION:
        return "rmse"
    if kind is TaskType.MULTICLASS:
        return "log_loss" if submission_kind == "proba" else "accuracy"
    if kind is TaskType.MULTILABEL:
        return "f1" if submission_kind == "label" else "roc_auc"
    return "accuracy" if submission_kind == "label" else "roc_auc"
