"""Executors: where scripts run, one at a time or many side by side."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any, Protocol, runtime_checkable

from mlestar.exec.gpus import CUDA_VISIBLE, GpuMemoryWatch, GpuPool
from mlestar.exec.models import ExecResult, ScriptJob
from mlestar.exec.sandbox import RC_CANCELLED, run_script


@runtime_checkable
class Executor(Protocol):
    """Runs scripts in their folders and hands back futures of their results.

    The local pool and the Ray executor both implement it; the pipeline knows nothing else."""

    name: str

    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        """Queue one script; its future ends cancelled when it was dropped before starting.

        A script the executor could not run to its end through no fault of its own (a worker or
        node died) comes back with ``infrastructure_error`` set; the engine runs it again."""
        ...

    def cancel_all(self) -> int:
        """Kill running scripts and drop queued ones; returns how many were stopped."""
        ...

    def shutdown(self, wait: bool = True) -> None: ...


RC_INFRASTRUCTURE = 75  # EX_TEMPFAIL: the script did not get to run to its end; try again


def cancelled_result(reason: str = "cancelled before it started", executor: str = "local") -> ExecResult:
    return ExecResult(returncode=RC_CANCELLED, cancelled=True, executor=executor, warnings=[reason])


def infrastructure_failure(reason: str, executor: str, **fields: Any) -> ExecResult:
    """The result of a script its executor could not run to its end (a dead worker or node)."""
    return ExecResult(returncode=RC_INFRASTRUCTURE, executor=executor, infrastructure_error=reason, **fields)


class LocalExecutor:
    """Up to ``workers`` scripts at once on this machine.

    Threads only drive the subprocesses (waiting, watching memory), so a thread pool is enough:
    the scripts themselves run in their own processes, in parallel. With ``gpus`` (device ids),
    each running script leases one device (``CUDA_VISIBLE_DEVICES``) and waits for a free one, at
    most ``scripts_per_gpu`` scripts to a device; without, scripts see no GPU at all.
    """

    def __init__(self, workers: int = 1, gpus: list[str] | None = None, scripts_per_gpu: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.gpus = GpuPool(gpus or [], scripts_per_gpu)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlestar-script")
        self._lock = threading.Lock()
        self._jobs: dict[Future[ExecResult], threading.Event] = {}

    name = "local"

    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        stop = threading.Event()
        future = self._pool.submit(self._run, job, stop)
        with self._lock:
            self._jobs[future] = stop
        future.add_done_callback(self._forget)
        return future

    def _run(self, job: ScriptJob, stop: threading.Event) -> ExecResult:
        # A job cancelled in the instant between being dequeued and starting never starts.
        if stop.is_set():
            return cancelled_result()
        if not self.gpus:
            env = {CUDA_VISIBLE: "", **job.extra_env}
            return run_script(job.workdir, job.limits, cancel=stop, hide=job.hide, extra_env=env)
        with self.gpus.lease(stop) as device:
            if device is None:
                return cancelled_result("cancelled while waiting for a GPU")
            env = {**job.extra_env, CUDA_VISIBLE: device}
            with GpuMemoryWatch(job.workdir) as memory:
                result = run_script(job.workdir, job.limits, cancel=stop, hide=job.hide, extra_env=env)
        return result.model_copy(update={"gpu": device, "peak_gpu_memory_mb": memory.peak_mb})

    def _forget(self, future: Future[ExecResult]) -> None:
        with self._lock:
            self._jobs.pop(future, None)

    @property
    def in_flight(self) -> int:
        """Scripts queued or running."""
        with self._lock:
            return len(self._jobs)

    def cancel_all(self, wait: bool = False) -> int:
        """Drop queued scripts and kill running ones (their results say ``cancelled=True``).

        Queued futures end cancelled (``future.cancelled()``; ``result()`` raises CancelledError).
        With ``wait=True``, returns only once every running script has been killed and reaped.
        """
        with self._lock:
            jobs = list(self._jobs.items())
        for future, stop in jobs:
            stop.set()
            future.cancel()
        if wait:
            wait_futures([future for future, _ in jobs])
        return len(jobs)

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        if cancel:
            self.cancel_all()
        self._pool.shutdown(wait=wait, cancel_futures=cancel)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Leaving on an error (Ctrl+C included) must not wait for hour-long scripts.
        self.shutdown(wait=True, cancel=exc_type is not None)
