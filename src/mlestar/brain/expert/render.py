"""Rendering solution specs into scripts, block by block, from the Jinja templates.

Templates live in ``templates/``: one per block, one per model card. Rendering is a pure function
of the spec, so the same spec always gives byte-identical code.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jinja2

from mlestar.brain.expert.blocks import BLOCK_ORDER
from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import TaskFacts
from mlestar.brain.expert.spec import INFO_KEY, ModelSpec, SolutionSpec, attach_state
from mlestar.brain.protocol import Script
from mlestar.core import contract
from mlestar.core.contract import wrap_block

TEMPLATE_DIR = Path(__file__).parent / "templates"

_CARD_TEMPLATES = {
    "lightgbm": "models/lightgbm.py.j2",
    "xgboost": "models/xgboost.py.j2",
    "catboost": "models/catboost.py.j2",
    "hist_gb": "models/hist_gb.py.j2",
    "random_forest": "models/forest.py.j2",
    "extra_trees": "models/forest.py.j2",
    "linear": "models/linear.py.j2",
    "tfidf_logreg": "models/tfidf_linear.py.j2",
    "tfidf_sgd": "models/tfidf_linear.py.j2",
    "tfidf_lightgbm": "models/tfidf_lightgbm.py.j2",
}

_SKLEARN_LINEAR = [
    "from sklearn.compose import ColumnTransformer",
    "from sklearn.impute import SimpleImputer",
    "from sklearn.pipeline import Pipeline, make_pipeline",
    "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
]
_CARD_IMPORTS: dict[str, list[str]] = {
    "lightgbm": ["import lightgbm as lgb"],
    "xgboost": ["import xgboost as xgb"],
    "catboost": ["from catboost import CatBoostClassifier, CatBoostRegressor"],
    "hist_gb": ["from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor"],
    "random_forest": ["from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor"],
    "extra_trees": ["from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor"],
    "linear": _SKLEARN_LINEAR + ["from sklearn.linear_model import LogisticRegression, Ridge"],
    "tfidf_logreg": _SKLEARN_LINEAR
    + [
        "from sklearn.feature_extraction.text import TfidfVectorizer",
        "from sklearn.linear_model import LogisticRegression, Ridge",
    ],
    "tfidf_sgd": _SKLEARN_LINEAR
    + [
        "from sklearn.feature_extraction.text import TfidfVectorizer",
        "from sklearn.linear_model import SGDClassifier, SGDRegressor",
    ],
    "tfidf_lightgbm": [
        "import lightgbm as lgb",
        "from scipy.sparse import csr_matrix, hstack",
        "from sklearn.feature_extraction.text import TfidfVectorizer",
    ],
}


def py_literal(value: Any, width: int = 100) -> str:
    """Python source for a JSON-like value, with double-quoted strings as a person would write.

    A dict too long for one line is written one key per line.
    """
    flat = _flat_literal(value)
    if isinstance(value, dict) and len(flat) > width and value:
        items = "".join(f"    {_flat_literal(k)}: {_flat_literal(v)},\n" for k, v in value.items())
        return "{\n" + items + "}"
    if isinstance(value, list) and len(flat) > width and value:
        lines, line = [], ""
        for item in (_flat_literal(v) + "," for v in value):
            if line and len(line) + len(item) + 1 > width - 4:
                lines.append(line)
                line = item
            else:
                line = f"{line} {item}" if line else item
        lines.append(line)
        return "[\n" + "".join(f"    {text}\n" for text in lines) + "]"
    return flat


def _flat_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        inner = ", ".join(_flat_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_flat_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat_literal(k)}: {_flat_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a Python literal")


_env_lock = threading.Lock()
_env: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _env
    with _env_lock:
        if _env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
                autoescape=False,
            )
            env.filters["py"] = py_literal
            env.globals.update(contract.template_globals())
            _env = env
        return _env


def _render(template: str, **values: Any) -> str:
    return environment().get_template(template).render(**values)


def metric_code(facts: TaskFacts) -> str:
    """The metric snippet the grader itself runs, embedded verbatim."""
    from mlestar.metrics import default_metric, get_metric

    try:
        return get_metric(facts.metric).code.strip("\n")
    except Exception:  # an unknown metric name: score with the task type's default metric
        return get_metric(default_metric(facts.task_type)).code.strip("\n")


def _model_source(m: ModelSpec, facts: TaskFacts) -> str:
    card = CARDS[m.card]
    extra: dict[str, Any] = {}
    if card.family == "forest":
        prefix = "RandomForest" if m.card == "random_forest" else "ExtraTrees"
        extra = {"regressor": f"{prefix}Regressor", "classifier": f"{prefix}Classifier", "title": card.title}
    return _render(_CARD_TEMPLATES[m.card], m=m, f=facts, card=m.card, **extra).strip("\n")


def model_imports(models: list[ModelSpec]) -> list[str]:
    lines: list[str] = []
    for m in models:
        for line in _CARD_IMPORTS[m.card]:
            if line not in lines:
                lines.append(line)
    plain = sorted(line for line in lines if line.startswith("import "))
    froms = sorted(line for line in lines if line.startswith("from "))
    return plain + froms


def render_body(name: str, spec: SolutionSpec) -> str:
    f = spec.facts
    if name == "setup":
        return _render("setup.py.j2", f=f, metric_code=metric_code(f))
    if name == "loading":
        return _render("loading.py.j2", f=f, aux_tables=spec.aux_tables)
    if name == "cleaning":
        return _render("cleaning.py.j2", f=f, c=spec.cleaning)
    if name == "feature_engineering":
        return _render("feature_engineering.py.j2", f=f, fe=spec.features)
    if name == "categorical_encoding":
        return _render("categorical_encoding.py.j2", f=f, e=spec.encoding)
    if name == "model":
        families = {CARDS[m.card].family for m in spec.models}
        return _render(
            "model.py.j2",
            f=f,
            imports=model_imports(spec.models),
            class_weight=spec.training.class_weight,
            models=[_model_source(m, f) for m in spec.models],
            specs=spec.models,
            needs_text_helpers=bool(families & {"text_linear", "text_gbdt"}),
            needs_linear_helpers=bool(families & {"linear", "text_linear"}),
        )
    if name == "validation":
        return _render("validation.py.j2", f=f, t=spec.training)
    raise ValueError(f"unknown block {name}")


def render_block(name: str, spec: SolutionSpec) -> str:
    return wrap_block(name, render_body(name, spec))


def docstring(spec: SolutionSpec) -> str:
    f = spec.facts
    models = " + ".join(CARDS[m.card].title for m in spec.models)
    return (
        f'"""{f.name}: {models}.\n\n'
        f"Task: {f.task_type} on {f.modality} data, target {', '.join(f.targets)}, metric {f.metric} "
        f"({'lower' if f.lower_is_better else 'higher'} is better).\n"
        "Written by mlestar's expert policy. Data comes from ./input/; ./input/folds.csv fixes the split\n"
        "(fold 0 is the validation hold-out, dev == 1 the development subsample). The script prints one\n"
        f"'{contract.SCORE_LABEL}' line; with {contract.FINAL_FLAG} = True it also writes ./final/submission.csv.\n"
        '"""\n'
    )


def render_script(spec: SolutionSpec) -> str:
    parts = [docstring(spec)] + [render_block(name, spec) for name in BLOCK_ORDER]
    return attach_state("\n\n".join(parts), spec_state(spec))


def spec_state(spec: SolutionSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def to_script(spec: SolutionSpec, code: str | None = None, label: str | None = None) -> Script:
    """A Script carrying ``spec`` both in ``info`` and in the code's state comment."""
    state = spec_state(spec)
    body = render_script(spec) if code is None else attach_state(code, state)
    return Script(code=body, label=label or spec.label, info={INFO_KEY: state})
