"""Expert brain: text candidates and blocks, when a table is scored out of fold, and tracks that
explore different blocks and moves. (Scripts are rendered and compiled here; the slow tier runs them.)"""

from __future__ import annotations

import re

import pytest
from test_expert_support import ROUNDS, build

from mlestar.brain.expert import ExpertBrain
from mlestar.brain.expert.facts import task_facts
from mlestar.brain.expert.moves import MOVES
from mlestar.brain.expert.refine import choose_block, next_plan
from mlestar.brain.expert.render import render_script
from mlestar.brain.expert.solution import new_spec, spec_of
from mlestar.brain.protocol import AblationSummary, BrainContext, ModelCard
from mlestar.core.contract import find_blocks
from mlestar.core.task import ColumnProfile


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("expert_text")
    return {kind: build(root / kind, kind) for kind in ("binary", "text")}


def test_a_text_task_gets_text_candidates_of_every_kind(tasks):
    brain = ExpertBrain(max_rounds=ROUNDS)
    ctx = tasks["text"].ctx
    names = [card.name for card in brain.retrieve_models(ctx, "", [], 4)]
    assert names == ["tfidf_logreg", "nbsvm", "lightgbm", "tfidf_svm"]
    for name in names:
        code = brain.write_candidate(ctx, ModelCard(name=name)).code
        compile(code, name, "exec")
    svm = brain.write_candidate(ctx, ModelCard(name="tfidf_svm")).code
    assert 'CalibratedClassifierCV(LinearSVC(C=strength' in svm and 'method="sigmoid"' in svm
    logreg = brain.write_candidate(ctx, ModelCard(name="tfidf_logreg")).code
    assert "tuned_strength(" in logreg and '"tune": True' in logreg


def test_tree_models_on_text_get_the_text_model_stacked_in_and_ngram_components(tasks):
    spec = new_spec(tasks["text"].ctx, "lightgbm", ROUNDS)
    assert {"text_stats", "text_oof", "text_svd"} <= set(spec.features.groups)
    block = find_blocks(render_script(spec))["feature_engineering"]
    assert "def stacked_text_columns(" in block and "KFold(n_splits=5" in block and "TruncatedSVD" in block
    linear = new_spec(tasks["text"].ctx, "tfidf_logreg", ROUNDS)
    assert not {"text_oof", "text_svd"} & set(linear.features.groups)  # the text model itself needs neither


def test_a_word_like_categorical_with_many_levels_is_read_as_ngrams(tasks):
    ctx = tasks["binary"].ctx
    assert task_facts(ctx).ngram_cols == []
    names = ColumnProfile(name="city", dtype="str", kind="categorical", missing_share=0.0, n_unique=5000,
                          examples=["Zadie", "Coal", "Frank"])
    zips = ColumnProfile(name="plan", dtype="str", kind="categorical", missing_share=0.0, n_unique=5000,
                         examples=["98107", "98115", "98122"])
    columns = [names if c.name == "city" else zips if c.name == "plan" else c for c in ctx.task.columns]
    wordy = ctx.model_copy(update={"task": ctx.task.model_copy(update={"columns": columns})})
    facts = task_facts(wordy)
    assert facts.ngram_cols == ["city"]  # names yes, numeric codes no
    spec = new_spec(wordy, "catboost", ROUNDS)
    assert "text_oof" in spec.features.groups and "text_svd" not in spec.features.groups
    assert "NGRAM_COLS = [\"city\"]" in render_script(spec)


def _sized(ctx: BrainContext, rows: int, counts: dict[str, int], **task: object) -> BrainContext:
    return ctx.model_copy(
        update={
            "n_dev_rows": rows,
            "class_counts": counts,
            "script_timeout_s": 60.0,
            "task": ctx.task.model_copy(update={"n_train_rows": rows, **task}),
        }
    )


def test_every_fold_is_scored_when_fold_zero_holds_too_few_positives(tasks):
    ctx = tasks["binary"].ctx
    # 5,800 rows with 350 positives: fold 0 would hold 70 of them.
    rare = _sized(ctx, 5800, {"0": 5450, "1": 350})
    assert task_facts(rare).score_folds == [0, 1, 2, 3, 4]
    common = _sized(ctx, 5800, {"0": 2900, "1": 2900})
    assert task_facts(common).score_folds == [0]
    assert task_facts(_sized(ctx, 5800, {"0": 5450, "1": 350}, time_column="x1")).score_folds == [0]
    # Too costly: the same rarity on a table whose extra fits do not fit the script's time.
    wide = _sized(ctx, 90_000, {"0": 89_000, "1": 1000})
    wide = wide.model_copy(update={"script_timeout_s": 5.0})
    assert task_facts(wide).score_folds == [0]


def test_tracks_refine_different_blocks_and_moves_first(tasks):
    ctx = tasks["binary"].ctx
    spec = new_spec(ctx, "lightgbm", ROUNDS)
    code = render_script(spec)
    summary = AblationSummary(text="", effects={"hyperparameters": -0.02, "engineered_features": -0.01})
    first = [choose_block(spec, code, summary, [], variant) for variant in (0, 1)]
    assert first[0] == "model" and first[1] == "feature_engineering"
    moves = [next_plan(spec, "model", [], 0.8, variant).data["move"] for variant in (0, 1)]
    assert moves[0] != moves[1] and all(m in MOVES for m in moves)
    brain = ExpertBrain(max_rounds=ROUNDS)
    script = brain.write_candidate(ctx, ModelCard(name="lightgbm"))
    from mlestar.brain.protocol import ScoredScript

    plans = [brain.extract_block(ctx.for_track(t), ScoredScript(script=script, score=0.8), summary, []) for t in (0, 1)]
    assert plans[0].name != plans[1].name
    assert spec_of(script) is not None and re.search(r"MLESTAR_MODEL_SEED", script.code)
