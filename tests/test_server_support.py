"""A synthetic run store written the way the pipeline writes one, for the server and report tests.

Imported by tests/test_server*.py, tests/test_report*.py and tests/browser/ (through sys.path);
the single test below keeps the builder honest against the real store API.
"""

from __future__ import annotations

import json
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from recording import publish

from mlestar.core.events import EventType
from mlestar.core.records import LLMCallRecord
from mlestar.server import ServerOptions, create_app
from mlestar.store import Control, NodeRecord, NodeStatus, RunStatus, RunStore

RUN_ID = "20250101-120000-churn-ab12"
# Where the synthetic run's refined script (#6) ran: a Ray node, as the Ray executor records it.
RAY_NODE = {"executor": "ray", "node_id": "5c0ffee" + "0" * 49, "node_ip": "10.0.0.5"}

TASK = {
    "name": "churn",
    "metric": "roc_auc",
    "lower_is_better": False,
    "task_type": "binary",
    "modality": "tabular",
    "target_columns": ["churned"],
    "id_column": "customer_id",
    "n_train_rows": 400,
    "n_test_rows": 100,
    "submission_columns": ["customer_id", "churned"],
}

BASE_CODE = """import pandas as pd
from sklearn.linear_model import LogisticRegression

train = pd.read_csv("./input/train.csv")
model = LogisticRegression(C=1.0)
print("Final Validation Performance: 0.80")
"""


class FakeRun:
    """Writes nodes, script folders and events into a fresh run store, step by step."""

    def __init__(self, runs_dir: Path, run_id: str = RUN_ID, *, owner_pid: int | None = None) -> None:
        self.dir = Path(runs_dir) / run_id
        self.store = RunStore.create(
            self.dir,
            meta={
                "task": TASK,
                "config": {"num_models": 2, "num_tracks": 1, "time_limit_s": 600},
                "brain": "expert",
                "data_report": "Competition: churn\n- tenure: int64, numeric, missing 0.0%\n"
                "- plan: object, categorical",
                "budget": {"time_limit_s": 600, "started_at": time.time()},
            },
        )
        self.store.set_meta("owner", {"pid": owner_pid or 0, "host": "elsewhere", "since": time.time()})
        self.best: float | None = None

    def start(self) -> FakeRun:
        self.store.set_status(RunStatus.RUNNING)
        publish(self.store, EventType.RUN_STARTED, "run started on churn with the expert brain")
        return self

    def phase(self, name: str, *, finished: bool = False) -> None:
        if finished:
            publish(self.store, EventType.PHASE_FINISHED, f"{name} done", phase=name)
        else:
            self.store.set_meta("phase", name)
            publish(self.store, EventType.PHASE_STARTED, name, phase=name)

    def script(
        self,
        agent: str,
        label: str,
        *,
        phase: str,
        parents: tuple[int, ...] = (),
        score: float | None = None,
        failed: bool = False,
        track: int | None = None,
        info: dict | None = None,
        code: str | None = None,
        stdout: str | None = None,
        stderr: str = "",
    ) -> int:
        node = self.store.add_node(
            NodeRecord(
                step_key=f"{phase}/{agent}/{label}/{time.monotonic_ns()}",
                parent_ids=list(parents),
                track=track,
                phase=phase,
                agent=agent,
                label=label,
                status=NodeStatus.RUNNING,
                info=info or {},
            )
        )
        folder = self.dir / "scripts" / f"{node.id:04d}-{agent}"
        folder.mkdir(parents=True)
        (folder / "script.py").write_text(code or BASE_CODE.replace("C=1.0", f"C={node.id}.0"))
        (folder / "stdout.txt").write_text(
            stdout if stdout is not None else ("" if failed else f"Final Validation Performance: {score}\n")
        )
        (folder / "stderr.txt").write_text(stderr or ("Traceback: ValueError: bad shape\n" if failed else ""))
        publish(self.store, 
            EventType.SCRIPT_STARTED,
            f"{agent}: {label}",
            phase=phase,
            track=track,
            node_id=node.id,
            data={"agent": agent, "label": label},
        )
        status = NodeStatus.FAILED if failed else NodeStatus.DONE
        self.store.update_node(
            node.id,
            status=status,
            score=None if failed else score,
            wall_s=1.5,
            finished_at=time.time(),
            script_path=f"scripts/{node.id:04d}-{agent}/script.py",
            error="ValueError: bad shape" if failed else None,
            returncode=1 if failed else 0,
        )
        publish(self.store, 
            EventType.SCRIPT_FINISHED,
            f"{agent}: {label} -> {'failed' if failed else score}",
            phase=phase,
            track=track,
            node_id=node.id,
            data={
                "agent": agent,
                "label": label,
                "score": None if failed else score,
                "status": status.value,
                "wall_s": 1.5,
                "parents": list(parents),
            },
        )
        solution = not failed and score is not None and agent not in ("ablation", "submission")
        if solution and (self.best is None or score > self.best):
            self.best = score
            self.store.set_meta("best", {"score": score, "node_id": node.id, "phase": phase})
            publish(self.store, 
                EventType.BEST_UPDATED,
                f"best roc_auc {score}",
                phase=phase,
                node_id=node.id,
                data={"score": score, "node_id": node.id},
            )
        return node.id

    def llm_call(self, agent: str, prompt: int, completion: int, cost: float | None) -> None:
        call = self.store.record_llm_call(
            LLMCallRecord(
                agent=agent,
                provider="openai",
                model="gpt-test",
                request_hash=f"h{time.monotonic_ns()}",
                prompt_tokens=prompt,
                completion_tokens=completion,
                cost_usd=cost,
                latency_s=0.2,
            )
        )
        publish(self.store, 
            EventType.LLM_CALL,
            f"{agent} call",
            data={
                "agent": agent,
                "model": "gpt-test",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cost_usd": cost,
                "cached": False,
                "call_id": call.id,
            },
        )

    def finish(self, status: RunStatus = RunStatus.FINISHED) -> None:
        self.store.set_status(status)
        kind = {
            RunStatus.FINISHED: EventType.RUN_FINISHED,
            RunStatus.STOPPED: EventType.RUN_STOPPED,
            RunStatus.FAILED: EventType.RUN_FAILED,
        }[status]
        publish(self.store, kind, f"run {status.value}")


