"""Run store: durable, typed, consistent across processes and after kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from recording import publish

from mlestar.core.events import EventType
from mlestar.core.records import LLMCallRecord
from mlestar.errors import RunNotFound
from mlestar.store import (
    SCHEMA_VERSION,
    Control,
    NodeRecord,
    NodeStatus,
    RunStatus,
    RunStore,
    list_runs,
    open_run,
)


@pytest.fixture()
def store(tmp_path: Path) -> RunStore:
    return RunStore.create(tmp_path / "runs" / "r1", meta={"task": {"name": "demo", "metric": "rmse"}})


def test_nodes_roundtrip_and_update(store: RunStore) -> None:
    node = store.add_node(NodeRecord(step_key="p1/cand0", phase="phase1", agent="candidate", label="lgbm"))
    assert node.id == 1
    updated = store.update_node(node.id, status=NodeStatus.DONE, score=0.25, info={"model": "lgbm"})
    assert updated.status == NodeStatus.DONE and updated.score == 0.25 and updated.info == {"model": "lgbm"}
    assert store.node_by_key("p1/cand0") == updated
    assert [n.id for n in store.nodes(status=NodeStatus.DONE)] == [1]
    assert store.nodes(phase="phase2") == []
    with pytest.raises(ValueError):
        store.update_node(node.id, bogus=1)
    with pytest.raises(sqlite3.IntegrityError):
        store.add_node(NodeRecord(step_key="p1/cand0", phase="phase1", agent="candidate"))


def test_events_are_ordered_and_filterable(store: RunStore) -> None:
    first = publish(store, EventType.RUN_STARTED, "go")
    second = publish(store, EventType.BEST_UPDATED, "best", data={"score": 0.5}, node_id=3)
    assert second.seq > first.seq
    assert [e.type for e in store.events()] == [EventType.RUN_STARTED, EventType.BEST_UPDATED]
    assert [e.seq for e in store.events(after=first.seq)] == [second.seq]
    only = store.events(types=[EventType.BEST_UPDATED])
    assert only[0].data == {"score": 0.5} and only[0].node_id == 3


def test_llm_calls_cache_and_memo(store: RunStore) -> None:
    store.record_llm_call(LLMCallRecord(agent="coder", provider="openai", model="m", request_hash="h",
                                        prompt_tokens=10, completion_tokens=5, cost_usd=0.01))
    calls = store.llm_calls()
    assert calls[0].prompt_tokens == 10 and calls[0].cached is False
    assert store.cache_get("h") is None
    store.cache_put("h", "m", "answer", {"prompt_tokens": 10})
    assert store.cache_get("h") == ("answer", {"prompt_tokens": 10})
    assert not store.memo_has("k")
    store.memo_put("k", {"value": [1, 2]})
    assert store.memo_get("k") == {"value": [1, 2]}


def test_control_and_status(store: RunStore) -> None:
    assert store.control() == Control.RUN
    store.request(Control.STOP)
    assert store.control() == Control.STOP
    store.claim()
    store.set_status(RunStatus.RUNNING)
    assert store.status == RunStatus.RUNNING


def test_dead_owner_reads_as_crashed(store: RunStore) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store.set_meta("owner", {"pid": proc.pid, "host": os.uname().nodename})
    store.set_status(RunStatus.RUNNING)
    assert store.status == RunStatus.CRASHED


def test_writes_survive_kill_9(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "victim"
    RunStore.create(run_dir).close()
    writer = textwrap.dedent(
        f"""
        import os, signal
        from mlestar.core.events import EventBus, EventType
        from mlestar.store import RunStore, NodeRecord
        s = RunStore({str(run_dir)!r})
        bus = EventBus(recorder=s.append_event)
        for i in range(50):
            s.add_node(NodeRecord(step_key=f"k{{i}}", phase="phase1", agent="candidate"))
            bus.publish(EventType.SCRIPT_FINISHED, f"n{{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", writer], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    reopened = RunStore(run_dir)
    assert len(reopened.nodes()) == 50
    assert len(reopened.events(types=[EventType.SCRIPT_FINISHED])) == 50


def test_schema_version_and_newer_schema_rejected(store: RunStore) -> None:
    assert store.get_meta("schema_version") == SCHEMA_VERSION
    store.set_meta("schema_version", SCHEMA_VERSION + 1)
    store.close()
    with pytest.raises(RunNotFound, match="newer mlestar"):
        RunStore(store.run_dir)


def test_list_and_open_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    RunStore.create(runs / "20260101-a", meta={"task": {"name": "a"}, "best": {"score": 1.5}}).close()
    RunStore.create(runs / "20260102-b", meta={"task": {"name": "b"}}).close()
    (runs / "junk").mkdir()
    (runs / "junk" / "run.sqlite").write_text("not a database")
    summaries = list_runs(runs)
    assert {s.run_id for s in summaries} == {"20260101-a", "20260102-b"}
    assert next(s for s in summaries if s.run_id == "20260101-a").best_score == 1.5
    assert open_run(runs, "20260102").run_id == "20260102-b"
    with pytest.raises(RunNotFound, match="ambiguous"):
        open_run(runs, "2026")
    with pytest.raises(RunNotFound):
        open_run(runs, "nope")
    with pytest.raises(RunNotFound):
        open_run(runs, "../etc")
    assert json.loads(json.dumps(summaries[0].model_dump(mode="json")))["run_id"]


def test_killed_but_unreaped_owner_reads_as_crashed(store: RunStore) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    store.set_meta("owner", {"pid": proc.pid, "host": os.uname().nodename, "since": time.time()})
    store.set_status(RunStatus.RUNNING)
    assert store.status == RunStatus.RUNNING
    proc.kill()
    time.sleep(0.3)  # not waited for: the process is a zombie until reaped
    try:
        assert store.status == RunStatus.CRASHED
    finally:
        proc.wait()
