"""Model cards for the retriever when there are no search results.

The expert brain owns the real knowledge base; it is imported lazily so this package works
before (and without) it. The short list below is only the floor under that.
"""

from __future__ import annotations

import logging

from mlestar.brain.protocol import BrainContext, ModelCard
from mlestar.core.task import TaskType

log = logging.getLogger(__name__)

_CLASSIFY = {TaskType.BINARY, TaskType.MULTICLASS, TaskType.MULTILABEL}

# name, description, example; {kind} is Classifier or Regressor, {predict} predict_proba or predict
_FALLBACK: list[tuple[str, str, str]] = [
    (
        "LightGBM",
        "Gradient-boosted decision trees with histogram splits; strong default for tabular data.",
        """import lightgbm as lgb
model = lgb.LGBM{kind}(n_estimators=500, learning_rate=0.05, num_leaves=31)
model.fit(X_train, y_train, eval_set=[(X_valid, y_valid)],
          callbacks=[lgb.early_stopping(50, verbose=False)])
pred = model.{predict}(X_valid)""",
    ),
    (
        "CatBoost",
        "Gradient boosting with ordered target statistics; handles categorical columns natively.",
        """from catboost import CatBoost{kind}
model = CatBoost{kind}(iterations=1000, learning_rate=0.05, verbose=0)
model.fit(X_train, y_train, cat_features=cat_cols, eval_set=(X_valid, y_valid), early_stopping_rounds=50)
pred = model.{predict}(X_valid)""",
    ),
    (
        "XGBoost",
        "Regularised gradient boosting; the hist tree method is fast on CPU.",
        """import xgboost as xgb
model = xgb.XGB{kind}(n_estimators=600, learning_rate=0.05, max_depth=6, tree_method="hist",
                     early_stopping_rounds=50)
model.fit(X_train, y_train, eval_set=[(X_valid, y_valid)], verbose=False)
pred = model.{predict}(X_valid)""",
    ),
    (
        "Random forest",
        "Bagged decision trees; robust, little tuning, a good diverse member for ensembles.",
        """from sklearn.ensemble import RandomForest{kind}
model = RandomForest{kind}(n_estimators=400, min_samples_leaf=2, n_jobs=-1, random_state=0)
model.fit(X_train, y_train)
pred = model.{predict}(X_valid)""",
    ),
    (
        "Regularised linear model",
        "Logistic or ridge regression on scaled, one-hot encoded features; fast and hard to overfit.",
        """from sklearn.linear_model import {linear}
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
model = make_pipeline(StandardScaler(), {linear}({linear_args}))
model.fit(X_train, y_train)
pred = model.{predict}(X_valid)""",
    ),
]


def fallback_cards(ctx: BrainContext, n: int) -> list[ModelCard]:
    classify = ctx.task.task_type in _CLASSIFY
    words = {
        "kind": "Classifier" if classify else "Regressor",
        "predict": "predict_proba" if classify else "predict",
        "linear": "LogisticRegression" if classify else "Ridge",
        "linear_args": "C=1.0, max_iter=2000" if classify else "alpha=1.0",
    }
    return [
        ModelCard(name=name, description=description, example_code=code.format(**words))
        for name, description, code in _FALLBACK[:n]
    ]


def knowledge_base_cards(ctx: BrainContext, summary: str, n: int) -> list[ModelCard]:
    """Cards from the expert brain's knowledge base, or the fallback list when it is unavailable."""
    try:
        from mlestar.brain.expert import ExpertBrain

        cards = list(ExpertBrain().retrieve_models(ctx, summary, [], n))
        if cards:
            return cards[:n]
    except Exception as exc:  # not written yet, or a different constructor: the floor list still works
        log.debug("expert knowledge base unavailable: %s", exc)
    return fallback_cards(ctx, n)
