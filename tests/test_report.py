"""report.html / report.md: content, safety, offline, and the views they are built from."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlestar.core.events import Event, EventType
from mlestar.report import collect, write_report
from mlestar.report.data import phase_states, score_progress, solution_tree
from mlestar.report.svg import nice_ticks, score_chart
from mlestar.store import NodeRecord, NodeStatus, RunStatus, RunStore

sys.path.insert(0, str(Path(__file__).parent))  # no tests/__init__.py: helpers import by name
from recording import publish
from test_server_support import RUN_ID, FakeRun, build_finished_run

EXTERNAL = re.compile(r"https?://|(?:src|href|action)\s*=\s*[\"']?//|url\(\s*[\"']?//|//cdn", re.IGNORECASE)


def test_report_files_hold_the_story_of_the_run(tmp_path: Path) -> None:
    run = build_finished_run(tmp_path)
    html_path, md_path = write_report(run.dir)
    assert (html_path, md_path) == (run.dir / "report.html", run.dir / "report.md")
    html, md = html_path.read_text(), md_path.read_text()

    # The tree: every script, in tree order, failed ones marked, the best one starred.
    rows = re.findall(r'<tr class="(\w+)( best)?" data-node="(\d+)">', html)
    assert [int(r[2]) for r in rows] == [1, 2, 4, 5, 6, 9, 10, 7, 8, 3]
    assert {int(r[2]) for r in rows if r[0] == "failed"} == {3, 7}
    assert [int(r[2]) for r in rows if r[1]] == [9]
    assert "+#4" in html  # the ensemble's second parent

    for text in (
        'id="best-score">0.88<',  # headline score
        "roc_auc (higher is better)",  # task and metric direction
        "Removing the tenure bins costs the most",  # ablation finding
        "tenure bins",
        "-0.03",
        "Average the ranks of the two track winners.",  # the ensemble chosen
        "best ensemble, submitted",
        "model = LogisticRegression(C=10.0)",  # the final script
        "tenure: int64",  # data profile
        "$0.0042",
        "3700 prompt",  # cost and tokens
        "95s of 10m",  # time spent and limit
        "target not used",  # leakage check
    ):
        assert text in html, text
    chart = re.search(r"<svg.*?</svg>", html, re.DOTALL)
    assert chart and chart.group(0).count('class="pt"') == 7 and chart.group(0).count('class="best-pt"') == 5

    assert md.startswith("# mlestar report: churn")
    tree_lines = [line for line in md.splitlines() if re.match(r"\s*- #\d+ ", line)]
    assert len(tree_lines) == 10
    assert "    - #6 **refine** tenure bins x10: 0.87 (phase2, track 0, on ray node 5c0ffee00000 (10.0.0.5))" in tree_lines
    assert "      - #9 **ensemble** rank average (+ #4): 0.88 (phase3) ★ best ✓ submitted" in tree_lines
    assert "- #3 **candidate** catboost: failed (phase1)" in tree_lines
    for text in ("| tenure bins | -0.03 |", "Average the ranks", "```python", "## Final script"):
        assert text in md, text
    assert re.search(r"^\| [\d.]+s \| 0\.88 \| #9 \|$", md, re.MULTILINE)  # score progression


def test_report_is_self_contained_and_offline(tmp_path: Path) -> None:
    run = build_finished_run(tmp_path)
    html = write_report(run.dir)[0].read_text()
    assert not EXTERNAL.search(html)
    assert "<script" not in html and "<link" not in html and "<img" not in html and "@import" not in html
    assert "<style>" in html


def test_report_escapes_whatever_the_run_wrote(tmp_path: Path) -> None:
    run = FakeRun(tmp_path).start()
    evil = "<script>alert(1)</script>"
    run.script(
        "candidate",
        evil,
        phase="phase1",
        score=0.5,
        info={"plan": evil},
        code=f"print('{evil}')\nprint('Final Validation Performance: 0.5')\n",
    )
    publish(run.store, 
        EventType.ABLATION, evil, phase="phase2", track=0, data={"summary": evil, "effects": {evil: 0.1}}
    )
    run.finish()
    html, md = (p.read_text() for p in write_report(run.dir))
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert evil in md  # markdown is text; a viewer renders it


def test_report_of_a_run_that_has_not_done_anything(tmp_path: Path) -> None:
    store = RunStore.create(
        tmp_path / "empty", meta={"task": {"name": "x", "metric": "rmse", "lower_is_better": True}}
    )
    publish(store, 
        EventType.STEP_FINISHED, "ensembling skipped: fewer than two distinct solutions", phase="phase3"
    )
    store.close()
    html, md = (p.read_text() for p in write_report(tmp_path / "empty"))
    assert "No scripts yet." in html and "no scores yet" in html and "No final script yet." in html
    assert "No scripts yet." in md and "No score yet." in md and "- LLM: no calls" in md
    assert "No ensemble was built: ensembling skipped: fewer than two distinct solutions." in md


def test_report_cli(tmp_path: Path) -> None:
    build_finished_run(tmp_path / "runs")
    result = subprocess.run(
        [sys.executable, "-m", "mlestar", "report", RUN_ID[:12], "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / RUN_ID / "report.html").is_file() and "report.md" in result.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "mlestar", "report", "nope", "--runs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "nope" in missing.stderr and "Traceback" not in missing.stderr


# -- the views the report and the UI share ----------------------------------------------------------
def node(i: int, parents: list[int], agent: str = "refine", score: float | None = 1.0) -> NodeRecord:
    return NodeRecord(
        id=i,
        step_key=str(i),
        parent_ids=parents,
        phase="phase2",
        agent=agent,
        score=score,
        status=NodeStatus.DONE if score is not None else NodeStatus.FAILED,
    )


def test_solution_tree_places_nodes_under_their_first_known_parent() -> None:
    nodes = [node(1, []), node(2, []), node(3, [2, 1]), node(4, [99]), node(5, [3]), node(6, [1, 3])]
    rows = solution_tree(nodes, best_id=5, submission_ids=[6])
    assert [(r.id, r.depth) for r in rows] == [(1, 0), (6, 1), (2, 0), (3, 1), (5, 2), (4, 0)]
    by_id = {r.id: r for r in rows}
    assert by_id[3].extra_parents == [1] and by_id[6].extra_parents == [3] and by_id[4].extra_parents == [99]
    assert by_id[5].is_best and by_id[6].in_submission and not by_id[1].is_best


def test_deep_chains_do_not_recurse() -> None:
    nodes = [node(1, [])] + [node(i, [i - 1]) for i in range(2, 3001)]
    rows = solution_tree(nodes)
    assert rows[-1].depth == 2999


def test_score_progress_uses_best_events_or_derives_them() -> None:
    def finished(ts: float, score: float | None, agent: str = "candidate", status: str = "done") -> Event:
        return Event(
            ts=ts,
            type=EventType.SCRIPT_FINISHED,
            node_id=int(ts),
            phase="phase1",
            data={"score": score, "agent": agent, "status": status, "label": "m"},
        )

    events = [
        finished(10, 0.5),
        finished(20, 0.4),
        finished(30, 0.45),
        finished(35, 0.1, agent="ablation"),
        finished(40, None, status="failed"),
        finished(50, float("nan")),
    ]
    lower = score_progress(events, started_at=0, metric="rmse", lower_is_better=True)
    assert [p.score for p in lower.points] == [0.5, 0.4, 0.45]
    assert [(b.t, b.score) for b in lower.best] == [(10, 0.5), (20, 0.4)]
    higher = score_progress(events, started_at=0, metric="auc", lower_is_better=False)
    assert [b.score for b in higher.best] == [0.5]
    recorded = events + [Event(ts=60, type=EventType.BEST_UPDATED, data={"score": 0.3, "node_id": 7})]
    assert [
        b.score for b in score_progress(recorded, started_at=0, metric="rmse", lower_is_better=True).best
    ] == [0.3]


def test_phase_states() -> None:
    events = [
        Event(type=EventType.PHASE_STARTED, phase="phase1"),
        Event(type=EventType.PHASE_FINISHED, phase="phase1"),
        Event(type=EventType.PHASE_STARTED, phase="phase4"),
        Event(type=EventType.PHASE_STARTED, phase="phase2"),
    ]
    states = [s.state for s in phase_states(events, current="phase2", status=RunStatus.RUNNING)]
    assert states == ["done", "active", "pending", "pending"]  # phase 4 ran early; it comes back at the end
    stopped = [s.state for s in phase_states(events, current="phase2", status=RunStatus.STOPPED)]
    assert stopped == ["done", "halted", "pending", "pending"]
    done = [s.state for s in phase_states(events, current="phase4", status=RunStatus.FINISHED)]
    assert done == ["done"] * 4


@pytest.mark.parametrize(("low", "high"), [(0.81, 0.88), (-3.0, 1200.0), (0.0, 1e-6), (5.0, 5.0)])
def test_nice_ticks_cover_the_range(low: float, high: float) -> None:
    ticks = nice_ticks(low, high)
    assert ticks == sorted(ticks) and 1 <= len(ticks) <= 11
    assert all(low - 1e-12 <= t <= high + 1e-12 for t in ticks)


def test_chart_marks_every_point_and_escapes_labels(tmp_path: Path) -> None:
    run = build_finished_run(tmp_path)
    with RunStore(run.dir) as store:
        report = collect(store)
    svg = score_chart(report.progress)
    assert svg.startswith("<svg ") and "xmlns" not in svg  # inline use: no URL at all
    assert 'xmlns="http://www.w3.org/2000/svg"' in score_chart(report.progress, standalone=True)
    assert svg.count('class="pt"') == len(report.progress.points) == 7
    assert re.search(r'class="best-line" d="M[\d.,HV ]+"', svg)
    report.progress.points[0].label = "<b>&"
    assert "&lt;b&gt;&amp;" in score_chart(report.progress)
