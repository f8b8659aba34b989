"""The four phases through ``execute`` with a scripted brain and executor: the score gates of the
checks, merging, publish-if-better, ensembling, budget decisions and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from competitions import make_competition
from scripted import FakeClock, ScriptedBrain, ScriptedExecutor

from mlestar.core.events import Event, EventType
from mlestar.pipeline.run import create_run, execute
from mlestar.settings import Settings
from mlestar.store import Control, NodeStatus, RunStatus, RunStore

SMALL = {
    "num_models": 3,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 2,
    "debug_retries": 1,
}


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "comp", "binary", n_rows=80)


def start(competition: Path, tmp_path: Path, run_id: str = "r", **settings: object) -> RunStore:
    return create_run(
        competition, Settings.load(runs_dir=tmp_path / "runs", **{**SMALL, **settings}), run_id=run_id
    )


def checks(store: RunStore, kind: str) -> list[Event]:
    return [e for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == kind]


def test_a_run_goes_through_every_phase_and_hands_in_a_valid_submission(
    competition: Path, tmp_path: Path
) -> None:
    store = start(competition, tmp_path)
    brain, executor = ScriptedBrain(), ScriptedExecutor()
    result = execute(store, brain=brain, executor=executor)
    assert result.status == RunStatus.FINISHED
    phases = {n.phase for n in store.nodes()}
    assert phases == {"phase1", "phase2", "phase3", "phase4"}
    agents = {n.agent for n in store.nodes()}
    assert {"candidate", "merger", "ablation", "refine", "ensemble", "submission"} <= agents
    assert all(count == 1 for count in executor.runs.values()), executor.runs
    sample = pd.read_csv(competition / "sample_submission.csv")
    assert result.submission_path is not None and pd.read_csv(result.submission_path).equals(sample)
    best = store.get_meta("best")
    assert result.best_score == best["score"] and best["score"] > max(brain.candidate_scores)
    summary = json.loads((store.run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["scripts_run"] == len(store.nodes())


def test_tracks_start_from_different_candidates_and_merge_those_ranked_below_best_first(
    competition: Path, tmp_path: Path
) -> None:
    store = start(competition, tmp_path, ensemble_rounds=0, outer_steps=0)
    execute(store, brain=ScriptedBrain(), executor=ScriptedExecutor())
    merges = {n.track: [] for n in store.nodes(phase="phase1") if n.agent == "merger"}
    for node in store.nodes(phase="phase1"):
        if node.agent == "merger":
            merges[node.track].append(node.label)
    # Candidates score m0 0.70, m1 0.75, m2 0.72: track 0 starts from m1 and merges m2 then m0;
    # track 1 starts from m2 and never takes track 0's base, so the two cannot end up the same.
    assert merges[0] == ["m1+m2@t0", "m1+m2@t0+m0@t0"]
    assert merges[1] == ["m2+m0@t1"]


def test_two_candidates_give_two_different_tracks_and_one_candidate_gives_one_track(
    competition: Path, tmp_path: Path
) -> None:
    store = start(competition, tmp_path, run_id="two", num_models=2, ensemble_rounds=0, outer_steps=0)
    execute(store, brain=ScriptedBrain(), executor=ScriptedExecutor())
    (done,) = [e for e in store.events(types=[EventType.PHASE_FINISHED]) if e.phase == "phase1"]
    labels = {w["node_id"]: w for w in done.data["tracks"]}
    winners = [store.get_node(node_id).label for node_id in labels]
    assert winners == ["m1+m0@t0", "m0"], "track 1 keeps its own candidate instead of repeating A+B as B+A"
    store = start(competition, tmp_path, run_id="one", num_models=1, ensemble_rounds=0, outer_steps=0)
    execute(store, brain=ScriptedBrain(), executor=ScriptedExecutor())
    assert {n.track for n in store.nodes(phase="phase1") if n.track is not None} <= {0}
    note = [e for e in store.events(types=[EventType.STEP_FINISHED]) if e.data.get("step") == "tracks"]
    assert note and note[0].data["tracks"] == 1


def test_merging_stops_at_the_first_merge_that_is_worse(competition: Path, tmp_path: Path) -> None:
    store = start(competition, tmp_path, num_tracks=1, outer_steps=0, ensemble_rounds=0)
    execute(store, brain=ScriptedBrain(merge_gain=-0.01), executor=ScriptedExecutor())
    merges = [n for n in store.nodes() if n.agent == "merger"]
    assert len(merges) == 1  # the second partner is never tried
    submission = store.get_meta("submission")
    best_candidate = next(n for n in store.nodes() if n.label == "m1")
    assert submission["source_node_id"] == best_candidate.id


@pytest.mark.parametrize(("fix_score", "kept"), [(0.5, False), (0.70, True)])
def test_a_leakage_fix_is_kept_unless_the_score_collapses(
    competition: Path, tmp_path: Path, fix_score: float, kept: bool
) -> None:
    store = start(
        competition, tmp_path, num_tracks=1, outer_steps=0, ensemble_rounds=0, leakage_check="phase1"
    )
    execute(store, brain=ScriptedBrain(leaky=("m",), leak_fix_score=fix_score), executor=ScriptedExecutor())
    (verdict,) = checks(store, "leakage")
    assert verdict.data["verdict"] == "leak" and verdict.data["kept"] is kept
    fixed = next(n for n in store.nodes() if n.agent == "leakage")
    submitted = store.get_meta("submission")["source_node_id"]
    assert (submitted == fixed.id) is kept


def test_leakage_check_all_fixes_before_the_script_first_runs(competition: Path, tmp_path: Path) -> None:
    store = start(competition, tmp_path, num_tracks=1, outer_steps=0, ensemble_rounds=0, leakage_check="all")
    executor = ScriptedExecutor()
    execute(store, brain=ScriptedBrain(leaky=("m0",)), executor=executor)
    assert "m0" not in executor.runs and executor.runs["m0 fixed"] == 1
    assert any(e.data.get("stage") == "pre-run" for e in checks(store, "leakage"))


@pytest.mark.parametrize(("usage_score", "kept"), [(0.76, True), (0.7, False)])
def test_a_data_usage_revision_is_kept_only_when_it_scores_as_well(
    competition: Path, tmp_path: Path, usage_score: float, kept: bool
) -> None:
    store = start(competition, tmp_path, num_tracks=1, outer_steps=0, ensemble_rounds=0, leakage_check="off")
    execute(
        store, brain=ScriptedBrain(merge_gain=-0.01, usage_score=usage_score), executor=ScriptedExecutor()
    )
    (verdict,) = checks(store, "data_usage")
    assert verdict.data["kept"] is kept
    revision = next(n for n in store.nodes() if n.agent == "data_usage")
    assert (store.get_meta("submission")["source_node_id"] == revision.id) is kept


def test_the_submission_is_replaced_only_by_a_better_solution(competition: Path, tmp_path: Path) -> None:
    worse = start(competition, tmp_path, run_id="worse", num_tracks=1, ensemble_rounds=0)
    execute(worse, brain=ScriptedBrain(refine_gains=(-0.02, -0.01)), executor=ScriptedExecutor())
    assert worse.get_meta("submission")["phase"] == "phase1"
    assert len(worse.events(types=[EventType.SUBMISSION_WRITTEN])) == 1
    better = start(competition, tmp_path, run_id="better", num_tracks=1, ensemble_rounds=0)
    execute(better, brain=ScriptedBrain(refine_gains=(0.03, 0.01)), executor=ScriptedExecutor())
    assert better.get_meta("submission")["phase"] == "phase4"
    assert len(better.events(types=[EventType.SUBMISSION_WRITTEN])) == 2


def test_ensembling_needs_two_distinct_solutions(competition: Path, tmp_path: Path) -> None:
    store = start(competition, tmp_path, num_tracks=1)
    execute(store, brain=ScriptedBrain(), executor=ScriptedExecutor())
    assert not [n for n in store.nodes() if n.agent == "ensemble"]
    assert any(e.data.get("step") == "skip" for e in store.events(types=[EventType.STEP_FINISHED]))


def test_a_tight_budget_cuts_the_loops_but_keeps_a_submission(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # 10 s scripts and a 20 s first submission: in 60 s two candidates fit, and no other step does.
    store = start(competition, tmp_path, time_limit_s=60, workers=1)
    executor = ScriptedExecutor(fake_clock, wall_s=10, final_wall_s=20)
    result = execute(store, brain=ScriptedBrain(), executor=executor)
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    agents = [n.agent for n in store.nodes()]
    assert agents.count("candidate") == 2
    assert "merger" not in agents and "ablation" not in agents and "ensemble" not in agents
    budget_notes = {e.message for e in store.events(types=[EventType.BUDGET])}
    assert budget_notes == {
        "candidate m2 skipped to keep time",
        "phase 2 stopped to keep time for what follows",
        "phase 3 stopped to keep time for the final submission",
    }
    decisions = [key for key in _memo_keys(store) if "/decide:" in key]
    assert "p1/t0/merge0/decide:start" in decisions and "p2/t1/o0/decide:inner" in decisions
    # The best solution is the one already submitted: no final script is due, so the 20 s left
    # give it two evaluation seeds (of the three wanted) instead.
    assert result.final_evaluation is not None and result.final_evaluation["seeds"] == 2
    assert result.time_used["share"] <= 1.0


def _memo_keys(store: RunStore) -> list[str]:
    return [row[0] for row in store._conn.execute("SELECT key FROM memo ORDER BY rowid")]


class StopsInPhase2(ScriptedBrain):
    """Asks the run to stop once the first refinement of track 0 is written (like the web UI's stop)."""

    def __init__(self, store: RunStore, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.store = store

    def implement_plan(self, ctx, script, block, plan):  # type: ignore[no-untyped-def]
        if ctx.track == 0:
            self.store.request(Control.STOP)
        return super().implement_plan(ctx, script, block, plan)


def test_resume_runs_nothing_finished_again(competition: Path, tmp_path: Path) -> None:
    store = start(competition, tmp_path)
    first, executor = StopsInPhase2(store), ScriptedExecutor()
    stopped = execute(store, brain=first, executor=executor)
    assert stopped.status == RunStatus.STOPPED and stopped.submission_path is not None
    done_before = {n.label for n in store.nodes() if n.status in (NodeStatus.DONE, NodeStatus.FAILED)}
    again_brain, again = ScriptedBrain(), ScriptedExecutor()
    finished = execute(RunStore(store.run_dir), brain=again_brain, executor=again)
    assert finished.status == RunStatus.FINISHED
    assert not done_before & set(again.runs), "a finished script ran again"
    assert set(executor.runs) | set(again.runs) == {n.label for n in store.nodes() if n.agent != "evaluation"}
    assert again_brain.calls["write_candidate"] == 0 and again_brain.calls["merge"] == 0


def test_resume_with_more_time_never_reuses_a_step_whose_inputs_changed(
    competition: Path, tmp_path: Path
) -> None:
    store = start(competition, tmp_path, time_limit_s=3600, extend=False)
    execute(store, brain=StopsInPhase2(store), executor=ScriptedExecutor())
    ablation_before = {n.track: n for n in store.nodes(phase="phase2") if n.agent == "ablation"}
    base_before = ablation_before[0].parent_ids
    # The earlier session took another branch at track 0's last merge (as if it had run out of
    # time there): the track's phase-1 solution, and so everything refined from it, is different.
    store.memo_put("p1/t0/merge1/decide:start", {"value": False})
    brain, executor = ScriptedBrain(), ScriptedExecutor()
    from mlestar.pipeline import resume

    result = resume("r", runs_dir=tmp_path / "runs", time_limit_s=600, brain=brain, executor=executor)
    assert result.status == RunStatus.FINISHED
    assert 600 < store.get_meta("config")["time_limit_s"] < 660  # time spent so far + the extra time
    track0 = [n for n in store.nodes(phase="phase2") if n.track == 0 and n.agent == "ablation"]
    assert len(track0) == 2, "the ablation built for the old base must not be reused"
    new = next(n for n in track0 if n.id != ablation_before[0].id)
    assert new.parent_ids != base_before
    parent = store.get_node(new.parent_ids[0])
    assert parent is not None and parent.label == "m1+m2@t0"  # one merge, as the branch now says
    track1 = [n for n in store.nodes(phase="phase2") if n.track == 1 and n.agent == "ablation"]
    assert track1 == [ablation_before[1]]  # unchanged inputs: reused, not rerun
    assert brain.calls["write_candidate"] == 0  # phase 1's candidates came back from the store
    assert not {"m0", "m1", "m2"} & set(executor.runs)


def test_a_run_stored_without_a_brain_context_gets_one_on_resume(competition: Path, tmp_path: Path) -> None:
    store = start(competition, tmp_path)
    execute(store, brain=StopsInPhase2(store), executor=ScriptedExecutor())
    store._conn.execute("DELETE FROM meta WHERE key = 'context'")  # as runs created before contexts were kept
    result = execute(RunStore(store.run_dir), brain=ScriptedBrain(), executor=ScriptedExecutor())
    assert result.status == RunStatus.FINISHED
    assert store.get_meta("context")["task"]["name"] == "comp"
