"""The engine's step machinery: memoized calls keyed by place and inputs, replayed decisions, script
runs with debugging, best-score tracking and stop requests (scripted brain and executor)."""

from __future__ import annotations

from pathlib import Path

import pytest
from competitions import make_competition
from scripted import ScriptedBrain, ScriptedExecutor, scripted

from mlestar.brain.protocol import BrainContext, ScoredScript
from mlestar.core.events import Event, EventBus, EventType
from mlestar.core.steps import Agent, Phase, Step, fingerprint
from mlestar.core.task import Task
from mlestar.pipeline.budget import Budget
from mlestar.pipeline.engine import Engine, RunStopped
from mlestar.pipeline.run import DEV_INPUT, FINAL_INPUT, create_run
from mlestar.settings import Settings
from mlestar.store import Control, NodeStatus, RunStore
from mlestar.task.views import private_paths


def make_engine(
    store: RunStore,
    brain: ScriptedBrain | None = None,
    executor: ScriptedExecutor | None = None,
    budget: Budget | None = None,
    **settings: object,
) -> tuple[Engine, list[Event]]:
    task = Task.model_validate(store.get_meta("task"))
    events: list[Event] = []
    bus = EventBus(recorder=store.append_event)
    bus.subscribe(events.append)
    engine = Engine(
        store=store,
        bus=bus,
        task=task,
        settings=Settings.load(**{**store.get_meta("config"), **settings}),
        brain=brain or ScriptedBrain(),
        executor=executor or ScriptedExecutor(),
        budget=budget or Budget(None),
        ctx=BrainContext.model_validate(store.get_meta("context")),
        inputs={False: store.run_dir / DEV_INPUT, True: store.run_dir / FINAL_INPUT},
        hidden=lambda final: private_paths(task, final=final),
    )
    return engine, events


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    return create_run(competition, Settings.load(runs_dir=tmp_path / "runs", debug_retries=2), run_id="r")


def test_a_call_runs_once_per_place_and_inputs(store: RunStore) -> None:
    engine, _ = make_engine(store)
    calls: list[int] = []

    def role(x: int) -> int:
        calls.append(x)
        return x * 10

    step = Step(Phase.REFINE, 1, ("o0",))
    assert engine.ask(step, "plan", role, 3, returns=int) == 30
    assert engine.ask(step, "plan", role, 3, returns=int) == 30  # the same inputs: from the store
    assert engine.ask(step, "plan", role, 4, returns=int) == 40  # other inputs: a new step
    assert engine.ask(step.at("i1"), "plan", role, 3, returns=int) == 30  # another place
    assert calls == [3, 4, 3]
    again, _ = make_engine(RunStore(store.run_dir))  # a resumed process replays from the store
    assert again.ask(step, "plan", role, 4, returns=int) == 40 and calls == [3, 4, 3]


def test_step_keys_hold_the_place_and_a_fingerprint_of_the_inputs() -> None:
    step = Step(Phase.REFINE, 1, ("o0", "ablation"))
    assert step.path == "p2/t1/o0/ablation"
    key = step.key("code", (scripted(0.5, "a"),))
    assert key.startswith("p2/t1/o0/ablation/code#") and key == step.key("code", (scripted(0.5, "a"),))
    assert key != step.key("code", (scripted(0.6, "a"),))
    # What a script does is its code: a new label alone is the same input.
    same = scripted(0.5, "a").model_copy(update={"label": "renamed"})
    assert fingerprint(same) == fingerprint(scripted(0.5, "a"))
    scored = ScoredScript(script=scripted(0.5, "a"), score=0.5, stdout_tail="anything", node_id=4)
    assert fingerprint(scored) == fingerprint(ScoredScript(script=scripted(0.5, "a"), score=0.5))
    assert fingerprint(scored) != fingerprint(ScoredScript(script=scripted(0.5, "a"), score=0.4))


def test_decisions_are_taken_once_and_replayed(store: RunStore) -> None:
    engine, _ = make_engine(store)
    step = Step(Phase.SEARCH, 0, ("merge0",))
    assert engine.decide(step, "start", lambda: False) is False
    assert engine.decide(step, "start", lambda: True) is False  # the clock changed; the record did not
    tight = Budget(time_limit_s=1.0, spent_before_s=100.0)  # a budget that allows nothing new
    later, _ = make_engine(RunStore(store.run_dir), budget=tight)
    assert later.fits(Step(Phase.SEARCH, 0, ("merge1",))) is False
    assert later.decide(step, "start", lambda: True) is False