def build_finished_run(runs_dir: Path, run_id: str = RUN_ID) -> FakeRun:
    """A complete run: candidates, a merge, checks, ablation, refinements (one failed and debugged),
    an ensemble, a submission, LLM calls, and the end files."""
    run = FakeRun(runs_dir, run_id).start()
    run.phase("phase1")
    c1 = run.script("candidate", "logistic regression", phase="phase1", score=0.80, info={"model": "logreg"})
    c2 = run.script("candidate", "lightgbm", phase="phase1", score=0.84, info={"model": "lightgbm"})
    run.script("candidate", "catboost", phase="phase1", failed=True, info={"model": "catboost"})
    merged = run.script("merger", "lightgbm + logreg", phase="phase1", parents=(c2, c1), score=0.85, track=0)
    publish(run.store, 
        EventType.CHECK,
        "no leakage found",
        phase="phase1",
        track=0,
        data={"kind": "leakage", "verdict": "clean", "kept": False, "reason": "target not used"},
    )
    run.phase("phase1", finished=True)
    run.phase("phase2")
    ablation = run.script(
        "ablation",
        "ablation of 3 components",
        phase="phase2",
        parents=(merged,),
        score=0.85,
        track=0,
        stdout="baseline 0.85\nno tenure bins 0.82\nno logreg 0.849\n",
    )
    publish(run.store, 
        EventType.ABLATION,
        "feature engineering matters most",
        phase="phase2",
        track=0,
        node_id=ablation,
        data={
            "summary": "Removing the tenure bins costs the most (-0.03).",
            "effects": {"tenure bins": -0.03, "logreg blend": -0.001},
            "baseline": 0.85,
            "outer_step": 0,
        },
    )
    refined = run.script(
        "refine",
        "tenure bins x10",
        phase="phase2",
        parents=(merged,),
        score=0.87,
        track=0,
        info={
            "plan": "Use finer tenure bins and add a tenure*plan interaction.",
            "block_name": "features",
            **RAY_NODE,
        },
        code=BASE_CODE.replace("C=1.0", "C=0.5").replace("train = ", "bins = 10\ntrain = "),
    )
    broken = run.script(
        "refine",
        "target encoding",
        phase="phase2",
        parents=(merged,),
        failed=True,
        track=0,
        info={"plan": "Target-encode the plan column.", "block_name": "features"},
    )
    run.script("debug", "target encoding (fixed)", phase="phase2", parents=(broken,), score=0.86, track=0)
    run.phase("phase2", finished=True)
    run.phase("phase3")
    ensemble = run.script(
        "ensemble",
        "rank average",
        phase="phase3",
        parents=(refined, merged),
        score=0.88,
        info={"plan": "Average the ranks of the two track winners."},
    )
    run.phase("phase3", finished=True)
    run.phase("phase4")
    final = run.script(
        "submission", "final lightgbm ensemble", phase="phase4", parents=(ensemble,), score=0.879
    )
    (run.dir / "submission.csv").write_text("customer_id,churned\n1,0.2\n2,0.9\n")
    (run.dir / "solution.py").write_text((run.dir / f"scripts/{final:04d}-submission/script.py").read_text())
    run.store.set_meta(
        "submission",
        {
            "dev_score": 0.88,
            "source_node_id": ensemble,
            "final_node_id": final,
            "final_score": 0.879,
            "phase": "phase4",
        },
    )
    publish(run.store, 
        EventType.SUBMISSION_WRITTEN,
        "submission written",
        phase="phase4",
        node_id=final,
        data={"path": "submission.csv", "score": 0.88, "node_id": ensemble},
    )
    run.phase("phase4", finished=True)
    run.llm_call("retriever", 1200, 300, 0.0042)
    run.llm_call("coder", 2500, 900, None)
    summary = {
        "run_id": run_id,
        "status": "finished",
        "best_score": 0.88,
        "time_spent_s": 95.0,
        "time_limit_s": 600,
        "scripts_run": 10,
        "scripts_failed": 2,
        "scores_by_phase": {"phase1": {"scripts": 4, "failed": 1, "best": 0.85}},
    }
    run.store.set_meta("summary", summary)
    (run.dir / "summary.json").write_text(json.dumps(summary))
    run.finish()
    run.store.request(Control.RUN)
    return run


