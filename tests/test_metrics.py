"""The metric registry agrees with scikit-learn, and each metric's embedded code agrees with it."""

from __future__ import annotations

import ast
import builtins
import inspect

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlestar.core.task import TaskType
from mlestar.errors import MetricError
from mlestar.metrics import METRICS, Metric, default_metric, get_metric, snippets

RNG_SEED = 7
N = 300


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def _proba(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    raw = rng.random((n, k)) + 0.05
    return raw / raw.sum(axis=1, keepdims=True)


def _snippet_fn(metric: Metric):
    namespace: dict[str, object] = {}
    exec(compile(metric.code, metric.name, "exec"), namespace)  # noqa: S102 - the registry's own snippet
    return namespace["metric_score"]


def _check(metric_name: str, y_true, y_pred, expected: float) -> None:
    """Registry, the exec'd snippet and scikit-learn must all agree."""
    metric = get_metric(metric_name)
    got = metric.score(y_true, y_pred)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert _snippet_fn(metric)(y_true, y_pred) == pytest.approx(got, rel=1e-12, abs=1e-12)


# --- binary ---------------------------------------------------------------------------------------


def test_binary_label_metrics_match_sklearn() -> None:
    rng = _rng()
    y = rng.integers(0, 2, N)
    pred = np.where(rng.random(N) < 0.75, y, 1 - y)
    _check("accuracy", y, pred, skm.accuracy_score(y, pred))
    _check("balanced_accuracy", y, pred, skm.balanced_accuracy_score(y, pred))
    _check("f1", y, pred, skm.f1_score(y, pred))
    _check("f1_macro", y, pred, skm.f1_score(y, pred, average="macro"))
    _check("qwk", y, pred, skm.cohen_kappa_score(y, pred, weights="quadratic"))


def test_binary_probability_metrics_match_sklearn() -> None:
    rng = _rng()
    y = rng.integers(0, 2, N)
    p = np.clip(0.3 * y + 0.7 * rng.random(N), 0.01, 0.99)
    _check("roc_auc", y, p, skm.roc_auc_score(y, p))
    _check("log_loss", y, p, skm.log_loss(y, p))
    # label metrics read a probability of the positive class at the 0.5 threshold
    _check("accuracy", y, p, skm.accuracy_score(y, (p >= 0.5).astype(int)))


def test_binary_string_labels() -> None:
    rng = _rng()
    y = rng.choice(["no", "yes"], N)
    flip = rng.random(N) < 0.2
    pred = np.where(flip, np.where(y == "yes", "no", "yes"), y)
    p = np.clip(np.where(y == "yes", 0.6, 0.4) + rng.normal(scale=0.2, size=N), 0.01, 0.99)
    _check("f1", y, pred, skm.f1_score(y, pred, pos_label="yes"))
    _check("roc_auc", y, p, skm.roc_auc_score(y == "yes", p))
    _check("log_loss", pd.Series(y), pd.Series(p), skm.log_loss(y, p))


# --- multiclass -----------------------------------------------------------------------------------

CLASSES = ["cat", "dog", "emu", "fox"]


def _multiclass(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(CLASSES, N)
    proba = _proba(rng, N, len(CLASSES))
    proba[np.arange(N), np.searchsorted(CLASSES, y)] += 0.5
    return y, proba / proba.sum(axis=1, keepdims=True)


def test_multiclass_probability_matrix_with_string_labels() -> None:
    rng = _rng()
    y, proba = _multiclass(rng)
    expected_auc = skm.roc_auc_score(y, proba, multi_class="ovr", labels=CLASSES)
    expected_loss = skm.log_loss(y, proba, labels=CLASSES)
    # a bare array is in sorted class order
    _check("roc_auc", y, proba, expected_auc)
    _check("log_loss", y, proba, expected_loss)
    # a DataFrame names its classes, in any column order
    shuffled = pd.DataFrame(proba, columns=CLASSES)[["fox", "cat", "emu", "dog"]]
    _check("roc_auc", pd.Series(y), shuffled, expected_auc)
    _check("log_loss", pd.Series(y), shuffled, expected_loss)
    _check("accuracy", y, shuffled, skm.accuracy_score(y, np.array(CLASSES)[proba.argmax(axis=1)]))


def test_multiclass_integer_labels_with_string_column_names() -> None:
    rng = _rng()
    y = rng.integers(0, 3, N)
    proba = _proba(rng, N, 3)
    frame = pd.DataFrame(proba, columns=["0", "1", "2"])
    _check("log_loss", y, frame, skm.log_loss(y, proba))
    _check("roc_auc", y, frame, skm.roc_auc_score(y, proba, multi_class="ovr"))


def test_multiclass_label_metrics_match_sklearn() -> None:
    rng = _rng()
    y = rng.integers(1, 6, N)
    pred = np.clip(y + rng.integers(-1, 2, N), 1, 5)
    _check("accuracy", y, pred, skm.accuracy_score(y, pred))
    _check("balanced_accuracy", y, pred, skm.balanced_accuracy_score(y, pred))
    _check("f1_macro", y, pred, skm.f1_score(y, pred, average="macro"))
    _check("qwk", y, pred, skm.cohen_kappa_score(y, pred, weights="quadratic"))
    # qwk reads a regression output as the nearest ordinal label
    noisy = pred + rng.uniform(-0.4, 0.4, N)
    _check("qwk", y, noisy, skm.cohen_kappa_score(y, np.rint(noisy).astype(int), weights="quadratic"))
    names = np.array(CLASSES)
    truth, guess = names[rng.integers(0, 4, N)], names[rng.integers(0, 4, N)]
    _check("accuracy", truth, guess, skm.accuracy_score(truth, guess))
    _check("f1_macro", list(truth), list(guess), skm.f1_score(truth, guess, average="macro"))


def test_probability_matrix_with_unknown_label_is_rejected() -> None:
    frame = pd.DataFrame({"cat": [0.5, 0.5], "dog": [0.5, 0.5]})
    with pytest.raises(ValueError, match="not among"):
        get_metric("log_loss").score(["cat", "cow"], frame)


# --- multilabel and regression ---------------------------------------------------------------------


def test_multilabel_scores_column_wise() -> None:
    rng = _rng()
    y = rng.integers(0, 2, (N, 3))
    p = np.clip(0.4 * y + 0.6 * rng.random((N, 3)), 0.01, 0.99)
    _check("roc_auc", y, p, skm.roc_auc_score(y, p, average="macro"))
    per_column = np.mean([skm.log_loss(y[:, j], p[:, j]) for j in range(3)])
    _check("log_loss", pd.DataFrame(y), pd.DataFrame(p), per_column)
    hard = (p >= 0.5).astype(int)
    _check("f1", y, hard, skm.f1_score(y, hard, average="macro"))


def test_regression_metrics_match_sklearn() -> None:
    rng = _rng()
    y = rng.uniform(1, 100, N)
    pred = y + rng.normal(scale=5, size=N)
    _check("rmse", y, pred, skm.root_mean_squared_error(y, pred))
    _check("mse", y, pred, skm.mean_squared_error(y, pred))
    _check("mae", y, pred, skm.mean_absolute_error(y, pred))
    _check("mape", y, pred, skm.mean_absolute_percentage_error(y, pred))
    _check("r2", y, pred, skm.r2_score(y, pred))
    positive = np.abs(pred)
    _check("rmsle", y, positive, skm.root_mean_squared_log_error(y, positive))
    # negative predictions are clipped to zero rather than crashing
    assert get_metric("rmsle").score([1.0, 2.0], [-3.0, 2.0]) == pytest.approx(
        skm.root_mean_squared_log_error([1.0, 2.0], [0.0, 2.0])
    )


def test_multi_output_regression_is_uniform_average() -> None:
    rng = _rng()
    y = rng.uniform(1, 10, (N, 2))
    pred = y + rng.normal(size=(N, 2))
    _check("rmse", y, pred, skm.root_mean_squared_error(y, pred))
    _check("r2", pd.DataFrame(y), pd.DataFrame(pred), skm.r2_score(y, pred))
    _check("mae", y, pred, skm.mean_absolute_error(y, pred))


def test_r2_of_constant_target_follows_sklearn() -> None:
    assert get_metric("r2").score([3.0, 3.0], [3.0, 3.0]) == skm.r2_score([3.0, 3.0], [3.0, 3.0])
    assert get_metric("r2").score([3.0, 3.0], [1.0, 3.0]) == skm.r2_score([3.0, 3.0], [1.0, 3.0])


# --- the registry ---------------------------------------------------------------------------------


def test_every_snippet_imports_only_numpy_and_sklearn() -> None:
    for metric in METRICS.values():
        tree = ast.parse(metric.code)
        roots = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots.add((node.module or "").split(".")[0])
        assert roots <= {"numpy", "sklearn"}, (metric.name, roots)
        assert any(isinstance(n, ast.FunctionDef) and n.name == "metric_score" for n in tree.body)


# --- the snippets and the code they come from -------------------------------------------------------

SNIPPET_TREE = ast.parse(inspect.getsource(snippets))
FUNCTIONS = {node.name: node for node in SNIPPET_TREE.body if isinstance(node, ast.FunctionDef)}
HELPERS = [name for name in FUNCTIONS if name.startswith("_")]

# one input each metric can score, by the first task type it is for
SAMPLE_INPUTS = {
    TaskType.BINARY: (np.array([0, 1, 1, 0, 1]), np.array([0.2, 0.9, 0.6, 0.4, 0.3])),
    TaskType.MULTICLASS: (
        np.array(["a", "b", "c", "a"]),
        pd.DataFrame({"a": [0.6, 0.2, 0.1, 0.3], "b": [0.3, 0.7, 0.2, 0.3], "c": [0.1, 0.1, 0.7, 0.4]}),
    ),
    TaskType.REGRESSION: (np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])),
}


