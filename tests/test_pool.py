"""Executors: scripts side by side, and stopping them all."""

from __future__ import annotations

import sys
import time
import uuid
from concurrent.futures import CancelledError
from pathlib import Path

import psutil
import pytest

from mlestar.errors import MlestarError
from mlestar.exec import ExecLimits, Executor, LocalExecutor, ScriptJob
from mlestar.exec.sandbox import RC_CANCELLED

pytestmark = pytest.mark.timeout(60)


def script_dir(root: Path, name: str, code: str) -> Path:
    folder = root / name
    (folder / "working").mkdir(parents=True)
    (folder / "script.py").write_text(code)
    return folder


def marked_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_scripts_run_concurrently(tmp_path: Path) -> None:
    sleep_s, count = 1.5, 4
    code = f"import time\ntime.sleep({sleep_s})\nprint('Final Validation Performance: 1')\n"
    folders = [script_dir(tmp_path, f"s{i}", code) for i in range(count)]
    started = time.monotonic()
    with LocalExecutor(workers=count) as executor:
        assert isinstance(executor, Executor)
        futures = [executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=20))) for folder in folders]
        results = [future.result(timeout=30) for future in futures]
    elapsed = time.monotonic() - started
    assert all(result.ok and result.score == 1 for result in results)
    assert elapsed < sleep_s * count / 2  # serial would take 6 s
    assert executor.in_flight == 0


def test_workers_bound_the_concurrency(tmp_path: Path) -> None:
    code = "import time\ntime.sleep(0.8)\nprint('Final Validation Performance: 1')\n"
    folders = [script_dir(tmp_path, f"s{i}", code) for i in range(2)]
    started = time.monotonic()
    with LocalExecutor(workers=1) as executor:
        for future in [executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=20))) for folder in folders]:
            assert future.result(timeout=30).ok
    assert time.monotonic() - started >= 1.6


def test_submit_passes_options_through(tmp_path: Path) -> None:
    code = "import os\nprint('Final Validation Performance:', os.environ['MY_FLAG'])\n"
    folder = script_dir(tmp_path, "s", code)
    with LocalExecutor(workers=1) as executor:
        result = executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=20), extra_env={"MY_FLAG": "7"})).result(30)
    assert result.score == 7


def test_cancel_all_kills_running_and_drops_queued(tmp_path: Path) -> None:
    marker = f"mlestar-test-{uuid.uuid4()}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', {marker!r}])\n"
        "time.sleep(1000)\n"
    )
    folders = [script_dir(tmp_path, f"s{i}", code) for i in range(3)]
    executor = LocalExecutor(workers=2)
    futures = [executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=60))) for folder in folders]
    deadline = time.monotonic() + 20
    while len(marked_processes(marker)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(marked_processes(marker)) == 2  # two running, one queued

    started = time.monotonic()
    assert executor.cancel_all(wait=True) == 3
    assert time.monotonic() - started < 5
    for future in futures[:2]:
        result = future.result(timeout=1)
        assert result.cancelled and result.returncode == RC_CANCELLED and not result.ok
    assert futures[2].cancelled()
    with pytest.raises(CancelledError):
        futures[2].result()
    assert marked_processes(marker) == []

    # The executor stays usable after a cancel.
    folder = script_dir(tmp_path, "after", "print('Final Validation Performance: 3')\n")
    assert executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=20))).result(30).score == 3
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.submit(ScriptJob(workdir=folder, limits=ExecLimits()))


def test_leaving_the_context_on_an_error_cancels(tmp_path: Path) -> None:
    folder = script_dir(tmp_path, "s", "import time\ntime.sleep(1000)\n")
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), LocalExecutor(workers=1) as executor:
        future = executor.submit(ScriptJob(workdir=folder, limits=ExecLimits(timeout_s=60)))
        time.sleep(0.3)
        raise KeyboardInterrupt
    assert future.result(timeout=5).cancelled
    assert time.monotonic() - started < 5


def test_ray_executor_without_ray_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    from mlestar.exec import RayExecutor

    with pytest.raises(MlestarError, match=r"pip install 'mlestar\[ray\]'"):
        RayExecutor()
