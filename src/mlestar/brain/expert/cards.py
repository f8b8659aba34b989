"""The knowledge base: model cards the expert retrieves, with what each is good at.

A card is what a strong practitioner would pull out of memory for a task: a short description of
when the model shines, real example code, the package it needs and sensible starting
hyper-parameters. It also carries what the scripts need of it: its template, the imports that
template relies on, and its knobs (which of its parameters the moves, ablations and fixes turn).
``rank_cards`` orders the applicable cards by expected strength for a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlestar.brain.expert.facts import TaskFacts, package_available
from mlestar.brain.expert.neural import USEFUL_EPOCHS, affordable_epochs


@dataclass(frozen=True)
class Step:
    """A parameter moved one step at a time: times ``step`` (plus ``step`` when additive), within bounds."""

    param: str
    step: float
    low: float
    high: float
    additive: bool = False


@dataclass(frozen=True)
class Knobs:
    """A card's names for the parameters the expert turns; None where the card has no such knob."""

    learning_rate: str | None = None
    capacity: Step | None = None  # leaves or depth
    min_leaf: Step | None = None  # samples (or hessian weight) a leaf needs
    l2: str | None = None
    colsample: str | None = None  # share of columns per tree
    rowsample: str | None = None  # share of rows per tree
    bins: str | None = None  # histogram bins per feature


@dataclass(frozen=True)
class Card:
    name: str
    title: str
    package: str  # import name that must be available
    family: str  # gbdt | forest | linear | text_linear | text_gbdt
    description: str
    example_code: str
    template: str  # under templates/: fit_<key> and predict_<key> for one model
    imports: tuple[str, ...]  # the lines the template's code needs
    params: dict[str, Any] = field(default_factory=dict)
    knobs: Knobs = Knobs()
    template_vars: dict[str, str] = field(default_factory=dict)  # for templates shared by several cards
    task_types: tuple[str, ...] = ("binary", "multiclass", "regression", "multilabel")
    needs_text: bool = False
    # seconds per boosting round (or tree) per million training cells on one thread: sizing input
    cost_per_mcell: float = 0.002
    # extra seconds per round per million rows x categorical columns (CatBoost's target statistics)
    cat_cost_per_mcell: float = 0.0
    uses_rounds: bool = True  # has boosting rounds / trees sized to the time budget
    media_only: bool = False  # learns from decoded images or audio, not from table columns


_SKLEARN_LINEAR = (
    "from sklearn.compose import ColumnTransformer",
    "from sklearn.impute import SimpleImputer",
    "from sklearn.pipeline import Pipeline, make_pipeline",
    "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
)

LIGHTGBM = Card(
    name="lightgbm",
    title="LightGBM gradient-boosted trees",
    package="lightgbm",
    family="gbdt",
    description=(
        "Leaf-wise gradient boosting with histogram splits: the strongest and fastest default for "
        "tabular data of any size. Handles missing values and pandas categoricals natively; tune "
        "num_leaves, min_child_samples, feature/bagging fractions and L2, with early stopping."
    ),
    example_code='''import lightgbm as lgb

params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
          "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
          "verbosity": -1, "seed": 42}
train_set = lgb.Dataset(X_train, y_train)  # pandas "category" columns are used as categoricals
valid_set = lgb.Dataset(X_valid, y_valid, reference=train_set)
model = lgb.train(params, train_set, num_boost_round=5000, valid_sets=[valid_set],
                  callbacks=[lgb.early_stopping(100, verbose=False)])
proba = model.predict(X_valid, num_iteration=model.best_iteration)
''',
    template="models/lightgbm.py.j2",
    imports=("import lightgbm as lgb",),
    knobs=Knobs(learning_rate="learning_rate", capacity=Step("num_leaves", 2.0, 4, 255),
                min_leaf=Step("min_child_samples", 3.0, 2, 400), l2="lambda_l2", colsample="feature_fraction",
                rowsample="bagging_fraction", bins="max_bin"),
    params={
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l1": 0.0,
        "lambda_l2": 1.0,
        "max_bin": 255,
        "cat_smooth": 10.0,
    },
    cost_per_mcell=0.0015,
)

