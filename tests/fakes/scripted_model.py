"""A scripted "LLM" that plays every MLE-STAR agent for tabular binary/regression competitions.

It recognises the agent from the ``[mlestar agent: ROLE]`` marker of the LLM brain's prompts,
reads the task facts (target, id column, metric, file names) from the prompt, and answers the way
a real model does: code in fences with prose around it, JSON in fences (with a trailing comma the
parser has to repair), block quotes for the extractor. Its scripts follow docs/script-contract.md
and use scikit-learn only, so a whole run finishes in seconds.

Each script carries a ``# fake-spec: [...]`` comment naming its models; merging, ensembling and the
final submission read it back, so the answers evolve like a real run (more models, more trees).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

ROLE_RE = re.compile(r"\[mlestar agent: (\w+)\]")

_TREE_ARGS = "n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH, n_jobs=THREADS, random_state=SEED"

MODELS = {
    # key: (card name, description, classifier, regressor)
    "rf": (
        "Random forest",
        "Bagged decision trees, robust on small tabular data.",
        f"RandomForestClassifier({_TREE_ARGS})",
        f"RandomForestRegressor({_TREE_ARGS})",
    ),
    "et": (
        "Extra trees",
        "Extremely randomised trees: low variance, fast to train.",
        f"ExtraTreesClassifier({_TREE_ARGS})",
        f"ExtraTreesRegressor({_TREE_ARGS})",
    ),
    "gb": (
        "Histogram gradient boosting",
        "scikit-learn's LightGBM-style boosting with native missing values.",
        "HistGradientBoostingClassifier(max_iter=N_ESTIMATORS, max_depth=MAX_DEPTH, random_state=SEED)",
        "HistGradientBoostingRegressor(max_iter=N_ESTIMATORS, max_depth=MAX_DEPTH, random_state=SEED)",
    ),
    "linear": (
        "Regularised linear model",
        "Logistic / ridge regression on standardised features.",
        "make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))",
        "make_pipeline(StandardScaler(), Ridge(alpha=1.0))",
    ),
}


def agent_role(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        match = ROLE_RE.search(str(message.get("content", "")))
        if match:
            return match.group(1)
    return "unknown"


@dataclass
class Facts:
    target: str = "target"
    id_column: str | None = None
    task_type: str = "binary"
    metric: str = "roc_auc"
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    sample_file: str = "sample_submission.csv"
    proba: bool = True
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def read_facts(prompt: str) -> Facts:
    facts = Facts()
    if m := re.search(r"Target column\(s\): ([^\n,]+)", prompt):
        facts.target = m.group(1).strip()
    if m := re.search(r"Id column: (\S+)", prompt):
        facts.id_column = m.group(1).strip()
    if m := re.search(r"Task type: (\w+)", prompt):
        facts.task_type = m.group(1)
    if m := re.search(r"Metric: (\S+) \(", prompt):
        facts.metric = m.group(1)
    if (m := re.search(r"Training data: `\./input/([^`]+)`", prompt)) or (
        m := re.search(r"Train: (\S+) \(", prompt)
    ):
        facts.train_file = m.group(1)
    if m := re.search(r"Test: (\S+) \(", prompt):
        facts.test_file = m.group(1)
    if m := re.search(r"columns of `\./input/([^`]+)`", prompt):
        facts.sample_file = m.group(1)
    if m := re.search(r"Submission columns: [^\n]*\((\w+)\)", prompt):
        facts.proba = m.group(1) == "proba"
    if m := re.search(r"[Uu]se (\d+) CPU thread", prompt):
        facts.threads = int(m.group(1))
    return facts


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def read_spec(code: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"models": ["rf"], "n_estimators": 40, "max_depth": 6}
    if m := re.search(r"# fake-spec: (\[.*?\])", code):
        spec["models"] = json.loads(m.group(1))
    if m := re.search(r"N_ESTIMATORS = (\d+)", code):
        spec["n_estimators"] = int(m.group(1))
    if m := re.search(r"MAX_DEPTH = (\d+)", code):
        spec["max_depth"] = int(m.group(1))
    return spec


def scores_proba(facts: Facts) -> bool:
    name = facts.metric.lower()
    return not any(word in name for word in ("acc", "f1"))


def _metric_code(facts: Facts) -> str:
    name = facts.metric.lower()
    if facts.task_type == "regression":
        if "rmsle" in name or "log_error" in name:
            return "float(np.sqrt(mean_squared_log_error(y_true, np.clip(pred, 0, None))))"
        if "mae" in name or "absolute" in name:
            return "float(mean_absolute_error(y_true, pred))"
        if name in ("r2", "r2_score"):
            return "float(r2_score(y_true, pred))"
        if name == "mse":
            return "float(mean_squared_error(y_true, pred))"
        return "float(np.sqrt(mean_squared_error(y_true, pred)))"
    if "loss" in name or "entropy" in name:
        return "float(log_loss(y_true, np.clip(pred, 1e-6, 1 - 1e-6)))"
    if "acc" in name:
        return "float(accuracy_score(y_true, pred > 0.5))"
    if "f1" in name:
        return "float(f1_score(y_true, pred > 0.5))"
    return "float(roc_auc_score(y_true, pred))"


def render_script(facts: Facts, spec: dict[str, Any], *, mode: str = "dev", ablation: bool = False) -> str:
    regression = facts.task_type == "regression"
    models = spec["models"]
    lines = [
        f"# fake-spec: {json.dumps(models)}",
        "import os",
        "",
        "import numpy as np",
        "import pandas as pd",
        "from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor",
        "from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor",
        "from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor",
        "from sklearn.linear_model import LogisticRegression, Ridge",
        "from sklearn.metrics import accuracy_score, f1_score, log_loss, mean_absolute_error",
        "from sklearn.metrics import mean_squared_error, mean_squared_log_error, r2_score, roc_auc_score",
        "from sklearn.pipeline import make_pipeline",
        "from sklearn.preprocessing import StandardScaler",
        "",
        "SEED = 0",
        f"THREADS = {facts.threads}",
        f"TARGET = {facts.target!r}",
        f"ID_COLUMN = {facts.id_column!r}",
        "# --- model settings ---",
        f"N_ESTIMATORS = {spec['n_estimators']}",
        f"MAX_DEPTH = {spec['max_depth']}",
        "# --- end of model settings ---",
        "",
        f'train = pd.read_csv("./input/{facts.train_file}")',
        'folds = pd.read_csv("./input/folds.csv").sort_values("row")',
        'train["_fold"] = folds["fold"].to_numpy()',
        'train["_row"] = folds["row"].to_numpy()',
    ]
    if mode == "dev":
        lines += ['train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)']
    lines += [
        'features = [c for c in train.columns if c not in (TARGET, ID_COLUMN, "_fold", "_row")]',
        'fit_rows = train["_fold"] != 0',
        "numeric = [c for c in features if pd.api.types.is_numeric_dtype(train[c])]",
        "medians = {c: train.loc[fit_rows, c].median() for c in numeric}",
        "categorical = [c for c in features if c not in medians]",
        "levels = {c: sorted(train.loc[fit_rows, c].dropna().astype(str).unique()) for c in categorical}",
        "",
        "",
        "def prepare(frame):",
        "    X = pd.DataFrame(index=frame.index)",
        "    for c in features:",
        "        if c in medians:",
        "            X[c] = frame[c].fillna(medians[c]).astype(float)",
        "        else:",
        "            X[c] = pd.Categorical(frame[c].astype(str), categories=levels[c]).codes",
        "    return X",
        "",
        "",
    ]
    if regression:
        lines += ["y_all = train[TARGET].astype(float)"]
    else:
        lines += [
            "positive = sorted(train[TARGET].unique())[-1]",
            "negative = sorted(train[TARGET].unique())[0]",
            "y_all = (train[TARGET] == positive).astype(int)",
        ]
    make = {key: MODELS[key][3 if regression else 2] for key in models}
    lines += [
        "",
        "",
        "def make_model(name):",
        *[f"    if name == {key!r}:\n        return {ctor}" for key, ctor in make.items()],
        '    raise ValueError(f"unknown model {name}")',
        "",
        "",
        "def predict(model, X):",
        f"    return model.{'predict(X)' if regression else 'predict_proba(X)[:, 1]'}",
        "",
        "",
        "def score_of(y_true, pred):",
        f"    return {_metric_code(facts)}",
        "",
        "",
        "def validate(names, save=False):",
        '    train_rows, valid_rows = train["_fold"] != 0, train["_fold"] == 0',
        "    X_train, X_valid = prepare(train[train_rows]), prepare(train[valid_rows])",
        "    preds = []",
        "    for name in names:",
        "        model = make_model(name)",
        "        model.fit(X_train, y_all[train_rows])",
        "        preds.append(predict(model, X_valid))",
        "    pred = np.mean(preds, axis=0)",
        "    if save:",
        "        # the fold-0 predictions the pipeline scores again",
        "        os.makedirs('./final', exist_ok=True)",
        "        saved = pred"
        if regression or scores_proba(facts)
        else "        saved = np.where(pred > 0.5, positive, negative)",
        "        rows = train.loc[valid_rows, '_row'].to_numpy()",
        "        frame = pd.DataFrame({'row': rows, TARGET: saved})",
        "        frame.to_csv('./final/val_predictions.csv', index=False)",
        "    return score_of(y_all[valid_rows], pred)",
        "",
        "",
        f"MODELS = {models!r}",
    ]
    if ablation:
        lines += [
            "baseline = validate(MODELS, save=True)",
            'print(f"Baseline: {baseline}")',
            "for name in MODELS:",
            "    if len(MODELS) > 1:",
            "        rest = [m for m in MODELS if m != name]",
            '        print(f"ABLATION without_{name}: {validate(rest)}")',
            "N_ESTIMATORS = max(5, N_ESTIMATORS // 4)",
            'print(f"ABLATION fewer_trees: {validate(MODELS)}")',
            'print(f"Final Validation Performance: {baseline}")',
        ]
        return "\n".join(lines) + "\n"
    lines += ["score = validate(MODELS, save=True)"]
    if mode == "final":
        lines += [
            "",
            f'test = pd.read_csv("./input/{facts.test_file}")',
            f'sample = pd.read_csv("./input/{facts.sample_file}")',
            "X_all, X_test = prepare(train), prepare(test)",
            "test_preds = []",
            "for name in MODELS:",
            "    model = make_model(name)",
            "    model.fit(X_all, y_all)",
            "    test_preds.append(predict(model, X_test))",
            "pred_test = np.mean(test_preds, axis=0)",
        ]
        if not regression and not facts.proba:
            negative = "sorted(train[TARGET].unique())[0]"
            lines += [f"pred_test = np.where(pred_test > 0.5, positive, {negative})"]
        lines += [
            "submission = pd.DataFrame({c: sample[c] for c in sample.columns if c == ID_COLUMN})",
            "if ID_COLUMN in test.columns:",
            "    submission[ID_COLUMN] = test[ID_COLUMN].to_numpy()",
            "for column in [c for c in sample.columns if c != ID_COLUMN]:",
            "    submission[column] = pred_test",
            'os.makedirs("./final", exist_ok=True)',
            'submission.to_csv("./final/submission.csv", index=False)',
        ]
    lines += ['print(f"Final Validation Performance: {score}")']
    return "\n".join(lines) + "\n"


def _model_key(card_text: str) -> str:
    text = card_text.lower()
    for key, words in (
        ("et", ("extra",)),
        ("gb", ("boost", "lightgbm", "xgboost", "catboost")),
        ("linear", ("linear", "logistic", "ridge")),
        ("rf", ("forest",)),
    ):
        if any(w in text for w in words):
            return key
    return "rf"


def _fenced(code: str, before: str, after: str = "") -> str:
    return f"{before}\n\n```python\n{code}```\n\n{after}".strip() + "\n"


def respond(messages: list[dict[str, Any]]) -> str:
    role = agent_role(messages)
    # The facts of the task are in the shared system prompt, the scripts in the request itself.
    facts = read_facts("\n".join(str(m.get("content", "")) for m in messages))
    prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") != "system")
    scripts = _python_blocks(prompt)
    if role == "summarizer":
        return (
            f"A {facts.task_type} prediction task on tabular data: predict {facts.target} from the other "
            f"columns; submissions are scored with {facts.metric}."
        )
    if role == "retriever":
        n = int(m.group(1)) if (m := re.search(r"exactly (\d+) objects", prompt)) else 2
        keys = ["gb", "rf", "et", "linear"][:n]
        cards = ",\n".join(
            "  "
            + json.dumps(
                {
                    "name": MODELS[k][0],
                    "description": MODELS[k][1],
                    "example_code": f"from sklearn import ensemble\nmodel = {MODELS[k][2]}\nmodel.fit(X, y)",
                    "source": "own knowledge",
                }
            )
            for k in keys
        )
        # A trailing comma, as models often write: the brain's JSON repair must cope.
        return f"Here are {n} strong choices for this data:\n\n```json\n[\n{cards},\n]\n```\n"
    if role == "candidate":
        card = re.search(r"## The model\n(.+)", prompt)
        key = _model_key(card.group(1) if card else "")
        code = render_script(facts, {"models": [key], "n_estimators": 40, "max_depth": 6})
        return _fenced(
            code, f"Here is a simple {MODELS[key][0]} solution.", "It keeps fold 0 for validation."
        )
    if role in ("merger", "ensembler"):
        models: list[str] = []
        for code in scripts:
            models += [m for m in read_spec(code)["models"] if m not in models]
        spec = read_spec(scripts[0]) if scripts else {"n_estimators": 40, "max_depth": 6}
        code = render_script(facts, {**spec, "models": models or ["rf"]})
        return _fenced(code, "The combined solution averages the models' fold-0 predictions:")
    if role == "leakage_checker":
        return '```json\n{"leak": false, "reason": "All statistics are computed on folds 1-4 only."}\n```\n'
    if role == "leakage_fixer":
        return _fenced(scripts[-1] if scripts else "", "Fixed:")
    if role == "data_usage":
        return "ALL_USED"
    if role == "ablation":
        code = render_script(facts, read_spec(scripts[0] if scripts else ""), ablation=True)
        return _fenced(code, "This ablation removes one model at a time and shrinks the forests.")
    if role == "ablation_summarizer":
        output = prompt.split("Output:", 1)[-1]
        effects = {}
        baseline = None
        if m := re.search(r"Baseline: ([-\d.eE]+)", output):
            baseline = float(m.group(1))
        for name, value in re.findall(r"ABLATION (\w+): ([-\d.eE]+)", output):
            effects[name] = float(value) - (baseline or 0.0)
        return (
            "```json\n"
            + json.dumps(
                {
                    "summary": f"The number of trees matters most; baseline {baseline}.",
                    "baseline_score": baseline,
                    "effects": effects,
                }
            )
            + "\n```\n"
        )
    if role == "extractor":
        code = scripts[-1] if scripts else ""
        block = re.search(r"# --- model settings ---\n.*?# --- end of model settings ---", code, re.S)
        quoted = block.group(0) if block else code.splitlines()[0]
        meta = {"name": "model settings", "plan": "Use more trees so the ensemble averages out more noise."}
        return f"```json\n{json.dumps(meta)}\n```\n\n```python\n{quoted}\n```\n"
    if role == "coder":
        block = scripts[0] if scripts else ""
        n = int(m.group(1)) if (m := re.search(r"N_ESTIMATORS = (\d+)", block)) else 40
        new = re.sub(r"N_ESTIMATORS = \d+", f"N_ESTIMATORS = {n + 20}", block).rstrip("\n")
        return _fenced(new + "\n", "The new block:")
    if role == "planner":
        return (
            "Raise the number of trees by another 20 and keep the depth: more trees reduce variance cheaply."
        )
    if role == "ensemble_planner":
        return "Average the fold-0 predictions of all solutions with equal weights."
    if role == "debugger":
        code = scripts[-1] if scripts else ""
        mode = "final" if "submission.csv" in code else "dev"
        return _fenced(render_script(facts, read_spec(code), mode=mode), "The error is fixed here:")
    if role == "submission":
        code = render_script(facts, read_spec(scripts[0] if scripts else ""), mode="final")
        return _fenced(code, "The final script trains on every row and writes the submission.")
    return "I am not sure what you are asking for."
