"""What the LLM brain sends and how it reads what comes back: prompts that fit the model's window,
trimmed by what matters, with no path outside ./input/; thinking that never wins; leaks that are
kept; static checks of behaviour, not spelling."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.competition import make_clean_competition, make_context, make_task  # noqa: E402
from fakes.fixtures import (  # noqa: E402
    ANSWERS,
    Endpoint,
    _openai_server,  # noqa: F401
    fast_settings,
    isolated_env,  # noqa: F401
    llm_client,
    openai_fake,  # noqa: F401
)
from fakes.llm_servers import DECOY  # noqa: E402

from mlestar.brain.llm import LLMBrain  # noqa: E402
from mlestar.brain.llm.parsing import contract_issues  # noqa: E402
from mlestar.brain.llm.trimming import trim_description, trim_output  # noqa: E402
from mlestar.brain.protocol import (  # noqa: E402
    AblationSummary,
    BrainContext,
    LeakageReport,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.llm.tokens import count_messages  # noqa: E402
from mlestar.pipeline.run import data_report  # noqa: E402

BASE = (ANSWERS / "base_script.py").read_text(encoding="utf-8")
LONG_DESCRIPTION = (
    "# Churn\n\n## Overview\n\nPredict which customers leave.\n\n## Timeline\n\n"
    + "Entry deadline and more dates. " * 400
    + "\n\n## Evaluation\n\nSubmissions are evaluated on area under the ROC curve.\n\n## Prizes\n\n"
    + "A lot of money. " * 400
    + "\n\n## Citation\n\nSomeone, 2024.\n"
)


@pytest.fixture(scope="module")
def competition(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clean_competition(tmp_path_factory.mktemp("comp") / "toy-binary")


@pytest.fixture
def ctx(competition: Path) -> BrainContext:
    return make_context(make_task(competition))


def brain_for(endpoint: Endpoint, **overrides: object) -> LLMBrain:
    return LLMBrain(llm_client(fast_settings(endpoint.url, **overrides)))


def sent(endpoint: Endpoint, index: int = -1) -> str:
    return "\n".join(m["content"] for m in endpoint.fake.requests[index]["messages"])


# -- prompts fit the window, shortened where it hurts least ------------------------------------------
def test_a_prompt_too_long_for_the_window_is_shortened_by_what_matters_least(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    long = ctx.model_copy(update={"task": ctx.task.model_copy(update={"description": LONG_DESCRIPTION})})
    brain = brain_for(openai_fake, llm_context_tokens=6000)
    history = [
        PlanAttempt(plan=RefinementPlan(text=f"plan {i}: " + "details " * 200), score=0.8) for i in range(8)
    ]
    openai_fake.fake.queue("More trees.")
    assert brain.plan_refinement(long, Script(code=BASE), "x = 1", history) is not None
    prompt = sent(openai_fake)
    assert count_messages(openai_fake.fake.requests[-1]["messages"]) <= brain.client.prompt_budget(
        "planner", 1024
    )
    assert "area under the ROC curve" in prompt and "plan 7:" in prompt  # evaluation and the latest plan kept
    assert "plan 0:" not in prompt  # the oldest plans went first
    assert BASE.strip() in prompt  # the code is never cut


def test_when_the_server_says_too_long_the_prompt_is_fitted_to_what_it_said(
    openai_fake: Endpoint, ctx: BrainContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    wide = "\n".join(
        f"- feature_{i}: float64, numeric, missing 1.0%, 300 unique; e.g. 0.1, 0.2" for i in range(400)
    )
    long = ctx.model_copy(update={"data_report": wide})
    openai_fake.fake.max_model_len = 4200  # a hosted model lists no window: the first request learns it
    openai_fake.fake.responder = lambda messages: "Average them."
    plan = brain_for(openai_fake, spec="openai:gpt-4.1").plan_ensemble(
        long, [ScoredScript(script=Script(code=BASE), score=0.9)], []
    )
    assert plan is not None and plan.text == "Average them."
    assert openai_fake.fake.served == ["over max_model_len", "reply"]
    first, second = (count_messages(r["messages"]) for r in openai_fake.fake.requests)
    assert (
        second < first
        and "area under the ROC curve" in sent(openai_fake)
        and "feature_0:" in sent(openai_fake)
    )


def test_each_role_asks_for_the_answer_length_it_needs(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue("More trees.", "More trees.")
    brain_for(openai_fake).plan_refinement(ctx, Script(code=BASE), "x = 1", [])
    brain_for(openai_fake, llm_agent_max_tokens={"planner": 3000}).plan_refinement(
        ctx, Script(code=BASE), "x", []
    )
    assert [r["max_tokens"] for r in openai_fake.fake.requests] == [1024, 3000]


def test_trimming_keeps_the_evaluation_and_the_result_lines() -> None:
    cut = trim_description(LONG_DESCRIPTION, 1500)
    assert "area under the ROC curve" in cut and "Predict which customers leave" in cut
    assert "A lot of money" not in cut and "Sections left out" in cut and len(cut) < 1700
    output = "\n".join(
        [
            *(f"epoch {i}: loss 0.{i}" for i in range(400)),
            "ABLATION no_scaling: 0.81",
            "Baseline: 0.84",
            *(f"fold log {i}" for i in range(400)),
            "Final Validation Performance: 0.84",
        ]
    )
    short = trim_output(output, 1200)
    assert len(short) < 1500
    for line in ("ABLATION no_scaling: 0.81", "Baseline: 0.84", "Final Validation Performance: 0.84"):
        assert line in short


# -- what prompts say ------------------------------------------------------------------------------------
def test_the_data_profile_names_no_path_outside_the_input_folder(tmp_path: Path) -> None:
    from competitions import make_competition

    task = make_task(make_competition(tmp_path / "comp", "binary", n_rows=120, aux=True))
    assert task.answers_file is not None
    report = data_report(task)
    assert str(tmp_path) not in report and "answers" not in report and "private" not in report
    # Auxiliary tables come with their columns' dtypes and missing shares.
    assert "- cities.csv (auxiliary, 4 rows x 2 columns)" in report
    assert "  - population: float64, numeric, missing 0.0%" in report
    assert "- folds.csv (the run's fixed split: row, fold, dev)" in report  # it is in ./input/ too
    assert report.count("Competition: comp") == 0  # the task summary is printed once, by the prompt


def test_prompts_tell_what_earlier_scripts_took_and_what_plans_mean(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    three_folds = ctx.model_copy(
        update={"n_folds": 3, "hardware": "16 CPU cores (4 for each script), 64 GB, GPUs: A100"}
    )
    brain = brain_for(openai_fake)
    timed = Script(code=BASE, wall_s=42.0)
    openai_fake.fake.queue(
        "More trees.", '```json\n{"name": "m", "plan": "p"}\n```\n```python\nmodel = build_model()\n```'
    )
    brain.plan_refinement(three_folds, timed, "x = 1", [])
    planner = sent(openai_fake)
    assert "(it ran in 42 s of the 120 s a script may take)" in planner
    assert "plans are alternatives" in planner and "folds 1-2" in planner and "(0 to 2)" in planner
    assert "16 CPU cores (4 for each script), 64 GB, GPUs: A100" in planner and "CUDA GPU" not in planner
    brain.extract_block(three_folds, ScoredScript(script=timed, score=0.9), AblationSummary(text="s"), [])
    assert "refined before" not in sent(openai_fake)  # nothing to list, so nothing is promised
    openai_fake.fake.queue('```json\n{"summary": "s", "baseline_score": 0.8, "effects": {}}\n```')
    brain.summarize_ablation(ctx, Script(code=BASE), "Baseline: 0.8\nABLATION x: 0.7")
    assert BASE.strip() not in sent(openai_fake)  # the summarizer reads the output, not the script
    rules = sent(openai_fake)
    assert (
        "never fit, tune or early-stop on it" in rules.lower()
        or "Never fit, tune or early-stop on it" in rules
    )
    openai_fake.fake.queue(f"```python\n{BASE.replace('folds.csv', 'folds.csv').replace('dev', 'dev')}```")
    final = brain.write_submission(ctx, timed)
    assert "the development run took 42 s on 300 rows" in sent(openai_fake) and final.code


def test_the_leakage_checklist_says_what_is_and_is_not_a_leak(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    openai_fake.fake.queue('```json\n{"leak": false, "reason": "fine"}\n```')
    brain_for(openai_fake).check_leakage(ctx, Script(code=BASE))
    prompt = sent(openai_fake)
    assert "label-free statistics computed over the training and validation rows" in prompt
    assert "early stopping or model selection on\nfold 0" in prompt


# -- thinking never wins ------------------------------------------------------------------------------
def test_decoys_in_thinking_do_not_reach_the_parsers(openai_fake: Endpoint, ctx: BrainContext) -> None:
    openai_fake.fake.queue(
        DECOY + "Raise the number of trees to 500.",
        DECOY + '```json\n{"leak": false, "reason": "clean"}\n```',
        "<think>maybe NO_NEW_PLAN</think>\nStack them with a ridge model.",
    )
    brain = brain_for(openai_fake)
    plan = brain.plan_refinement(ctx, Script(code=BASE), "x = 1", [])
    assert plan is not None and plan.text == "Raise the number of trees to 500."
    assert brain.check_leakage(ctx, Script(code=BASE)) == LeakageReport(leak=False, reason="clean")
    ensemble = brain.plan_ensemble(ctx, [ScoredScript(script=Script(code=BASE), score=0.9)], [])
    assert ensemble is not None and ensemble.text.startswith("Stack them")


# -- leaks are kept ------------------------------------------------------------------------------------
def test_a_leak_verdict_survives_a_loose_quote_and_a_string_true(
    openai_fake: Endpoint, ctx: BrainContext
) -> None:
    paraphrased = (
        '```json\n{"leak": "True", "reason": "the scaler is fitted on all rows"}\n```\n'
        "```python\nscaler = StandardScaler()\n"
        "train[features] = scaler.fit_transform(train[features])  # here\n```"
    )
    nowhere = (
        '```json\n{"leak": "yes", "reason": "target encoding on every row"}\n```\n'
        "```python\nno_such_line()\n```"
    )
    openai_fake.fake.queue(paraphrased, nowhere)
    brain = brain_for(openai_fake)
    report = brain.check_leakage(ctx, Script(code=BASE))
    assert (
        report.leak and report.block is not None and report.block in BASE and "fit_transform" in report.block
    )
    unplaced = brain.check_leakage(ctx, Script(code=BASE))
    assert unplaced.leak and unplaced.block is None and openai_fake.fake.count == 2  # no re-ask needed
    # The fixer then gets the whole script to fix.
    openai_fake.fake.queue(f"```python\n{BASE}```")
    brain.fix_leakage(ctx, Script(code=BASE), unplaced)
    assert "in this block" not in sent(openai_fake) and "target encoding on every row" in sent(openai_fake)


# -- static checks look at behaviour ----------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        "train = train[folds.dev == 1]",
        'train = train.loc[folds.query("dev == 1").index]',
        'train = train[folds["dev"].eq(1)]',
    ],
)
def test_every_spelling_of_the_dev_filter_is_accepted(line: str) -> None:
    code = BASE.replace('train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)', line)
    assert line in code
    assert contract_issues(code, mode="dev", test_file="test.csv", predictions=True) == []


def test_the_test_file_is_rejected_when_read_not_when_named_in_a_comment() -> None:
    commented = (
        '"""Never reads test.csv: development runs have no test file."""\n# not test.csv either\n' + BASE
    )
    assert contract_issues(commented, mode="dev", test_file="test.csv") == []
    reading = BASE + 'test = pd.read_csv("./input/test.csv")\n'
    assert any(
        "reads the test file" in issue for issue in contract_issues(reading, mode="dev", test_file="test.csv")
    )
    no_filter = BASE.replace('train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)', "")
    assert any("development rows" in issue for issue in contract_issues(no_filter, mode="dev"))
    no_predictions = BASE.replace("val_predictions.csv", "preds.csv")
    assert any(
        "val_predictions.csv" in i for i in contract_issues(no_predictions, mode="dev", predictions=True)
    )


def test_the_metric_and_the_prediction_file_are_in_every_prompt(
    openai_fake: Endpoint, tmp_path: Path
) -> None:
    from competitions import make_competition

    task = make_task(make_competition(tmp_path / "multi", "multiclass", n_rows=150))
    ctx = make_context(task)
    brain = brain_for(openai_fake)
    system = brain.prompts.render("summarizer", brain._vars(ctx))[0]["content"]
    assert "def metric_score(y_true, y_pred):" in system and "log" in system.lower()
    assert "one probability column per class, named by the class label (`a`, `b`, `c`)" in system
    frame = pd.read_csv(task.data_path(task.train_file))
    assert set(frame["species"]) == {"a", "b", "c"}
