"""Expert brain: merging, ablation, targeted refinement, ensembling and debugging, run for real."""

from __future__ import annotations

import re

import pytest
from test_expert_support import ROUNDS, assert_ran, assert_submission_matches, build, run_code

from mlestar.brain.expert import ExpertBrain, refine
from mlestar.brain.expert.ablation import COMPONENTS
from mlestar.brain.expert.blocks import REFINABLE
from mlestar.brain.expert.moves import MOVES
from mlestar.brain.expert.solution import revise, spec_of
from mlestar.brain.expert.spec import load_spec
from mlestar.brain.protocol import (
    AblationSummary,
    EnsembleAttempt,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.core.contract import find_blocks


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build(tmp_path_factory.mktemp("expert_refine"), "binary")


@pytest.fixture(scope="module")
def brain():
    return ExpertBrain(max_rounds=ROUNDS)


@pytest.fixture(scope="module")
def solutions(fx, brain, tmp_path_factory):
    """Two scored candidates (LightGBM, linear) and their merge."""
    where = tmp_path_factory.mktemp("expert_solutions")
    scored = []
    for card in ("lightgbm", "linear"):
        script = brain.write_candidate(fx.ctx, ModelCard(name=card))
        scored.append(ScoredScript(script=script, score=assert_ran(run_code(script.code, fx.dev, where / card))))
    merged = brain.merge(fx.ctx, scored[0], scored[1])
    result = run_code(merged.code, fx.dev, where / "merged")
    return scored, ScoredScript(script=merged, score=assert_ran(result), stdout_tail=result.stdout)


@pytest.mark.slow  # trains real models
def test_merge_trains_both_models_and_blends_them(solutions):
    (lgb, _), merged = solutions
    spec = load_spec(merged.script.code)
    assert spec is not None and [m.card for m in spec.models] == ["lightgbm", "linear"]
    assert "blend weights:" in merged.stdout_tail
    assert "linear: out-of-fold" in merged.stdout_tail and "lightgbm: out-of-fold" in merged.stdout_tail
    base_blocks, merged_blocks = find_blocks(lgb.script.code), find_blocks(merged.script.code)
    for name in ("loading", "cleaning", "feature_engineering", "categorical_encoding", "validation"):
        assert base_blocks[name] == merged_blocks[name]  # the base's other blocks are kept


@pytest.mark.slow  # trains real models
def test_ablation_runs_and_its_summary_has_signed_effects(fx, brain, solutions, tmp_path):
    _, merged = solutions
    ablation = brain.write_ablation(fx.ctx, merged, [])
    result = run_code(ablation.code, fx.dev, tmp_path / "ablation")
    baseline = assert_ran(result)
    lines = re.findall(r"^ABLATION (\w+): (\S+)$", result.stdout, re.MULTILINE)
    names = [name for name, _ in lines]
    assert names[0] == "baseline" and 3 <= len(names) <= 5
    summary = brain.summarize_ablation(fx.ctx, ablation, result.stdout)
    assert summary.baseline_score == pytest.approx(baseline)
    assert set(summary.effects) == set(names[1:])
    values = dict(lines)
    for name, effect in summary.effects.items():  # higher AUC is better: effect = variant - baseline
        assert effect == pytest.approx(float(values[name]) - baseline)
    assert "blend" in summary.effects and "Baseline roc_auc" in summary.text
    assert brain.write_ablation(fx.ctx, merged, []).code == ablation.code  # deterministic
    # A second study measures what the first did not (topped up with studied ones to keep two).
    second = brain.write_ablation(fx.ctx, merged, [summary])
    studied = re.findall(r"^def run_(\w+)\(", second.code, re.MULTILINE)[1:]
    assert len(studied) >= 2 and studied[0] not in summary.effects


def test_summary_reads_direction_and_missing_variants(fx, brain):
    ablation = Script(code="# mlestar-expert-state: {\"kind\":\"ablation\",\"lower_is_better\":true,"
                           "\"components\":{\"a\":{\"block\":\"model\",\"text\":\"x\"},\"b\":{\"block\":\"model\",\"text\":\"y\"}}}\n")
    summary = brain.summarize_ablation(fx.ctx, ablation, "ABLATION baseline: 1.0\nABLATION a: 1.5\n")
    assert summary.effects == {"a": pytest.approx(-0.5)} and "No result for: b" in summary.text


def test_every_ablation_component_points_to_a_refinable_block_and_real_moves():
    for component in COMPONENTS.values():
        assert component.block in REFINABLE, component.id
        assert all(move in MOVES for move in component.undoes), component.id
    assert any(component.undoes for component in COMPONENTS.values())


def test_ablation_variants_redeclare_the_blocks_their_spec_changes(fx, brain, tmp_path):
    script = brain.write_candidate(fx.ctx, ModelCard(name="lightgbm"))
    spec = spec_of(script)
    assert spec is not None
    bagged = spec.copy_deep()
    bagged.models[0].seeds = 3  # seed bagging lives in the model block, fold bagging in the validation block
    bagged.training.bagging = "folds"
    studied = AblationSummary(text="", effects={"encoding": 0.0, "hyperparameters": 0.0})
    ablation = brain.write_ablation(fx.ctx, ScoredScript(script=revise(script, spec, bagged), score=0.9), [studied])
    components = ablation.info["expert"]["components"]
    assert components["bagging"]["block"] == "model+validation"
    assert components["categorical_columns"]["block"] == "cleaning"  # dropping columns is cleaning's job
    run_bagging = ablation.code.split("def run_bagging():")[1].split("\ndef run_")[0]
    assert "    MODELS = {" in run_bagging and '    BAGGING = "none"' in run_bagging
    result = run_code(ablation.code, fx.dev, tmp_path / "ablation")
    assert_ran(result)
    assert re.search(r"^ABLATION bagging: \S+$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(
    ("component", "block"),
    [("top_numeric_columns", "feature_engineering"), ("categorical_columns", "categorical_encoding"),
     ("bagging", "validation")],
)
def test_refinement_picks_the_block_an_ablation_effect_points_to(fx, brain, component, block):
    scored = ScoredScript(script=brain.write_candidate(fx.ctx, ModelCard(name="lightgbm")), score=0.9)
    summary = AblationSummary(text="", effects={component: -0.2, "hyperparameters": -0.01})
    extracted = refine.extract(scored, summary, [])
    assert extracted.name == block and extracted.plan.data["block"] == block
    assert extracted.block == find_blocks(scored.script.code)[block]
    assert "moved the score by up to 0.2" in extracted.plan.text
    # Without the ablation the model block comes first.
    assert refine.extract(scored, AblationSummary(text="", effects={}), []).name == "model"


@pytest.mark.slow  # trains real models
def test_refinement_move_changes_the_block_and_still_runs(fx, brain, solutions, tmp_path):
    _, merged = solutions
    summary = AblationSummary(text="", effects={"engineered_features": 0.0, "encoding": -0.05})
    block_plan = brain.extract_block(fx.ctx, merged, summary, [])
    assert block_plan.name == "categorical_encoding" and block_plan.block in merged.script.code
    refined = brain.implement_plan(fx.ctx, merged.script, block_plan.block, block_plan.plan)
    new_block = find_blocks(refined.code)[block_plan.name]
    assert new_block != block_plan.block
    assert refined.code.replace(new_block, block_plan.block).split("# mlestar-expert-state")[0] == (
        merged.script.code.split("# mlestar-expert-state")[0]
    )  # only that block changed
    assert_ran(run_code(refined.code, fx.dev, tmp_path / "refined"))
    # Refined blocks are skipped next time.
    again = brain.extract_block(fx.ctx, merged, summary, [block_plan.block])
    assert again.name != block_plan.name


def test_planner_continues_what_helped_and_turns_around_otherwise(fx, brain, solutions):
    _, merged = solutions
    extracted = brain.extract_block(fx.ctx, merged, AblationSummary(text="", effects={"hyperparameters": -0.1}), [])
    block, first = extracted.block, extracted.plan
    assert extracted.name == "model" and first.data["block"] == "model" and first.data["base_score"] == merged.score
    base = merged.score
    helped = brain.plan_refinement(fx.ctx, merged.script, block, [PlanAttempt(plan=first, score=base + 0.01)])
    assert helped is not None and helped.data["chain"][0] == first.data["move"] and len(helped.data["chain"]) == 2
    hurt = brain.plan_refinement(fx.ctx, merged.script, block, [PlanAttempt(plan=first, score=base - 0.01)])
    assert hurt is not None and hurt.data["chain"] == [hurt.data["move"]] and hurt.data["move"] != first.data["move"]
    # Every move gets tried once at most, then the planner gives up.
    history: list[PlanAttempt] = []
    current: RefinementPlan | None = first
    while current is not None and len(history) < 60:
        history.append(PlanAttempt(plan=current, score=base - 0.01))
        current = brain.plan_refinement(fx.ctx, merged.script, block, history)
    assert current is None and len({h.plan.data["move"] for h in history}) == len(history)


@pytest.mark.slow  # trains real models
def test_ensemble_over_two_solutions_runs_in_dev_and_final_mode(fx, brain, solutions, tmp_path):
    (lgb, linear), _ = solutions
    members = [lgb, linear]
    history: list[EnsembleAttempt] = []
    methods = []
    while (plan := brain.plan_ensemble(fx.ctx, members, history)) is not None:
        methods.append(plan.data["method"])
        history.append(EnsembleAttempt(plan=plan, score=0.5))
    assert methods == ["mean", "weighted", "rank_mean", "hill_climb", "stacking"]
    for method in ("hill_climb", "stacking"):
        script = brain.implement_ensemble(fx.ctx, members, RefinementPlan(text="", data={"method": method}))
        assert script.code.count("def solution_") == 2
        assert brain.implement_ensemble(fx.ctx, members, RefinementPlan(text="", data={"method": method})).code == script.code
        dev = run_code(script.code, fx.dev, tmp_path / f"{method}_dev")
        assert 0.7 < assert_ran(dev) <= 1.0
        assert "solution_1: validation roc_auc" in dev.stdout
    final = brain.write_submission(fx.ctx, script)
    assert re.findall(r"^\s*FINAL_MODE = (\w+)", final.code, re.MULTILINE) == ["True"]  # one flag for all members
    result = run_code(final.code, fx.final, tmp_path / "final")
    assert_ran(result)
    assert_submission_matches(tmp_path / "final", fx.task)


@pytest.mark.slow  # trains real models
def test_debug_fixes_known_failures_and_keeps_the_contract(fx, brain, tmp_path):
    lgb = brain.write_candidate(fx.ctx, ModelCard(name="lightgbm"))
    fixed = brain.debug(fx.ctx, lgb, "Traceback...\nModuleNotFoundError: No module named 'lightgbm'")
    assert fixed is not None and "import lightgbm" not in fixed.code
    assert "Final Validation Performance" in fixed.code and 'split["dev"].to_numpy() == 1' in fixed.code
    assert_ran(run_code(fixed.code, fx.dev, tmp_path / "fixed"))

    slow = brain.debug(fx.ctx, lgb, "The script was killed after exceeding its time limit (120s).")
    rate = lambda code: float(re.search(r'"learning_rate": ([\d.]+)', code)[1])  # noqa: E731
    assert slow is not None and rate(slow.code) > rate(lgb.code)
    dtype = brain.debug(fx.ctx, lgb, "ValueError: could not convert string to float: 'oslo'")
    assert dtype is not None and 'ENCODING = "ordinal"' in dtype.code
    assert brain.debug(fx.ctx, lgb, "SyntaxError: something nobody knows") is None
    assert brain.debug(fx.ctx, Script(code="print(1)\n"), "NameError: x") is None


def test_debug_drops_a_failing_ablation_variant(fx, brain, solutions):
    _, merged = solutions
    ablation = brain.write_ablation(fx.ctx, merged, [])
    error = 'Traceback (most recent call last):\n  File "script.py", line 9, in run_blend\nValueError: boom\n'
    fixed = brain.debug(fx.ctx, ablation, error)
    assert fixed is not None
    runner = re.search(r"^for name, run in (.*):$", fixed.code, re.MULTILINE)[1]
    assert "run_blend" not in runner and "run_baseline" in runner


def test_parallel_tracks_grow_apart(fx, brain, solutions):
    (lgb, linear), _ = solutions
    track1 = fx.ctx.for_track(1)
    merged0, merged1 = brain.merge(fx.ctx, lgb, linear), brain.merge(track1, lgb, linear)
    seeded = r'^SEED = int\(os.environ.get\("MLESTAR_MODEL_SEED", 1000\)\)'
    assert re.search(seeded, merged1.code, re.MULTILINE)
    assert merged0.code != merged1.code
    summary = AblationSummary(text="", effects={"hyperparameters": -0.1})
    first = [brain.extract_block(ctx, ScoredScript(script=m, score=0.9), summary, []).plan.data["move"]
             for ctx, m in ((fx.ctx, merged0), (track1, merged1))]
    assert first[0] != first[1]
