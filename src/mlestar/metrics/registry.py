"""The metric table, the snippets assembled from :mod:`mlestar.metrics.snippets`, and the lookup."""

from __future__ import annotations

import ast
import linecache
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

from mlestar.core.task import TaskType
from mlestar.errors import MetricError


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
            # The snippet is scored as text, not as the function it came from: it is exactly what
            # generated scripts embed, so their validation score is the grader's.
            exec(compile(self.code, filename, "exec"), namespace)  # noqa: S102 - our own snippet
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


# --- snippets ------------------------------------------------------------------------------------
# Read as text, not imported: assembling needs the source, and importing it would load numpy.

_SOURCE = Path(__file__).with_name("snippets.py").read_text(encoding="utf-8")
_LINES = _SOURCE.splitlines()
_FUNCTIONS = {node.name: node for node in ast.parse(_SOURCE).body if isinstance(node, ast.FunctionDef)}
_HELPERS = [name for name in _FUNCTIONS if name.startswith("_")]  # in source order: the snippets' order


def _helpers_used(node: ast.FunctionDef) -> set[str]:
    """The helpers ``node`` refers to, and the ones those refer to."""
    found: set[str] = set()
    todo = [node]
    while todo:
        names = {name.id for name in ast.walk(todo.pop()) if isinstance(name, ast.Name)}
        for helper in names.intersection(_HELPERS) - found:
            found.add(helper)
            todo.append(_FUNCTIONS[helper])
    return found


def _lines(first: int, last: int) -> str:
    return "\n".join(_LINES[first - 1 : last])


def _snippet(name: str) -> str:
    """The self-contained source of the metric ``name``: it defines ``metric_score(y_true, y_pred)``."""
    node = _FUNCTIONS[name]
    title = ast.get_docstring(node)
    docstring = node.body[0]
    if title is None or "\n" in title or _LINES[node.lineno - 1] != f"def {name}(y_true, y_pred):":
        raise ValueError(f"snippets.{name} needs the signature (y_true, y_pred) and a one-line docstring")
    # The docstring is the title now; the body starts at the first line after it that is not blank.
    body = _lines(docstring.end_lineno + 1, node.end_lineno).lstrip("\n")
    used = _helpers_used(node)
    parts = [f"# {title}", "import numpy as np"]
    parts += [_lines(_FUNCTIONS[h].lineno, _FUNCTIONS[h].end_lineno) for h in _HELPERS if h in used]
    parts.append(f"def metric_score(y_true, y_pred):\n{body}")
    return "\n\n\n".join(parts) + "\n"


# --- the table -----------------------------------------------------------------------------------

_HIGHER, _LOWER = False, True  # lower_is_better
_HARD, _PROBA = False, True  # needs_proba: scored on hard labels / values, or on probabilities
_CLS = (TaskType.BINARY, TaskType.MULTICLASS)
_CLS_ML = (*_CLS, TaskType.MULTILABEL)
_REG = (TaskType.REGRESSION,)

# name (= its function in snippets.py), better, scored on, task types, description; then the aliases,
# space-separated
_TABLE: tuple[tuple[str, bool, bool, tuple[TaskType, ...], str, str], ...] = (
    ("accuracy", _HIGHER, _HARD, _CLS_ML, "Share of correctly predicted labels.",
        "acc accuracy_score classification_accuracy categorization_accuracy"),
    ("balanced_accuracy", _HIGHER, _HARD, _CLS, "Mean recall over classes.",
        "balanced_acc bacc mean_per_class_accuracy"),
    ("f1", _HIGHER, _HARD, (TaskType.BINARY, TaskType.MULTILABEL),
        "Harmonic mean of precision and recall of the positive class.",
        "f1_score f1_binary fscore f_score f_measure f1score"),
    ("f1_macro", _HIGHER, _HARD, _CLS, "Mean of per-class F1 scores.",
        "macro_f1 f1_macro_score macro_f1_score macro_averaged_f1"),
    ("roc_auc", _HIGHER, _PROBA, _CLS_ML, "Area under the ROC curve.",
        "auc rocauc auroc roc_auc_score auc_roc area_under_roc roc"),
    ("log_loss", _LOWER, _PROBA, _CLS_ML, "Logarithmic loss of the predicted class probabilities.",
        ("logloss logarithmic_loss cross_entropy crossentropy multi_logloss mlogloss multiclass_log_loss"
         " binary_crossentropy nll")),
    ("rmse", _LOWER, _HARD, _REG, "Root mean squared error.",
        "root_mean_squared_error root_mean_square_error rmsd"),
    ("mse", _LOWER, _HARD, _REG, "Mean squared error.", "mean_squared_error mean_square_error l2"),
    ("rmsle", _LOWER, _HARD, _REG, "Root mean squared error of log(1 + value).",
        "root_mean_squared_log_error root_mean_squared_logarithmic_error rmsle_score"),
    ("mae", _LOWER, _HARD, _REG, "Mean absolute error.", "mean_absolute_error l1"),
    ("mape", _LOWER, _HARD, _REG, "Mean absolute error relative to the true value.",
        "mean_absolute_percentage_error"),
    ("r2", _HIGHER, _HARD, _REG, "Coefficient of determination.",
        "r^2 r_squared rsquared r2_score coefficient_of_determination"),
    ("qwk", _HIGHER, _HARD, (TaskType.MULTICLASS, TaskType.BINARY),
        "Agreement between ordinal labels, penalising distant disagreements quadratically.",
        "quadratic_weighted_kappa quadratic_kappa weighted_kappa kappa cohen_kappa cohens_kappa"),
)  # fmt: skip

METRICS: dict[str, Metric] = {
    name: Metric(
        name=name,
        lower_is_better=lower,
        needs_proba=proba,
        aliases=aliases.split(),
        task_types=list(task_types),
        description=description,
        code=_snippet(name),
    )
    for name, lower, proba, task_types, description, aliases in _TABLE
}


def _normalize(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).replace("'", "")


_LOOKUP: dict[str, str] = {
    _normalize(key): metric.name for metric in METRICS.values() for key in (metric.name, *metric.aliases)
}


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
