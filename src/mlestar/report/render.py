"""Turning a ``RunReport`` into report.html (self-contained) and report.md."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mlestar.report.data import PHASES, RunReport, TreeRow, executor_counts
from mlestar.report.svg import format_seconds, score_chart

_TEMPLATES = Path(__file__).parent / "templates"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    return format_seconds(seconds)


def money(usd: float) -> str:
    return f"${usd:.4f}" if usd < 1 else f"${usd:.2f}"


def by_size(effects: dict[str, float]) -> list[tuple[str, float]]:
    """Ablation effects, the component that moves the score most first."""
    return sorted(effects.items(), key=lambda item: abs(item[1]), reverse=True)


def brain_label(brain: str) -> str:
    if brain.startswith("llm:"):
        return f"LLM brain ({brain[4:]})"
    return "offline expert brain" if brain in ("", "expert") else brain


def direction(lower_is_better: bool | None) -> str:
    if lower_is_better is None:
        return ""
    return "lower is better" if lower_is_better else "higher is better"


def task_rows(task: dict[str, Any]) -> list[tuple[str, str]]:
    def join(value: Any) -> str:
        return ", ".join(map(str, value)) if isinstance(value, list) else fmt(value)

    rows = [
        ("competition", task.get("name")),
        ("task type", task.get("task_type")),
        ("modality", task.get("modality")),
        ("metric", f"{task.get('metric', '-')} ({direction(task.get('lower_is_better'))})"),
        ("target", join(task.get("target_columns"))),
        ("id column", task.get("id_column")),
        ("training rows", task.get("n_train_rows")),
        ("test rows", task.get("n_test_rows")),
        ("submission columns", join(task.get("submission_columns"))),
    ]
    return [
        (key, fmt(value) if not isinstance(value, str) else value)
        for key, value in rows
        if value not in (None, "", [])
    ]


def phase_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    by_phase = summary.get("scores_by_phase")
    if not isinstance(by_phase, dict):
        return []
    rows = []
    for name in sorted(by_phase):
        entry = by_phase[name] if isinstance(by_phase[name], dict) else {}
        rows.append(
            (
                f"{name}: {PHASES.get(name, '')}".rstrip(": "),
                fmt(entry.get("scripts")),
                fmt(entry.get("failed")),
                fmt(entry.get("best")),
            )
        )
    return rows


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(fmt=fmt, duration=duration, money=money, by_size=by_size)
    return env


def _bar_width(delta: float, effects: dict[str, float]) -> int:
    largest = max((abs(v) for v in effects.values()), default=0.0)
    return 0 if not largest else max(1, round(120 * abs(delta) / largest))


def confidence(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(title, value, detail) for how sure the run is: the multi-seed evaluation of the chosen
    solution, the target score, and how much of its time the run used and why it ended."""
    rows = []
    final = summary.get("final_evaluation") or {}
    if final.get("ci95"):
        low, high = final["ci95"]
        rows.append(("final evaluation", f"{fmt(final['mean'])} ± {fmt(final['std'])}",
                     f"95% interval {fmt(low)} to {fmt(high)} over {final['seeds']} seeds"
                     f" of solution #{final['node_id']}" + (" (submitted)" if final.get("submitted") else "")))
    elif final:
        rows.append(("final evaluation", fmt(final.get("mean")), final.get("note") or "one score only"))
    goal = summary.get("goal") or {}
    if goal:
        reached = f"reached after {duration(goal.get('at_s'))}" if goal.get("reached") else "not reached"
        rows.append((f"target {fmt(goal['target_score'])}", reached, ""))
    used = summary.get("time_used") or {}
    if used.get("share") is not None:
        rows.append(("time used", f"{used['share']:.0%}", str(used.get("ended_because", ""))))
    return rows


def render_html(report: RunReport) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=report,
        chart=score_chart(report.progress),
        brain_label=brain_label(report.brain),
        direction=direction(report.task.get("lower_is_better")),
        generated=time.strftime("%Y-%m-%d %H:%M", time.localtime(report.generated_at)),
        n_failed=sum(row.status.value == "failed" for row in report.tree),
        task_rows=task_rows(report.task),
        phase_rows=phase_rows(report.summary),
        confidence=confidence(report.summary),
        labels={row.id: f"{row.agent} {row.label}".strip() for row in report.tree},
        bar_width=_bar_width,
        ran_on=executor_counts(report.tree),
        on_nodes=any(row.executor_node for row in report.tree),
    )


def _tree_line(row: TreeRow) -> str:
    score = "failed" if row.status.value == "failed" else fmt(row.score)
    marks = (" ★ best" if row.is_best else "") + (" ✓ submitted" if row.in_submission else "")
    extra = f" (+ {', '.join(f'#{p}' for p in row.extra_parents)})" if row.extra_parents else ""
    label = f" {row.label}" if row.label else ""
    track = "" if row.track is None else f", track {row.track}"
    node = f", on {row.ran_on}" if row.executor_node else ""
    return (
        f"{'  ' * row.depth}- #{row.id} **{row.agent}**{label}{extra}: {score} ({row.phase}{track}{node}){marks}"
    )


