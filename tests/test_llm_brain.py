"""LLMBrain over real HTTP: recorded answers for each agent, re-asks, fallbacks, and a whole run
of the agents in pipeline order with every script executed (no pipeline needed)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.competition import make_clean_competition, make_context, make_task, run_script  # noqa: E402
from fakes.fixtures import (  # noqa: E402
    ANSWERS,
    Endpoint,
    _openai_server,  # noqa: F401
    answer,
    bus_of,
    fast_settings,
    isolated_env,  # noqa: F401
    llm_client,
    openai_fake,  # noqa: F401
    store,  # noqa: F401
)
from fakes.llm_servers import Reply  # noqa: E402

from mlestar.brain.llm import ROLES, LLMBrain  # noqa: E402
from mlestar.brain.llm.parsing import extract_code  # noqa: E402
from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
    Brain,
    BrainContext,
    LeakageReport,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.core.records import SearchResult
from mlestar.llm import usage_summary  # noqa: E402
from mlestar.store.db import RunStore  # noqa: E402

BASE = (ANSWERS / "base_script.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def competition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clean_competition(tmp_path_factory.mktemp("comp") / "toy-binary")


@pytest.fixture
def ctx(competition: Path) -> BrainContext:
    return make_context(make_task(competition))


def brain_for(endpoint: Endpoint, store: RunStore | None = None, **overrides: object) -> LLMBrain:
    return LLMBrain(llm_client(fast_settings(endpoint.url, **overrides), store))


def last_user_message(endpoint: Endpoint) -> str:
    return endpoint.fake.requests[-1]["messages"][-1]["content"]


def test_it_is_a_brain(openai_fake: Endpoint) -> None:
    assert isinstance(brain_for(openai_fake), Brain)


def test_every_prompt_carries_the_task_data_report_and_contract(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    brain = brain_for(openai_fake)
    variables = brain._vars(
        ctx,
        summary="s",
        results=[],
        hints=[],
        n=2,
        card=ModelCard(name="RF"),
        code=BASE,
        block="x = 1",
        plan="p",
        base_label="lightgbm",
        base_code=BASE,
        base_score="0.9",
        addition_label="catboost",
        addition_code=BASE,
        addition_score="0.8",
        reason="r",
        all_files=["train.csv"],
        previous=[],
        score="0.9",
        output="o",
        refined_blocks=[],
        history=[],
        solutions=[],
        error="E",
    )
    systems = set()
    for role in ROLES:
        system, user = (m["content"] for m in brain.prompts.render(role, variables))
        systems.add(system)
        # The shared part (task, data profile, contract, metric code) is the system message; the
        # role's own request comes last, so providers' prompt caches serve the shared prefix.
        assert user.startswith(f"[mlestar agent: {role}]") and "[mlestar agent:" not in system
        assert "Target column(s): target" in system and "x3: float64" in system  # task and data profile
        assert "Final Validation Performance" in system and "./input/folds.csv" in system
        assert "Fold 0 is the validation set" in system and "def metric_score(y_true, y_pred):" in system
        assert "./final/val_predictions.csv" in system
        assert "Target column(s)" not in user and "def metric_score" not in user
    assert len(systems) == 1  # every development role shares it, character for character
    final = "".join(
        m["content"] for m in brain.prompts.render("submission", brain._vars(ctx, mode="final", code=BASE))
    )
    assert "./final/submission.csv" in final and "./input/test.csv" in final
    dev = "".join(
        m["content"] for m in brain.prompts.render("candidate", brain._vars(ctx, card=ModelCard(name="RF")))
    )
    assert "dev == 1" in dev and "Do not read the test file" in dev
    assert "complete script in one ```python block" in dev
    merger = brain.prompts.render("merger", variables)[1]["content"]
    assert "## Base solution: lightgbm (" in merger and "## Solution to integrate: catboost (" in merger
    coder = brain.prompts.render("coder", variables)[1]["content"]
    assert "rewritten block only" in coder and "complete script" not in coder


def test_candidate_from_fences_and_prose(openai_fake: Endpoint, store: RunStore, ctx: BrainContext) -> None:
    openai_fake.fake.queue(answer("candidate_prose.md"))
    script = brain_for(openai_fake, store).write_candidate(ctx, ModelCard(name="Random forest"))
    assert script.code.startswith("import os\n\nimport numpy as np") and "A few notes" not in script.code
    assert script.code.rstrip().endswith('print(f"Final Validation Performance: {score}")')
    assert script.label == "Random forest" and openai_fake.fake.count == 1
    assert [c.agent for c in store.llm_calls()] == ["candidate"]


def test_no_code_is_asked_again(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(answer("no_code.md"), answer("candidate_prose.md"))
    script = brain_for(openai_fake).write_candidate(ctx, ModelCard(name="Random forest"))
    assert "RandomForestClassifier" in script.code and openai_fake.fake.count == 2
    second = openai_fake.fake.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": answer("no_code.md")}  # the conversation goes on
    assert "no Python code" in second[-1]["content"]


def test_missing_score_line_is_asked_again_then_left_to_fail(
    openai_fake: Endpoint, ctx: BrainContext, tmp_path: Path
) -> None:
    openai_fake.fake.queue(answer("missing_score.md"), answer("candidate_prose.md"))
    script = brain_for(openai_fake).write_candidate(ctx, ModelCard(name="Random forest"))
    assert "Final Validation Performance" in script.code
    assert "Final Validation Performance" in openai_fake.fake.requests[1]["messages"][-1]["content"]

    # When every re-ask misses it too, the script is still returned so that running it fails
    # visibly ("no score") instead of the pipeline getting a silent zero.
    openai_fake.fake.reset()
    openai_fake.fake.queue(*[answer("missing_score.md")] * 2)
    script = brain_for(openai_fake, llm_max_reasks=1).write_candidate(ctx, ModelCard(name="Random forest"))
    assert openai_fake.fake.count == 2
    ran = run_script(script.code, ctx.task, tmp_path / "run")
    assert ran.returncode == 0 and ran.score is None and "AUC:" in ran.stdout


def test_retriever_repairs_malformed_json_and_fills_up(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(answer("retriever_malformed.md"))
    results = [
        SearchResult(title="LightGBM on tabular data", url="https://example.org/lgbm-tabular", snippet="s")
    ]
    cards = brain_for(openai_fake).retrieve_models(ctx, "binary tabular", results, 3)
    assert [c.name for c in cards[:2]] == ["LightGBM", "CatBoost"]
    assert cards[0].source == "https://example.org/lgbm-tabular" and "LGBMClassifier" in cards[0].example_code
    assert (
        len(cards) == 3 and cards[2].example_code
    )  # the card without code was replaced from the knowledge base
    prompt = last_user_message(openai_fake)
    assert "https://example.org/lgbm-tabular" in prompt and "exactly 3" in prompt
    assert openai_fake.fake.count == 1


def test_retriever_offline_uses_the_knowledge_base(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue("I recommend gradient boosting.", "Use LightGBM!", "{not json")
    cards = brain_for(openai_fake).retrieve_models(ctx, "binary tabular", [], 2)
    assert len(cards) == 2 and all(c.example_code for c in cards)
    assert openai_fake.fake.count == 3  # asked, re-asked twice, then fell back
    assert "There is no web search available" in openai_fake.fake.requests[0]["messages"][-1]["content"]


def test_extractor_paraphrase_is_asked_again(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(answer("extractor_paraphrased.md"), answer("extractor_verbatim.md"))
    plan = brain_for(openai_fake).extract_block(
        ctx, ScoredScript(script=Script(code=BASE), score=0.9), AblationSummary(text="model matters"), []
    )
    assert plan.block in BASE and plan.block.startswith("def build_model():")
    assert plan.name == "model definition" and "C=0.3" in plan.plan.text
    assert openai_fake.fake.count == 2
    feedback = openai_fake.fake.requests[1]["messages"][-1]["content"]
    assert "not an exact part of the script" in feedback


def test_extractor_that_never_quotes_exactly_gets_the_closest_real_block(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    openai_fake.fake.queue(*[answer("extractor_paraphrased.md")] * 3)
    plan = brain_for(openai_fake).extract_block(
        ctx, ScoredScript(script=Script(code=BASE), score=0.9), AblationSummary(text="model matters"), []
    )
    assert plan.block in BASE and "build_model" in plan.block and plan.plan.data["fallback"] == "closest"
    # Nothing like the script at all: the model-fitting statement, still a verbatim block.
    openai_fake.fake.reset()
    openai_fake.fake.queue(
        *['```json\n{"name": "x", "plan": "y"}\n```\n```python\nsomething = else_entirely()\n```'] * 3
    )
    plan = brain_for(openai_fake).extract_block(
        ctx, ScoredScript(script=Script(code=BASE)), AblationSummary(text=""), []
    )
    assert plan.block == 'model.fit(train.loc[fit_rows, features], train.loc[fit_rows, "target"])'
    assert plan.plan.data["fallback"] == "training"


def test_coder_block_is_spliced(openai_fake: Endpoint, ctx: BrainContext, tmp_path: Path) -> None:
    block = "def build_model():\n    model = LogisticRegression(C=1.0, max_iter=1000)\n    return model"
    openai_fake.fake.queue(answer("coder_block.md"))
    refined = brain_for(openai_fake).implement_plan(
        ctx, Script(code=BASE, label="logreg"), block, RefinementPlan(text="C=0.3")
    )
    assert 'LogisticRegression(C=0.3, solver="saga", max_iter=2000)' in refined.code
    assert refined.code.replace(extract_code(answer("coder_block.md")).strip(), block) == BASE
    assert run_script(refined.code, ctx.task, tmp_path / "run").score is not None
    with pytest.raises(BlockNotFound):
        brain_for(openai_fake).implement_plan(
            ctx, Script(code=BASE), "not in the script", RefinementPlan(text="x")
        )


def test_leakage_block_is_verbatim_and_fixed(
    openai_fake: Endpoint, ctx: BrainContext, tmp_path: Path
) -> None:
    openai_fake.fake.queue(answer("leakage_leak.md"), answer("leakage_block_fix.md"))
    brain = brain_for(openai_fake)
    report = brain.check_leakage(ctx, Script(code=BASE))
    # The model's quote has extra spaces; the report holds the script's own text.
    assert report.leak and report.block == (
        "scaler = StandardScaler()\ntrain[features] = scaler.fit_transform(train[features])"
    )
    assert report.block in BASE and "validation fold" in report.reason
    fixed = brain.fix_leakage(ctx, Script(code=BASE, label="logreg"), report)
    assert 'scaler.fit(train.loc[train["fold"] != 0, features])' in fixed.code
    assert "fit_transform" not in fixed.code
    ran = run_script(fixed.code, ctx.task, tmp_path / "run")
    assert ran.returncode == 0 and ran.score is not None, ran.stderr


def test_no_leak_and_data_usage(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(
        '```json\n{"leak": false, "reason": "fine"}\n```', "ALL_USED", answer("candidate_prose.md")
    )
    brain = brain_for(openai_fake)
    assert brain.check_leakage(ctx, Script(code=BASE)) == LeakageReport(leak=False, reason="fine")
    assert brain.check_data_usage(ctx, Script(code=BASE)).all_used
    revised = brain.check_data_usage(ctx, Script(code=BASE, label="logreg"))
    assert (
        not revised.all_used
        and revised.script is not None
        and "RandomForestClassifier" in revised.script.code
    )


@pytest.mark.slow  # trains real models
def test_debugger_fixes_a_real_failure(openai_fake: Endpoint, ctx: BrainContext, tmp_path: Path) -> None:
    buggy = (ANSWERS / "debug_buggy.py").read_text(encoding="utf-8")
    failed = run_script(buggy, ctx.task, tmp_path / "buggy")
    assert failed.returncode != 0 and "KeyError" in failed.stderr
    openai_fake.fake.queue(answer("debug_fixed.md"))
    fixed = brain_for(openai_fake).debug(ctx, Script(code=buggy, label="rf"), failed.stderr)
    assert fixed is not None and fixed.label == "rf"
    assert "KeyError" in last_user_message(openai_fake)  # the trimmed error reached the model
    ran = run_script(fixed.code, ctx.task, tmp_path / "fixed")
    assert ran.returncode == 0 and ran.score is not None and ran.score > 0.8


def test_debugger_that_changes_nothing_gives_up(openai_fake: Endpoint, ctx: BrainContext) -> None:
    buggy = (ANSWERS / "debug_buggy.py").read_text(encoding="utf-8")
    openai_fake.fake.queue(*[f"```python\n{buggy}```"] * 3)
    assert brain_for(openai_fake).debug(ctx, Script(code=buggy), "KeyError: 'cty'") is None
    assert openai_fake.fake.count == 3


def test_ablation_summary_and_plans(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(
        answer("ablation_summary_malformed.md"), "NO_NEW_PLAN", "Use rank averaging of the two."
    )
    brain = brain_for(openai_fake)
    summary = brain.summarize_ablation(ctx, Script(code=BASE), "Baseline: 0.91\nAblation no scaling: 0.898")
    assert summary.baseline_score == 0.91 and summary.effects == {"no scaling": -0.012, "C=10": -0.003}
    assert (
        brain.plan_refinement(
            ctx, Script(code=BASE), "x = 1", [PlanAttempt(plan=RefinementPlan(text="a"), score=None)]
        )
        is None
    )
    plan = brain.plan_ensemble(ctx, [ScoredScript(script=Script(code=BASE), score=0.9)], [])
    assert plan is not None and plan.text == "Use rank averaging of the two."


@pytest.mark.slow  # trains real models
def test_whole_run_of_the_agents_with_the_scripted_model(
    openai_fake: Endpoint, store: RunStore, tmp_path: Path
) -> None:
    """Every agent in pipeline order against the scripted fake model; every script really runs.

    A regression task here; the CLI end-to-end test (test_llm_e2e.py) runs a binary one.
    """
    competition = make_clean_competition(tmp_path / "toy-regression", kind="regression")
    ctx = make_context(make_task(competition, kind="regression"))
    brain = LLMBrain.from_settings(fast_settings(openai_fake.url), store, bus_of(store))
    summary = brain.summarize_task(ctx)
    assert "regression" in summary and brain.search_queries(ctx, summary)
    cards = brain.retrieve_models(ctx, summary, [], 2)
    assert len(cards) == 2

    def run(script: Script, name: str, final: bool = False) -> ScoredScript:
        ran = run_script(script.code, ctx.task, tmp_path / name, final=final)
        assert ran.returncode == 0, ran.stderr[-2000:]
        assert ran.score is not None and 0.0 < ran.score < 10.0  # RMSE; the target's spread is about 20
        return ScoredScript(script=script, score=ran.score, stdout_tail=ran.stdout[-2000:])

    candidates = [run(brain.write_candidate(ctx, card), f"cand{i}") for i, card in enumerate(cards)]
    merged = run(brain.merge(ctx, candidates[0], candidates[1]), "merged")
    assert not brain.check_leakage(ctx, merged.script).leak
    assert brain.check_data_usage(ctx, merged.script).all_used
    ablation = run(brain.write_ablation(ctx, merged, []), "ablation")
    ablation_summary = brain.summarize_ablation(ctx, ablation.script, ablation.stdout_tail)
    assert ablation_summary.effects
    block_plan = brain.extract_block(ctx, merged, ablation_summary, [])
    assert block_plan.block in merged.script.code
    refined = run(brain.implement_plan(ctx, merged.script, block_plan.block, block_plan.plan), "refined")
    assert refined.script.code != merged.script.code
    assert brain.plan_refinement(
        ctx, refined.script, block_plan.block, [PlanAttempt(plan=block_plan.plan, score=refined.score)]
    )
    plan = brain.plan_ensemble(ctx, [merged, refined], [])
    assert plan is not None
    ensemble = run(brain.implement_ensemble(ctx, [merged, candidates[0]], plan), "ensemble")
    final = run(brain.write_submission(ctx, ensemble.script), "final", final=True)
    submission = pd.read_csv(tmp_path / "final" / "final" / "submission.csv")
    sample = pd.read_csv(ctx.task.data_path("sample_submission.csv"))
    assert (
        list(submission.columns) == list(sample.columns)
        and submission["id"].tolist() == sample["id"].tolist()
    )
    assert final.score is not None

    roles = openai_fake.fake.roles()
    assert roles == [
        "summarizer",
        "retriever",
        "candidate",
        "candidate",
        "merger",
        "leakage_checker",
        "data_usage",
        "ablation",
        "ablation_summarizer",
        "extractor",
        "coder",
        "planner",
        "ensemble_planner",
        "ensembler",
        "submission",
    ]
    usage = usage_summary(store)
    assert usage.total.calls == len(roles) and usage.total.prompt_tokens > 0
    assert set(usage.per_agent) == set(roles)

    # Replaying the run from its cache gives the same scripts without a single request.
    count = openai_fake.fake.count
    replay = LLMBrain.from_settings(
        fast_settings(openai_fake.url, llm_cache_mode="replay"), RunStore(store.run_dir)
    )
    assert replay.write_candidate(ctx, cards[0]).code == candidates[0].script.code
    assert openai_fake.fake.count == count


def test_tracks_in_parallel(openai_fake: Endpoint, store: RunStore, competition: Path) -> None:
    brain = brain_for(openai_fake, store)
    task = make_task(competition)
    scripts: dict[int, Script] = {}
    errors: list[BaseException] = []

    def track(seed: int) -> None:
        try:
            scripts[seed] = brain.write_candidate(
                make_context(task, seed=seed), ModelCard(name="Extra trees")
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=track, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(scripts) == 4
    assert all("ExtraTrees" in s.code for s in scripts.values())
    assert openai_fake.fake.count == 4  # different seeds: separate requests, not cache hits
    assert len(store.llm_calls()) == 4


def test_spent_budget_still_leaves_room_for_the_submission(
    openai_fake: Endpoint, store: RunStore, ctx: BrainContext
) -> None:
    from mlestar.errors import BudgetExhausted

    brain = brain_for(openai_fake, store, budget_tokens=20_000, budget_reserve_share=0.5)
    openai_fake.fake.queue(Reply(answer("candidate_prose.md"), usage=(12_000, 500)))
    candidate = brain.write_candidate(ctx, ModelCard(name="Random forest"))
    with pytest.raises(BudgetExhausted):
        brain.write_candidate(ctx, ModelCard(name="Extra trees"))
    final = brain.write_submission(ctx, candidate)  # final-mode calls may spend the reserve
    assert "./final/submission.csv" in final.code and openai_fake.fake.count == 2
