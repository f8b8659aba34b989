"""Scripts as Ray tasks, for runs spread over a cluster (extra ``mlestar[ray]``).

Each script is one Ray task. It reserves the script's threads as CPUs (within the largest node),
so Ray packs scripts onto nodes by their threads, and it runs mlestar's own sandbox
(:func:`mlestar.exec.sandbox.run_script`) on the node that takes it: the same namespaces, limits
and hide list as a local run. Memory is not reserved with Ray; each script's cap is enforced by the
sandbox on its node. Every node needs the same Python environment with mlestar installed, as Ray
requires of any code its tasks run.

Where the script's folder comes from:

* **Shared filesystem**: when every node sees the run folder and the competition's data at the same
  paths (NFS, a cluster filesystem, or one machine), the task runs the script in place. Found out
  once per run folder by a probe task on every node (a token file written here, looked for there),
  or set with ``ray_shared_fs``. A node that joins later and cannot see the folder makes the task
  fail for infrastructure, and the run's scripts are shipped from then on.
* **Shipped**: otherwise the script's input view is packed once (links resolved), put in Ray's
  object store and unpacked once per node; the worker brings back the logs, ``final/`` and
  ``working/`` (limits in :mod:`mlestar.exec.shipping`).

Stopping: :meth:`RayExecutor.cancel_all` cancels every task. A running one gets a
KeyboardInterrupt, on which the sandbox kills the script's process tree; one still running
:data:`FORCE_AFTER_S` later is force-cancelled: Ray kills its worker, which closes the launcher's
lifeline pipe, and the launcher kills the script. A worker or node that dies under a script, or a
lost connection to the cluster, gives a result with ``infrastructure_error`` set: the engine runs
the script again instead of debugging it.
"""

from __future__ import annotations

import logging
import secrets
import signal
import tempfile
import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlestar.core.contract import INPUT_DIR, SCRIPT_NAME
from mlestar.errors import MlestarError
from mlestar.exec.models import ExecLimits, ExecResult, ScriptJob
from mlestar.exec.pool import cancelled_result, infrastructure_failure
from mlestar.exec.sandbox import RC_MEMORY, run_script
from mlestar.exec.shipping import lay_out, node_input, pack_input, pack_outputs, unpack_outputs
from mlestar.exec.workspace import make_writable

FORCE_AFTER_S = 5.0  # a cancelled task still running this long after is force-cancelled
PROBE_TIMEOUT_S = 60.0  # a node whose probe has not answered by then does not share the folder
NODE_INFO_TTL_S = 30.0  # how long the nodes' sizes are trusted before being read again
PROBE_FILE = ".mlestar-ray-probe"
SCRATCH = "mlestar-ray"  # the workers' folder for shipped inputs and scripts, under their temp dir
NAME = "ray"


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MlestarError("Ray is not installed; install it with: pip install 'mlestar[ray]'") from exc
    return ray


def connect(address: str | None, **init_kwargs: Any) -> bool:
    """Connect this process to Ray: the cluster at ``address`` (``auto``, ``host:port``,
    ``ray://host:port``), or a private instance started here when it is None. Returns False when
    the process was connected already (whoever connected it also disconnects it)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    options = {"log_to_driver": False, "logging_level": logging.WARNING, **init_kwargs}
    try:
        if address is None:
            options.setdefault("include_dashboard", False)
            ray.init(address="local", **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, its own errors
        raise MlestarError(connect_error(address, exc)) from None
    return True


def connect_error(address: str | None, exc: BaseException) -> str:
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    reason = first_line(exc)
    message = f"cannot connect to {where}: {reason}"
    if "auth" in str(exc).lower():
        message += (
            " (a cluster with token authentication needs RAY_AUTH_MODE=token here, and its token in "
            "RAY_AUTH_TOKEN or ~/.ray/auth_token)"
        )
    return message


def first_line(exc: BaseException, limit: int = 300) -> str:
    cause = getattr(exc, "cause", None)  # a RayTaskError carries the task's own exception
    shown = cause if isinstance(cause, BaseException) else exc
    lines = [line.strip() for line in str(shown).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(shown).__name__}: {text}"[:limit] if text else type(shown).__name__


# ---------------------------------------------------------------------------------------------
# On the worker


def _this_node() -> dict[str, str]:
    import ray

    return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


def interruptible() -> None:
    """Let ``ray.cancel`` interrupt this task. Ray interrupts a running task as Ctrl+C would, which
    Python ignores when the worker was started with SIGINT ignored (a cluster started in the
    background of a shell is), so the task puts Python's own handler back first."""
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
            signal.signal(signal.SIGINT, signal.default_int_handler)


