"""Expert brain: the static leakage checker and the data-usage checker on planted problems."""

from __future__ import annotations

import pytest
from test_expert_support import ROUNDS, assert_ran, build, run_code

from mlestar.brain.expert import ExpertBrain
from mlestar.brain.protocol import ModelCard, RefinementPlan, ScoredScript, Script
from mlestar.core.contract import find_blocks


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build(tmp_path_factory.mktemp("expert_checks"), "binary", aux=True)


@pytest.fixture(scope="module")
def brain():
    return ExpertBrain(max_rounds=ROUNDS)


@pytest.fixture(scope="module")
def clean(fx, brain):
    return brain.write_candidate(fx.ctx, ModelCard(name="lightgbm"))


ROW_IDS = 'row_ids = split["row"].to_numpy()[keep]\n'
SPLIT_CALL = "X_fit, (X_val,) = prepare(features.iloc[fit_idx].reset_index(drop=True), Y_FIT,"
FEATURES_LINE = 'print(f"features: {X_fit.shape[1]} columns; scored folds: {SCORE_FOLDS} ({len(val_idx)} rows)")'
LEAKS = {
    "target copied into a feature": (ROW_IDS, ROW_IDS + 'train["target_copy"] = train["target"] * 2\n', "loading"),
    "target mean by group on all rows": (
        ROW_IDS, ROW_IDS + 'train["city_rate"] = train.groupby("city")[TARGETS[0]].transform("mean")\n', "loading"
    ),
    "encoders fitted on train and validation together": (SPLIT_CALL, "X_fit, (X_val,) = prepare(features, Y,", "validation"),
    "scaler fitted on validation rows": (
        FEATURES_LINE,
        'from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler().fit(X_val.select_dtypes("number"))\n'
        + FEATURES_LINE,
        "validation",
    ),
    "scaler fitted on concatenated train and validation": (
        FEATURES_LINE,
        "from sklearn.preprocessing import StandardScaler\n"
        'scaler = StandardScaler().fit(pd.concat([X_fit, X_val]).select_dtypes("number"))\n' + FEATURES_LINE,
        "validation",
    ),
    "id kept as a feature": ("TARGETS + [ID_COL] + DROP_COLS", "TARGETS + DROP_COLS", "cleaning"),
    "target kept as a feature": ("TARGETS + [ID_COL] + DROP_COLS", "[ID_COL] + DROP_COLS", "cleaning"),
}


@pytest.mark.parametrize("leak", list(LEAKS))
@pytest.mark.parametrize("with_info", [True, False])
def test_planted_leak_is_flagged_with_its_block_and_fixed(fx, brain, clean, leak, with_info):
    old, new, block_name = LEAKS[leak]
    assert old in clean.code
    leaky = Script(code=clean.code.replace(old, new, 1), info=clean.info if with_info else {})
    report = brain.check_leakage(fx.ctx, leaky)
    assert report.leak, leak
    assert report.block is not None and report.block in leaky.code  # verbatim
    assert report.block == find_blocks(leaky.code)[block_name]
    fixed = brain.fix_leakage(fx.ctx, leaky, report)
    assert not brain.check_leakage(fx.ctx, fixed).leak
    assert fixed.code == clean.code  # the block is rendered back from the clean template


@pytest.mark.parametrize("card", ["lightgbm", "xgboost", "catboost", "hist_gb", "random_forest", "linear"])
def test_clean_templates_pass(fx, brain, card):
    script = brain.write_candidate(fx.ctx, ModelCard(name=card))
    report = brain.check_leakage(fx.ctx, script)
    assert not report.leak, report.reason
    assert brain.check_leakage(fx.ctx, brain.write_submission(fx.ctx, script)).leak is False