XGBOOST = Card(
    name="xgboost",
    title="XGBoost (hist) gradient-boosted trees",
    package="xgboost",
    family="gbdt",
    description=(
        "Depth-wise gradient boosting with the histogram method; very robust, strong regularisation "
        "(lambda, alpha, min_child_weight) and native categorical support. A good second opinion "
        "to LightGBM in a blend."
    ),
    example_code='''import xgboost as xgb

dtrain = xgb.DMatrix(X_train, label=y_train, enable_categorical=True)
dvalid = xgb.DMatrix(X_valid, label=y_valid, enable_categorical=True)
params = {"objective": "binary:logistic", "eta": 0.05, "max_depth": 6, "min_child_weight": 1,
          "subsample": 0.8, "colsample_bytree": 0.8, "lambda": 1.0, "tree_method": "hist", "seed": 42}
booster = xgb.train(params, dtrain, num_boost_round=5000, evals=[(dvalid, "valid")],
                    early_stopping_rounds=100, verbose_eval=False)
proba = booster.predict(dvalid, iteration_range=(0, booster.best_iteration + 1))
''',
    template="models/xgboost.py.j2",
    imports=("import xgboost as xgb",),
    knobs=Knobs(learning_rate="eta", capacity=Step("max_depth", 2, 2, 12, additive=True),
                min_leaf=Step("min_child_weight", 4.0, 0.5, 100.0), l2="lambda", colsample="colsample_bytree",
                rowsample="subsample", bins="max_bin"),
    params={
        "eta": 0.05,
        "max_depth": 6,
        "min_child_weight": 1.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "lambda": 1.0,
        "alpha": 0.0,
        "max_bin": 256,
    },
    cost_per_mcell=0.003,
)

CATBOOST = Card(
    name="catboost",
    title="CatBoost ordered boosting",
    package="catboost",
    family="gbdt",
    description=(
        "Symmetric-tree boosting with ordered target statistics for categorical features: often the "
        "best single model when there are many categorical columns or few rows, and needs little "
        "tuning (depth, l2_leaf_reg, learning rate)."
    ),
    example_code='''from catboost import CatBoostClassifier

cat_cols = [c for c in X_train.columns if X_train[c].dtype == "object"]
model = CatBoostClassifier(iterations=3000, learning_rate=0.05, depth=6, l2_leaf_reg=3,
                           random_seed=42, verbose=False, allow_writing_files=False)
model.fit(X_train, y_train, cat_features=cat_cols, eval_set=(X_valid, y_valid),
          early_stopping_rounds=200, use_best_model=True)
proba = model.predict_proba(X_valid)[:, 1]
''',
    template="models/catboost.py.j2",
    imports=("from catboost import CatBoostClassifier, CatBoostRegressor",),
    knobs=Knobs(learning_rate="learning_rate", capacity=Step("depth", 2, 2, 10, additive=True), l2="l2_leaf_reg",
                bins="border_count"),
    params={"learning_rate": 0.06, "depth": 6, "l2_leaf_reg": 3.0, "random_strength": 1.0, "border_count": 254},
    cost_per_mcell=0.006,
    cat_cost_per_mcell=0.2,
)

HIST_GB = Card(
    name="hist_gb",
    title="scikit-learn HistGradientBoosting",
    package="sklearn",
    family="gbdt",
    description=(
        "LightGBM-style histogram boosting inside scikit-learn: no extra dependency, native missing "
        "values and categorical features, early stopping on a given validation set."
    ),
    example_code='''from sklearn.ensemble import HistGradientBoostingClassifier

model = HistGradientBoostingClassifier(learning_rate=0.06, max_iter=2000, max_leaf_nodes=31,
                                       min_samples_leaf=20, l2_regularization=1.0,
                                       categorical_features="from_dtype", early_stopping=True,
                                       n_iter_no_change=50, random_state=42)
model.fit(X_train, y_train, X_val=X_valid, y_val=y_valid)
proba = model.predict_proba(X_valid)[:, 1]
''',
    template="models/hist_gb.py.j2",
    imports=("from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor",),
    knobs=Knobs(learning_rate="learning_rate", capacity=Step("max_leaf_nodes", 2.0, 4, 255),
                min_leaf=Step("min_samples_leaf", 3.0, 2, 400), l2="l2_regularization", bins="max_bins"),
    params={"learning_rate": 0.06, "max_leaf_nodes": 31, "min_samples_leaf": 20, "l2_regularization": 1.0, "max_bins": 255},
    cost_per_mcell=0.004,
)