def _sample(metric: Metric) -> tuple[object, object]:
    y_true, y_pred = SAMPLE_INPUTS[metric.task_types[0]]
    if metric.task_types[0] is TaskType.MULTICLASS and not metric.needs_proba:
        y_pred = np.array(["a", "b", "b", "a"])
    return y_true, y_pred


def _top_level_functions(code: str) -> list[str]:
    return [node.name for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)]


def _unbound_names(code: str) -> set[str]:
    """Names the code reads that nothing in it binds, and that are not builtins."""
    tree = ast.parse(code)
    bound, read = set(dir(builtins)), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.arg)):
            bound.add(node.name if isinstance(node, ast.FunctionDef) else node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return read - bound


@pytest.mark.parametrize("name", list(METRICS))
def test_snippet_runs_in_an_empty_namespace(name: str) -> None:
    metric = METRICS[name]
    assert _unbound_names(metric.code) == set()
    namespace: dict[str, object] = {}
    exec(compile(metric.code, name, "exec"), namespace)  # noqa: S102 - the registry's own snippet
    y_true, y_pred = _sample(metric)
    value = namespace["metric_score"](y_true, y_pred)
    assert isinstance(value, float) and np.isfinite(value)
    assert value == getattr(snippets, name)(y_true, y_pred)


def test_unbound_names_sees_a_missing_helper() -> None:
    assert _unbound_names("import numpy as np\ndef f(x):\n    return _vector(np.sum(x))\n") == {"_vector"}


@pytest.mark.parametrize("name", list(METRICS))
def test_snippet_is_title_numpy_needed_helpers_then_metric_score(name: str) -> None:
    code = METRICS[name].code
    lines = code.splitlines()
    assert lines[0] == f"# {ast.get_docstring(FUNCTIONS[name])}"
    assert lines[3] == "import numpy as np"
    *helpers, last = _top_level_functions(code)
    assert last == "metric_score"
    assert helpers == [h for h in HELPERS if h in helpers], "helpers out of snippets.py's order"
    # every helper is reached from metric_score (directly or through another helper), none is spare
    reached, todo = set(), ["metric_score"]
    tree = {node.name: node for node in ast.parse(code).body if isinstance(node, ast.FunctionDef)}
    while todo:
        for node in ast.walk(tree[todo.pop()]):
            if isinstance(node, ast.Name) and node.id in tree and node.id not in reached:
                reached.add(node.id)
                todo.append(node.id)
    assert set(helpers) == reached
    # the body is the function's own, only renamed and without its docstring
    assert [ast.dump(s) for s in tree["metric_score"].body] == [ast.dump(s) for s in FUNCTIONS[name].body[1:]]
    assert [arg.arg for arg in tree["metric_score"].args.args] == ["y_true", "y_pred"]


def test_label_and_regression_snippets_carry_only_their_helpers() -> None:
    labels = ["_vector", "_columns", "_columnwise", "_label_key", "_label_keys", "_is_matrix", "_labels"]
    assert _top_level_functions(METRICS["accuracy"].code) == [*labels, "metric_score"]
    regression = ["_vector", "_columns", "_columnwise", "_floats"]
    assert _top_level_functions(METRICS["rmse"].code) == [*regression, "metric_score"]
    assert "_positive_label" in _top_level_functions(METRICS["f1"].code)
    assert "_class_matrix" in _top_level_functions(METRICS["log_loss"].code)


def test_registry_and_snippet_module_agree() -> None:
    functions = inspect.getmembers(snippets, inspect.isfunction)
    public = {name for name, _ in functions if not name.startswith("_")}
    assert public == set(METRICS)
    for name in public:
        assert list(inspect.signature(getattr(snippets, name)).parameters) == ["y_true", "y_pred"]


def test_snippet_module_holds_only_numpy_and_functions() -> None:
    # The snippets copy functions and `import numpy as np`, nothing else: a module-level name
    # (a constant, another import) would be missing from them.
    docstring, numpy, *rest = SNIPPET_TREE.body
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    assert ast.unparse(numpy) == "import numpy as np"
    assert all(isinstance(node, ast.FunctionDef) for node in rest)


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("AUC", "roc_auc"),
        ("roc-auc", "roc_auc"),
        ("ROC AUC", "roc_auc"),
        ("logloss", "log_loss"),
        ("Log_Loss", "log_loss"),
        ("QWK", "qwk"),
        ("quadratic weighted kappa", "qwk"),
        ("RMSE", "rmse"),
        ("root_mean_squared_error", "rmse"),
        ("RMSLE", "rmsle"),
        ("R^2", "r2"),
        ("macro_f1", "f1_macro"),
        ("mean_absolute_error", "mae"),
    ],
)
def test_get_metric_accepts_aliases(alias: str, name: str) -> None:
    assert get_metric(alias).name == name