def test_a_finished_script_never_runs_twice_and_an_interrupted_one_does(store: RunStore) -> None:
    executor = ScriptedExecutor()
    engine, events = make_engine(store, executor=executor)
    step = Step(Phase.SEARCH, None, ("cand0",))
    first = engine.run_script(step, scripted(0.7, "a"), agent=Agent.CANDIDATE)
    again = engine.run_script(step, scripted(0.7, "a"), agent=Agent.CANDIDATE)
    assert (first.score, again.score, again.node_id) == (0.7, 0.7, first.node_id)
    assert executor.runs["a"] == 1
    assert [e.type for e in events].count(EventType.SCRIPT_FINISHED) == 1
    node = store.get_node(first.node_id or 0)
    assert node is not None and node.info["executor"] == "scripted"
    store.update_node(node.id, status=NodeStatus.RUNNING)  # as a crash leaves it
    engine.run_script(step, scripted(0.7, "a"), agent=Agent.CANDIDATE)
    assert executor.runs["a"] == 2
    other = engine.run_script(step, scripted(0.8, "b"), agent=Agent.CANDIDATE)  # same place, other script
    assert other.node_id != first.node_id


def test_scripts_get_the_development_input_and_the_hide_list(store: RunStore) -> None:
    executor = ScriptedExecutor()
    engine, _ = make_engine(store, executor=executor)
    engine.run_script(Step(Phase.SEARCH, None, ("c",)), scripted(0.7, "dev"), agent=Agent.CANDIDATE)
    engine.run_script(
        Step(Phase.SUBMIT, None, ("s",)), scripted(0.7, "final"), agent=Agent.SUBMISSION, final=True
    )
    dev, final = executor.jobs
    assert (dev.workdir / "input").resolve() == (store.run_dir / DEV_INPUT).resolve()
    assert (final.workdir / "input").resolve() == (store.run_dir / FINAL_INPUT).resolve()
    assert store.db_path in dev.hide and any(p.name == "test.csv" for p in dev.hide)
    assert not any(p.name == "test.csv" for p in final.hide)
    assert any(p.name == "answers.csv" for p in final.hide)


def test_a_failing_script_is_debugged_within_the_retries(store: RunStore) -> None:
    brain, executor = ScriptedBrain(), ScriptedExecutor()
    engine, events = make_engine(store, brain=brain, executor=executor)
    ctx = engine.ctx
    result = engine.run_with_debug(
        Step(Phase.SEARCH, None, ("cand0",)), scripted(0.7, "x", fail="boom"), agent=Agent.CANDIDATE, ctx=ctx
    )
    assert result.score == 0.7 and executor.runs == {"x": 1, "x debugged": 1}
    node = store.get_node(result.node_id or 0)
    assert node is not None and node.agent == "debug" and node.parent_ids
    assert store.get_meta("best")["score"] == 0.7

    class Hopeless(ScriptedBrain):
        def debug(self, ctx: BrainContext, script, error):  # type: ignore[no-untyped-def]
            self._called("debug")
            return scripted(None, f"try{self.calls['debug']}", fail="still broken")

    hopeless = Hopeless()
    engine, events = make_engine(store, brain=hopeless)
    result = engine.run_with_debug(
        Step(Phase.SEARCH, None, ("cand1",)), scripted(0.9, "y", fail="boom"), agent=Agent.CANDIDATE, ctx=ctx
    )
    assert result.error is not None and hopeless.calls["debug"] == 2  # debug_retries
    assert any(e.type == EventType.WARNING and "dropped" in e.message for e in events)
    assert store.get_meta("best")["score"] == 0.7  # a failed script never becomes the best


def test_the_best_only_moves_to_a_better_score(store: RunStore) -> None:
    engine, events = make_engine(store)
    for label, score in (("a", 0.7), ("b", 0.65), ("c", 0.8)):
        engine.consider_best(
            ScoredScript(script=scripted(score, label), score=score, node_id=1), Phase.SEARCH
        )
    assert store.get_meta("best")["score"] == 0.8
    assert [e.data["score"] for e in events if e.type == EventType.BEST_UPDATED] == [0.7, 0.8]