RANDOM_FOREST = Card(
    name="random_forest",
    title="Random forest",
    package="sklearn",
    family="forest",
    description=(
        "Bagged deep trees: hard to overfit, little tuning, de-correlated errors from boosting, which "
        "makes it a useful blend member. Needs numeric input (ordinal codes for categoricals)."
    ),
    example_code='''from sklearn.ensemble import RandomForestClassifier

model = RandomForestClassifier(n_estimators=500, max_features="sqrt", min_samples_leaf=1,
                               n_jobs=-1, random_state=42)
model.fit(X_train.fillna(-999), y_train)
proba = model.predict_proba(X_valid.fillna(-999))[:, 1]
''',
    template="models/forest.py.j2",
    imports=("from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor",),
    knobs=Knobs(min_leaf=Step("min_samples_leaf", 3.0, 1, 50)),
    template_vars={"regressor": "RandomForestRegressor", "classifier": "RandomForestClassifier"},
    params={"max_features": "sqrt", "min_samples_leaf": 1, "max_depth": None},
    cost_per_mcell=0.06,
)

EXTRA_TREES = Card(
    name="extra_trees",
    title="Extremely randomized trees",
    package="sklearn",
    family="forest",
    description=(
        "Like a random forest with random split thresholds: faster, smoother, and often a better "
        "blend partner for boosted trees on noisy data."
    ),
    example_code='''from sklearn.ensemble import ExtraTreesRegressor

model = ExtraTreesRegressor(n_estimators=500, max_features=0.5, min_samples_leaf=2, n_jobs=-1,
                            random_state=42)
model.fit(X_train.fillna(-999), y_train)
pred = model.predict(X_valid.fillna(-999))
''',
    template="models/forest.py.j2",
    imports=("from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor",),
    knobs=Knobs(min_leaf=Step("min_samples_leaf", 3.0, 1, 50)),
    template_vars={"regressor": "ExtraTreesRegressor", "classifier": "ExtraTreesClassifier"},
    params={"max_features": 0.5, "min_samples_leaf": 2, "max_depth": None},
    cost_per_mcell=0.03,
)

LINEAR = Card(
    name="linear",
    title="Regularised linear model (logistic / ridge) with one-hot encoding and scaling",
    package="sklearn",
    family="linear",
    description=(
        "Logistic regression for classes, ridge for values, on standardised numbers (with missing "
        "indicators) and one-hot categoricals. Fast, stable, and a diverse blend member; tune C/alpha."
    ),
    example_code='''from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

prep = ColumnTransformer([
    ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()), num_cols),
    ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5), cat_cols),
])
model = make_pipeline(prep, LogisticRegression(C=1.0, max_iter=2000))
model.fit(X_train, y_train)
proba = model.predict_proba(X_valid)[:, 1]
''',
    template="models/linear.py.j2",
    imports=_SKLEARN_LINEAR + ("from sklearn.linear_model import LogisticRegression, Ridge",),
    params={"C": 1.0, "alpha": 1.0, "min_frequency": 5},
    cost_per_mcell=0.0,
    uses_rounds=False,
)

TFIDF_LOGREG = Card(
    name="tfidf_logreg",
    title="TF-IDF word and character n-grams with tuned logistic regression / ridge",
    package="sklearn",
    family="text_linear",
    description=(
        "The classic strong text baseline: sublinear TF-IDF on word 1-2 grams plus character 2-5 "
        "grams, fed to logistic regression (ridge for values) whose C/alpha is chosen by inner "
        "cross-validation on log loss, so its probabilities stay honest. Other columns join as "
        "scaled numbers and one-hot categories. Tune n-gram ranges and vocabulary size next."
    ),
    example_code='''from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=200000, sublinear_tf=True)
char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=3, max_features=200000,
                       sublinear_tf=True)
X_tr = hstack([word.fit_transform(text_train), char.fit_transform(text_train)]).tocsr()
X_va = hstack([word.transform(text_valid), char.transform(text_valid)]).tocsr()
model = LogisticRegression(C=4.0, max_iter=2000).fit(X_tr, y_train)
proba = model.predict_proba(X_va)[:, 1]
''',
    template="models/tfidf_linear.py.j2",
    imports=_SKLEARN_LINEAR + (
        "from sklearn.feature_extraction.text import TfidfVectorizer",
        "from sklearn.linear_model import LogisticRegression, Ridge",
    ),
    params={"C": 2.0, "alpha": 1.0, "tune": True, "word_ngrams": [1, 2], "char_ngrams": [2, 5],
            "max_features": 200000, "use_char": True, "min_df": 2},
    needs_text=True,
    cost_per_mcell=0.0,
    uses_rounds=False,
)