def blind_spot(workdir: Path) -> str | None:
    """Why this machine cannot run the script in ``workdir`` in place (None: it can)."""
    if not (workdir / SCRIPT_NAME).is_file():
        return f"{workdir / SCRIPT_NAME} does not exist here"
    inputs = workdir / INPUT_DIR
    try:
        entries = list(inputs.iterdir())
    except OSError as exc:
        return f"{inputs} cannot be read here ({exc.strerror or exc})"
    missing = [entry.name for entry in entries if not entry.exists()]
    if missing:
        return f"{inputs} links to data not visible here: {', '.join(sorted(missing)[:3])}"
    return None


def _probe(tokens: dict[str, str], folders: list[str], workdir: str | None) -> tuple[str, str | None]:
    """(this node, why it does not see what the driver sees, or None): every token file with its
    token, every folder, and the script folder ``workdir`` with its inputs."""
    node = _this_node()["node_id"]
    for path, token in tokens.items():
        try:
            seen = Path(path).read_text(encoding="utf-8")
        except OSError:
            seen = None
        if seen != token:
            return node, f"{path} is not visible here"
    for folder in folders:
        if not Path(folder).is_dir():
            return node, f"{folder} is not visible here"
    return node, blind_spot(Path(workdir)) if workdir else None


def probe_nodes(
    folders: list[Path], workdir: Path | None = None, timeout: float = PROBE_TIMEOUT_S
) -> tuple[int, list[str]]:
    """(alive nodes, what some of them do not see): whether every node of the connected cluster
    sees ``folders`` (a token file is written into the first one and looked for) and the script
    folder ``workdir`` at the same paths as this process."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = secrets.token_hex(16)
    token_file = folders[0] / PROBE_FILE
    token_file.write_text(token, encoding="utf-8")
    probe = ray.remote(max_retries=0)(_probe)
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
        refs = [
            probe.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote(
                {str(token_file): token}, [str(f) for f in folders[1:]], str(workdir) if workdir else None
            )
            for node in nodes
        ]
        ready, late = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in late:
            ray.cancel(ref, force=True)
        answers = []
        for ref in ready:
            try:
                answers.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - a node that cannot answer does not see it
                answers.append(("?", first_line(exc)))
    finally:
        token_file.unlink(missing_ok=True)
    blind = [f"node {node[:12]}: {why}" for node, why in answers if why is not None]
    if late:
        blind.append(f"{len(late)} node(s) did not answer within {timeout:.0f}s")
    return len(nodes), blind


def _run_task(
    job: dict[str, Any], code: str | None, shipped: list[Any] | None, key: str | None
) -> dict[str, Any]:
    """One script on a worker: in place when ``shipped`` is None, else in a node-local copy."""
    interruptible()
    task = ScriptJob.model_validate(job)
    node = _this_node()
    where = f"node {node['node_id'][:12]} ({node['node_ip']})"
    if shipped is None:
        problem = blind_spot(task.workdir)
        if problem is not None:
            failed = infrastructure_failure(
                f"{where} cannot run the script in place: {problem}", NAME, **node
            )
            return {"result": failed.model_dump(mode="json"), "not_shared": True}
        result = _sandboxed(task, task.workdir)
        return {"result": result.model_copy(update={"executor": NAME, **node}).model_dump(mode="json")}

    import ray

    scratch = Path(tempfile.gettempdir()) / SCRATCH
    inputs = node_input(scratch / "inputs", str(key), lambda: ray.get(shipped[0]))
    (scratch / "scripts").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{task.workdir.name}-", dir=scratch / "scripts"))
    try:
        workdir = folder / task.workdir.name
        lay_out(workdir, str(code), inputs)
        result = _sandboxed(task, workdir)
        outputs, left = pack_outputs(workdir)
    finally:
        make_writable(folder)
        _remove(folder)
    warnings = list(result.warnings)
    if left:
        warnings.append(f"left on {where}, over the size brought back from workers: {', '.join(left[:5])}")
    result = result.model_copy(update={"executor": NAME, "warnings": warnings, **node})
    return {"result": result.model_dump(mode="json"), "outputs": outputs}


def _sandboxed(task: ScriptJob, workdir: Path) -> ExecResult:
    return run_script(workdir, task.limits, hide=task.hide, extra_env=task.extra_env or None)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# On the driver


@dataclass
class _Job:
    job: ScriptJob
    future: Future[ExecResult]
    stop: threading.Event = field(default_factory=threading.Event)
    ref: Any = None  # the Ray task, once submitted


class RayExecutor:
    """A :class:`mlestar.exec.pool.Executor` over Ray tasks (see the module docstring).

    ``address``: ``auto``, ``host:port``, ``ray://host:port``, or None for a private Ray instance
    on this machine (``init_kwargs`` go to ``ray.init``, e.g. ``num_cpus``). ``shared_fs``: whether
    the nodes see the run folder at the same path; None finds out. A script stopped by
    :meth:`cancel_all` comes back as a result with ``cancelled=True``, queued or running.
    """

    name = NAME

    def __init__(
        self, address: str | None = None, *, shared_fs: bool | None = None, **init_kwargs: Any
    ) -> None:
        self._ray = import_ray()
        self._owns_ray = connect(address, **init_kwargs)
        self.shared_fs = shared_fs
        self._run_remote = self._ray.remote(max_retries=0)(_run_task)
        self._lock = threading.Lock()  # the jobs, their refs and the closed flag
        self._setup_lock = threading.Lock()  # probing and packing: once per run folder and view
        self._jobs: dict[Future[ExecResult], _Job] = {}
        self._shared: dict[Path, bool] = {}  # scripts folder -> its nodes see it
        self._inputs: dict[Path, tuple[str, Any]] = {}  # input view -> (key, object ref)
        self._notes: list[str] = []  # said once, with the next result
        self._noted: set[str] = set()
        self._largest = 0.0  # CPUs of the largest node
        self._largest_at = 0.0
        self._closed = False

    # -- the protocol --------------------------------------------------------------------------
    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        future: Future[ExecResult] = Future()
        record = _Job(job=job, future=future)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit a script after the executor was shut down")
            self._jobs[future] = record
        future.set_running_or_notify_cancel()
        threading.Thread(target=self._drive, args=(record,), name="mlestar-ray-job", daemon=True).start()
        return future

    def cancel_all(self, wait: bool = False) -> int:
        """Cancel every task (queued or running); with ``wait``, return once all have ended."""
        with self._lock:
            records = list(self._jobs.values())
            for record in records:
                record.stop.set()  # under the lock: a job is either cancelled here or never submitted
                if record.ref is not None:
                    self._cancel(record.ref, force=False)
        if wait:
            done = wait_futures([r.future for r in records], timeout=FORCE_AFTER_S).done
            self._force([r for r in records if r.future not in done])
            wait_futures([r.future for r in records])
        elif records:
            timer = threading.Timer(FORCE_AFTER_S, self._force, args=(records,))
            timer.daemon = True
            timer.start()
        return len(records)

    def shutdown(self, wait: bool = True, *, cancel: bool = False) -> None:
        with self._lock:
            self._closed = True
            futures = [record.future for record in self._jobs.values()]
        if cancel or not wait:
            # Disconnecting ends the tasks this process owns anyway; cancelling first ends them cleanly.
            self.cancel_all(wait=True)
        else:
            wait_futures(futures)
        self._inputs.clear()  # lets Ray free the shipped inputs
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.shutdown(wait=True, cancel=exc_type is not None)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._jobs)

    # -- one job ---------------------------------------------------------------------------------
    def _drive(self, record: _Job) -> None:
        try:
            result = self._execute(record)
        except BaseException as exc:  # e.g. data too large to ship: the caller sees why
            record.future.set_exception(exc)
        else:
            record.future.set_result(result)
        finally:
            with self._lock:
                self._jobs.pop(record.future, None)

    def _execute(self, record: _Job) -> ExecResult:
        job = record.job.model_copy(update={"workdir": Path(record.job.workdir).resolve()})
        code = shipped = key = None
        if not self._shares(job.workdir):
            key, ref = self._shipped_input(job.workdir)
            code, shipped = (job.workdir / SCRIPT_NAME).read_text(encoding="utf-8"), [ref]
        options = self._resources(job.limits)
        with self._lock:
            if record.stop.is_set():
                return cancelled_result(executor=NAME)
            record.ref = self._run_remote.options(**options).remote(
                job.model_dump(mode="json"), code, shipped, key
            )
        try:
            reply = self._ray.get(record.ref)
        except Exception as exc:
            return self._failure(exc)
        result = ExecResult.model_validate(reply["result"])
        if reply.get("not_shared") and self.shared_fs is None:
            with self._setup_lock:
                self._shared[job.workdir.parent] = False  # the next attempt ships the folder
            self._note(f"a Ray node does not see {job.workdir.parent}; scripts are shipped to the workers")
        if reply.get("outputs"):
            unpack_outputs(reply["outputs"], job.workdir)
        return result.model_copy(update={"warnings": self._take_notes() + result.warnings})

    def _failure(self, exc: Exception) -> ExecResult:
        errors = self._ray.exceptions
        if isinstance(exc, errors.TaskCancelledError):
            return cancelled_result("cancelled", executor=NAME)
        if isinstance(exc, errors.OutOfMemoryError):
            # Ray's memory monitor killed the worker because its node ran short: the script's doing.
            return ExecResult(
                returncode=RC_MEMORY,
                memory_exceeded=True,
                executor=NAME,
                warnings=[f"Ray's memory monitor killed the script: {first_line(exc)}"],
            )
        return infrastructure_failure(first_line(exc), NAME)

    def _cancel(self, ref: Any, *, force: bool) -> None:
        try:
            self._ray.cancel(ref, force=force)
        except Exception:  # noqa: BLE001 - a task that just finished cannot be cancelled
            pass

    def _force(self, records: list[_Job]) -> None:
        for record in records:
            if record.ref is not None and not record.future.done():
                self._cancel(record.ref, force=True)

    # -- where a job runs and what it reserves -----------------------------------------------
    def _shares(self, workdir: Path) -> bool:
        if self.shared_fs is not None:
            return self.shared_fs
        root = workdir.parent
        with self._setup_lock:
            if root not in self._shared:
                self._shared[root] = self._probe(workdir)
            return self._shared[root]

    def _probe(self, workdir: Path) -> bool:
        """Whether every alive node sees ``workdir`` (its script and its inputs) where we do."""
        nodes, blind = probe_nodes([workdir.parent], workdir)
        if blind:
            self._note(
                f"scripts are shipped to the Ray workers ({nodes} nodes) because not every node "
                f"sees the run folder: {'; '.join(blind[:3])}"
            )
        return not blind and nodes > 0

    def _shipped_input(self, workdir: Path) -> tuple[str, Any]:
        view = (workdir / INPUT_DIR).resolve()
        with self._setup_lock:
            if view not in self._inputs:
                key, archive = pack_input(view)
                self._inputs[view] = (key, self._ray.put(archive))
            return self._inputs[view]

    def _resources(self, limits: ExecLimits) -> dict[str, Any]:
        """Ray's reservation for a script: its threads as CPUs, within the largest node.

        Memory is not reserved: the default cap (70% of the driver's memory over the workers)
        is larger than Ray's share of a node for scripts side by side and would run them one by
        one; the sandbox enforces each script's cap on its node instead."""
        cpus = self._largest_cpus()
        wanted = max(1, limits.threads)
        if cpus and wanted > cpus:
            self._note(
                f"scripts ask for {wanted} CPUs; the largest Ray node has {cpus:g}, so they reserve that"
            )
            return {"num_cpus": cpus}
        return {"num_cpus": wanted}

    def _largest_cpus(self) -> float:
        """The CPUs of the largest alive node, read again every little while."""
        if time.monotonic() - self._largest_at > NODE_INFO_TTL_S:
            try:
                alive = [n.get("Resources", {}) for n in self._ray.nodes() if n.get("Alive")]
            except Exception:  # noqa: BLE001 - keep the last known size
                alive = []
            if alive:
                self._largest = max(float(r.get("CPU", 0.0)) for r in alive)
                self._largest_at = time.monotonic()
        return self._largest

    def _note(self, message: str) -> None:
        with self._lock:
            if message not in self._noted:
                self._noted.add(message)
                self._notes.append(message)

    def _take_notes(self) -> list[str]:
        with self._lock:
            notes, self._notes = self._notes, []
        return notes
