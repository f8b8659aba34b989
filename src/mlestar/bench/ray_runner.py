"""``mlestar bench --executor ray``: every (competition, seed) runs as its own Ray task, the pipeline
itself on the node that takes it.

A task runs the same ``mlestar run`` / ``mlestar resume`` command the local bench runs, with the
run's scripts on that node's process pool (``--executor local``). It reserves the CPUs the run
uses, ``workers x threads``, and passes both to the run so it uses exactly what it reserved (a
resumed run keeps what it was started with); as many runs go at once as the cluster has room for.
The suite and the bench's output folder must be seen at the same paths by every node (a shared
filesystem; one machine is one): runs write their stores there, and the bench grades and resumes
from them. That is checked once, by a probe on every node.

Stopping: Ctrl+C cancels the tasks; each task sends its run SIGINT (the run stops cleanly and stays
resumable), then SIGKILL if it has not ended :data:`STOP_GRACE_S` later. A task whose worker or node
dies leaves a run that looks alive: the runner marks it crashed and resumes it, ``retries`` times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from mlestar.errors import MlestarError
from mlestar.exec.ray_pool import connect, first_line, import_ray, interruptible, probe_nodes
from mlestar.store import RunStatus, RunStore
from mlestar.store.db import DB_NAME

STOP_GRACE_S = 30.0  # a stopped run's time to save its state before it is killed
COLLECT_GRACE_S = 120.0  # beyond the run's own timeout, for Ray to hand the result back


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _end(proc: subprocess.Popen) -> None:
    """Ask the run to stop (SIGINT, as Ctrl+C), then kill its process group."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except OSError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_command(argv: list[str], timeout: float) -> tuple[int, str]:
    """On the worker: one ``mlestar`` command, its exit code and its last line of output."""
    interruptible()
    if argv[1:3] == ["-m", "mlestar"]:
        argv = [sys.executable, *argv[1:]]  # this node's Python, wherever the driver's lives
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(proc)
        return 124, f"no result within {timeout:.0f}s"
    except BaseException:  # ray.cancel: KeyboardInterrupt in this task
        _end(proc)
        raise
    return proc.returncode, _last_line(err) or _last_line(out)


def _absolute_config(argv: list[str]) -> list[str]:
    """The command with its ``--config`` file as an absolute path (the worker's folder differs)."""
    argv = list(argv)
    if "--config" in argv[:-1]:
        at = argv.index("--config") + 1
        argv[at] = str(Path(argv[at]).resolve())
    return argv


def run_target(argv: list[str]) -> tuple[Path, str] | None:
    """(runs folder, run id) of a ``mlestar run`` or ``mlestar resume`` command line."""
    try:
        command = argv.index("mlestar") + 1
        runs_dir = Path(argv[argv.index("--runs-dir") + 1])
        if argv[command] == "run":
            return runs_dir, argv[argv.index("--run-id") + 1]
        if argv[command] == "resume":
            return runs_dir, argv[command + 1]
    except (ValueError, IndexError):
        return None
    return None