TFIDF_SVM = Card(
    name="tfidf_svm",
    title="TF-IDF n-grams with a linear SVM, probabilities calibrated by Platt scaling",
    package="sklearn",
    family="text_linear",
    description=(
        "A linear support-vector machine on word and character TF-IDF (plus the other columns): "
        "often the most accurate linear text classifier. Its margins are turned into probabilities "
        "by a sigmoid fitted on inner folds (CalibratedClassifierCV), so it can be scored by log "
        "loss and blended; C is chosen by inner cross-validation."
    ),
    example_code='''from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
X_tr = vec.fit_transform(text_train)
model = CalibratedClassifierCV(LinearSVC(C=0.5), cv=3, method="sigmoid").fit(X_tr, y_train)
proba = model.predict_proba(vec.transform(text_valid))[:, 1]
''',
    template="models/tfidf_linear.py.j2",
    imports=_SKLEARN_LINEAR + (
        "from sklearn.calibration import CalibratedClassifierCV",
        "from sklearn.feature_extraction.text import TfidfVectorizer",
        "from sklearn.svm import LinearSVC",
    ),
    params={"C": 0.5, "tune": True, "word_ngrams": [1, 2], "char_ngrams": [2, 5], "max_features": 200000,
            "use_char": True, "min_df": 2},
    task_types=("binary", "multiclass", "multilabel"),
    needs_text=True,
    cost_per_mcell=0.0,
    uses_rounds=False,
)

NBSVM = Card(
    name="nbsvm",
    title="NB-SVM: logistic regression on n-grams scaled by Naive Bayes log-count ratios",
    package="sklearn",
    family="text_linear",
    description=(
        "Wang and Manning's NB-SVM: binary word and character n-gram presence, each feature scaled "
        "by how much more often it occurs in the class than outside it, then a regularised linear "
        "model per class. Strong on short texts and sentiment-like signals; it reads the text alone, "
        "a diverse partner for TF-IDF models and boosted trees in a blend."
    ),
    example_code='''import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

vec = CountVectorizer(ngram_range=(1, 2), binary=True)
B = vec.fit_transform(text_train)
p = np.asarray(B[y_train == 1].sum(0)).ravel() + 1
q = np.asarray(B[y_train == 0].sum(0)).ravel() + 1
r = np.log((p / p.sum()) / (q / q.sum()))
model = LogisticRegression(C=4.0, solver="liblinear").fit(B.multiply(r).tocsr(), y_train)
proba = model.predict_proba(vec.transform(text_valid).multiply(r).tocsr())[:, 1]
''',
    template="models/nbsvm.py.j2",
    imports=(
        "from scipy.sparse import hstack",
        "from sklearn.feature_extraction.text import CountVectorizer",
        "from sklearn.linear_model import LogisticRegression",
    ),
    params={"C": 4.0, "alpha": 1.0, "tune": True, "word_ngrams": [1, 2], "char_ngrams": [2, 5],
            "max_features": 200000, "min_df": 2},
    task_types=("binary", "multiclass", "multilabel"),
    needs_text=True,
    cost_per_mcell=0.0,
    uses_rounds=False,
)

TFIDF_SGD = Card(
    name="tfidf_sgd",
    title="TF-IDF n-grams with a stochastic-gradient linear model",
    package="sklearn",
    family="text_linear",
    description=(
        "TF-IDF word n-grams with an SGD-trained linear model (modified Huber loss for classes, "
        "squared loss for values): scales to millions of documents, tune alpha and epochs."
    ),
    example_code='''from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier

vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=300000, sublinear_tf=True)
X_tr = vec.fit_transform(text_train)
model = SGDClassifier(loss="modified_huber", alpha=2e-5, max_iter=30, tol=None, random_state=42)
model.fit(X_tr, y_train)
proba = model.predict_proba(vec.transform(text_valid))[:, 1]
''',
    template="models/tfidf_linear.py.j2",
    imports=_SKLEARN_LINEAR + (
        "from sklearn.feature_extraction.text import TfidfVectorizer",
        "from sklearn.linear_model import SGDClassifier, SGDRegressor",
    ),
    params={"alpha": 2e-5, "tune": True, "epochs": 30, "word_ngrams": [1, 2], "max_features": 300000,
            "min_df": 2},
    task_types=("binary", "multiclass", "multilabel"),
    needs_text=True,
    cost_per_mcell=0.0,
    uses_rounds=False,
)