FAKE_PYTHON = """#!{python}
# Stands in for `python -m mlestar ...`: records its arguments and what it could see, then exits.
import json, os, sys, time
with open(os.environ["FAKE_ARGV"], "a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "token_seen": "MLESTAR_TOKEN" in os.environ}}) + "\\n")
print("fake pipeline: starting", flush=True)
print("error: something the user should read", file=sys.stderr, flush=True)
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
sys.exit(int(os.environ.get("FAKE_RC", "0")))
"""


def write_fake_python(folder: Path) -> Path:
    """An executable to use as ServerOptions.python; set FAKE_ARGV to where it records its calls."""
    script = folder / "fake-python"
    script.write_text(FAKE_PYTHON.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def recorded_calls(argv_file: Path) -> list[dict]:
    return [json.loads(line) for line in argv_file.read_text().splitlines()] if argv_file.exists() else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(target: ServerOptions | Any) -> Iterator[str]:
    """The app (or one built from settings) under uvicorn in a thread: real sockets, real streaming.
    Yields the base URL."""
    app = create_app(target) if isinstance(target, ServerOptions) else target
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_synthetic_run_is_a_readable_store(tmp_path: Path) -> None:
    run = build_finished_run(tmp_path)
    with RunStore(run.dir) as store:
        assert store.status == RunStatus.FINISHED
        assert len(store.nodes()) == 10
        assert store.get_meta("best")["score"] == 0.88
        assert [e.type for e in store.events()][-1] == EventType.RUN_FINISHED
