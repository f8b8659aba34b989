"""Whole LLM-brain runs under what real providers do (slow: every script really runs).

A recorded conversation is replayed through all four phases twice, once as recorded and once with
the faults of the fake OpenAI server injected (think blocks with decoy code, 429 storms with and
without Retry-After, Gemini's retryDelay, 500s, cut-off answers, empty and None content, a
refusal): the second run finishes with a valid submission and makes the same selections. Then the
Anthropic wire format with its own faults (a context too long among them: a smaller window changes
the prompts, so it is not part of the replay), and a real leak found, fixed and scored end to end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.fixtures import isolated_env  # noqa: E402,F401
from fakes.pipeline_runs import FAST_RETRIES, LLMRun, llm_run, selections  # noqa: E402
from fakes.replay import Replay  # noqa: E402
from fakes.scripted_model import respond  # noqa: E402

from mlestar.core.events import EventType  # noqa: E402
from mlestar.store import RunStatus, RunStore  # noqa: E402

pytestmark = pytest.mark.slow

CONVERSATION = Path(__file__).parent / "fixtures" / "conversations" / "scripted-binary"
# Fresh request number -> fault, spread over the run so that every phase meets some (and no two
# meet one request: retries are fresh requests too).
OPENAI_FAULTS = {
    1: "think",
    2: "429",
    4: "cut",
    7: "empty",
    10: "500",
    13: "null",
    16: "gemini-429",
    18: "think",
    20: "refusal",
    22: "cut",
    24: "429-ms",
    26: "429-storm",
    28: "empty",
}


@pytest.fixture(autouse=True)
def fast_retries(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def assert_valid_submission(run: LLMRun) -> None:
    result = run.result
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    submission = pd.read_csv(result.submission_path)
    sample = pd.read_csv(run.competition / "sample_submission.csv")
    assert (
        list(submission.columns) == list(sample.columns)
        and submission["id"].tolist() == sample["id"].tolist()
    )
    assert submission["target"].between(0, 1).all()


def test_a_replayed_conversation_survives_every_fault_with_the_same_selections(tmp_path: Path) -> None:
    clean = llm_run(tmp_path / "clean", responder=Replay.from_folder(CONVERSATION))
    faulty = llm_run(tmp_path / "faulty", responder=Replay.from_folder(CONVERSATION), faults=OPENAI_FAULTS)
    assert_valid_submission(clean)
    assert_valid_submission(faulty)
    assert set(faulty.fake.served) >= set(OPENAI_FAULTS.values())  # every fault was met
    assert selections(faulty.result.run_dir) == selections(clean.result.run_dir)
    with RunStore(faulty.result.run_dir) as store:
        skipped = [e.message for e in store.events(types=[EventType.WARNING]) if "step skipped" in e.message]
        scores = {n.info.get("score_source") for n in store.nodes() if n.agent != "submission"}
    assert skipped == [] and scores == {"recomputed"}

    # No prompt of the run names a path outside ./input/: not the run folder, not the competition's,
    # not the private answers.
    for path in (tmp_path, faulty.competition, faulty.result.run_dir):
        for request in faulty.fake.requests:
            assert str(path) not in str(request["messages"])
    for request in faulty.fake.requests:
        text = str(request["messages"])
        assert "private" not in text and "answers.csv" not in text
        assert not re.search(r"(?<![\w.])/(?:tmp|home|root|usr|var|work)/", text), text[:300]


def test_claude_faults_through_every_phase(tmp_path: Path) -> None:
    faults = {1: "529", 2: "think", 4: "cut", 6: "refusal", 8: "empty", 10: "context", 12: "429", 15: "cut"}
    run = llm_run(tmp_path, provider="anthropic", faults=faults, responder=respond)
    assert_valid_submission(run)
    assert set(run.fake.served) >= set(faults.values())
    # The shared system part went to Anthropic's prompt cache after the first request.
    with RunStore(run.result.run_dir) as store:
        calls = [c for c in store.llm_calls() if not c.cached]
    assert sum(c.cached_prompt_tokens for c in calls) > 0.3 * sum(c.prompt_tokens for c in calls)


LEAKY = """# a candidate that leaks: its feature is made from the target
import os

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score