TFIDF_LIGHTGBM = Card(
    name="tfidf_lightgbm",
    title="LightGBM on TF-IDF features plus the tabular columns",
    package="lightgbm",
    family="text_gbdt",
    description=(
        "Text and tabular together: a capped TF-IDF vocabulary as sparse columns next to the numeric "
        "and categorical features, boosted with LightGBM. Captures interactions a linear text model "
        "misses, at a higher cost."
    ),
    example_code='''import lightgbm as lgb
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer

vec = TfidfVectorizer(ngram_range=(1, 2), min_df=3, max_features=20000, sublinear_tf=True)
X_tr = hstack([vec.fit_transform(text_train), csr_matrix(num_train.to_numpy(dtype=float))]).tocsr()
X_va = hstack([vec.transform(text_valid), csr_matrix(num_valid.to_numpy(dtype=float))]).tocsr()
model = lgb.train({"objective": "binary", "learning_rate": 0.05, "num_leaves": 63, "verbosity": -1},
                  lgb.Dataset(X_tr, y_train), 3000, valid_sets=[lgb.Dataset(X_va, y_valid)],
                  callbacks=[lgb.early_stopping(100, verbose=False)])
''',
    template="models/tfidf_lightgbm.py.j2",
    imports=(
        "import lightgbm as lgb",
        "from scipy.sparse import csr_matrix, hstack",
        "from sklearn.feature_extraction.text import TfidfVectorizer",
    ),
    knobs=Knobs(learning_rate="learning_rate", capacity=Step("num_leaves", 2.0, 4, 255),
                min_leaf=Step("min_child_samples", 3.0, 2, 400), l2="lambda_l2", colsample="feature_fraction"),
    params={"learning_rate": 0.05, "num_leaves": 63, "min_child_samples": 10, "feature_fraction": 0.5,
            "lambda_l2": 1.0, "max_features": 20000},
    needs_text=True,
    cost_per_mcell=0.0004,
)

CNN = Card(
    name="cnn",
    title="Small convolutional network trained from scratch with augmentation (PyTorch)",
    package="torch",
    family="neural",
    description=(
        "Three conv-BN-ReLU stages with pooling and a linear head, trained with AdamW and a one-cycle "
        "learning rate on the decoded images (or log-mel spectrograms of audio), with random flips, "
        "shifts and masking; keeps the epoch with the lowest validation loss. Tune width, epochs, "
        "learning rate, augmentation and resolution; a GPU makes it the strongest model here."
    ),
    example_code='''import torch
from torch import nn

net = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, n_classes))
optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=5e-4)
for epoch in range(epochs):
    for xb, yb in batches(x_train, y_train, 64):  # xb: (N, C, H, W) float32
        xb = torch.flip(xb, dims=[3]) if torch.rand(1) < 0.5 else xb
        loss = nn.functional.cross_entropy(net(xb), yb)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
''',
    template="models/cnn.py.j2",
    imports=("import time", "import torch", "from torch import nn"),
    knobs=Knobs(learning_rate="lr", capacity=Step("width", 2.0, 8, 96)),
    params={"lr": 0.003, "width": 16, "dropout": 0.2, "batch_size": 64, "weight_decay": 0.0005},
    task_types=("binary", "multiclass", "regression"),
    media_only=True,
)

CARDS: dict[str, Card] = {
    c.name: c
    for c in (LIGHTGBM, CATBOOST, XGBOOST, HIST_GB, RANDOM_FOREST, EXTRA_TREES, LINEAR, TFIDF_LOGREG, TFIDF_SGD,
              TFIDF_LIGHTGBM, TFIDF_SVM, NBSVM, CNN)
}

