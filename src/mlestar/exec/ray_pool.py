"""Running scripts as Ray tasks, for runs spread over a cluster (extra ``mlestar[ray]``).

Every node must see the run folder at the same path (a shared filesystem): a task only gets
the script's folder path, and the script reads ``./input`` through it. Each task reserves
``limits.threads`` CPUs and ``limits.memory_mb`` of memory, so Ray packs scripts onto nodes the
way the limits say; the sandbox still enforces them on the node.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from mlestar.errors import MlestarError
from mlestar.exec.models import ExecResult, ScriptJob


def _run_remote(job: dict[str, Any]) -> ExecResult:
    from mlestar.exec.sandbox import run_script

    task = ScriptJob.model_validate(job)
    result = run_script(task.workdir, task.limits, hide=task.hide, extra_env=task.extra_env or None)
    return result.model_copy(update={"executor": "ray"})


class RayExecutor:
    """A :class:`mlestar.exec.pool.Executor` over Ray tasks."""

    name = "ray"

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        try:
            import ray
        except ImportError as exc:
            raise MlestarError(
                "Ray is not installed; install it with: pip install 'mlestar[ray]'"
            ) from exc
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, **init_kwargs)
        self._remote = ray.remote(_run_remote)
        self._lock = threading.Lock()
        self._refs: dict[Future[ExecResult], Any] = {}

    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        limits = job.limits
        options: dict[str, Any] = {"num_cpus": max(1, limits.threads), "max_retries": 0}
        if limits.memory_mb > 0:
            options["memory"] = limits.memory_mb * 1024 * 1024
        job = job.model_copy(update={"workdir": Path(job.workdir).resolve()})
        ref = self._remote.options(**options).remote(job.model_dump(mode="json"))
        future: Future[ExecResult] = ref.future()
        with self._lock:
            self._refs[future] = ref
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[ExecResult]) -> None:
        with self._lock:
            self._refs.pop(future, None)

    def cancel_all(self) -> int:
        """Force-cancel every task: its worker dies, which makes the sandbox kill the script."""
        with self._lock:
            refs = list(self._refs.values())
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that just finished cannot be cancelled
                pass
        return len(refs)

    def shutdown(self, wait: bool = True) -> None:
        if not wait:
            self.cancel_all()
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
