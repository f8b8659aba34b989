"""What the Ray executor and the bench's Ray runner rest on, without a cluster: choosing the executor,
Ray's address spellings, shipping script folders, infrastructure failures rerun by the engine,
where scripts ran in the UI and the report, and a suite run several at a time.

The real cluster is in tests/test_ray.py (slow tier)."""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from competitions import make_competition
from scripted import ScriptedBrain, ScriptedExecutor

from mlestar.bench.ray_runner import _absolute_config, run_target
from mlestar.bench.suite import BenchPlan, run_suite
from mlestar.cli import main as cli_main
from mlestar.core.events import EventType
from mlestar.errors import ConfigError, MlestarError
from mlestar.exec import shipping
from mlestar.exec.models import ExecResult, ScriptJob
from mlestar.exec.pool import LocalExecutor, infrastructure_failure
from mlestar.pipeline.run import create_run, execute, make_executor, resume
from mlestar.report import write_report
from mlestar.report.data import executor_counts, solution_tree
from mlestar.settings import Settings
from mlestar.store import NodeStatus, RunStatus, RunStore

SMALL = {"num_models": 2, "num_tracks": 2, "outer_steps": 1, "inner_steps": 1, "ensemble_rounds": 1}


# -- choosing the executor ------------------------------------------------------------------------


def test_the_executor_setting_picks_the_pool_and_checks_rays_address_spellings() -> None:
    assert isinstance(make_executor(Settings.load(workers=3)), LocalExecutor)
    for address in (
        "auto",
        "127.0.0.1:6379",
        "head.example:6379",
        "ray://head.example:10001",
        "ray://[::1]:10001",
    ):
        assert Settings.load(executor="ray", ray_address=address).ray_address == address
    assert Settings.load(ray_address="  ").ray_address is None  # empty: a private Ray on this machine
    for bad in ("head.example", "http://head:8265", "ray:/x", "auto;rm"):
        with pytest.raises(ConfigError, match="ray_address"):
            Settings.load(ray_address=bad)
    with pytest.raises(ConfigError, match="executor"):
        Settings.load(executor="spark")
    # How to run is the process's business: a run does not store it.
    assert not {"executor", "ray_address", "ray_shared_fs", "infra_retries"} & set(
        Settings.load().run_values()
    )


def test_executor_ray_without_ray_installed_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    competition = make_competition(tmp_path / "comp", "binary", n_rows=60)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", str(competition), "--executor", "ray", "--runs-dir", str(runs)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'mlestar[ray]'" in err and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())  # nothing was created for a run that cannot start


def test_a_resumed_run_takes_only_process_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="num_models"):
        resume("anything", runs_dir=tmp_path, executor="local", num_models=3)


# -- shipping script folders ------------------------------------------------------------------------


def _view(root: Path) -> Path:
    data = root / "competition"
    data.mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    (data / "images").mkdir()
    (data / "images" / "x.png").write_bytes(b"\x89PNG")
    view = root / "view"
    view.mkdir()
    for name in ("train.csv", "images"):
        (view / name).symlink_to(data / name)
    return view


def test_an_input_view_ships_as_real_files_and_unpacks_once_per_node(tmp_path: Path) -> None:
    view = _view(tmp_path)
    key, archive = shipping.pack_input(view)
    assert key == shipping.input_fingerprint(view)[0]
    fetched: list[int] = []

    def fetch() -> bytes:
        fetched.append(1)
        return archive

    cache = tmp_path / "node" / "inputs"
    first = shipping.node_input(cache, key, fetch)
    again = shipping.node_input(cache, key, fetch)
    assert first == again and len(fetched) == 1  # the second script on the node reuses the copy
    assert (first / "train.csv").read_text() == "a,b\n1,2\n" and not (first / "train.csv").is_symlink()
    assert (first / "images" / "x.png").read_bytes() == b"\x89PNG"
    assert not (first.stat().st_mode & stat.S_IWUSR)  # read-only, like the view on the driver
    (view / "train.csv").unlink()
    assert shipping.input_fingerprint(view)[0] != key  # another view, another cache entry


