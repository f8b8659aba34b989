"""The anytime budget, the multi-seed final evaluation and the target score, through ``execute`` with
the scripted brain and executor on a fake clock (every script takes a declared number of seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from competitions import make_competition
from scripted import FakeClock, ScriptedBrain, ScriptedExecutor

from mlestar.commands.run import _print_result, console
from mlestar.core.events import EventType
from mlestar.pipeline import evaluation
from mlestar.pipeline.run import create_run, execute
from mlestar.settings import Settings
from mlestar.store import RunStatus, RunStore

PAPER_LOOPS = {"num_models": 3, "num_tracks": 2, "outer_steps": 4, "inner_steps": 4, "ensemble_rounds": 5}
SHORT_LOOPS = {"num_models": 3, "num_tracks": 2, "outer_steps": 1, "inner_steps": 2, "ensemble_rounds": 2}


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "comp", "binary", n_rows=80)


def start(competition: Path, tmp_path: Path, run_id: str = "r", **settings: object) -> RunStore:
    # One worker: the fake clock adds up scripts one after the other, as one worker would.
    values = {"debug_retries": 1, "workers": 1, **settings}
    return create_run(competition, Settings.load(runs_dir=tmp_path / "runs", **values), run_id=run_id)


def clocked(clock: FakeClock, **kwargs: float) -> ScriptedExecutor:
    return ScriptedExecutor(clock, wall_s=10, final_wall_s=20, **kwargs)


def places(store: RunStore) -> list[str]:
    return [n.step_key for n in store.nodes()]


def test_every_phase_runs_once_when_the_paper_loops_do_not_fit(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # 200 s of 10 s scripts: the paper's loops (16 refinements per track, 5 ensembles) are far out of
    # reach, yet one step of refinement and one ensemble fit, and so they run.
    store = start(competition, tmp_path, time_limit_s=200, **PAPER_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock))
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    agents = [n.agent for n in store.nodes()]
    assert {"ablation", "refine", "ensemble", "submission"} <= set(agents)
    assert agents.count("ablation") < 2 * PAPER_LOOPS["outer_steps"]
    assert result.time_used["time_spent_s"] <= 200
    assert store.events(types=[EventType.BUDGET]), "the cut loops say why they stopped"


def test_time_left_after_the_paper_loops_goes_to_extension_steps(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    store = start(competition, tmp_path, time_limit_s=600, **SHORT_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock, seed_noise=0.002))
    used = result.time_used
    assert 0.9 <= used["share"] <= 1.0, used
    assert any("/x0/" in key for key in places(store) if key.startswith("p2/")), "extension outer steps ran"
    assert any("/x0/" in key for key in places(store) if key.startswith("p3/")), "extension ensembles ran"
    summary = json.loads((store.run_dir / "summary.json").read_text())
    assert summary["time_used"]["ended_because"] == "time limit"
    assert set(summary["time_used"]["loops"]) >= {"phase2/t0", "phase2/t1", "phase3"}


def test_no_extend_stops_after_the_paper_loops_and_says_so(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    store = start(competition, tmp_path, time_limit_s=600, extend=False, **SHORT_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock))
    assert result.time_used["share"] < 0.9
    assert result.time_used["ended_because"] == "the paper's loops are done and extension is off"
    assert not [key for key in places(store) if "/x" in key or "/e1" in key]
    ablations = [n for n in store.nodes() if n.agent == "ablation"]
    assert len(ablations) == SHORT_LOOPS["num_tracks"] * SHORT_LOOPS["outer_steps"]


def test_extension_gives_up_when_nothing_helps_any_more(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # Refinements never beat their base: each track stops after EXTENSION_PATIENCE extension steps.
    store = start(competition, tmp_path, time_limit_s=3000, **SHORT_LOOPS)
    brain = ScriptedBrain(refine_gains=(-0.01, -0.02), ensemble_gain=-0.001)
    executor = clocked(fake_clock)
    result = execute(store, brain=brain, executor=executor)
    # On an unchanged base, each outer step continues the block's plans where the last one stopped.
    assert all(count == 1 for count in executor.runs.values()), executor.runs
    loops = result.time_used["loops"]
    assert loops["phase2/t0"] == "3 extension steps in a row found nothing better"
    assert result.time_used["share"] < 0.9 and "every loop finished" in result.time_used["ended_because"]


def test_the_summary_carries_the_multi_seed_evaluation_of_the_chosen_solution(
    competition: Path, tmp_path: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = start(competition, tmp_path, time_limit_s=600, extend=False, final_seeds=3, **SHORT_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock, seed_noise=0.004))
    summary = json.loads((store.run_dir / "summary.json").read_text())
    final = summary["final_evaluation"]
    assert final["seeds"] == 3 and len(final["scores"]) == 3 and not final["includes_selected_run"]
    mean, std, ci95 = evaluation.interval(final["scores"])
    assert final["mean"] == pytest.approx(mean) and final["std"] == pytest.approx(std)
    assert final["ci95"] == pytest.approx(ci95) and final["ci95"][0] < final["mean"] < final["ci95"][1]
    seeded = [n for n in store.nodes() if n.agent == "evaluation" and n.parent_ids == [final["node_id"]]]
    assert sorted(n.info["seed"] for n in seeded) == final["seed_values"]
    assert sorted(n.score for n in seeded) == sorted(final["scores"]) and final["submitted"]
    assert "- Final evaluation: **" in (store.run_dir / "report.md").read_text()
    assert "95% interval" in (store.run_dir / "report.html").read_text()
    monkeypatch.setattr(console, "width", 400)
    with console.capture() as captured:
        _print_result(result)
    assert "over 3 seeds, 95% interval" in captured.get()


def test_the_final_pick_weighs_two_close_candidates_by_their_seed_means(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # Two tracks scoring 0.75 on one run each, whose seeds wobble by up to 0.05: both are
    # evaluated and the submission comes from the one with the better mean, whichever it is.
    store = start(
        competition, tmp_path, time_limit_s=600, extend=False, outer_steps=0, ensemble_rounds=0, num_models=3
    )
    brain = ScriptedBrain(candidate_scores=(0.70, 0.75, 0.75), merge_gain=0.0)
    result = execute(store, brain=brain, executor=clocked(fake_clock, seed_noise=0.05))
    evaluations = {int(k): v for k, v in store.get_meta("evaluations").items()}
    assert len(evaluations) == 2, "the runner-up lies inside the best one's interval: both are evaluated"
    best_mean = max(evaluations, key=lambda node_id: evaluations[node_id]["mean"])
    assert result.final_evaluation["node_id"] == best_mean
    assert store.get_meta("submission")["source_node_id"] == best_mean
    swapped = [e for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == "final_pick"]
    single_best = max(evaluations, key=lambda node_id: store.get_node(node_id).score)
    assert bool(swapped) == (best_mean != single_best)


def test_a_target_score_stops_the_run_once_the_interval_clears_it(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # Candidates score 0.70, 0.75 and 0.72: the best's interval clears 0.74 right after phase 1's
    # candidates, so no merge, refinement or ensemble is needed.
    store = start(competition, tmp_path, time_limit_s=3000, target_score=0.74, final_seeds=3, **SHORT_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock, seed_noise=0.002))
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    assert result.goal is not None and result.goal["reached"] and result.goal["target_score"] == 0.74
    assert result.time_used["ended_because"] == "target score 0.74 reached"
    agents = {n.agent for n in store.nodes()}
    assert not agents & {"merger", "ablation", "refine", "ensemble"}
    assert result.final_evaluation is not None and result.final_evaluation["ci95"][0] > 0.74
    goal_checks = [e for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == "goal"]
    assert [e.data["verdict"] for e in goal_checks] == ["reached"]


def test_an_unreachable_target_changes_nothing_but_the_record(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    store = start(competition, tmp_path, time_limit_s=600, extend=False, target_score=0.99, **SHORT_LOOPS)
    result = execute(store, brain=ScriptedBrain(), executor=clocked(fake_clock))
    assert result.goal is None  # never beaten even by a single score: never evaluated
    assert {"ablation", "refine", "ensemble"} <= {n.agent for n in store.nodes()}


def test_a_solution_whose_final_cannot_finish_in_time_is_not_picked(
    competition: Path, tmp_path: Path, fake_clock: FakeClock
) -> None:
    # Ensembles take 60 s to develop (their finals 120 s), every other script 10 s (finals 20 s).
    # The ensemble scores best, but once it has run its final would not finish in the time left:
    # a single solution is evaluated and submitted instead, within the limit.
    store = start(competition, tmp_path, time_limit_s=200, **SHORT_LOOPS)
    executor = clocked(fake_clock, walls={"ensemble": 60})
    result = execute(store, brain=ScriptedBrain(), executor=executor)
    nodes = {n.id: n for n in store.nodes()}
    best = store.get_meta("best")
    assert nodes[best["node_id"]].agent == "ensemble"  # the ensemble was the best solution
    submission = store.get_meta("submission")
    assert nodes[submission["source_node_id"]].agent != "ensemble"
    assert not [n for n in nodes.values() if n.agent == "submission" and "ensemble" in n.label]
    notes = [e.message for e in store.events(types=[EventType.BUDGET])]
    assert any("left out: its final script would not finish" in m for m in notes), notes
    # What is submitted is what the final evaluation describes.
    assert result.final_evaluation is not None
    assert result.final_evaluation["node_id"] == submission["source_node_id"]
    assert result.time_used["time_spent_s"] <= 200