class RayRunner:
    """A bench ``Runner`` (``(argv, timeout) -> (exit code, last line)``) over Ray tasks.

    ``workers`` and ``threads``: each run's scripts at once and threads per script (fitted into the
    largest node); ``shared``: folders every node must see (the suite and the output folder).
    """

    def __init__(
        self, address: str | None, *, workers: int, threads: int, shared: list[Path], retries: int = 2
    ) -> None:
        self._ray = import_ray()
        self._owns_ray = connect(address)
        self.retries = retries
        self.notes: list[str] = []
        nodes = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
        largest = int(max((float(r.get("CPU", 0.0)) for r in nodes), default=0.0))
        if largest < 1:
            raise MlestarError("the Ray cluster has no node with a CPU to run a competition on")
        self.workers = max(1, min(workers, largest))
        self.threads = max(1, min(threads, largest // self.workers))
        if (self.workers, self.threads) != (workers, threads):
            self.notes.append(
                f"each run asked for {workers} x {threads} CPUs; the largest Ray node has {largest}, "
                f"so runs use {self.workers} scripts at once with {self.threads} threads each"
            )
        self.cpus = self.workers * self.threads
        total = float(self._ray.cluster_resources().get("CPU", 0.0))
        self.slots = max(1, int(total // self.cpus))  # runs the cluster holds at once
        count, blind = probe_nodes([p.resolve() for p in shared])
        if blind:
            raise MlestarError(
                f"mlestar bench --executor ray needs {', '.join(str(p) for p in shared)} at the same paths "
                f"on every node (a shared filesystem), and {len(blind)} of {count} nodes do not see them: "
                + "; ".join(blind[:3])
            )
        self._remote = self._ray.remote(max_retries=0)(run_command)
        self._lock = threading.Lock()
        self._refs: set[Any] = set()

    def __call__(self, argv: list[str], timeout: float) -> tuple[int, str]:
        argv = [*_absolute_config(argv), "--executor", "local"]  # the run's own scripts stay on its node
        if argv[3:4] == ["run"]:
            argv += ["--workers", str(self.workers), "--threads", str(self.threads)]
        code, tail = 75, ""
        for _attempt in range(self.retries + 1):
            code, tail, infrastructure = self._attempt(argv, timeout)
            if not infrastructure:
                break
            target = run_target(argv)
            if target is not None and self._mark_crashed(*target):
                runs_dir, run_id = target
                argv = [
                    argv[0],
                    "-m",
                    "mlestar",
                    "resume",
                    run_id,
                    "--runs-dir",
                    str(runs_dir),
                    "--executor",
                    "local",
                ]
        return code, tail

    def _attempt(self, argv: list[str], timeout: float) -> tuple[int, str, bool]:
        """(exit code, last line, whether the cluster rather than the run failed)."""
        ref = self._remote.options(num_cpus=self.cpus).remote(argv, timeout)
        with self._lock:
            self._refs.add(ref)
        errors = self._ray.exceptions
        try:
            code, tail = self._ray.get(ref, timeout=timeout + COLLECT_GRACE_S)
            return code, tail, False
        except errors.GetTimeoutError:
            self._cancel(ref)
            return 124, f"no result from the Ray cluster within {timeout:.0f}s", False
        except errors.TaskCancelledError:
            return 130, "cancelled", False
        except KeyboardInterrupt:
            self._cancel(ref)  # the run gets SIGINT on its node and saves its state
            raise
        except Exception as exc:  # a dead worker or node, a lost cluster
            return 75, f"the Ray task died: {first_line(exc)}", True
        finally:
            with self._lock:
                self._refs.discard(ref)

    def _cancel(self, ref: Any) -> None:
        try:
            self._ray.cancel(ref, force=False)
            self._ray.wait([ref], timeout=STOP_GRACE_S + 15)
        except Exception:  # noqa: BLE001 - it ended meanwhile
            pass

    def cancel_all(self) -> int:
        """Stop every run in flight (each saves its state and stays resumable)."""
        with self._lock:
            refs = list(self._refs)
        for ref in refs:
            try:
                self._ray.cancel(ref, force=False)
            except Exception:  # noqa: BLE001 - it ended meanwhile
                pass
        if refs:
            self._ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S + 15)
        return len(refs)

    @staticmethod
    def _mark_crashed(runs_dir: Path, run_id: str) -> bool:
        """The run's process died with its node: say so in its store, so it can be resumed.
        False when there is no run to resume (the task died before the run was created)."""
        if not (runs_dir / run_id / DB_NAME).is_file():
            return False
        try:
            with RunStore(runs_dir / run_id) as store:
                if store.get_meta("status") in (RunStatus.RUNNING.value, RunStatus.PAUSED.value):
                    store.set_status(RunStatus.CRASHED)
        except Exception:  # noqa: BLE001 - an unreadable store: start the run again instead
            return False
        return True

    def close(self) -> None:
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
