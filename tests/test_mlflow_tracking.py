"""MLflow tracking: a parent run per mlestar run and a nested child per script, recorded as the run
goes, continued after a kill; MLflow down is one warning. The slow test starts a real tracking server
on loopback (``mlflow server`` over SQLite) and reads it back with ``MlflowClient``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from competitions import TINY_CONFIG, make_competition
from fakes.server import free_port
from scripted import ScriptedBrain, ScriptedExecutor

import mlestar
from mlestar.brain.protocol import RefinementPlan, ScoredScript, Script
from mlestar.core.events import EventType
from mlestar.integrations.mlflow_tracking import ScriptUsage, safe_uri
from mlestar.store import NodeStatus, RunStore

TESTS = Path(__file__).resolve().parent


class HoldingBrain(ScriptedBrain):
    """The scripted brain, except that writing the first ensemble waits while the file ``hold``
    exists (and says so with ``hold.reached``): a run to kill in the middle."""

    def __init__(self, hold: Path | str) -> None:
        super().__init__()
        self.hold = Path(hold)

    def implement_ensemble(self, ctx, solutions: list[ScoredScript], plan: RefinementPlan) -> Script:
        if plan.data["round"] == 0 and self.hold.exists():
            self.hold.with_suffix(".reached").touch()
            while self.hold.exists():
                time.sleep(0.05)
        return super().implement_ensemble(ctx, solutions, plan)


def test_an_unreachable_tracking_server_is_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    competition = make_competition(tmp_path / "tiny", "binary", n_rows=200)
    events = []
    uri = f"http://user:pass@127.0.0.1:{free_port()}"
    result = mlestar.run(
        competition,
        brain=ScriptedBrain(),
        executor=ScriptedExecutor(),
        runs_dir=tmp_path / "runs",
        mlflow_tracking_uri=uri,
        listeners=[events.append],
        **TINY_CONFIG,
    )
    assert result.status.value == "finished" and result.submission_path is not None
    warnings = [e.message for e in events if e.type == EventType.WARNING]
    assert len(warnings) == 1 and "MLflow" in warnings[0] and "the run goes on" in warnings[0]
    assert "pass" not in warnings[0] and safe_uri(uri) in warnings[0]  # no password in the message


def test_llm_calls_are_charged_to_the_script_they_wrote_checked_or_debugged() -> None:
    usage = ScriptUsage()
    usage.add("p1/cand0/code#aa", 100, 10, 0.01)  # wrote candidate 0
    usage.add("p1/cand0/leak/check#bb", 50, 5, 0.005)  # checked it for leakage
    usage.add("p1/cand1/code#cc", 70, 7, 0.007)  # another script's
    assert usage.take("p1/cand0") == {
        "llm_calls": 2,
        "llm_prompt_tokens": 150,
        "llm_completion_tokens": 15,
        "llm_cost_usd": 0.015,
    }
    usage.add("p1/cand0/debug1/code#dd", 30, 3, 0.003)  # the debugger's fix is the next script there
    assert usage.take("p1/cand0/debug1")["llm_calls"] == 1
    assert usage.take("p1/cand0") == {}  # every call is charged once
    assert usage.take("p1/cand1")["llm_prompt_tokens"] == 70


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server on loopback (SQLite store, proxied artifacts), stopped by its pid."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: a lighter server
    with (root / "server.log").open("w") as log:
        server = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:]
                )
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _wait(condition, timeout_s: float, what: str, log: Path, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            raise AssertionError(f"timed out waiting for {what}; the run said:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _runs(client, experiment_id: str) -> tuple[list, list]:
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


@pytest.mark.slow  # starts an MLflow server
def test_a_run_is_recorded_as_it_goes_and_a_killed_run_continues_its_parent(mlflow_server, tmp_path) -> None:
    from mlflow import MlflowClient

    competition = make_competition(tmp_path / "tiny", "binary", n_rows=200)
    runs, hold = tmp_path / "runs", tmp_path / "hold"
    hold.touch()
    program = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
        "import mlestar\nfrom competitions import TINY_CONFIG\nfrom scripted import ScriptedExecutor\n"
        "from test_mlflow_tracking import HoldingBrain\n"
        f"mlestar.run({str(competition)!r}, brain=HoldingBrain({str(hold)!r}), executor=ScriptedExecutor(),\n"
        f"            runs_dir={str(runs)!r}, run_id='victim', mlflow_tracking_uri={mlflow_server!r},\n"
        "            mlflow_experiment='kill-test',\n"
        "            **TINY_CONFIG)\n"
    )
    with (tmp_path / "victim.log").open("w") as log:
        victim = subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=tmp_path,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    client = MlflowClient(tracking_uri=mlflow_server)
    try:
        _wait(
            hold.with_suffix(".reached").exists,
            180,
            "the run to reach its held step",
            tmp_path / "victim.log",
            victim,
        )
        store = RunStore(runs / "victim")
        finished_before = [n for n in store.nodes() if n.status in (NodeStatus.DONE, NodeStatus.FAILED)]
        # The tracker runs behind the run, in its own thread: it may still be connecting.
        _wait(lambda: store.get_meta("mlflow") is not None, 120, "the parent run", tmp_path / "victim.log")
        known = store.get_meta("mlflow")
        _wait(
            lambda: len(_runs(client, known["experiment_id"])[1]) >= len(finished_before),
            60,
            "the finished scripts to reach MLflow",
            tmp_path / "victim.log",
        )
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
    # What was done before the kill is in MLflow; the parent is still open.
    parents, children = _runs(client, known["experiment_id"])
    assert [p.info.run_id for p in parents] == [known["parent_run_id"]]
    assert parents[0].info.status == "RUNNING" and len(children) >= len(finished_before)

    hold.unlink()
    store.close()
    result = mlestar.resume("victim", runs_dir=runs, brain=HoldingBrain(hold), executor=ScriptedExecutor())
    assert result.status.value == "finished"

    with RunStore(runs / "victim") as store:
        nodes = {n.id: n for n in store.nodes()}
        best = store.get_meta("best")
        assert store.get_meta("mlflow") == known
    parents, children = _runs(client, known["experiment_id"])
    (parent,) = parents
    assert parent.info.run_id == known["parent_run_id"] and parent.info.status == "FINISHED"
    # One child per script, each once, with its score, agent and phase, nested under the parent.
    ids = [int(c.data.tags["mlestar.node_id"]) for c in children]
    assert sorted(ids) == sorted(nodes) and len(ids) == len(set(ids))
    for child in children:
        node = nodes[int(child.data.tags["mlestar.node_id"])]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.params["agent"] == node.agent and child.data.params["phase"] == node.phase
        assert child.data.metrics.get("validation_score") == node.score
        assert child.data.metrics["wall_s"] == pytest.approx(node.wall_s)
        assert child.info.status == ("FINISHED" if node.status == NodeStatus.DONE else "FAILED")
    some = children[0].info.run_id
    assert {"script.py", "stdout.txt"} <= {a.path for a in client.list_artifacts(some)}
    # The parent: settings as params, the run's tags, scores as metrics, the results as artifacts.
    assert parent.data.params["num_models"] == str(TINY_CONFIG["num_models"])
    assert parent.data.tags["mlestar.run_id"] == "victim" and parent.data.tags["mlestar.brain"] == "scripted"
    assert parent.data.metrics["best_validation_score"] == best["score"]
    assert parent.data.metrics["scripts_run"] == len(nodes) and "test_score" in parent.data.metrics
    history = client.get_metric_history(parent.info.run_id, "best_validation_score")
    values = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp, m.value))]
    assert values == sorted(values) and values[-1] == best["score"]  # it only improves, as it went
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"submission.csv", "solution.py", "summary.json", "report.html"} <= artifacts