def _cell(text: Any) -> str:
    return fmt(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: RunReport) -> str:
    task = report.task
    out: list[str] = [
        f"# mlestar report: {task.get('name') or report.run_id}",
        "",
        f"Run `{report.run_id}`, status **{report.status.value}**, {brain_label(report.brain)}.",
        "",
        (
            f"- Best validation {task.get('metric', 'score')}: **{fmt(report.best.get('score'))}**"
            f" ({direction(task.get('lower_is_better'))})"
        ),
        f"- Scripts run: {len(report.tree)} ({sum(r.status.value == 'failed' for r in report.tree)} failed)",
        f"- Time spent: {duration(report.time_spent_s)}"
        + (f" of {duration(report.time_limit_s)}" if report.time_limit_s else ""),
        "- Scripts ran on: "
        + (", ".join(f"{where} ({count})" for where, count in executor_counts(report.tree)) or "-"),
        (
            f"- LLM: {report.llm.calls} calls, {report.llm.prompt_tokens} prompt"
            f" + {report.llm.completion_tokens} completion tokens, {money(report.llm.cost_usd)}"
            if report.llm.calls
            else "- LLM: no calls"
        ),
    ]
    if report.files.get("submission.csv"):
        out.append(
            f"- Submission: `submission.csv` (from script #{report.submission.get('source_node_id')},"
            f" validation {fmt(report.submission.get('dev_score'))})"
        )
    out += [f"- {title.capitalize()}: **{value}**" + (f" ({detail})" if detail else "")
            for title, value, detail in confidence(report.summary)]
    out += ["", "## Task", "", "| | |", "|---|---|"]
    out += [f"| {key} | {_cell(value)} |" for key, value in task_rows(task)]
    if report.data_report:
        out += ["", "## Data profile", "", "```text", report.data_report.rstrip(), "```"]
    out += ["", "## Score progression", ""]
    out.append(" → ".join(f"{p.title} ({p.state})" for p in report.phases))
    out.append("")
    if report.progress.best:
        out += ["| time | new best | script |", "|---|---:|---|"]
        out += [f"| {duration(s.t)} | {fmt(s.score)} | #{s.node_id} |" for s in report.progress.best]
    else:
        out.append("No score yet.")
    rows = phase_rows(report.summary)
    if rows:
        out += ["", "| phase | scripts | failed | best |", "|---|---:|---:|---:|"]
        out += [f"| {' | '.join(row)} |" for row in rows]
    out += ["", "## Solution tree", "", "Each script is listed under the script it was built from.", ""]
    out += [_tree_line(row) for row in report.tree] or ["No scripts yet."]
    if report.checks:
        out += [
            "",
            "## Leakage and data-usage checks",
            "",
            "| check | track | verdict | fix kept | reason |",
            "|---|---|---|---|---|",
        ]
        for check in report.checks:
            kept = "yes" if check.kept else "no"
            reason = _cell(check.reason or check.message)
            out.append(f"| {check.kind} | {fmt(check.track)} | {check.verdict} | {kept} | {reason} |")
    out += ["", "## Ablation findings", ""]
    if not report.ablations:
        out.append("No ablation study was run.")
    for finding in report.ablations:
        step = "" if finding.outer_step is None else f", outer step {finding.outer_step + 1}"
        out += [f"### Track {fmt(finding.track)}{step} (script #{finding.node_id})", "", finding.summary, ""]
        if finding.effects:
            out += ["| component changed | effect on the score |", "|---|---:|"]
            out += [f"| {_cell(name)} | {delta:+.4g} |" for name, delta in by_size(finding.effects)]
            out.append("")
    out += ["", "## Ensemble", ""]
    if report.ensembles:
        out += ["| script | plan | score | |", "|---|---|---:|---|"]
        for e in report.ensembles:
            score = "failed" if e.status.value == "failed" else fmt(e.score)
            note = ", ".join(n for n, on in (("best ensemble", e.chosen), ("submitted", e.submitted)) if on)
            out.append(f"| #{e.node_id} | {_cell(e.plan or e.label)} | {score} | {note} |")
    else:
        out.append(f"No ensemble was built{': ' + report.ensemble_note if report.ensemble_note else ''}.")
    out += ["", "## Final script", ""]
    if report.final_script:
        out += [f"From {report.final_script_source}:", "", "```python", report.final_script.rstrip(), "```"]
    else:
        out.append("No final script yet.")
    if report.llm.by_agent:
        out += [
            "",
            "## LLM calls by agent",
            "",
            "| agent | calls | prompt tokens | completion tokens | cost |",
            "|---|---:|---:|---:|---:|",
        ]
        out += [
            f"| {name} | {u.calls} | {u.prompt_tokens} | {u.completion_tokens} | {money(u.cost_usd)} |"
            for name, u in sorted(report.llm.by_agent.items())
        ]
    return "\n".join(out) + "\n"