def test_unknown_metric_lists_known_names() -> None:
    with pytest.raises(MetricError) as info:
        get_metric("bleu")
    message = str(info.value)
    assert "bleu" in message and "roc_auc" in message and "rmse" in message
    assert "\n" not in message


def test_directions_and_needs() -> None:
    lower = {name for name, m in METRICS.items() if m.lower_is_better}
    assert lower == {"log_loss", "rmse", "mse", "rmsle", "mae", "mape"}
    assert {name for name, m in METRICS.items() if m.needs_proba} == {"roc_auc", "log_loss"}
    assert get_metric("rmse").is_better(1.0, 2.0) and not get_metric("rmse").is_better(2.0, 1.0)
    assert get_metric("accuracy").is_better(0.9, 0.8) and get_metric("accuracy").is_better(0.1, None)


def test_default_metric() -> None:
    assert default_metric(TaskType.REGRESSION) == "rmse"
    assert default_metric("binary") == "roc_auc"
    assert default_metric(TaskType.BINARY, submission_kind="label") == "accuracy"
    assert default_metric(TaskType.MULTICLASS) == "accuracy"
    assert default_metric(TaskType.MULTICLASS, submission_kind="proba") == "log_loss"
    assert default_metric(TaskType.MULTILABEL) == "roc_auc"
    for task_type in TaskType:
        assert task_type in get_metric(default_metric(task_type)).task_types