def test_shipping_refuses_inputs_over_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shipping, "MAX_INPUT_BYTES", 5)
    with pytest.raises(MlestarError, match="shared"):
        shipping.pack_input(_view(tmp_path))


def test_outputs_come_back_within_the_cap_and_never_as_links(tmp_path: Path) -> None:
    worker = tmp_path / "worker" / "0001-candidate"
    shipping.lay_out(worker, "print(1)\n", _view(tmp_path / "data"))
    (worker / "stdout.txt").write_text("Final Validation Performance: 1\n")
    (worker / "final" / "submission.csv").write_text("id,y\n1,0\n")
    (worker / "working" / "small.txt").write_text("s")
    (worker / "working" / "big.bin").write_bytes(b"x" * 100)
    (worker / "working" / "deep").mkdir()
    (worker / "working" / "deep" / "part.txt").write_text("p")
    (worker / "working" / "secret").symlink_to("/etc/hostname")
    archive, left = shipping.pack_outputs(worker, max_working_bytes=10)
    assert left == ["working/big.bin"]
    driver = tmp_path / "driver"
    (driver / "working").mkdir(parents=True)
    (driver / "final").mkdir()
    shipping.unpack_outputs(archive, driver)
    assert (driver / "final" / "submission.csv").read_text() == "id,y\n1,0\n"
    assert (driver / "stdout.txt").read_text().startswith("Final Validation")
    assert (driver / "working" / "deep" / "part.txt").read_text() == "p"
    assert not (driver / "working" / "big.bin").exists() and not (driver / "working" / "secret").exists()