def test_events_of_a_call_are_tagged_with_its_step(store: RunStore) -> None:
    engine, events = make_engine(store)

    def role() -> str:
        engine.bus.publish(EventType.LLM_CALL, "a call made inside the role")
        return "done"

    step = Step(Phase.REFINE, 1, ("o2",))
    engine.ask(step, "extract", role, returns=str, node_id=9)
    call = next(e for e in events if e.type == EventType.LLM_CALL)
    assert (call.phase, call.track, call.node_id) == ("phase2", 1, 9)
    assert call.data["step"].startswith("p2/t1/o2/extract#")
    assert store.events(types=[EventType.LLM_CALL])[0].seq == call.seq  # recorded before delivered


def test_a_stop_request_ends_the_step_and_leaves_the_script_to_rerun(store: RunStore) -> None:
    engine, _ = make_engine(store)
    store.request(Control.STOP)
    with pytest.raises(RunStopped):
        engine.ask(Step(Phase.SEARCH, None, ("summary",)), "text", lambda: "x", returns=str)
    store.request(Control.RUN)
    engine, _ = make_engine(store)

    class StoppingExecutor(ScriptedExecutor):
        def submit(self, job):  # type: ignore[no-untyped-def]
            engine.stop_requested.set()  # Ctrl+C while the script runs
            return super().submit(job)

    engine.executor = StoppingExecutor()
    with pytest.raises(RunStopped):
        engine.run_script(Step(Phase.SEARCH, None, ("cand0",)), scripted(0.7, "a"), agent=Agent.CANDIDATE)
    (node,) = store.nodes()
    assert node.status == NodeStatus.PENDING


def test_scripted_scripts_run_the_same_in_the_real_sandbox(store: RunStore) -> None:
    from mlestar.exec.pool import LocalExecutor

    with LocalExecutor(1) as real:
        engine, _ = make_engine(store, executor=real)  # type: ignore[arg-type]
        ok = engine.run_script(
            Step(Phase.SEARCH, None, ("a",)), scripted(0.7, "a", ablation={"m": 0.6}), agent=Agent.ABLATION
        )
        broken = engine.run_script(
            Step(Phase.SEARCH, None, ("b",)), scripted(0.7, "b", fail="boom"), agent=Agent.CANDIDATE
        )
        final = engine.run_script(
            Step(Phase.SUBMIT, None, ("s",)), scripted(0.7, "f"), agent=Agent.SUBMISSION, final=True
        )
    assert ok.score == 0.7 and "ABLATION m: 0.6" in ok.stdout_tail
    assert broken.score is None and "boom" in (broken.error or "")
    node = store.get_node(final.node_id or 0)
    assert (
        node is not None
        and (store.run_dir / node.script_path).with_name("final").joinpath("submission.csv").exists()
    )


def test_what_a_failed_script_printed_names_no_path_of_this_machine(store: RunStore) -> None:
    # Its traceback goes to the debugger's prompt: the script's folder and Python's own become
    # "." and "<python>".
    import sys

    from mlestar.brain.protocol import Script
    from mlestar.exec.pool import LocalExecutor

    code = "import json\nprint('running')\njson.loads('{broken')\n"
    with LocalExecutor(1) as real:
        engine, _ = make_engine(store, executor=real)  # type: ignore[arg-type]
        broken = engine.run_script(Step(Phase.SEARCH, None, ("t",)), Script(code=code), agent=Agent.CANDIDATE)
    error = broken.error or ""
    assert 'File "./script.py", line 3' in error and "JSONDecodeError" in error
    assert "<python>/" in error  # json's own frames
    assert str(store.run_dir) not in error and sys.prefix not in error and sys.base_prefix not in error


def test_a_final_script_that_runs_out_of_time_still_teaches_the_clock(store: RunStore) -> None:
    budget = Budget(600)
    executor = ScriptedExecutor(wall_s=10, final_wall_s=45)
    engine, _ = make_engine(store, executor=executor, budget=budget, debug_retries=0)
    ensemble = engine.run_script(Step(Phase.ENSEMBLE, None, ("r0",)), scripted(0.8, "ens"), agent=Agent.ENSEMBLE)
    final = engine.run_script(
        Step(Phase.SUBMIT, None, ("c0",)), scripted(0.8, "final ens", times_out=True),
        agent=Agent.SUBMISSION, parents=[ensemble.node_id or 0], final=True,
    )  # fmt: skip
    assert final.error is not None
    # Killed after 45 s: an ensemble's final takes at least 4.5 times its development run.
    assert budget.final_passes(ensemble=True) == pytest.approx(4.5)
    assert engine.final_s(ensemble) == pytest.approx(45.0)