train = pd.read_csv("./input/train.csv")
folds = pd.read_csv("./input/folds.csv").sort_values("row")
train["fold"] = folds["fold"].to_numpy()
train["row"] = folds["row"].to_numpy()
train = train[folds["dev"].to_numpy() == 1].reset_index(drop=True)
train["city"] = train["city"].astype("category").cat.codes
rng = np.random.default_rng(0)
train["signal"] = train["target"] + rng.normal(scale=0.3, size=len(train))
features = ["x1", "x2", "x3", "city", "signal"]
train[features] = train[features].fillna(-1)
fit_rows, valid_rows = train["fold"] != 0, train["fold"] == 0
model = RandomForestClassifier(n_estimators=60, random_state=0, n_jobs=1)
model.fit(train.loc[fit_rows, features], train.loc[fit_rows, "target"])
pred = model.predict_proba(train.loc[valid_rows, features])[:, 1]
os.makedirs("./final", exist_ok=True)
predictions = pd.DataFrame({"row": train.loc[valid_rows, "row"], "target": pred})
predictions.to_csv("./final/val_predictions.csv", index=False)
print(f"Final Validation Performance: {roc_auc_score(train.loc[valid_rows, 'target'], pred)}")
"""
LEAK_BLOCK = 'train["signal"] = train["target"] + rng.normal(scale=0.3, size=len(train))'
FIXED_BLOCK = 'train["signal"] = train["x1"] - train["x2"]  # built from the features only'


def leak_aware(messages: list[dict[str, str]]) -> str:
    """The scripted model, except that its candidate leaks and its checker and fixer find and fix it."""
    text = messages[-1]["content"]
    if text.startswith("[mlestar agent: candidate]"):
        return f"A random forest with an extra signal:\n```python\n{LEAKY}```\n"
    if text.startswith("[mlestar agent: leakage_checker]") and LEAK_BLOCK in text:
        # The verdict as a string, the quote with other spacing and a comment: it must still count.
        quote = LEAK_BLOCK.replace(" + ", "+") + "   # the target itself"
        return (
            '```json\n{"leak": "True", "reason": "signal is computed from the target"}\n```\n'
            f"```python\n{quote}\n```\n"
        )
    if text.startswith("[mlestar agent: leakage_fixer]"):
        return f"```python\n{FIXED_BLOCK}\n```\n"
    return respond(messages)


def test_a_real_leak_is_found_fixed_and_scored(tmp_path: Path) -> None:
    run = llm_run(
        tmp_path,
        responder=leak_aware,
        num_models=1,
        num_tracks=1,
        outer_steps=0,
        ensemble_rounds=0,
        leakage_check="phase1",
        data_usage_check=False,
    )
    assert_valid_submission(run)
    with RunStore(run.result.run_dir) as store:
        nodes = store.nodes()
        [check] = [e for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == "leakage"]
        submission = store.get_meta("submission")
    leaky = next(n for n in nodes if n.agent == "candidate")
    fixed = next(n for n in nodes if n.agent == "leakage")
    assert check.data["verdict"] == "leak" and check.data["kept"] is True
    assert leaky.score is not None and leaky.score > 0.99  # the target leaked into a feature
    assert fixed.score is not None and 0.75 < fixed.score < 0.98  # an honest score once it is gone
    assert submission["source_node_id"] == fixed.id
    code = (run.result.run_dir / fixed.script_path).read_text()
    assert FIXED_BLOCK in code and LEAK_BLOCK not in code


REAL_MODEL = Path(__file__).parent / "fixtures" / "conversations" / "reviews-bridge"
REVIEWS = Path(__file__).resolve().parents[1] / "examples" / "reviews"
# The loops the conversation was recorded with (M=2 L=2 T=1 K=2 R=1).
REAL_MODEL_LOOPS = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 1,
}
REAL_MODEL_FAULTS = {1: "think", 2: "429", 4: "cut", 6: "500", 8: "empty", 10: "think", 12: "null", 14: "cut"}


def reviews_subsample(folder: Path, n_train: int = 700, n_test: int = 200) -> Path:
    """``examples/reviews`` cut down so that its scripts run in seconds (same columns, same metric)."""
    folder.mkdir(parents=True)
    train = pd.read_csv(REVIEWS / "train.csv").head(n_train)
    test = pd.read_csv(REVIEWS / "test.csv").head(n_test)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    pd.read_csv(REVIEWS / "sample_submission.csv").head(n_test).to_csv(
        folder / "sample_submission.csv", index=False
    )
    (folder / "private").mkdir()
    answers = pd.read_csv(REVIEWS / "private" / "answers.csv")
    answers[answers["id"].isin(test["id"])].to_csv(folder / "private" / "answers.csv", index=False)
    (folder / "description.md").write_text((REVIEWS / "description.md").read_text())
    return folder


def test_a_real_model_conversation_replays_under_faults(tmp_path: Path) -> None:
    # The same selections with and without faults are the scripted conversation's test above: the
    # real model's two tracks ask near-identical questions, so which recorded answer a track gets
    # may follow the order the faults' waits give them.
    from mlestar.grading import grade_submission

    competition = reviews_subsample(tmp_path / "reviews")
    run = llm_run(
        tmp_path / "faulty",
        competition=competition,
        responder=Replay.from_folder(REAL_MODEL),
        faults=REAL_MODEL_FAULTS,
        **REAL_MODEL_LOOPS,
    )
    assert set(run.fake.served) >= set(REAL_MODEL_FAULTS.values())
    result = run.result
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    graded = grade_submission(
        result.submission_path, competition / "private" / "answers.csv", metric="roc_auc",
        sample_path=competition / "sample_submission.csv", id_column="id",
    )  # fmt: skip
    assert graded.valid and graded.score > 0.75, graded  # the model's TF-IDF solutions, on 700 rows
    with RunStore(result.run_dir) as store:
        agents = {n.agent for n in store.nodes() if n.status.value == "done"}
    assert {"candidate", "merger", "ablation", "submission"} <= agents
    for request in run.fake.requests:
        text = str(request["messages"])
        assert str(tmp_path) not in text and "private" not in text and "answers.csv" not in text
        assert not re.search(r"(?<![\w.])/(?:tmp|home|root|usr|var|work)/", text), text[:300]
