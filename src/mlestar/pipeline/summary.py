"""What a run hands back when it ends: ``summary.json``, the report, and ``RunResult``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mlestar.core.contract import SUBMISSION_NAME
from mlestar.core.events import EventBus, EventType
from mlestar.core.steps import Agent
from mlestar.core.task import Task
from mlestar.metrics import get_metric
from mlestar.pipeline.budget import Budget
from mlestar.settings import Settings
from mlestar.store import NodeStatus, RunStatus, RunStore

SOLUTION_NAME = "solution.py"
SUMMARY_NAME = "summary.json"
FULL_USE = 0.9  # a run that used this share of its time limit used its budget
NOT_SOLUTIONS = (Agent.ABLATION.value, Agent.SUBMISSION.value, Agent.EVALUATION.value)


class RunResult(BaseModel):
    """What a finished (or stopped) run hands back."""

    run_id: str
    run_dir: Path
    status: RunStatus
    metric: str
    lower_is_better: bool
    best_score: float | None
    submission_score: float | None  # validation score of the solution behind submission.csv
    submission_path: Path | None
    solution_path: Path | None
    report_path: Path | None
    summary_path: Path | None
    stop_reason: str | None = None  # "user", "budget", "llm" or "infrastructure" when stopped
    stop_detail: str | None = None  # why, in one line, when the run stopped itself
    # the chosen solution validated with several seeds: seeds, mean, std, ci95 [low, high], ...
    final_evaluation: dict[str, Any] | None = None
    goal: dict[str, Any] | None = None  # the target score, and whether and when it was reached
    time_used: dict[str, Any] = {}  # share of the time limit used, and why the run ended when it did


def _scores_by_phase(store: RunStore, task: Task) -> dict[str, Any]:
    metric = get_metric(task.metric)
    by_phase: dict[str, Any] = {}
    for node in store.nodes():
        entry = by_phase.setdefault(node.phase, {"scripts": 0, "failed": 0, "best": None})
        entry["scripts"] += 1
        entry["failed"] += node.status == NodeStatus.FAILED
        measured = node.agent not in NOT_SOLUTIONS
        if measured and node.score is not None and metric.is_better(node.score, entry["best"]):
            entry["best"] = node.score
    return by_phase


def time_used(
    store: RunStore, settings: Settings, budget: Budget, status: RunStatus, stop_reason: str | None
) -> dict[str, Any]:
    """How much of its time a run used and, when it ended early, why (as its loops recorded it)."""
    elapsed = budget.elapsed()
    endings = dict(store.get_meta("loop_endings") or {})
    goal = store.get_meta("goal") or {}
    limit = settings.time_limit_s
    share = elapsed / limit if limit else None
    if status != RunStatus.FINISHED:
        reason = {"user": "stopped by the user", "budget": "the LLM budget ran out"}.get(
            stop_reason or "", f"the run {status.value}"
        )
    elif goal.get("reached"):
        reason = f"target score {goal['target_score']:g} reached"
    elif limit is None:
        reason = "no time limit: the paper's loops are done"
    elif share is not None and share >= FULL_USE:
        reason = "time limit"
    elif not settings.extend:
        reason = "the paper's loops are done and extension is off"
    else:
        finished = "; ".join(f"{loop}: {why}" for loop, why in sorted(endings.items()))
        reason = f"every loop finished: {finished}"
    return {
        "time_spent_s": round(elapsed, 1),
        "time_limit_s": limit,
        "share": round(share, 3) if share is not None else None,
        "extended": settings.extend and limit is not None,
        "ended_because": reason,
        "loops": endings,
        "clock": budget.snapshot(),
    }


def finish(
    store: RunStore,
    bus: EventBus,
    task: Task,
    settings: Settings,
    budget: Budget,
    status: RunStatus,
    stop_reason: str | None,
    stop_detail: str | None = None,
) -> RunResult:
    """Write the summary and the report of a run that ended (or stopped) and describe the result."""
    elapsed_s = budget.elapsed()
    run_dir = store.run_dir
    nodes = store.nodes()
    best = store.get_meta("best") or {}
    submission = store.get_meta("submission") or {}
    calls = store.llm_calls()
    summary = {
        "run_id": store.run_id,
        "competition": task.name,
        "status": status.value,
        "metric": task.metric,
        "lower_is_better": task.lower_is_better,
        "best_score": best.get("score"),
        "best_node_id": best.get("node_id"),
        "submission": submission or None,
        "scores_by_phase": _scores_by_phase(store, task),
        "time_spent_s": round(elapsed_s, 1),
        "time_limit_s": settings.time_limit_s,
        "time_used": time_used(store, settings, budget, status, stop_reason),
        "final_evaluation": final_evaluation(store),
        "goal": store.get_meta("goal"),
        "scripts_run": len(nodes),
        "scripts_failed": sum(n.status == NodeStatus.FAILED for n in nodes),
        "brain": store.get_meta("brain"),
        "llm": {
            "calls": len(calls),
            "cached_calls": sum(c.cached for c in calls),
            "prompt_tokens": sum(c.prompt_tokens for c in calls),
            "completion_tokens": sum(c.completion_tokens for c in calls),
            "cost_usd": round(sum(c.cost_usd or 0.0 for c in calls), 6),
        },
    }
    store.set_meta("summary", summary)
    summary_path = run_dir / SUMMARY_NAME
    summary_path.write_text(json.dumps(summary, indent=2))
    report_path = None
    try:
        from mlestar.report import write_report

        report_path, _ = write_report(run_dir)
    except Exception as exc:  # the report is a view; a failure there must not lose the run
        bus.publish(EventType.WARNING, f"report not written: {type(exc).__name__}: {exc}")
    submission_path = run_dir / SUBMISSION_NAME
    solution_path = run_dir / SOLUTION_NAME
    return RunResult(
        run_id=store.run_id,
        run_dir=run_dir,
        status=status,
        metric=task.metric,
        lower_is_better=task.lower_is_better,
        best_score=best.get("score"),
        submission_score=submission.get("dev_score"),
        submission_path=submission_path if submission_path.exists() else None,
        solution_path=solution_path if solution_path.exists() else None,
        report_path=report_path,
        summary_path=summary_path,
        stop_reason=stop_reason,
        stop_detail=stop_detail,
        final_evaluation=summary["final_evaluation"],
        goal=summary["goal"],
        time_used=summary["time_used"],
    )


def final_evaluation(store: RunStore) -> dict[str, Any] | None:
    """The chosen solution's multi-seed evaluation, and whether the submission came from it."""
    chosen = store.get_meta("final_evaluation")
    if not chosen:
        return None
    submission = store.get_meta("submission") or {}
    return {
        "node_id": chosen["node_id"],
        "label": chosen.get("label", ""),
        "seeds": len(chosen["scores"]),
        "seed_values": chosen["seeds"],
        "scores": chosen["scores"],
        "mean": chosen["mean"],
        "std": chosen["std"],
        "ci95": chosen["ci95"],
        "includes_selected_run": chosen.get("includes_selected_run", False),
        "note": chosen.get("note", ""),
        "submitted": submission.get("source_node_id") == chosen["node_id"],
    }
