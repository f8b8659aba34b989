"""The code of every metric: the helpers, then one function per metric.

The registry (:mod:`mlestar.metrics.registry`) turns each public function into a self-contained
snippet: its one-line docstring becomes the title comment, the ``_`` helpers it uses (directly or
through other helpers) are copied in the order they appear here, and the function is renamed
``metric_score``. So nothing here may rely on anything but ``np`` and the helpers: scikit-learn is
imported inside the functions that use it, and there are no other module-level names.
"""

import numpy as np

# --- helpers ---------------------------------------------------------------------------------------


def _vector(values):
    """A 1-D numpy view of a list, Series, array or one-column table."""
    arr = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


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
        raise ValueError(f"y_true has {len(true_cols)} target columns but y_pred does not")
    return float(np.mean([score_one(t, p) for t, p in zip(true_cols, pred_cols)]))


def _label_key(value):
    """Class labels compared as text, with 1.0 and 1 treated as the same label."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return str(value)


def _label_keys(values):
    return np.array([_label_key(v) for v in values], dtype=object)


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
        raise ValueError(f"a binary target needs exactly 2 classes, found {len(classes)}")
    return (t == classes[1]).astype(int)


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
                f"y_pred has {proba.shape[1]} columns but y_true has {len(classes)} classes; pass a "
                "DataFrame whose columns are the class labels"
            )
    index = {c: j for j, c in enumerate(classes)}
    keys = _label_keys(t)
    unknown = sorted(set(keys.tolist()) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the probability columns")
    return np.array([index[k] for k in keys], dtype=int), proba


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
    if (
        t.dtype.kind in "biuf"
        and p.dtype.kind == "f"
        and set(np.unique(t).tolist()) <= {0, 1}
        and not np.all(np.equal(np.mod(p, 1), 0))
    ):
        p = (p >= 0.5).astype(int)  # a probability of the positive class
    if t.dtype.kind in "biuf" and p.dtype.kind in "biuf":
        return t, p
    return _label_keys(t), _label_keys(p)


def _positive_label(t, p):
    """1 when labels are numeric, otherwise the larger of the two labels ('yes', 'True', ...)."""
    if t.dtype.kind in "biuf":
        return 1
    seen = sorted(set(t.tolist()) | set(p.tolist()))
    return "1" if "1" in seen else seen[-1]


def _floats(values):
    return _vector(values).astype(float)


# --- metrics: labels ---------------------------------------------------------------------------------


def accuracy(y_true, y_pred):
    """accuracy: share of rows whose predicted label equals the true label"""

    def one(t, p):
        t, p = _labels(t, p)
        return np.mean(t == p)

    return _columnwise(one, y_true, y_pred)


def balanced_accuracy(y_true, y_pred):
    """balanced accuracy: mean of the per-class recalls"""
    from sklearn.metrics import balanced_accuracy_score

    def one(t, p):
        t, p = _labels(t, p)
        return balanced_accuracy_score(t, p)

    return _columnwise(one, y_true, y_pred)


def f1(y_true, y_pred):
    """f1: F1 score of the positive class (binary)"""
    from sklearn.metrics import f1_score

    def one(t, p):
        t, p = _labels(t, p)
        return f1_score(t, p, pos_label=_positive_label(t, p), average="binary")

    return _columnwise(one, y_true, y_pred)


def f1_macro(y_true, y_pred):
    """f1_macro: unweighted mean of the per-class F1 scores"""
    from sklearn.metrics import f1_score

    def one(t, p):
        t, p = _labels(t, p)
        return f1_score(t, p, average="macro")

    return _columnwise(one, y_true, y_pred)


# --- metrics: probabilities --------------------------------------------------------------------------


def roc_auc(y_true, y_pred):
    """roc_auc: area under the ROC curve (binary; one-vs-rest macro for class matrices)"""
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


def log_loss(y_true, y_pred):
    """log_loss: mean negative log-probability of the true class"""

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


# --- metrics: regression -----------------------------------------------------------------------------


def rmse(y_true, y_pred):
    """rmse: root mean squared error"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        return np.sqrt(np.mean((t - p) ** 2))

    return _columnwise(one, y_true, y_pred)


def mse(y_true, y_pred):
    """mse: mean squared error"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        return np.mean((t - p) ** 2)

    return _columnwise(one, y_true, y_pred)


def rmsle(y_true, y_pred):
    """rmsle: root mean squared logarithmic error (negative predictions clipped to 0)"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        return np.sqrt(np.mean((np.log1p(t) - np.log1p(np.clip(p, 0, None))) ** 2))

    return _columnwise(one, y_true, y_pred)


def mae(y_true, y_pred):
    """mae: mean absolute error"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        return np.mean(np.abs(t - p))

    return _columnwise(one, y_true, y_pred)


def mape(y_true, y_pred):
    """mape: mean absolute percentage error (as a fraction, like scikit-learn)"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        return np.mean(np.abs(t - p) / np.maximum(np.abs(t), np.finfo(np.float64).eps))

    return _columnwise(one, y_true, y_pred)


def r2(y_true, y_pred):
    """r2: coefficient of determination"""

    def one(t, p):
        t, p = _floats(t), _floats(p)
        residual = np.sum((t - p) ** 2)
        total = np.sum((t - np.mean(t)) ** 2)
        if total == 0:  # constant target: perfect or nothing, as scikit-learn reports it
            return 1.0 if residual == 0 else 0.0
        return 1.0 - residual / total

    return _columnwise(one, y_true, y_pred)


# --- metrics: ordinal --------------------------------------------------------------------------------


def qwk(y_true, y_pred):
    """qwk: quadratic weighted Cohen's kappa (numeric predictions rounded to labels)"""
    from sklearn.metrics import cohen_kappa_score

    def one(t, p):
        if not _is_matrix(p):
            tv, pv = _vector(t), _vector(p)
            if tv.dtype.kind in "biuf" and pv.dtype.kind == "f":
                p = np.rint(pv).astype(int)  # a regression output read as an ordinal label
        t, p = _labels(t, p)
        return cohen_kappa_score(t, p, weights="quadratic")

    return _columnwise(one, y_true, y_pred)
