"""Expert brain: candidate scripts run per the contract, blocks, state and determinism."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from test_expert_support import ROUNDS, assert_ran, assert_submission_matches, build, run_code

from mlestar.brain.expert import ExpertBrain
from mlestar.brain.expert.blocks import (
    BLOCK_ORDER,
    BLOCKS,
    JOINING,
    block_for,
    block_order,
    MEDIA_BLOCKS,
    block_state,
    changed_blocks,
    set_block_state,
)
from mlestar.brain.expert.cards import CARDS, Knobs, Step
from mlestar.brain.expert.render import render_script
from mlestar.brain.expert.solution import new_spec, spec_of
from mlestar.brain.expert.spec import JoinLinkSpec, JoinSpec
from mlestar.brain.expert.templating import TEMPLATE_DIR
from mlestar.brain.protocol import BlockNotFound, Brain, ModelCard, ScoredScript, Script, replace_block
from mlestar.core.contract import find_blocks
from mlestar.metrics import get_metric
from mlestar.pipeline.scoring import Rescorer


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("expert_tasks")
    return {kind: build(root / kind, kind) for kind in ("binary", "multiclass", "regression", "text")}


@pytest.fixture()
def brain():
    return ExpertBrain(max_rounds=ROUNDS)


def test_expert_brain_implements_the_protocol():
    brain = ExpertBrain()
    assert isinstance(brain, Brain)
    assert brain.name == "expert"


@pytest.mark.parametrize(
    ("kind", "card", "sensible"),
    [
        ("binary", "lightgbm", lambda s: 0.75 < s <= 1.0),  # ROC AUC
        ("multiclass", "catboost", lambda s: 0.0 < s < 0.9),  # log loss; uniform guessing is 1.10
        ("regression", "xgboost", lambda s: 0.0 < s < 4.0),  # RMSE; the target's spread is about 6
        ("text", "tfidf_logreg", lambda s: 0.65 < s <= 1.0),  # accuracy
        ("text", "nbsvm", lambda s: 0.65 < s <= 1.0),
        ("text", "lightgbm", lambda s: 0.65 < s <= 1.0),  # the text models' predictions stacked in
    ],
)
@pytest.mark.slow  # trains real models
def test_candidate_runs_in_dev_and_final_mode(tasks, brain, tmp_path, kind, card, sensible):
    fx = tasks[kind]
    script = brain.write_candidate(fx.ctx, ModelCard(name=card))
    assert f"MODELS = {{\n    \"{card}\"" in script.code

    dev = run_code(script.code, fx.dev, tmp_path / "dev")
    score = assert_ran(dev)
    assert sensible(score), score
    assert not (tmp_path / "dev" / "final" / "submission.csv").exists()  # development runs never submit
    val = pd.read_csv(tmp_path / "dev" / "final" / "val_predictions.csv")
    folds = pd.read_csv(fx.dev / "folds.csv")
    # The fixtures are small tables, so every development row is scored out of fold.
    assert sorted(val["row"]) == sorted(folds.loc[folds["dev"] == 1, "row"])
    # The pipeline scores the saved predictions again with the run's metric: the same score.
    rescorer = Rescorer(fx.task, get_metric(fx.task.metric), fx.dev / "folds.csv")
    saved = tmp_path / "dev" / "final" / "val_predictions.csv"
    assert rescorer.score_file(saved, final=False) == pytest.approx(score, rel=1e-6)

    final_script = brain.write_submission(fx.ctx, script)
    assert re.findall(r"^FINAL_MODE = (\w+)", final_script.code, re.MULTILINE) == ["True"]
    final = run_code(final_script.code, fx.final, tmp_path / "final")
    assert assert_ran(final) == pytest.approx(score)  # the same fold-0 check before the refit
    submission = assert_submission_matches(tmp_path / "final", fx.task)
    assert (tmp_path / "final" / "final" / "test_predictions.csv").exists()
    if kind == "multiclass":
        values = submission[["a", "b", "c"]].to_numpy()
        assert np.allclose(values.sum(axis=1), 1.0, atol=1e-6)
        # Log loss: no probability below the floor of about 1 / (training rows + 2).
        n_train = len(pd.read_csv(fx.final / fx.task.train_file))
        assert values.min() >= 0.99 / (n_train + 2)
    elif kind == "binary":
        assert submission["target"].between(0, 1).all() and submission["target"].nunique() > 10
    elif kind == "text":
        assert set(submission["label"]) <= {"positive", "negative"}


@pytest.mark.slow  # trains real models
@pytest.mark.parametrize(("n_dev_rows", "scored_folds"), [(240, [0, 1, 2, 3, 4]), (50_000, [0])])
def test_small_tables_are_scored_out_of_fold_and_large_ones_on_fold_0(tasks, brain, tmp_path, n_dev_rows, scored_folds):
    fx = tasks["binary"]
    ctx = fx.ctx.model_copy(update={"n_dev_rows": n_dev_rows})
    script = brain.write_candidate(ctx, ModelCard(name="lightgbm"))
    assert f"SCORE_FOLDS = {scored_folds}" in script.code
    score = assert_ran(run_code(script.code, fx.dev, tmp_path))
    val = pd.read_csv(tmp_path / "final" / "val_predictions.csv")
    folds = pd.read_csv(fx.dev / "folds.csv")
    scored = folds[folds["fold"].isin(scored_folds) & (folds["dev"] == 1)]
    assert sorted(val["row"]) == sorted(scored["row"])
    # The reported score is the metric over exactly those out-of-fold predictions.
    truth = pd.read_csv(fx.dev / fx.task.train_file).iloc[val["row"]][fx.task.target].to_numpy()
    from sklearn.metrics import roc_auc_score

    assert score == pytest.approx(roc_auc_score(truth, val["target"]), abs=1e-9)


def test_log_loss_probabilities_are_floored_and_other_metrics_untouched(tasks, brain):
    code = brain.write_candidate(tasks["multiclass"].ctx, ModelCard(name="lightgbm")).code
    assert "VAL_PRED = floor_proba(VAL_PRED)" in code and "TEST_PRED = floor_proba(TEST_PRED)" in code
    namespace = {"np": np, "Y": np.zeros(98)}  # 98 training rows: floor 1 / 100
    exec(code[code.index("PROBA_FLOOR =") : code.index("VAL_PRED = floor_proba")], namespace)
    floored = namespace["floor_proba"](np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]]))
    assert np.allclose(floored.sum(axis=1), 1.0)
    assert floored[0].min() == pytest.approx(0.01 / 1.01) and floored[0].argmax() == 0
    assert np.allclose(floored[1], [0.2, 0.3, 0.5])
    for kind in ("binary", "regression"):  # ROC AUC and RMSE predictions are left as they are
        assert "floor_proba" not in brain.write_candidate(tasks[kind].ctx, ModelCard(name="lightgbm")).code


def test_time_ordered_tasks_keep_the_single_hold_out(tasks):
    from mlestar.brain.expert.facts import task_facts

    fx = tasks["binary"]
    timed = fx.ctx.model_copy(update={"task": fx.task.model_copy(update={"time_column": "x1"})})
    assert task_facts(timed).score_folds == [0]
    assert task_facts(fx.ctx).score_folds == [0, 1, 2, 3, 4]


def test_blocks_are_marked_extractable_and_splice_back(tasks, brain):
    script = brain.write_candidate(tasks["binary"].ctx, ModelCard(name="lightgbm"))
    blocks = find_blocks(script.code)
    assert list(blocks) == list(BLOCK_ORDER)
    for name, text in blocks.items():
        assert text in script.code
        assert text.startswith(f"# === BLOCK: {name} ===") and text.rstrip().endswith(f"# === END BLOCK: {name} ===")
        assert replace_block(script.code, text, text) == script.code
    model = blocks["model"]
    changed = replace_block(script.code, model, model.replace('"num_leaves": 31', '"num_leaves": 15'))
    assert find_blocks(changed)["model"] != model and '"num_leaves": 15' in changed
    with pytest.raises(BlockNotFound):
        replace_block(script.code, model.replace("lgb.train", "lightgbm.train"), "x")


@pytest.mark.parametrize("card", sorted(CARDS))
def test_every_card_brings_its_template_imports_and_knobs(tasks, card):
    c = CARDS[card]
    assert (TEMPLATE_DIR / c.template).is_file()
    kinds = ["text"] if c.needs_text else [k for k in ("binary", "multiclass", "regression") if k in c.task_types]
    for kind in kinds:
        code = render_script(new_spec(tasks[kind].ctx, card, ROUNDS))
        compile(code, f"{card}-{kind}.py", "exec")
        model = find_blocks(code)["model"]
        assert f"def fit_{card}(" in model and f"def predict_{card}(" in model
        assert all(f"\n{line}\n" in model for line in c.imports)
    assert c.imports and any(c.package in line for line in c.imports)
    for knob in dataclasses.fields(Knobs):
        value = getattr(c.knobs, knob.name)
        if isinstance(value, Step):
            assert value.low <= c.params[value.param] <= value.high, (card, knob.name)
        elif value is not None:
            assert value in c.params, (card, knob.name)


def test_block_registry_covers_the_block_templates_in_script_order(tasks, brain):
    # ensemble.py.j2 is the ensemble script's own block, not one of a solution's.
    block_templates = {p.name for p in TEMPLATE_DIR.glob("*.py.j2")} - {"ensemble.py.j2"}
    # a solution joining tables has the joining block and one block per table
    join_templates = [block_for(JOINING).template, block_for("join_cities").template]
    assert sorted({b.template for b in BLOCKS + MEDIA_BLOCKS} | set(join_templates)) == sorted(block_templates)
    script = brain.write_candidate(tasks["binary"].ctx, ModelCard(name="lightgbm"))
    assert list(find_blocks(script.code)) == [b.name for b in BLOCKS]


def test_block_state_round_trips_and_each_block_owns_its_own_part(tasks, brain):
    fx = tasks["binary"]
    base = brain.merge(fx.ctx, ScoredScript(script=brain.write_candidate(fx.ctx, ModelCard(name="lightgbm"))),
                       ScoredScript(script=brain.write_candidate(fx.ctx, ModelCard(name="linear"))))
    spec = spec_of(base)
    assert spec is not None
    spec.training.class_weight = "balanced"
    other = spec.copy_deep()  # differs from spec in every block
    other.facts.seed += 1
    link = JoinLinkSpec(prefix="cities", keys=[["city", "value", "city", "value"]], coverage=1.0)
    other.joins = [JoinSpec(name="join_cities", file="cities.csv", relation="lookup", numbers=["population"],
                            links=[link])]
    other.cleaning.lowercase = True
    other.features.groups.append("row_stats")
    other.encoding.method = "onehot"
    other.models[0].params["num_leaves"] = 7
    other.training.bagging = "folds"
    # the loading block renders from the facts alone; the joined table brings its own two blocks
    assert changed_blocks(spec, other) == [b for b in block_order(other) if b != "loading"]
    for name in block_order(other):
        if name in ("loading", JOINING):
            continue  # no state of their own
        assert set_block_state(spec, name, block_state(spec, name)) == spec, name
        moved = set_block_state(spec, name, block_state(other, name))
        expected = [JOINING, name] if name == "join_cities" else [name]
        assert changed_blocks(spec, moved) == expected
        assert block_state(moved, name) == block_state(other, name)


def test_state_is_recovered_from_the_code_when_info_is_lost(tasks, brain):
    fx = tasks["binary"]
    script = brain.write_candidate(fx.ctx, ModelCard(name="lightgbm"))
    bare = Script(code=script.code)  # what a resumed pipeline may hand over
    assert brain.write_submission(fx.ctx, bare).code == brain.write_submission(fx.ctx, script).code
    plan = brain.extract_block(fx.ctx, ScoredScript(script=bare, score=0.8), _no_summary(), [])
    assert plan.block in bare.code and plan.plan.data.get("state")
    refined = brain.implement_plan(fx.ctx, bare, plan.block, plan.plan)
    assert refined.code != bare.code and refined.info["expert"]


def test_same_seed_same_code_and_seed_reaches_the_script(tasks):
    fx = tasks["multiclass"]
    first = ExpertBrain(max_rounds=ROUNDS).write_candidate(fx.ctx, ModelCard(name="xgboost"))
    second = ExpertBrain(max_rounds=ROUNDS).write_candidate(fx.ctx, ModelCard(name="xgboost"))
    assert first.code == second.code and first.info == second.info
    other = ExpertBrain(max_rounds=ROUNDS).write_candidate(fx.ctx.model_copy(update={"seed": 7}), ModelCard(name="xgboost"))
    assert re.search(r'^SEED = int\(os.environ.get\("MLESTAR_MODEL_SEED", 7\)\)', other.code, re.MULTILINE)
    threads = ExpertBrain().write_candidate(fx.ctx.model_copy(update={"threads": 3}), ModelCard(name="catboost"))
    assert re.search(r"^THREADS = 3$", threads.code, re.MULTILINE) and "thread_count=THREADS" in threads.code


def test_retrieval_ranks_by_modality_and_skips_missing_packages(tasks, brain):
    text = tasks["text"].ctx
    assert brain.retrieve_models(text, "", [], 2)[0].name == "tfidf_logreg"
    tabular = tasks["binary"].ctx
    cards = brain.retrieve_models(tabular, brain.summarize_task(tabular), [], 4)
    assert len(cards) == 4 and all(c.example_code.strip() and c.description for c in cards)
    assert cards[0].name in ("lightgbm", "catboost")
    only_sklearn = tabular.model_copy(update={"available_packages": ["sklearn", "numpy", "pandas"]})
    names = [c.name for c in brain.retrieve_models(only_sklearn, "", [], 10)]
    assert names and not {"lightgbm", "xgboost", "catboost"} & set(names)
    assert "roc_auc" in brain.summarize_task(tabular) and brain.search_queries(tabular, "")


def test_models_are_sized_to_the_time_budget(tasks):
    fx = tasks["regression"]
    big = fx.ctx.model_copy(update={"n_dev_rows": 30000, "script_timeout_s": 3600})
    small = big.model_copy(update={"script_timeout_s": 2})
    brain = ExpertBrain()
    rounds = [int(re.search(r"LIGHTGBM_MAX_ROUNDS = (\d+)", brain.write_candidate(c, ModelCard(name="lightgbm")).code)[1])
              for c in (big, small)]
    assert rounds[0] > rounds[1]
    rate = float(re.search(r'"learning_rate": ([\d.]+)', brain.write_candidate(small, ModelCard(name="lightgbm")).code)[1])
    assert rate > 0.05  # a small budget learns faster


def _no_summary():
    from mlestar.brain.protocol import AblationSummary

    return AblationSummary(text="", effects={})
