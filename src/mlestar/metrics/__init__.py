"""Metric registry: what each competition metric computes and which way is better.

Every metric is defined ONCE, as a self-contained Python snippet (numpy and scikit-learn imports
only) that defines ``metric_score(y_true, y_pred) -> float``. The registry compiles that snippet
to score, and generated solution scripts embed the very same text, so a script's validation score
and the grader's score can never drift apart.

The snippets are assembled from real code: :mod:`mlestar.metrics.snippets` holds the helpers and
one function per metric, :mod:`mlestar.metrics.registry` the table of names, directions and
aliases, and turns each function and the helpers it uses into its snippet.

Shapes the snippets accept:
- labels or values: 1-D ``y_true`` and 1-D ``y_pred``;
- class probabilities: 1-D ``y_true`` labels and a 2-D ``y_pred`` whose columns are the classes
  (a DataFrame's column names are the class labels; a bare array is in sorted class order);
  a 1-D ``y_pred`` for a binary task is the probability of the larger (positive) class;
- several targets (multilabel, multi-output regression): 2-D ``y_true`` and 2-D ``y_pred`` of the
  same width; the score is the mean of the per-column scores (scikit-learn's macro / uniform
  average).
"""

from mlestar.metrics.registry import METRICS, Metric, default_metric, get_metric

__all__ = ["METRICS", "Metric", "default_metric", "get_metric"]
