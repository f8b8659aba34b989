"""Live events over SSE: history from the event log, then new events as they are written, then the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mlestar.core.events import EventType
from mlestar.server import ServerOptions, create_app
from mlestar.store import RunStatus

sys.path.insert(0, str(Path(__file__).parent))  # no tests/__init__.py: helpers import by name
from recording import publish
from test_server_support import RUN_ID, FakeRun, build_finished_run, live_server


class SSEReader:
    """Parses a text/event-stream body into (event name, id, data) messages."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines

    def __iter__(self) -> Iterator[tuple[str, int | None, dict]]:
        name, seq, data = "message", None, []
        for line in self.lines:
            if line == "":
                if data:
                    yield name, seq, json.loads("\n".join(data))
                name, seq, data = "message", None, []
            elif line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("id:"):
                seq = int(line[3:].strip())
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def settings(runs_dir: Path) -> ServerOptions:
    return ServerOptions(runs_dir=runs_dir, poll_interval_s=0.05, python="/bin/false")


def test_finished_run_replays_history_and_ends(tmp_path: Path) -> None:
    build_finished_run(tmp_path)
    client = TestClient(create_app(settings(tmp_path)), base_url="http://127.0.0.1")
    with client.stream("GET", f"/api/runs/{RUN_ID}/events/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = list(SSEReader(response.iter_lines()))
    events = [m for m in messages if m[0] == "message"]
    seqs = [seq for _, seq, _ in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert events[0][2]["type"] == "run_started" and events[-1][2]["type"] == "run_finished"
    assert messages[-1][0] == "end" and messages[-1][2] == {"status": "finished", "last_seq": seqs[-1]}

    # Resuming from a sequence number, by query or by the header EventSource sends on reconnect.
    with client.stream("GET", f"/api/runs/{RUN_ID}/events/stream", params={"after": seqs[-3]}) as response:
        tail = [seq for name, seq, _ in SSEReader(response.iter_lines()) if name == "message"]
    assert tail == seqs[-2:]
    headers = {"Last-Event-ID": str(seqs[-2])}
    with client.stream("GET", f"/api/runs/{RUN_ID}/events/stream", headers=headers) as response:
        tail = [seq for name, seq, _ in SSEReader(response.iter_lines()) if name == "message"]
    assert tail == seqs[-1:]


def test_live_run_is_followed_until_it_ends(tmp_path: Path) -> None:
    run = FakeRun(tmp_path, "live").start()
    run.phase("phase1")
    run.script("candidate", "lightgbm", phase="phase1", score=0.8)
    history_end = run.store.events()[-1].seq
    with live_server(settings(tmp_path)) as base, httpx.Client(base_url=base, timeout=10) as http:
        with http.stream("GET", "/api/runs/live/events/stream") as response:
            messages = iter(SSEReader(response.iter_lines()))
            seen = []
            for _, seq, _ in messages:
                seen.append(seq)
                if seq == history_end:
                    break
            assert seen == list(range(1, history_end + 1))

            # Written well after the history was sent (many polls later): arrives through the same
            # open stream.
            time.sleep(0.5)
            started = time.monotonic()
            new_id = run.script("candidate", "catboost", phase="phase1", score=0.9)
            arrived = []
            for _, _, data in messages:
                arrived.append(data)
                if data["type"] == "best_updated":
                    break
            assert time.monotonic() - started < 5
            assert [d["type"] for d in arrived] == ["script_started", "script_finished", "best_updated"]
            assert arrived[1]["node_id"] == new_id and arrived[1]["data"]["score"] == 0.9

            # A pause keeps the stream open.
            run.store.set_status(RunStatus.PAUSED)
            publish(run.store, EventType.RUN_PAUSED, "paused")
            assert next(messages)[2]["type"] == "run_paused"
            run.store.set_status(RunStatus.RUNNING)
            publish(run.store, EventType.RUN_RESUMED, "resumed")
            assert next(messages)[2]["type"] == "run_resumed"

            run.finish(RunStatus.STOPPED)
            rest = list(messages)
        assert [m[2].get("type") for m in rest[:-1]] == ["run_stopped"]
        assert rest[-1][0] == "end" and rest[-1][2]["status"] == "stopped"


def test_status_set_before_the_closing_event_does_not_cut_the_stream(tmp_path: Path) -> None:
    # The pipeline sets status=finished, writes the report, then emits run_finished: all must arrive.
    run = FakeRun(tmp_path, "closing").start()
    run.store.set_meta("owner", {"pid": os.getpid(), "host": os.uname().nodename, "since": time.time()})
    with (
        live_server(settings(tmp_path)) as base,
        httpx.Client(base_url=base, timeout=10) as http,
        http.stream("GET", "/api/runs/closing/events/stream") as response,
    ):
        messages = iter(SSEReader(response.iter_lines()))
        assert next(messages)[2]["type"] == "run_started"
        run.store.set_status(RunStatus.FINISHED)
        time.sleep(0.5)  # several polls see status finished without the closing event
        publish(run.store, EventType.RUN_FINISHED, "finished")
        rest = list(messages)
    assert [m[2].get("type") for m in rest[:-1]] == ["run_finished"] and rest[-1][0] == "end"


def test_crashed_run_ends_the_stream(tmp_path: Path) -> None:
    run = FakeRun(tmp_path, "crashed").start()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.store.set_meta("owner", {"pid": dead.pid, "host": os.uname().nodename, "since": time.time()})
    client = TestClient(create_app(settings(tmp_path)), base_url="http://127.0.0.1")
    with client.stream("GET", "/api/runs/crashed/events/stream") as response:
        messages = list(SSEReader(response.iter_lines()))
    assert messages[-1][0] == "end" and messages[-1][2]["status"] == "crashed"


@pytest.mark.parametrize("after", ["-1", "x"])
def test_bad_after_is_rejected(tmp_path: Path, after: str) -> None:
    build_finished_run(tmp_path)
    client = TestClient(create_app(settings(tmp_path)), base_url="http://127.0.0.1")
    assert client.get(f"/api/runs/{RUN_ID}/events/stream", params={"after": after}).status_code == 422
