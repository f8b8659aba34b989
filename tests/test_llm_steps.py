"""The pipeline around LLM failures and untrusted scores (scripted brain and executor): a step whose
LLM call fails is skipped like a failed script and asked again on resume; failures in a row stop
the run, resumable, with one line saying why; scores come from the scripts' saved predictions."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from competitions import make_competition
from scripted import ScriptedBrain, ScriptedExecutor, scripted
from test_engine import make_engine

from mlestar.brain.protocol import BrainContext, ModelCard, ScoredScript, Script
from mlestar.core.events import EventType
from mlestar.core.steps import Agent, Phase, Step
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.llm.errors import AuthenticationFailed, RetriesExhausted
from mlestar.pipeline.engine import failure_text
from mlestar.pipeline.run import create_run, execute, resume
from mlestar.settings import Settings
from mlestar.store import NodeStatus, RunStatus, RunStore

STORM = "openai:gpt-4.1: rate limited: Too many requests (still rate limited after 300s of waiting)"


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "comp", "binary", n_rows=120)


def start(competition: Path, tmp_path: Path, **settings: object) -> RunStore:
    values = {"num_models": 2, "num_tracks": 2, "outer_steps": 1, "inner_steps": 2, "ensemble_rounds": 1}
    return create_run(
        competition, Settings.load(runs_dir=tmp_path / "runs", **{**values, **settings}), run_id="r"
    )


class FlakyBrain(ScriptedBrain):
    """A scripted brain whose chosen roles fail as an LLM call does after its retries."""

    def __init__(self, failing: dict[str, int], error: Exception | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.failing = dict(failing)  # role -> how many of its calls fail, from the first
        self.error = error or RetriesExhausted(STORM)

    def _called(self, role: str) -> None:
        super()._called(role)
        if self.failing.get(role, 0) > 0:
            self.failing[role] -= 1
            raise self.error


def test_a_failed_llm_step_is_skipped_and_not_remembered(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path)
    engine, events = make_engine(store, brain=FlakyBrain({"write_candidate": 1}))
    step = Step(Phase.SEARCH).at("cand0")
    card = ModelCard(name="m0")
    script = engine.ask(step, "code", engine.brain.write_candidate, engine.ctx, card, returns=Script)
    assert "failed LLM step" in script.label and store.memo_get(step.key("code", (engine.ctx, card))) is None
    [warning] = [e for e in events if e.type == EventType.WARNING]
    assert "step skipped" in warning.message and "rate limited" in warning.message
    # What the failed step handed on is recorded as a failed script, not run, not debugged.
    ran = engine.run_with_debug(step, script, agent=Agent.CANDIDATE, ctx=engine.ctx)
    assert ran.score is None and "not run" in (ran.error or "")
    assert engine.executor.runs == {} and engine.brain.calls["debug"] == 0
    # The next try of the same step (a resume) asks again and gets a real script.
    again = engine.ask(step, "code", engine.brain.write_candidate, engine.ctx, card, returns=Script)
    assert again.label == "m0" and store.memo_get(step.key("code", (engine.ctx, card))) is not None


def test_a_run_goes_on_past_failed_steps(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path)
    brain = FlakyBrain({"merge": 1, "summarize_ablation": 1, "plan_refinement": 1, "check_leakage": 2})
    result = execute(store, brain=brain, executor=ScriptedExecutor())
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    skipped = [e for e in store.events(types=[EventType.WARNING]) if "step skipped" in e.message]
    assert len(skipped) == 5


def test_llm_failures_in_a_row_stop_the_run_which_resumes_later(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path, llm_failures_to_pause=3)
    executor = ScriptedExecutor()
    result = execute(store, brain=FlakyBrain({"write_ablation": 99, "extract_block": 99}), executor=executor)
    assert result.status == RunStatus.STOPPED and result.stop_reason == "llm"
    # Both tracks fail at once, so the third failure may be followed by a fourth before the stop.
    detail = re.fullmatch(r"(\d) LLM steps failed in a row \(last: (.*)\)", result.stop_detail or "")
    assert detail is not None and int(detail.group(1)) in (3, 4) and detail.group(2) == STORM
    [stopped] = store.events(types=[EventType.RUN_STOPPED])
    assert stopped.message == f"paused: {result.stop_detail}; continue with `mlestar resume r`"
    assert "\n" not in stopped.message and result.submission_path is not None  # phase 1's submission stays
    runs_before = sum(executor.runs.values())
    store.close()
    # Once the provider is back, the run resumes where it stopped without running anything again.
    resumed = resume("r", runs_dir=tmp_path / "runs", brain=ScriptedBrain(), executor=executor)
    assert resumed.status == RunStatus.FINISHED
    assert all(count == 1 for count in executor.runs.values()), executor.runs
    assert sum(executor.runs.values()) > runs_before


def test_an_error_only_the_user_can_fix_stops_the_run_at_once(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path)
    bad_key = AuthenticationFailed(
        "openai at https://api.openai.com/v1 rejected the API key (401); check OPENAI_API_KEY"
    )
    result = execute(store, brain=FlakyBrain({"merge": 1}, error=bad_key), executor=ScriptedExecutor())
    assert result.status == RunStatus.STOPPED and result.stop_reason == "llm"
    assert "rejected the API key" in (result.stop_detail or "")
    assert store.status == RunStatus.STOPPED  # resumable: not FAILED


class Liar(ScriptedBrain):
    """m0 prints a great score that its saved predictions do not have; m1 prints a modest score."""

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        self._called("write_candidate")
        if card.name == "m0":
            return scripted(0.99, "m0", predictions="constant")
        return scripted(0.7, card.name, predictions="truth")

    def merge(self, ctx: BrainContext, base: ScoredScript, addition: ScoredScript) -> Script:
        self._called("merge")
        return scripted(0.5, f"{base.script.label}+{addition.script.label}", predictions="inverted")


def test_selections_use_the_score_of_the_saved_predictions(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path, num_tracks=1, outer_steps=0, ensemble_rounds=0)
    result = execute(store, brain=Liar(), executor=ScriptedExecutor())
    nodes = {n.label: n for n in store.nodes()}
    liar, honest = nodes["m0"], nodes["m1"]
    assert (liar.score, liar.info["printed_score"], liar.info["score_source"]) == (0.5, 0.99, "recomputed")
    assert (honest.score, honest.info["printed_score"]) == (1.0, 0.7)  # its predictions are the truth
    warnings = [e.message for e in store.events(types=[EventType.WARNING]) if e.node_id == liar.id]
    assert warnings == [
        "score disagreement: it printed 0.99, its predictions score 0.5; the recomputed score is used"
    ]
    assert result.best_score == 1.0 and store.get_meta("best")["node_id"] == honest.id
    assert store.get_meta("submission")["source_node_id"] == honest.id  # the liar is never picked
    # A script without predictions keeps its printed score, marked as such.
    final = next(n for n in store.nodes() if n.agent == "submission")
    assert final.info["score_source"] == "printed"


class HalfRows(ScriptedExecutor):
    """Saves predictions for only half of the fold-0 rows."""

    def submit(self, job):  # type: ignore[no-untyped-def]
        future = super().submit(job)
        path = job.workdir / "final" / "val_predictions.csv"
        if path.exists():
            frame = pd.read_csv(path)
            frame.iloc[: len(frame) // 2].to_csv(path, index=False)
        return future


def test_predictions_on_the_wrong_rows_are_not_trusted(tmp_path: Path, competition: Path) -> None:
    store = start(competition, tmp_path)
    engine, events = make_engine(store, executor=HalfRows())
    ran = engine.run_script(
        Step(Phase.SEARCH).at("x"), scripted(0.8, "few rows", predictions="truth"), agent=Agent.CANDIDATE
    )
    node = store.get_node(ran.node_id or 0)
    assert node is not None and node.status == NodeStatus.DONE
    assert ran.score == 0.8 and node.info["score_source"] == "printed"
    [warning] = [e.message for e in events if e.type == EventType.WARNING]
    assert warning.startswith(
        "score not verified: val_predictions.csv cannot be scored: its rows are not the split's"
    )


def test_a_timeout_tells_the_debugger_how_long_and_what_it_printed() -> None:
    result = ExecResult(returncode=-9, stdout="round 1\nround 2\n", stderr="", wall_s=121.4, timed_out=True)
    text = failure_text(result, ExecLimits(timeout_s=120))
    assert "after 121 s" in text and "time limit of 120 s" in text and "round 2" in text and "faster" in text