# Words that identify a card in free text (a card name from web search, an import in an error).
CARD_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lightgbm": ("lightgbm", "lgbm", "lgb"),
    "xgboost": ("xgboost", "xgb"),
    "catboost": ("catboost",),
    "hist_gb": ("histgradientboosting", "hist_gb", "hist gradient"),
    "random_forest": ("random forest", "randomforest", "random_forest"),
    "extra_trees": ("extra trees", "extratrees", "extra_trees", "extremely randomized"),
    "tfidf_sgd": ("sgd",),
    "tfidf_lightgbm": ("tfidf_lightgbm",),
    "nbsvm": ("nbsvm", "nb-svm", "naive bayes"),
    "tfidf_svm": ("tfidf_svm", "svm", "support vector"),
    "tfidf_logreg": ("tf-idf", "tfidf", "n-gram", "ngram"),
    "cnn": ("cnn", "convolution", "resnet", "efficientnet", "torch", "neural", "spectrogram"),
    "linear": ("logistic", "ridge", "linear", "lasso", "elastic"),
}


def card_for_name(name: str) -> Card | None:
    """The knowledge-base card a free-text model name refers to."""
    lowered = name.lower()
    if lowered in CARDS:
        return CARDS[lowered]
    for card_name, words in CARD_KEYWORDS.items():
        if any(word in lowered for word in words):
            return CARDS[card_name]
    return None


def _tabular_order(facts: TaskFacts) -> list[str]:
    cat_share = len(facts.cat_cols) / max(1, facts.n_features)
    # CatBoost's ordered statistics shine with many categoricals or little data; LightGBM otherwise.
    if cat_share >= 0.3 or facts.n_rows < 5000:
        head = ["catboost", "lightgbm", "xgboost"]
    else:
        head = ["lightgbm", "catboost", "xgboost"]
    # CatBoost is the slowest booster: with a tight budget on big data it drops behind.
    if facts.n_rows * facts.n_features > 3_000_000 and facts.timeout_s < 300:
        head = [n for n in head if n != "catboost"] + ["catboost"]
    tail = ["hist_gb", "extra_trees", "random_forest", "linear"]
    if facts.n_features > 200 or facts.n_rows < 1000:
        tail = ["hist_gb", "linear", "extra_trees", "random_forest"]
    return head + tail


def _text_order(facts: TaskFacts) -> list[str]:
    """Text first: the tuned TF-IDF model, NB-SVM, a boosted model over the tabular columns with the
    text models stacked in (its default features), the calibrated SVM; then the rest."""
    order = ["tfidf_logreg", "nbsvm", "lightgbm", "tfidf_svm", "tfidf_sgd", "tfidf_lightgbm"]
    if len(facts.feature_cols) - len(facts.text_cols) > 0:
        order.append("catboost")
    return order + ["linear", "hist_gb"]


def _media_order(facts: TaskFacts) -> list[str]:
    """Boosting on summary features is the surest start on a CPU; with a GPU, or time for many
    epochs, the network trained on the files themselves goes first; without time for enough epochs
    it goes last (a network that saw the data a few times only wastes a candidate)."""
    features = ["lightgbm", "extra_trees", "hist_gb", "linear", "xgboost"]
    epochs = affordable_epochs(facts)
    if facts.gpu or epochs >= 4 * USEFUL_EPOCHS:
        return ["cnn"] + features
    if epochs >= USEFUL_EPOCHS:
        return features[:1] + ["cnn"] + features[1:]
    return features + ["cnn"]


def rank_cards(facts: TaskFacts, available: list[str]) -> list[Card]:
    """Applicable cards, best expected first, skipping those whose package cannot be imported."""
    if facts.media is not None:
        order = _media_order(facts)
    else:
        order = _text_order(facts) if facts.is_text else _tabular_order(facts)
    ranked = []
    for name in order:
        card = CARDS[name]
        if card.media_only and facts.media is None:
            continue
        if facts.task_type not in card.task_types:
            continue
        if card.needs_text and not facts.text_cols:
            continue
        if not package_available(card.package, available):
            continue
        ranked.append(card)
    return ranked


def fallback_cards(card_name: str, facts: TaskFacts, available: list[str], exclude: set[str]) -> list[Card]:
    """Replacements for a card whose package is missing, most similar first."""
    family = CARDS[card_name].family if card_name in CARDS else "gbdt"
    ranked = [c for c in rank_cards(facts, available) if c.name not in exclude and c.name != card_name]
    return sorted(ranked, key=lambda c: 0 if c.family == family else 1)
