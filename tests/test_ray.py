"""Runs on a real Ray cluster: a head node with 2 CPUs on loopback, started by this module with
``ray start --head --block`` and stopped by its own pid (shared by the module's tests: Ray starts
slowly). Scripts run as Ray tasks through all four phases, in place and shipped; stops and Ctrl+C
cancel the tasks and their processes; a killed worker is retried, not debugged; resume works;
``mlestar run`` reaches a running cluster by its address, and ``mlestar bench`` (through Ray
Client) runs competitions as Ray tasks side by side.

``MLESTAR_REQUIRE_RAY=1`` (set by .ci/run) makes a missing Ray a failure instead of a skip.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml
from competitions import make_competition
from scripted import ScriptedBrain, scripted

import mlestar
from mlestar.brain.protocol import BrainContext, ModelCard, Script
from mlestar.core.events import EventType
from mlestar.exec import ExecLimits, ScriptJob, prepare_script_dir
from mlestar.grading import grade_submission
from mlestar.store import NodeStatus, RunStatus, RunStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SMALL = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 1,
    "workers": 2,
    "threads_per_script": 1,
}
ONE = {**SMALL, "num_models": 1, "num_tracks": 1, "outer_steps": 0, "ensemble_rounds": 0, "workers": 1}
# The expert brain's shortest run: one candidate, no refinement; real training all the same.
QUICK_CONFIG = {**ONE, "debug_retries": 0, "leakage_check": "off", "data_usage_check": False, "extend": False}


@dataclass
class Cluster:
    address: str  # host:port of the head's GCS
    client_address: str  # ray://host:port of its Ray Client server
    node_id: str
    root: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes_under(root: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(root) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if importlib.util.find_spec("ray") is None:
        message = "Ray is not installed (pip install -e '.[ray]')"
        if os.environ.get("MLESTAR_REQUIRE_RAY"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="mlray-", dir="/tmp"))  # short: Ray's socket paths must fit
    env = {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every Ray process on 127.0.0.1, nothing else
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # for this process and the mlestar commands it starts
    port, client_port, agent_port = _free_port(), _free_port(), _free_port()
    (root / "tmp").mkdir()
    log = open(root / "head.log", "w")  # noqa: SIM115 - closed at teardown
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={root / 'ray'}", f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={agent_port}",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "TMPDIR": str(root / "tmp")},  # the workers' scratch goes with the cluster
    )  # fmt: skip
    import ray

    try:
        deadline = time.monotonic() + 120
        while "block forever" not in (root / "head.log").read_text():
            assert head.poll() is None, (root / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start in 120 s"
            time.sleep(0.5)
        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, logging_level=logging.WARNING)
        yield Cluster(
            address=f"127.0.0.1:{port}",
            client_address=f"ray://127.0.0.1:{client_port}",
            node_id=ray.get_runtime_context().get_node_id(),
            root=root,
        )
    finally:
        ray.shutdown()
        head.terminate()  # `ray start --block` stops the node's processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        log.close()
        for proc in _processes_under(root):  # anything of this cluster that outlived the head
            proc.kill()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)


def marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def wait_for(condition: Callable[[], object], timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture()
def flag() -> Iterator[Path]:
    """A flag file scripts can see: outside /tmp, which the sandbox replaces by a private one."""
    folder = Path(tempfile.mkdtemp(prefix="mlestar-hold-", dir="/var/tmp"))
    (folder / "hold").touch()
    yield folder / "hold"
    shutil.rmtree(folder, ignore_errors=True)


def holding(flag: Path, marker: str) -> str:
    """Code that, while ``flag`` exists, starts a marked child and waits for a long time."""
    return (
        "import os, subprocess, sys, time\n"
        f"if os.path.exists({str(flag)!r}):\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', {marker!r}])\n"
        "    time.sleep(600)\n"
    )


class HoldingBrain(ScriptedBrain):
    """Candidates that hold (a marked child, a long sleep) while the flag file exists."""

    def __init__(self, flag: Path, marker: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.flag, self.marker = flag, marker

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        script = super().write_candidate(ctx, card)
        return script.model_copy(update={"code": holding(self.flag, self.marker) + script.code})


def ray_nodes_of(store: RunStore) -> set[tuple[str, str | None]]:
    return {(n.info.get("executor"), n.info.get("node_id")) for n in store.nodes()}


def test_a_run_goes_through_all_four_phases_as_ray_tasks(cluster: Cluster, tmp_path: Path) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    result = mlestar.run(
        competition, brain=ScriptedBrain(), executor="ray", ray_address=cluster.address,
        runs_dir=tmp_path / "runs", run_id="r", **SMALL,
    )  # fmt: skip
    assert result.status == RunStatus.FINISHED
    store = RunStore(tmp_path / "runs" / "r")
    assert {n.phase for n in store.nodes()} == {"phase1", "phase2", "phase3", "phase4"}
    assert ray_nodes_of(store) == {("ray", cluster.node_id)}  # every script, on the head node
    assert all(n.status == NodeStatus.DONE for n in store.nodes())
    # One machine is a shared filesystem: the probe says so and nothing is shipped.
    assert not [e for e in store.events(types=[EventType.WARNING]) if "shipped" in e.message]
    sample = pd.read_csv(competition / "sample_submission.csv")
    assert result.submission_path is not None and pd.read_csv(result.submission_path).equals(sample)


def test_shipped_script_folders_bring_their_outputs_back(cluster: Cluster, tmp_path: Path) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    result = mlestar.run(
        competition, brain=ScriptedBrain(), executor="ray", ray_shared_fs=False,
        runs_dir=tmp_path / "runs", run_id="shipped", **ONE,
    )  # fmt: skip
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    store = RunStore(tmp_path / "runs" / "shipped")
    assert ray_nodes_of(store) == {("ray", cluster.node_id)}
    for node in store.nodes():  # the logs came back next to every script
        assert (
            "Final Validation Performance"
            in (store.run_dir / node.script_path).with_name("stdout.txt").read_text()
        )
    # The final script's submission was written on the worker, into its own copy of the folder.
    final = next(n for n in store.nodes() if n.agent == "submission")
    assert (store.run_dir / final.script_path).with_name("final").joinpath("submission.csv").is_file()
    cached = list((cluster.root / "tmp" / "mlestar-ray" / "inputs").iterdir())
    assert cached and all((entry / "folds.csv").is_file() for entry in cached)  # unpacked on the node


def test_cancel_kills_running_tasks_their_processes_and_queued_ones(
    cluster: Cluster, tmp_path: Path, flag: Path
) -> None:
    from mlestar.exec.ray_pool import RayExecutor

    marker = f"mlestar-ray-{uuid.uuid4()}"
    data = tmp_path / "view"
    data.mkdir()
    executor = RayExecutor(shared_fs=True)
    jobs = []
    for i in range(3):  # 2 CPUs: two run, one waits in Ray's queue
        folder = prepare_script_dir(tmp_path / f"s{i}", holding(flag, marker), data)
        jobs.append(
            executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=120, memory_mb=512)))
        )
    wait_for(lambda: len(marked(marker)) == 2, what="two running scripts")
    started = time.monotonic()
    assert executor.cancel_all(wait=True) == 3
    assert time.monotonic() - started < 10
    assert all(job.result(timeout=1).cancelled and job.result().executor == "ray" for job in jobs)
    wait_for(lambda: not marked(marker), timeout=10, what="the scripts' processes to die")
    # The executor goes on after a cancel.
    flag.unlink()
    folder = prepare_script_dir(tmp_path / "after", "print('Final Validation Performance: 3')\n", data)
    assert (
        executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=60, memory_mb=512)))
        .result()
        .score
        == 3
    )
    executor.shutdown()


def test_mlestar_stop_cancels_the_ray_tasks_and_resume_finishes(
    cluster: Cluster, tmp_path: Path, flag: Path
) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    runs, marker = tmp_path / "runs", f"mlestar-ray-{uuid.uuid4()}"
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["result"] = mlestar.run(
            competition,
            brain=HoldingBrain(flag, marker),
            executor="ray",
            runs_dir=runs,
            run_id="stopme",
            **SMALL,
        )

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: len(marked(marker)) == 2, what="both candidates running on the cluster")
    stop = subprocess.run(
        [sys.executable, "-m", "mlestar", "stop", "stopme", "--runs-dir", str(runs)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert stop.returncode == 0, stop.stderr
    thread.join(timeout=60)
    assert not thread.is_alive()
    result = outcome["result"]
    assert result.status == RunStatus.STOPPED and result.stop_reason == "user"  # type: ignore[attr-defined]
    wait_for(lambda: not marked(marker), timeout=10, what="the cancelled scripts' processes to die")
    with RunStore(runs / "stopme") as store:
        assert {n.status for n in store.nodes()} == {NodeStatus.PENDING}  # run again on resume

    flag.unlink()
    again = mlestar.resume("stopme", runs_dir=runs, brain=HoldingBrain(flag, marker), executor="ray")
    assert again.status == RunStatus.FINISHED and again.submission_path is not None
    with RunStore(runs / "stopme") as store:
        candidates = [n for n in store.nodes() if n.agent == "candidate"]
        assert len(candidates) == 2 and all(n.status == NodeStatus.DONE for n in candidates)
        assert ray_nodes_of(store) == {("ray", cluster.node_id)}


def _ray_worker_of(proc: psutil.Process) -> psutil.Process:
    for parent in proc.parents():
        if (parent.cmdline() or [""])[0].startswith("ray::"):
            return parent
    raise AssertionError("the script does not run under a Ray worker")


def test_a_killed_worker_is_retried_not_debugged(cluster: Cluster, tmp_path: Path, flag: Path) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    runs, marker = tmp_path / "runs", f"mlestar-ray-{uuid.uuid4()}"
    brain = HoldingBrain(flag, marker)
    outcome: dict[str, object] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(
            result=mlestar.run(competition, brain=brain, executor="ray", runs_dir=runs, run_id="k", **ONE)
        )
    )
    thread.start()
    wait_for(lambda: marked(marker), what="the candidate running on the cluster")
    (child,) = marked(marker)
    worker = _ray_worker_of(child)
    flag.unlink()  # the second attempt runs through
    worker.kill()
    thread.join(timeout=120)
    assert outcome["result"].status == RunStatus.FINISHED  # type: ignore[attr-defined]
    wait_for(lambda: not marked(marker), timeout=10, what="the killed worker's script to die with it")
    assert brain.calls["debug"] == 0
    with RunStore(runs / "k") as store:
        (candidate,) = [n for n in store.nodes() if n.agent == "candidate"]
        assert candidate.status == NodeStatus.DONE and candidate.info["executor"] == "ray"
        (warning,) = [e for e in store.events(types=[EventType.WARNING]) if "could not be run" in e.message]
        assert warning.node_id == candidate.id and "running it again" in warning.message


def test_mlestar_run_on_a_running_cluster_records_every_script_as_ray(
    cluster: Cluster, tmp_path: Path
) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=120)
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump(QUICK_CONFIG))
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlestar", "run", str(competition), "--config", str(config),
         "--runs-dir", str(runs), "--run-id", "cli", "--executor", "ray", "--ray-address", cluster.address],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    with RunStore(runs / "cli") as store:
        assert store.nodes() and ray_nodes_of(store) == {("ray", cluster.node_id)}
    graded = grade_submission(
        runs / "cli" / "submission.csv", competition / "private" / "answers.csv", metric="roc_auc",
        sample_path=competition / "sample_submission.csv", id_column="id",
    )  # fmt: skip
    assert graded.valid and graded.score > 0.7


def test_bench_runs_each_competition_as_a_ray_task_side_by_side(cluster: Cluster, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    for index, name in enumerate(("alpha", "beta")):
        make_competition(suite / name, "binary", n_rows=120, seed=index)
    config = tmp_path / "quick.yaml"
    config.write_text(yaml.safe_dump(QUICK_CONFIG))
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "mlestar", "bench", str(suite), "--time-limit", "120", "--config", str(config),
        "--out", str(out), "--executor", "ray", "--ray-address", cluster.client_address,  # Ray Client
    ]  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=280)
    print(f"bench on Ray: {time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    assert "up to 2 runs at once" in proc.stderr
    bench = json.loads((out / "bench.json").read_text())
    assert [(r["competition"], r["valid"], r["complete"]) for r in bench["runs"]] == [
        ("alpha", True, True),
        ("beta", True, True),
    ]
    windows = []
    for run in bench["runs"]:
        with RunStore(out / "runs" / run["run_id"]) as store:
            events = store.events(types=[EventType.RUN_STARTED, EventType.RUN_FINISHED])
            windows.append((events[0].ts, events[-1].ts))
            assert store.get_meta("config")["workers"] == 1  # what its Ray task reserved
    (a_start, a_end), (b_start, b_end) = windows
    assert a_start < b_end and b_start < a_end  # the two pipelines ran at the same time
    started = time.monotonic()
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)  # resumable: nothing left
    print(f"bench again: {time.monotonic() - started:.1f}s")
    assert again.returncode == 0 and again.stderr.count("already done") == 2, again.stderr[-2000:]


def test_scripted_scripts_are_real_python_on_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    # The scripted brain's scripts print their score for real when Ray runs them.
    from mlestar.exec.ray_pool import RayExecutor

    data = tmp_path / "view"
    data.mkdir()
    folder = prepare_script_dir(tmp_path / "s", scripted(0.61, "x", ablation={"m": 0.5}).code, data)
    with RayExecutor() as executor:
        result = executor.submit(
            ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=60, memory_mb=512))
        ).result()
    assert result.score == 0.61 and "ABLATION m: 0.5" in result.stdout and result.node_id == cluster.node_id