def test_an_archive_cannot_write_outside_the_script_folder(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(MlestarError, match="outside"):
        shipping.unpack_outputs(buffer.getvalue(), tmp_path / "script")
    assert not (tmp_path / "escaped.txt").exists()


# -- infrastructure failures ------------------------------------------------------------------------


class FlakyExecutor(ScriptedExecutor):
    """Reports a dead worker for the first ``failures`` scripts it is given, then runs them."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        with self._lock:
            fail, self.failures = self.failures > 0, self.failures - 1
        if not fail:
            future = super().submit(job)
            result = future.result().model_copy(update={"node_id": "a" * 56, "node_ip": "10.0.0.7"})
            done: Future[ExecResult] = Future()
            done.set_result(result)
            return done
        (job.workdir / "working" / "partial.txt").write_text("left by the dead attempt")
        future = Future()
        future.set_result(infrastructure_failure("WorkerCrashedError: the worker died", self.name))
        return future


def test_a_script_whose_worker_died_runs_again_and_is_not_debugged(tmp_path: Path) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    store = create_run(competition, Settings.load(runs_dir=tmp_path / "runs", **SMALL), run_id="r")
    brain, executor = ScriptedBrain(), FlakyExecutor(failures=2)
    result = execute(store, brain=brain, executor=executor)
    assert result.status == RunStatus.FINISHED
    assert brain.calls["debug"] == 0  # a dead worker is not the script's fault
    retried = [
        e for e in store.events(types=[EventType.WARNING]) if "could not be run to its end" in e.message
    ]
    # The candidates go to the executor side by side: its first two runs may be one script's or two.
    assert len(retried) == 2 and all("running it again (attempt" in e.message for e in retried)
    for node_id in {e.node_id for e in retried}:
        node = store.get_node(node_id or 0)
        assert node is not None and node.status == NodeStatus.DONE and node.score is not None
        partial = (store.run_dir / node.script_path).with_name("working").joinpath("partial.txt")
        assert not partial.exists()  # the rerun started from a clean folder
    # Where every script ran is kept with it, and shown in the UI's tree and the report.
    assert all(n.info["executor"] == "scripted" and n.info["node_ip"] == "10.0.0.7" for n in store.nodes())
    rows = solution_tree(store.nodes())
    assert rows[0].executor_node == "a" * 56 and rows[0].ran_on == "scripted node aaaaaaaaaaaa (10.0.0.7)"
    assert executor_counts(rows) == [("scripted node aaaaaaaaaaaa (10.0.0.7)", len(rows))]
    html, markdown = write_report(store.run_dir)
    assert "ran on" in html.read_text() and "scripted node aaaaaaaaaaaa (10.0.0.7)" in html.read_text()
    assert f"Scripts ran on: scripted node aaaaaaaaaaaa (10.0.0.7) ({len(rows)})" in markdown.read_text()


def test_an_executor_that_keeps_failing_stops_the_run_resumably(tmp_path: Path) -> None:
    competition = make_competition(tmp_path / "comp", "binary", n_rows=80)
    runs = tmp_path / "runs"
    store = create_run(competition, Settings.load(runs_dir=runs, **SMALL), run_id="r")
    result = execute(store, brain=ScriptedBrain(), executor=FlakyExecutor(failures=100))
    assert result.status == RunStatus.STOPPED and result.stop_reason == "infrastructure"
    (stopped,) = store.events(types=[EventType.RUN_STOPPED])
    assert "could not be run 3 times" in stopped.message and "mlestar resume r" in stopped.message
    assert {n.status for n in store.nodes()} == {
        NodeStatus.PENDING
    }  # nothing counted as the script's failure
    store.close()
    again = resume("r", runs_dir=runs, brain=ScriptedBrain(), executor=ScriptedExecutor())
    assert again.status == RunStatus.FINISHED and again.submission_path is not None


def test_a_stopped_run_says_infrastructure_with_its_own_exit_code(tmp_path: Path) -> None:
    from mlestar.commands.run import _exit_for

    with pytest.raises(BaseException) as exit_info:
        _exit_for(RunStatus.STOPPED, "infrastructure")
    assert exit_info.value.exit_code == 75  # type: ignore[attr-defined]


# -- the bench, several runs at a time --------------------------------------------------------------


def test_a_suite_runs_several_competitions_at_once_and_saves_each(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    for name in ("a", "b", "c"):
        make_competition(suite / name, "binary", n_rows=60, seed=len(name))
    running, most = 0, 0
    lock = threading.Lock()

    def runner(argv: list[str], timeout: float) -> tuple[int, str]:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)
        with lock:
            running -= 1
        return 1, "boom"  # a failed run still counts, as no score

    results, rows = run_suite(suite, BenchPlan(time_limit=10), tmp_path / "out", runner=runner, parallel=3)
    assert most == 3 and len(results) == 3 and len(rows) == 3
    assert all(r.reason.startswith("mlestar run exited 1") for r in results)
    saved = (tmp_path / "out" / "bench.json").read_text()
    assert all(f'"competition": "{name}"' in saved for name in "abc")


def test_the_ray_runner_reads_and_rewrites_bench_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = [
        "py",
        "-m",
        "mlestar",
        "run",
        "/s/comp",
        "--runs-dir",
        "/o/runs",
        "--run-id",
        "comp-s0",
        "--config",
        "c.yaml",
    ]
    assert run_target(run) == (Path("/o/runs"), "comp-s0")
    assert run_target(["py", "-m", "mlestar", "resume", "comp-s1", "--runs-dir", "/o/runs"]) == (
        Path("/o/runs"),
        "comp-s1",
    )
    assert run_target(["py", "-c", "print(1)"]) is None
    assert _absolute_config(run)[-1] == str(tmp_path / "c.yaml")  # the worker's folder is another


def test_run_state_of_a_remote_owner_is_trusted_until_marked(tmp_path: Path) -> None:
    from mlestar.bench.ray_runner import RayRunner

    competition = make_competition(tmp_path / "comp", "binary", n_rows=60)
    store = create_run(competition, Settings.load(runs_dir=tmp_path / "runs"), run_id="x")
    store.set_status(RunStatus.RUNNING)
    store.set_meta("owner", {"pid": 1, "host": "another-node", "since": 0.0})
    store.close()
    assert RunStore(tmp_path / "runs" / "x").status == RunStatus.RUNNING  # another host: trusted
    assert RayRunner._mark_crashed(tmp_path / "runs", "x")
    assert RunStore(tmp_path / "runs" / "x").status == RunStatus.CRASHED  # now resumable
    assert not RayRunner._mark_crashed(tmp_path / "runs", "never-created")
