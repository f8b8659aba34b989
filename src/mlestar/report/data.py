"""What a run looks like to a reader: the views shared by the report and the web UI.

Everything here is computed from the run store alone (meta, nodes, events, LLM calls), so a page
opened mid-run, a report written at the end and the API all tell the same story.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from mlestar.core.events import Event, EventType
from mlestar.core.records import LLMCallRecord
from mlestar.store import NodeRecord, NodeStatus, RunStatus, RunStore

PHASES: dict[str, str] = {
    "phase1": "Initial solution",
    "phase2": "Targeted refinement",
    "phase3": "Ensembling",
    "phase4": "Submission",
}
# Scripts whose score is not a candidate solution's: kept off the score chart.
NOT_SOLUTIONS = frozenset({"ablation", "evaluation"})  # evaluation: seed re-runs of a solution
LIFECYCLE = (
    EventType.RUN_STARTED,
    EventType.RUN_RESUMED,
    EventType.RUN_PAUSED,
    EventType.RUN_STOPPED,
    EventType.RUN_FINISHED,
    EventType.RUN_FAILED,
)
ENDING = frozenset({EventType.RUN_STOPPED, EventType.RUN_FINISHED, EventType.RUN_FAILED})


class TreeRow(BaseModel):
    """A node placed in the solution tree: under its first parent, in creation order."""

    id: int
    parent_ids: list[int]
    depth: int
    extra_parents: list[int] = Field(default_factory=list)  # merges and ensembles have several
    track: int | None
    phase: str
    agent: str
    label: str
    status: NodeStatus
    score: float | None
    wall_s: float | None
    created_at: float
    finished_at: float | None
    error: str | None
    plan: str | None = None
    block_name: str | None = None
    model: str | None = None
    is_best: bool = False
    in_submission: bool = False
    has_script: bool = False
    executor: str | None = None  # which executor ran the script: local, ray, or a custom one
    executor_node: str | None = None  # the Ray node that ran it
    executor_ip: str | None = None
    ran_on: str | None = None  # the three above, for people: "ray node 1df54e924759 (10.0.0.5)"


class ScorePoint(BaseModel):
    t: float  # seconds since the run started
    score: float
    node_id: int | None
    agent: str
    label: str
    phase: str | None


class BestStep(BaseModel):
    t: float
    score: float
    node_id: int | None


class Progress(BaseModel):
    metric: str | None
    lower_is_better: bool | None
    started_at: float
    elapsed_s: float
    points: list[ScorePoint]
    best: list[BestStep]


PhaseStateName = Literal["pending", "active", "halted", "done"]


class PhaseState(BaseModel):
    name: str
    title: str
    state: PhaseStateName


class AblationFinding(BaseModel):
    node_id: int | None
    track: int | None
    outer_step: int | None
    summary: str
    baseline: float | None
    effects: dict[str, float]


class CheckFinding(BaseModel):
    kind: str
    verdict: str
    kept: bool
    reason: str
    message: str
    track: int | None
    node_id: int | None


class AgentUsage(BaseModel):
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class LLMUsage(AgentUsage):
    unpriced_calls: int = 0  # calls to models without a known price: cost is a lower bound
    by_agent: dict[str, AgentUsage] = Field(default_factory=dict)


class EnsembleChoice(BaseModel):
    node_id: int
    label: str
    plan: str | None
    score: float | None
    status: NodeStatus
    chosen: bool  # the best ensemble of the run
    submitted: bool  # the submission was built from it


class RunReport(BaseModel):
    run_id: str
    status: RunStatus
    generated_at: float
    task: dict[str, Any]
    config: dict[str, Any]
    brain: str
    data_report: str
    best: dict[str, Any]
    submission: dict[str, Any]
    summary: dict[str, Any]
    phases: list[PhaseState]
    progress: Progress
    tree: list[TreeRow]
    ablations: list[AblationFinding]
    checks: list[CheckFinding]
    ensembles: list[EnsembleChoice]
    ensemble_note: str | None  # why phase 3 built nothing, or stopped early, as the pipeline said
    llm: LLMUsage
    time_spent_s: float | None
    time_limit_s: float | None
    final_script: str | None
    final_script_source: str | None
    files: dict[str, bool]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def better(a: float, b: float | None, lower_is_better: bool | None) -> bool:
    if b is None:
        return True
    return a < b if lower_is_better else a > b


def solution_tree(
    nodes: Iterable[NodeRecord], *, best_id: int | None = None, submission_ids: Iterable[int] = ()
) -> list[TreeRow]:
    """Nodes in depth-first order, each under its first known parent (ids grow with time)."""
    nodes = sorted(nodes, key=lambda n: n.id)
    known = {n.id for n in nodes}
    children: dict[int | None, list[NodeRecord]] = {}
    for node in nodes:
        parent = next((p for p in node.parent_ids if p in known and p < node.id), None)
        children.setdefault(parent, []).append(node)
    submitted = set(submission_ids)
    rows: list[TreeRow] = []
    # Iterative walk: refinement chains can be deeper than a comfortable recursion.
    stack: list[tuple[NodeRecord, int]] = [(n, 0) for n in reversed(children.get(None, []))]
    while stack:
        node, depth = stack.pop()
        first = next((p for p in node.parent_ids if p in known and p < node.id), None)
        info = node.info or {}
        rows.append(
            TreeRow(
                id=node.id,
                parent_ids=node.parent_ids,
                depth=depth,
                extra_parents=[p for p in node.parent_ids if p != first],
                track=node.track,
                phase=node.phase,
                agent=node.agent,
                label=node.label,
                status=node.status,
                score=_finite(node.score),
                wall_s=node.wall_s,
                created_at=node.created_at,
                finished_at=node.finished_at,
                error=node.error,
                plan=_text(info.get("plan")),
                block_name=_text(info.get("block_name")),
                model=_text(info.get("model")),
                is_best=node.id == best_id,
                in_submission=node.id in submitted,
                has_script=bool(node.script_path),
                executor=_text(info.get("executor")),
                executor_node=_text(info.get("node_id")),
                executor_ip=_text(info.get("node_ip")),
                ran_on=ran_on(info),
            )
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(node.id, [])))
    return rows


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def ran_on(info: dict[str, Any]) -> str | None:
    """Where a script ran, for people: ``local``, or ``ray node <id> (<ip>)``."""
    executor = info.get("executor")
    if not executor:
        return None
    node = info.get("node_id")
    if not node:
        return str(executor)
    ip = f" ({info['node_ip']})" if info.get("node_ip") else ""
    return f"{executor} node {str(node)[:12]}{ip}"


def executor_counts(tree: Iterable[TreeRow]) -> list[tuple[str, int]]:
    """How many scripts ran where, most first (scripts that never ran are left out)."""
    counts: dict[str, int] = {}
    for row in tree:
        if row.ran_on:
            counts[row.ran_on] = counts.get(row.ran_on, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def score_progress(
    events: Iterable[Event],
    *,
    started_at: float,
    metric: str | None,
    lower_is_better: bool | None,
    now: float | None = None,
) -> Progress:
    points: list[ScorePoint] = []
    recorded_best: list[BestStep] = []
    last_ts = started_at
    for event in events:
        last_ts = max(last_ts, event.ts)
        t = max(0.0, event.ts - started_at)
        if event.type == EventType.SCRIPT_FINISHED:
            score = _finite(event.data.get("score"))
            agent = str(event.data.get("agent", ""))
            if score is not None and agent not in NOT_SOLUTIONS and event.data.get("status") != "failed":
                points.append(
                    ScorePoint(
                        t=t,
                        score=score,
                        node_id=event.node_id,
                        agent=agent,
                        label=str(event.data.get("label", "")),
                        phase=event.phase,
                    )
                )
        elif event.type == EventType.BEST_UPDATED:
            score = _finite(event.data.get("score"))
            if score is not None:
                recorded_best.append(
                    BestStep(t=t, score=score, node_id=event.data.get("node_id", event.node_id))
                )
    best = recorded_best or _running_best(points, lower_is_better)
    end = now if now is not None else last_ts
    return Progress(
        metric=metric,
        lower_is_better=lower_is_better,
        started_at=started_at,
        elapsed_s=max(0.0, end - started_at),
        points=points,
        best=best,
    )


def _running_best(points: list[ScorePoint], lower_is_better: bool | None) -> list[BestStep]:
    """For stores without best_updated events: the best-so-far over the plotted scores."""
    steps: list[BestStep] = []
    for point in points:
        if point.agent == "submission":
            continue
        if better(point.score, steps[-1].score if steps else None, lower_is_better):
            steps.append(BestStep(t=point.t, score=point.score, node_id=point.node_id))
    return steps


def phase_states(events: Iterable[Event], *, current: str | None, status: RunStatus) -> list[PhaseState]:
    finished = {e.phase for e in events if e.type == EventType.PHASE_FINISHED and e.phase in PHASES}
    live = status in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.CREATED)
    states = []
    for name, title in PHASES.items():
        state: PhaseStateName
        if status == RunStatus.FINISHED:
            state = "done"
        elif name == current:
            state = "active" if live else "halted"
        elif name in finished:
            state = "done"
        else:
            # Includes phase 4 after its early run (first submission): it runs again at the end.
            state = "pending"
        states.append(PhaseState(name=name, title=title, state=state))
    return states


def ablation_findings(events: Iterable[Event]) -> list[AblationFinding]:
    findings = []
    for event in events:
        if event.type != EventType.ABLATION:
            continue
        effects = event.data.get("effects") or {}
        findings.append(
            AblationFinding(
                node_id=event.node_id,
                track=event.track,
                outer_step=event.data.get("outer_step"),
                summary=str(event.data.get("summary") or event.message),
                baseline=_finite(event.data.get("baseline")),
                effects={str(k): v for k, v in effects.items() if _finite(v) is not None}
                if isinstance(effects, dict)
                else {},
            )
        )
    return findings


def check_findings(events: Iterable[Event]) -> list[CheckFinding]:
    return [
        CheckFinding(
            kind=str(event.data.get("kind", "")),
            verdict=str(event.data.get("verdict", "")),
            kept=bool(event.data.get("kept", False)),
            reason=str(event.data.get("reason", "")),
            message=event.message,
            track=event.track,
            node_id=event.node_id,
        )
        for event in events
        if event.type == EventType.CHECK
    ]


def llm_usage(calls: Iterable[LLMCallRecord]) -> LLMUsage:
    usage = LLMUsage()
    for call in calls:
        agent = usage.by_agent.setdefault(call.agent, AgentUsage())
        for bucket in (usage, agent):
            bucket.calls += 1
            bucket.cached_calls += int(call.cached)
            bucket.prompt_tokens += call.prompt_tokens
            bucket.completion_tokens += call.completion_tokens
            bucket.cost_usd += call.cost_usd or 0.0
        usage.unpriced_calls += int(call.cost_usd is None and not call.cached)
    return usage


def ensemble_choices(
    tree: list[TreeRow], submission: dict[str, Any], lower_is_better: bool | None
) -> list[EnsembleChoice]:
    ensembles = [row for row in tree if row.agent == "ensemble"]
    chosen: TreeRow | None = None
    for row in ensembles:
        if row.score is not None and (chosen is None or better(row.score, chosen.score, lower_is_better)):
            chosen = row
    source = submission.get("source_node_id")
    return [
        EnsembleChoice(
            node_id=row.id,
            label=row.label,
            plan=row.plan,
            score=row.score,
            status=row.status,
            chosen=row is chosen,
            submitted=row.id == source,
        )
        for row in sorted(ensembles, key=lambda r: r.id)
    ]


def last_lifecycle(store: RunStore) -> Event | None:
    events = store.events(types=list(LIFECYCLE))
    return events[-1] if events else None


def run_started_at(store: RunStore, events: list[Event]) -> float:
    return events[0].ts if events else float(store.get_meta("created_at", time.time()))


def collect(store: RunStore) -> RunReport:
    """Everything the report shows, read from one run store."""
    meta = store.all_meta()
    task = meta.get("task") or {}
    lower = task.get("lower_is_better")
    status = store.status
    events = store.events()
    best = meta.get("best") or {}
    submission = meta.get("submission") or {}
    summary = meta.get("summary") or {}
    nodes = store.nodes()
    submitted = [
        i for i in (submission.get("source_node_id"), submission.get("final_node_id")) if i is not None
    ]
    tree = solution_tree(nodes, best_id=best.get("node_id"), submission_ids=submitted)
    started = run_started_at(store, events)
    live = status in (RunStatus.RUNNING, RunStatus.PAUSED)
    progress = score_progress(
        events,
        started_at=started,
        metric=task.get("metric"),
        lower_is_better=lower,
        now=time.time() if live else None,
    )
    final_script, final_source = _final_script(store.run_dir, nodes, submission, best)
    budget = meta.get("budget") or {}
    config = meta.get("config") or {}
    spent = summary.get("time_spent_s", meta.get("active_s"))
    return RunReport(
        run_id=store.run_id,
        status=status,
        generated_at=time.time(),
        task=task,
        config=config,
        brain=str(meta.get("brain", "")),
        data_report=str(meta.get("data_report", "")),
        best=best,
        submission=submission,
        summary=summary,
        phases=phase_states(events, current=meta.get("phase"), status=status),
        progress=progress,
        tree=tree,
        ablations=ablation_findings(events),
        checks=check_findings(events),
        ensembles=ensemble_choices(tree, submission, lower),
        ensemble_note=next(
            (
                e.message
                for e in reversed(events)
                if e.phase == "phase3" and e.type in (EventType.STEP_FINISHED, EventType.BUDGET)
            ),
            None,
        ),
        llm=llm_usage(store.llm_calls()),
        time_spent_s=_finite(spent) if spent is not None else progress.elapsed_s,
        time_limit_s=_finite(
            summary.get("time_limit_s", budget.get("time_limit_s", config.get("time_limit_s")))
        ),
        final_script=final_script,
        final_script_source=final_source,
        files={
            name: (store.run_dir / name).is_file()
            for name in ("submission.csv", "solution.py", "summary.json")
        },
    )


def _final_script(
    run_dir: Path, nodes: list[NodeRecord], submission: dict[str, Any], best: dict[str, Any]
) -> tuple[str | None, str | None]:
    """The script behind the submission (solution.py), else the best script found so far."""
    solution = run_dir / "solution.py"
    if solution.is_file():
        return solution.read_text(errors="replace"), "solution.py"
    by_id = {n.id: n for n in nodes}
    for node_id in (submission.get("final_node_id"), best.get("node_id")):
        node = by_id.get(node_id) if node_id is not None else None
        if node is not None and node.script_path:
            path = (run_dir / node.script_path).resolve()
            if path.is_relative_to(run_dir.resolve()) and path.is_file():
                return path.read_text(errors="replace"), f"script #{node.id} ({node.script_path})"
    return None, None
