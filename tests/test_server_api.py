"""REST API over synthetic run stores: every endpoint, unknown ids, traversal, starting and steering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mlestar.core.events import EventType
from mlestar.server import ServerOptions, create_app
from mlestar.server.paths import inside, valid_run_id
from mlestar.store import Control, RunStatus, RunStore

sys.path.insert(0, str(Path(__file__).parent))  # no tests/__init__.py: helpers import by name
from recording import publish
from test_server_support import RUN_ID, FakeRun, build_finished_run, recorded_calls, write_fake_python

BASE = "http://127.0.0.1:8000"


@pytest.fixture()
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_ARGV", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("MLESTAR_TOKEN", "must-not-leak-to-children")
    return write_fake_python(tmp_path)


def calls(tmp_path: Path) -> list[dict]:
    return recorded_calls(tmp_path / "argv.jsonl")


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    build_finished_run(path)
    return path


@pytest.fixture()
def client(runs_dir: Path, fake_python: Path) -> TestClient:
    settings = ServerOptions(runs_dir=runs_dir, python=str(fake_python), poll_interval_s=0.05)
    return TestClient(create_app(settings), base_url=BASE)


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- reading ----------------------------------------------------------------------------------
def test_list_and_detail(client: TestClient) -> None:
    runs = client.get("/api/runs").json()
    assert [r["run_id"] for r in runs] == [RUN_ID]
    assert runs[0]["status"] == "finished" and runs[0]["best_score"] == 0.88 and runs[0]["n_scripts"] == 10

    detail = client.get(f"/api/runs/{RUN_ID}").json()
    assert detail["task"]["metric"] == "roc_auc"
    assert detail["best"]["node_id"] == 9
    assert detail["files"] == {
        "submission.csv": True,
        "solution.py": True,
        "report.html": False,
        "report.md": False,
        "summary.json": True,
    }
    assert [p["state"] for p in detail["phases"]] == ["done"] * 4
    assert detail["last_seq"] > 20 and detail["elapsed_s"] is not None
    assert "tenure" in detail["data_report"]


def test_nodes_form_the_solution_tree(client: TestClient) -> None:
    body = client.get(f"/api/runs/{RUN_ID}/nodes").json()
    assert body["best_node_id"] == 9
    rows = {n["id"]: n for n in body["nodes"]}
    assert len(rows) == 10
    assert (
        rows[4]["agent"] == "merger" and rows[4]["parent_ids"] == [2, 1] and rows[4]["extra_parents"] == [1]
    )
    assert rows[4]["depth"] == 1 and rows[9]["depth"] == 3 and rows[10]["depth"] == 4
    assert rows[7]["status"] == "failed" and rows[7]["score"] is None
    assert rows[9]["is_best"] and rows[9]["in_submission"] and rows[10]["in_submission"]
    assert rows[6]["plan"].startswith("Use finer tenure bins")
    # Depth-first: every node comes after its first parent.
    order = [n["id"] for n in body["nodes"]]
    for node in body["nodes"]:
        if node["depth"]:
            assert order.index(node["parent_ids"][0]) < order.index(node["id"])


def test_script_detail_with_diff_and_outputs(client: TestClient) -> None:
    body = client.get(f"/api/runs/{RUN_ID}/nodes/6").json()
    assert body["node"]["ran_on"] == "ray node 5c0ffee00000 (10.0.0.5)"  # where it ran, for the UI
    assert body["node"]["agent"] == "refine"
    assert "bins = 10" in body["code"]
    assert body["stdout"].startswith("Final Validation Performance: 0.87")
    assert body["compared_to"] == 4
    assert "+bins = 10" in body["diff"] and "-model = LogisticRegression(C=4.0)" in body["diff"]
    assert body["parent_label"] == "merger lightgbm + logreg"

    failed = client.get(f"/api/runs/{RUN_ID}/nodes/7").json()
    assert "ValueError" in failed["stderr"] and failed["node"]["error"] == "ValueError: bad shape"

    root = client.get(f"/api/runs/{RUN_ID}/nodes/1").json()
    assert root["diff"] is None and root["compared_to"] is None

    other = client.get(f"/api/runs/{RUN_ID}/nodes/6", params={"against": 1}).json()
    assert other["compared_to"] == 1
    assert client.get(f"/api/runs/{RUN_ID}/nodes/6", params={"against": 99}).status_code == 404


def test_events_progress_chart_ablations_llm(client: TestClient) -> None:
    events = client.get(f"/api/runs/{RUN_ID}/events", params={"after": 0, "limit": 5}).json()
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5] and events[0]["type"] == "run_started"
    later = client.get(f"/api/runs/{RUN_ID}/events", params={"after": 5}).json()
    assert later[0]["seq"] == 6 and later[-1]["type"] == "run_finished"

    progress = client.get(f"/api/runs/{RUN_ID}/progress").json()
    assert [b["score"] for b in progress["best"]] == [0.8, 0.84, 0.85, 0.87, 0.88]
    assert {p["agent"] for p in progress["points"]} == {
        "candidate",
        "merger",
        "refine",
        "debug",
        "ensemble",
        "submission",
    }  # ablation scores are no solutions

    chart = client.get(f"/api/runs/{RUN_ID}/chart.svg")
    assert chart.headers["content-type"].startswith("image/svg+xml")
    assert chart.text.startswith("<svg") and chart.text.count('class="pt"') == len(progress["points"])

    ablations = client.get(f"/api/runs/{RUN_ID}/ablations").json()
    assert ablations["ablations"][0]["effects"] == {"tenure bins": -0.03, "logreg blend": -0.001}
    assert ablations["checks"][0]["kind"] == "leakage" and ablations["checks"][0]["verdict"] == "clean"

    llm = client.get(f"/api/runs/{RUN_ID}/llm-calls").json()
    assert llm["usage"]["calls"] == 2 and llm["usage"]["prompt_tokens"] == 3700
    assert llm["usage"]["cost_usd"] == pytest.approx(0.0042) and llm["usage"]["unpriced_calls"] == 1
    assert llm["usage"]["by_agent"]["coder"]["completion_tokens"] == 900
    assert [c["agent"] for c in llm["calls"]] == ["retriever", "coder"]


def test_downloads_and_report(client: TestClient, runs_dir: Path) -> None:
    response = client.get(f"/api/runs/{RUN_ID}/files/submission.csv")
    assert response.status_code == 200 and response.text.startswith("customer_id,churned")
    assert response.headers["content-disposition"].startswith("attachment")
    assert client.get(f"/api/runs/{RUN_ID}/files/solution.py").status_code == 200
    assert client.get(f"/api/runs/{RUN_ID}/files/report.html").status_code == 404  # not written yet

    made = client.post(f"/api/runs/{RUN_ID}/report")
    assert made.json() == {"html": "report.html", "md": "report.md"}
    report = client.get(f"/api/runs/{RUN_ID}/files/report.html", params={"inline": True})
    assert report.status_code == 200 and "Solution tree" in report.text
    assert report.headers["content-disposition"].startswith("inline")
    assert "sandbox" in report.headers["content-security-policy"]
    assert client.get(f"/api/runs/{RUN_ID}/files/report.md").text.startswith("# mlestar report")


def test_openapi_documents_the_routes(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/pause",
        "/api/runs/{run_id}/resume",
        "/api/runs/{run_id}/stop",
        "/api/runs/{run_id}/nodes",
        "/api/runs/{run_id}/nodes/{node_id}",
        "/api/runs/{run_id}/events/stream",
        "/api/runs/{run_id}/ablations",
        "/api/runs/{run_id}/llm-calls",
        "/api/runs/{run_id}/files/{name}",
    ):
        assert path in paths
    assert client.get("/docs").status_code == 404  # the stock docs page would load a CDN


# -- unknown ids and traversal -------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/nope",
        "/api/runs/nope/nodes",
        "/api/runs/nope/events/stream",
        "/api/runs/nope/files/submission.csv",
        f"/api/runs/{RUN_ID}/nodes/999",
        f"/api/runs/{RUN_ID}/nodes/abc",
        f"/api/runs/{RUN_ID}/files/run.sqlite",
        f"/api/runs/{RUN_ID}/files/..%2Frun.sqlite",
        f"/api/runs/{RUN_ID}/files/%2e%2e%2f%2e%2e%2fsecret.txt",
        f"/api/runs/{RUN_ID}/files/..%5c..%5csecret.txt",
        "/api/runs/..%2F..%2Fsecret.txt",
        "/api/runs/%2e%2e/nodes",
        "/api/runs/..",
        "/api/runs/.hidden",
        "/api/runs/a%00b",
        "/api/runs/" + "x" * 200,
        "/static/..%2F..%2Fserver%2Fapp.py",
        "/static/%2e%2e/%2e%2e/secret.txt",
    ],
)
def test_unknown_ids_and_traversal_are_4xx(client: TestClient, runs_dir: Path, path: str) -> None:
    (runs_dir.parent / "secret.txt").write_text("TOP SECRET")
    response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert "TOP SECRET" not in response.text and "SQLite format" not in response.text


def test_control_on_unknown_run_is_404(client: TestClient) -> None:
    for action in ("pause", "resume", "stop", "report"):
        assert client.post(f"/api/runs/nope/{action}").status_code == 404


def test_script_path_from_the_database_cannot_escape(client: TestClient, runs_dir: Path) -> None:
    (runs_dir.parent / "secret.txt").write_text("TOP SECRET")
    with RunStore(runs_dir / RUN_ID) as store:
        store.update_node(3, script_path="../../secret.txt")
        store.update_node(2, script_path=str(runs_dir.parent / "secret.txt"))
    for node_id in (2, 3):
        body = client.get(f"/api/runs/{RUN_ID}/nodes/{node_id}").json()
        assert body["code"] is None and "TOP SECRET" not in json.dumps(body)


def test_run_folder_containment_helpers(tmp_path: Path) -> None:
    assert valid_run_id(RUN_ID) and valid_run_id("a.b_c-1")
    for bad in ("..", "../x", "a/b", "a\\b", ".x", "-x", "", "a..b", "x" * 129):
        assert not valid_run_id(bad)
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "inner", "ok.txt") == (tmp_path / "inner" / "ok.txt").resolve()
    assert inside(tmp_path / "inner", "../x") is None
    assert inside(tmp_path / "inner", "/etc/passwd") is None
    assert inside(tmp_path / "inner", "link/x") is None  # a symlink out of the folder


def test_corrupt_store_is_not_a_500(client: TestClient, runs_dir: Path) -> None:
    bad = runs_dir / "broken-run"
    bad.mkdir()
    (bad / "run.sqlite").write_bytes(b"this is not a database" * 100)
    assert [r["run_id"] for r in client.get("/api/runs").json()] == [RUN_ID]
    assert 400 <= client.get("/api/runs/broken-run").status_code < 500


# -- starting runs ---------------------------------------------------------------------------------
def test_start_run_spawns_the_cli_detached(
    client: TestClient, tmp_path: Path, runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "30")
    competition = tmp_path / "My Comp"
    competition.mkdir()
    response = client.post(
        "/api/runs",
        json={
            "competition": str(competition),
            "time_limit_s": 90,
            "brain": "llm:openai:gpt-4.1-mini",
            "config_yaml": "num_models: 2\nouter_steps: 1\n",
            "config": {"outer_steps": 0},
        },
    )
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert valid_run_id(run_id) and "my-comp" in run_id
    wait_for(lambda: len(calls(tmp_path)) == 1)
    call = calls(tmp_path)[0]
    argv = call["argv"]
    assert argv[:4] == ["-m", "mlestar", "run", str(competition)]
    assert argv[argv.index("--runs-dir") + 1] == str(runs_dir)
    assert argv[argv.index("--run-id") + 1] == run_id
    assert argv[argv.index("--time-limit") + 1] == "90.0"
    assert argv[argv.index("--llm") + 1] == "openai:gpt-4.1-mini"
    config_file = Path(argv[argv.index("--config") + 1])
    assert config_file.read_text() == "num_models: 2\nouter_steps: 0\n"
    assert not call["token_seen"]  # the server's token is not handed to the pipeline

    pid = response.json()["pid"]
    os.kill(pid, 0)  # alive, in its own session (not the server's process group)
    assert os.getsid(pid) == pid
    listed = {r["run_id"]: r["status"] for r in client.get("/api/runs").json()}
    assert listed[run_id] == "starting"
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "starting" and detail["process"]["alive"]
    os.kill(pid, 15)
    wait_for(lambda: client.get(f"/api/runs/{run_id}").json()["status"] == "launch_failed")
    detail = client.get(f"/api/runs/{run_id}").json()
    assert "fake pipeline: starting" in detail["process"]["log_tail"]
    assert "something the user should read" in detail["process"]["log_tail"]


def test_start_run_expert_brain_without_options(client: TestClient, tmp_path: Path) -> None:
    competition = tmp_path / "comp"
    competition.mkdir()
    response = client.post("/api/runs", json={"competition": str(competition), "run_id": "my-run"})
    assert response.status_code == 202 and response.json()["run_id"] == "my-run"
    wait_for(lambda: len(calls(tmp_path)) == 1)
    argv = calls(tmp_path)[0]["argv"]
    assert "--llm" not in argv and "--config" not in argv and "--time-limit" not in argv
    assert (
        client.post("/api/runs", json={"competition": str(competition), "run_id": "my-run"}).status_code
        == 409
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"competition": "/no/such/folder"}, "not found"),
        ({"competition": "{comp}", "brain": "gpt4"}, "provider:model"),
        ({"competition": "{comp}", "brain": "openai:gpt 4; rm -rf"}, "provider:model"),
        ({"competition": "{comp}", "config": {"num_models": 0}}, "num_models"),
        ({"competition": "{comp}", "config": {"no_such_setting": 1}}, "no_such_setting"),
        ({"competition": "{comp}", "config_yaml": "- a list"}, "mapping"),
        ({"competition": "{comp}", "config_yaml": "a: [unclosed"}, "YAML"),
    ],
)
def test_start_run_rejects_bad_input(client: TestClient, tmp_path: Path, body: dict, fragment: str) -> None:
    (tmp_path / "comp").mkdir(exist_ok=True)
    body = {k: (v.format(comp=tmp_path / "comp") if isinstance(v, str) else v) for k, v in body.items()}
    response = client.post("/api/runs", json=body)
    assert response.status_code == 400 and fragment in response.json()["detail"]
    assert calls(tmp_path) == []


def test_start_run_validates_shape(client: TestClient, tmp_path: Path) -> None:
    for body in (
        {},
        {"competition": ""},
        {"competition": "x", "time_limit_s": -5},
        {"competition": "x", "run_id": "../evil"},
    ):
        assert client.post("/api/runs", json=body).status_code == 422
    assert calls(tmp_path) == []


# -- steering ------------------------------------------------------------------------------------
def test_pause_resume_stop_a_live_run(client: TestClient, runs_dir: Path, tmp_path: Path) -> None:
    run = FakeRun(runs_dir, "live-run").start()  # owner on another host: taken as alive
    base = "/api/runs/live-run"
    paused = client.post(f"{base}/pause").json()
    assert paused["action"] == "requested" and paused["control"] == "pause"
    run.store.set_status(RunStatus.PAUSED)
    assert client.post(f"{base}/pause").json()["action"] == "none"

    resumed = client.post(f"{base}/resume").json()
    assert resumed["action"] == "requested" and resumed["control"] == "run"
    assert run.store.control() == Control.RUN
    run.store.set_status(RunStatus.RUNNING)

    stopped = client.post(f"{base}/stop").json()
    assert stopped["action"] == "requested" and run.store.control() == Control.STOP
    assert client.post(f"{base}/stop").json()["action"] == "none"
    # A stop is acted on at once by the pipeline: it cannot be taken back by a resume.
    assert client.post(f"{base}/resume").status_code == 409
    assert client.post(f"{base}/pause").status_code == 409
    assert calls(tmp_path) == []  # nothing spawned for a live run

    run.store.set_status(RunStatus.STOPPED)
    publish(run.store, EventType.RUN_STOPPED, "stopped")
    assert client.post(f"{base}/stop").json()["action"] == "none"
    assert client.post(f"{base}/pause").status_code == 409
    spawned = client.post(f"{base}/resume").json()
    assert spawned["action"] == "spawned" and run.store.control() == Control.RUN
    wait_for(lambda: len(calls(tmp_path)) == 1)
    assert calls(tmp_path)[0]["argv"] == ["-m", "mlestar", "resume", "live-run", "--runs-dir", str(runs_dir)]


def test_a_run_being_started_is_not_started_twice(
    client: TestClient, runs_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "30")
    run = FakeRun(runs_dir, "stopped-run").start()
    run.finish(RunStatus.STOPPED)
    base = "/api/runs/stopped-run"
    assert client.post(f"{base}/resume").json()["action"] == "spawned"
    detail = client.get(base).json()
    assert detail["status"] == "starting" and detail["process"]["kind"] == "resume"
    assert client.post(f"{base}/resume").json()["action"] == "none"
    assert client.post(f"{base}/stop").status_code == 409
    assert client.post(f"{base}/pause").status_code == 409
    wait_for(lambda: len(calls(tmp_path)) == 1)
    time.sleep(0.2)
    assert len(calls(tmp_path)) == 1
    os.kill(detail["process"]["pid"], signal.SIGTERM)

    # A run `mlestar run` created in a terminal a moment ago and has not claimed yet.
    fresh = RunStore.create(runs_dir / "fresh-run", meta={"task": {"name": "x"}})
    assert client.post("/api/runs/fresh-run/resume").json()["action"] == "none"
    fresh.set_meta("created_at", time.time() - 3600)  # ... or one whose creator died long ago
    assert client.post("/api/runs/fresh-run/resume").json()["action"] == "spawned"


def test_resume_a_crashed_run_spawns_a_new_process(
    client: TestClient, runs_dir: Path, tmp_path: Path
) -> None:
    run = FakeRun(runs_dir, "crashed-run").start()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.store.set_meta("owner", {"pid": dead.pid, "host": os.uname().nodename, "since": time.time()})
    assert client.get("/api/runs/crashed-run").json()["status"] == "crashed"
    assert client.post("/api/runs/crashed-run/stop").status_code == 409
    assert client.post("/api/runs/crashed-run/resume").json()["action"] == "spawned"
    wait_for(lambda: len(calls(tmp_path)) == 1)


def test_finished_run_cannot_be_steered(client: TestClient, tmp_path: Path) -> None:
    for action in ("pause", "resume", "stop"):
        response = client.post(f"/api/runs/{RUN_ID}/{action}")
        assert response.status_code == 409 and "finished" in response.json()["detail"]
    assert calls(tmp_path) == []


def test_boundary_values_the_fuzzer_found_are_client_errors(client: TestClient) -> None:
    # The largest sequence number SQLite cannot compare, and a competition path no filesystem
    # takes (too long, a NUL byte): refused with 4xx, never a server error.
    assert client.get(f"/api/runs/{RUN_ID}/events", params={"after": 2**63}).status_code == 422
    assert client.get(f"/api/runs/{RUN_ID}/events", params={"after": 2**63 - 1}).status_code == 200
    for competition in ("x" * 4000, "bad\x00name"):
        response = client.post("/api/runs", json={"competition": competition})
        assert response.status_code == 400 and "competition folder not found" in response.json()["detail"]