@pytest.mark.slow  # trains real models
def test_combined_scripts_pass(fx, brain, clean):
    other = brain.write_candidate(fx.ctx, ModelCard(name="linear"))
    scored = [ScoredScript(script=clean, score=0.9), ScoredScript(script=other, score=0.8)]
    merged = brain.merge(fx.ctx, scored[0], scored[1])
    for script in (
        merged,
        brain.write_ablation(fx.ctx, ScoredScript(script=merged, score=0.9), []),
        brain.implement_ensemble(fx.ctx, scored, RefinementPlan(text="", data={"method": "stacking"})),
        brain.implement_ensemble(fx.ctx, scored, RefinementPlan(text="", data={"method": "hill_climb"})),
    ):
        report = brain.check_leakage(fx.ctx, script)
        assert not report.leak, (script.label, report.reason)


FOREIGN = '''import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

df = pd.read_csv("./input/train.csv")
folds = pd.read_csv("./input/folds.csv")
df = df[folds["dev"] == 1]
df["city_rate"] = df.groupby("city")["target"].transform("mean")
X = df.drop(columns=["target", "id", "city", "plan"]).fillna(0)
y = df["target"]
is_tr = (folds["fold"][folds["dev"] == 1] != 0).to_numpy()
X_train, X_val = X[is_tr], X[~is_tr]
scaler = StandardScaler().fit(pd.concat([X_train, X_val]))
model = LogisticRegression().fit(scaler.transform(X_train), y[is_tr])
print("Final Validation Performance:", roc_auc_score(y[~is_tr], model.predict_proba(scaler.transform(X_val))[:, 1]))
'''


@pytest.mark.slow  # trains real models
def test_leaks_in_a_hand_written_script_are_found_and_repaired(fx, brain, tmp_path):
    script = Script(code=FOREIGN)
    report = brain.check_leakage(fx.ctx, script)
    assert report.leak and report.block == 'df["city_rate"] = df.groupby("city")["target"].transform("mean")'
    assert "validation" in report.reason
    fixed = brain.fix_leakage(fx.ctx, script, report)
    assert not brain.check_leakage(fx.ctx, fixed).leak
    assert "StandardScaler().fit(X_train)" in fixed.code and "city_rate" not in fixed.code.split("pass  #")[0]
    assert_ran(run_code(fixed.code, fx.dev, tmp_path / "fixed"))
    honest = FOREIGN.replace('df["city_rate"] = df.groupby("city")["target"].transform("mean")\n', "").replace(
        "pd.concat([X_train, X_val])", "X_train"
    )
    assert not brain.check_leakage(fx.ctx, Script(code=honest)).leak


@pytest.mark.slow  # trains real models
def test_data_usage_joins_an_ignored_auxiliary_table(fx, brain, clean, tmp_path):
    report = brain.check_data_usage(fx.ctx, clean)
    assert not report.all_used and report.script is not None and "cities.csv" in report.reason
    revised = report.script
    assert "cities.csv" in find_blocks(revised.code)["join_cities"]
    for name in find_blocks(clean.code):  # the join comes as blocks of its own, the others stay as they were
        assert find_blocks(revised.code)[name] == find_blocks(clean.code)[name]
    result = run_code(revised.code, fx.dev, tmp_path / "revised")
    assert_ran(result)
    assert "joined cities.csv as cities_*: key city matched 100.0% of train rows; 1 new columns" in (
        result.stdout)
    assert "features: 6 columns" in result.stdout
    again = brain.check_data_usage(fx.ctx, revised)
    assert again.all_used and again.script is None


def test_data_usage_restores_a_dropped_feature_column(fx, brain, clean):
    spec_state = dict(clean.info["expert"])
    cleaning = dict(spec_state["cleaning"], drop_cols=["x3"])
    dropped = Script(code=clean.code, info={"expert": dict(spec_state, cleaning=cleaning)})
    report = brain.check_data_usage(fx.ctx, dropped)
    assert not report.all_used and "x3" in report.reason and report.script is not None
    assert 'DROP_COLS = []' in report.script.code


def test_data_usage_on_a_hand_written_script(fx, brain):
    report = brain.check_data_usage(fx.ctx, Script(code=FOREIGN))
    assert not report.all_used and report.script is None and "cities.csv" in report.reason
