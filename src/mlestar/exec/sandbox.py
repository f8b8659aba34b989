"""Running one generated script confined to its own folder, under limits of time, memory, processes
and disk, without network where the OS allows.

How a script is started::

    bwrap ... (bubblewrap)  |  unshare ... (namespaces only)  |  nothing          (the best there is)
        python -I -S -c <LAUNCHER> ...                                            (always)
            python script.py                                                      (the script)

* **bubblewrap** (:mod:`mlestar.exec.isolation`) gives the script a read-only view of the whole
  machine but for its ``working/`` and ``final/``, a private size-capped ``/tmp`` and ``/dev/shm``,
  a minimal ``/dev`` (plus GPUs), covered private files (the answers, the run store, credential
  files, the host's Unix sockets), new PID, IPC and (when the network is cut) network namespaces,
  and no capabilities: root inside cannot write the competition data, the run, the Python
  environment or the home folder, nor undo a mount.
* Without bubblewrap, **unshare** makes the namespaces and the launcher does the same
  confinement by hand inside the private mount namespace (``mount_setattr``, Linux 5.12); without
  either, only the launcher's own protections hold (README, "Sandbox").
* The launcher (:mod:`mlestar.exec.launcher`, stdlib Python) is the script's parent: the PID
  namespace's init (or a child subreaper), so cleanup is exact even after double forks and setsid.
  It sets the rlimits inherited by everything the script starts (memory, largest file, processes
  inside a user namespace), drops every capability, reports the script's own exit status over a
  pipe, and holds a "lifeline" pipe: when we close our end, or die, it kills the script.
* This process watches the clock, the memory and the task count of the whole tree and what the
  script wrote into its folders (:mod:`mlestar.exec.watch`) and kills the tree when a limit is
  passed. Where a pids cgroup can be made (:mod:`mlestar.exec.cgroups`) the kernel refuses forks
  past the process cap, for root too.

Return codes in :class:`ExecResult`: the script's exit code; ``-N`` when a signal N that we did
not send ended it (``-11`` segfault, ``-9`` the kernel's OOM killer...); :data:`RC_TIMEOUT` (124,
as ``timeout(1)``) past the time limit; :data:`RC_MEMORY` (137, as an OOM kill reads in a shell)
when the watcher killed it for memory, :data:`RC_PROCESSES` (137 too) for too many processes,
:data:`RC_DISK` (153, as SIGXFSZ reads in a shell) for too much disk; :data:`RC_CANCELLED` (130,
as Ctrl+C) when cancelled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from mlestar.core.contract import FINAL_DIR, INPUT_DIR, WORKING_DIR, last_score_value, score_from_value
from mlestar.exec.cgroups import PidsCgroup
from mlestar.exec.environment import credential_paths, scrubbed_env
from mlestar.exec.isolation import Confinement, Isolation, bwrap_command, isolation_support, sockets_to_cover
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.output import omitted_marker, trim_output
from mlestar.exec.watch import TreeWatch

log = logging.getLogger(__name__)

RC_TIMEOUT = 124
RC_MEMORY = 137
RC_PROCESSES = 137
RC_DISK = 153
RC_CANCELLED = 130

OUTPUT_FILE_CAP = 20 * 1024 * 1024  # bytes kept on disk per stream; the rest is counted, not stored
_KEEP_BYTES = 64 * 1024  # head and tail of each stream kept in memory for the trimmed text
_LINE_KEEP = 4096  # the end of an unfinished line kept while looking for the score line
_MIB = 1024 * 1024
_SANDBOX_TASKS = 4  # bwrap or unshare, and the launcher's two threads, count against the process cap

# The launcher's source, read once and passed to `python -I -S -c` (its docstring lists the arguments).
_LAUNCHER = Path(__file__).with_name("launcher.py").read_text(encoding="utf-8")


def data_limit_bytes(memory_mb: int) -> int:
    """The RLIMIT_DATA given to every process of the script.

    RLIMIT_DATA (Linux >= 4.7: brk plus private writable mappings) rather than RLIMIT_AS: address
    space limits break CUDA, jemalloc and anything else that reserves large PROT_NONE ranges,
    while glibc's per-thread malloc arenas and OpenBLAS's per-thread buffers only count for DATA
    once made writable. DATA still counts writable memory that was never touched (thread stacks,
    BLAS buffers), so the cap gets headroom above the RSS budget; the tree watcher enforces the
    budget itself. The rlimit's job is to turn one huge allocation into a MemoryError with a
    traceback, long before it could hurt the host.
    """
    if memory_mb <= 0:
        return 0
    return (memory_mb + max(256, memory_mb // 4)) * _MIB


class _Capture:
    """Drains one output pipe: a capped file on disk, head and tail in memory, the last score line."""

    def __init__(self, pipe, path: Path, cap: int) -> None:
        self._pipe = pipe
        self._file = open(path, "wb")  # noqa: SIM115 - closed by the reading thread
        self._cap = cap
        self._written = 0
        self.total = 0
        self._head = bytearray()
        self._tail = bytearray()
        self._pending = b""
        self.score_value: str | None = None
        self.thread = threading.Thread(target=self._drain, name=f"capture-{path.name}", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        fd = self._pipe.fileno()
        try:
            while chunk := os.read(fd, 65536):
                self._feed(chunk)
        except OSError:
            pass
        finally:
            self._scan(b"\n")
            self._file.close()
            self._pipe.close()

    def _feed(self, chunk: bytes) -> None:
        self._scan(chunk)
        self.total += len(chunk)
        if self._written < self._cap:
            part = chunk[: self._cap - self._written]
            self._file.write(part)
            self._written += len(part)
            if len(part) < len(chunk):
                self._file.write(f"\n[mlestar: output cut at {self._cap} bytes]\n".encode())
        room = _KEEP_BYTES - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        self._tail += chunk
        if len(self._tail) > _KEEP_BYTES:
            del self._tail[: len(self._tail) - _KEEP_BYTES]

    def _scan(self, chunk: bytes) -> None:
        # Scanned as it streams, so the score is found even in output far beyond what is kept.
        data = self._pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data[-_LINE_KEEP:]
            return
        complete, self._pending = data[: cut + 1], data[cut + 1 :][-_LINE_KEEP:]
        if b"performance" in complete.lower():
            value = last_score_value(complete.decode("utf-8", "replace"))
            if value is not None:
                self.score_value = value

    def text(self, head: int, tail: int) -> str:
        kept = len(self._head) + len(self._tail)
        if kept >= self.total:
            return trim_output(bytes(self._head + self._tail).decode("utf-8", "replace"), head, tail)
        head_text = self._head.decode("utf-8", "replace")[:head]
        tail_text = self._tail.decode("utf-8", "replace")[-tail:] if tail > 0 else ""
        omitted = self.total - len(head_text.encode()) - len(tail_text.encode())
        return head_text + omitted_marker(omitted) + tail_text


def _kill_tree(proc: subprocess.Popen, root: psutil.Process, pid_namespace: bool) -> None:
    """SIGKILL every descendant, then the top process.

    With a PID namespace its init (the launcher, our child) goes first: the kernel then kills
    everything in the namespace at once, however fast it forks. Without one the top process goes
    last: it is the launcher, the subreaper that catches (and kills) whatever forks while we are
    killing; killed first, its orphans would be handed to init and escape.
    """
    if pid_namespace:
        with contextlib.suppress(psutil.Error):
            for child in root.children():
                child.kill()
    for _ in range(50):
        try:
            alive = [p for p in root.children(recursive=True) if p.is_running()]
        except psutil.Error:
            break
        if not alive:
            break
        for child in alive:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(alive, timeout=0.2)
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def _read_status(fd: int) -> tuple[int | None, float]:
    """(the script's return code as the launcher saw it, its peak RSS in MiB)."""
    os.set_blocking(fd, False)
    try:
        raw = os.read(fd, 256).decode(errors="replace").split()
    except OSError:
        raw = []
    finally:
        os.close(fd)
    if len(raw) != 3 or raw[0] not in ("exit", "signal"):
        return None, 0.0
    code = int(raw[1])
    return (code if raw[0] == "exit" else -code), int(raw[2]) / 1024


def _script_env(
    workdir: Path,
    limits: ExecLimits,
    python: str,
    isolation: Isolation,
    isolated: bool,
    extra_env: dict | None,
) -> dict[str, str]:
    working = workdir / WORKING_DIR
    offline = (
        # Fail fast instead of retrying downloads for minutes inside a namespace with no route out.
        {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if isolated
        else {}
    )
    # Under bubblewrap the host's TMPDIR is read-only; the private /tmp is where temporary files go.
    private_tmp = {"TMPDIR": "/tmp"} if isolation.mount_namespace else {}
    env = scrubbed_env(
        limits.threads,
        {**offline, **private_tmp, **(extra_env or {})},
        home=working if working.is_dir() else workdir,
    )
    bin_dir = str(Path(python).parent)
    if bin_dir not in env["PATH"].split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    return env


def _needed_paths(workdir: Path, python: str) -> list[Path]:
    """What the script must still see when /tmp is made private: its folder, what its input links
    lead to, and its Python (a virtual environment under /tmp included)."""
    paths = [workdir]
    input_dir = workdir / INPUT_DIR
    if input_dir.exists():
        paths.append(input_dir.resolve())
        for folder, dirs, files in os.walk(input_dir.resolve()):
            for name in dirs + files:
                entry = Path(folder) / name
                if entry.is_symlink():
                    paths.append(entry.resolve())
    interpreter = [Path(python).absolute().parent, Path(python).resolve().parent]
    prefixes = {Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path) if p}
    paths += interpreter + [p.resolve() for p in prefixes if p.is_dir()]
    return paths


def private_dir_bytes(limits: ExecLimits) -> int:
    """The size cap of the script's private /tmp and /dev/shm (each): memory-backed, so at most half
    the memory cap, and never more than the disk cap."""
    caps = [mb for mb in (limits.disk_mb, limits.memory_mb // 2) if mb > 0]
    return max(64, min(caps, default=1024)) * _MIB


def _paths_to_hide(paths: Iterable[str | Path], keep: Iterable[str | Path]) -> list[str]:
    """Existing paths to cover, minus any that would also cover what the script needs to run."""
    needed = [Path(p).resolve() for p in keep]
    result = []
    for path in paths:
        real = Path(path).resolve()
        if "\n" in str(real) or not real.exists() or str(real) in result:
            continue
        if any(real == n or real in n.parents for n in needed):
            log.debug("not hiding %s: the script needs what lies under it", real)
            continue
        result.append(str(real))
    return result


_warned: set[str] = set()


def _warn_once(message: str) -> bool:
    """Log ``message`` the first time only; True that first time."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
        return True
    log.debug(message)
    return False


def missing_protections(isolation: Isolation) -> str | None:
    """One line naming what the sandbox cannot do here, or None when it holds fully."""
    if not isolation.missing:
        return None
    return (
        f"sandbox without {', '.join(isolation.missing)} ({isolation.reason or 'not supported here'}); "
        "install bubblewrap for full isolation (README, 'Sandbox')"
    )


def _launcher_config(
    limits: ExecLimits, isolation: Isolation, isolated: bool, hidden: list[str], plan: Confinement
) -> dict:
    by_hand = isolation.tool == "unshare" and isolation.mount_namespace
    return {
        "data_limit": data_limit_bytes(limits.memory_mb),
        "file_limit": limits.disk_mb * _MIB,
        "process_limit": limits.processes + _SANDBOX_TASKS if limits.processes > 0 else 0,
        "loopback": isolated and isolation.tool == "unshare",  # bwrap brings the loopback up itself
        "hidden": [*hidden, *map(str, sockets_to_cover(plan))] if by_hand else [],
        "confine": (
            {
                "writable": [str(p) for p in plan.writable],
                "keep": [str(p) for p in plan.keep],
                "private_bytes": plan.private_bytes,
            }
            if by_hand
            else None
        ),
        "drop_privileges": True,
    }


def _start_when_ready(proc: subprocess.Popen, lifeline_w: int, cgroup: PidsCgroup | None) -> None:
    """Put the sandbox's processes into the script's cgroup, then let the launcher start the script.

    The launcher waits for this byte before it forks the script, so everything the script starts
    is born inside the cgroup; a process forked while we add its parent is listed by then.
    """
    if cgroup is not None:
        cgroup.add([proc.pid])
        with contextlib.suppress(psutil.Error):
            cgroup.add(child.pid for child in psutil.Process(proc.pid).children(recursive=True))
    with contextlib.suppress(OSError):  # the launcher may already be gone (it could not start)
        os.write(lifeline_w, b"g")


def run_script(
    workdir: Path,
    limits: ExecLimits,
    *,
    script_name: str = "script.py",
    extra_env: dict | None = None,
    python: str | None = None,
    namespaces: bool = True,
    cancel: threading.Event | None = None,
    hide: Iterable[str | Path] = (),
    poll_interval: float = 0.2,
) -> ExecResult:
    """Run ``python script_name`` in ``workdir`` under ``limits``; see the module docstring.

    ``namespaces=False`` skips bubblewrap and unshare (the launcher alone keeps cleanup exact; the
    network is not cut, the filesystem not confined). ``cancel``, when set by another thread, kills
    the script (``cancelled=True``). ``hide``: files or folders the script must not read (private
    answers, the run store, the test file of a development run...); they are covered, together with
    the user's credential files, where a private mount namespace exists, and a warning says so
    where it does not. ``stdout.txt`` / ``stderr.txt`` in ``workdir`` get the full output (capped
    at 20 MB each).
    """
    workdir = Path(workdir).resolve()
    if not (workdir / script_name).is_file():
        raise FileNotFoundError(f"no script {script_name} in {workdir}")
    python = python or sys.executable
    warnings: list[str] = []

    cut_network = not limits.network
    isolation = isolation_support(cut_network) if namespaces else Isolation(reason="disabled by the caller")
    isolated = cut_network and isolation.network_namespace
    if cut_network and not isolated:
        message = (
            "network access could not be cut for the script "
            f"({isolation.reason or 'no network namespace'}); it ran with the host's network"
        )
        warnings.append(message)
        _warn_once(message)
    missing = missing_protections(isolation)
    if missing and namespaces and _warn_once(missing):
        warnings.append(missing)

    # Never cover what the script needs to start: its folder, its input, its interpreter and venv.
    keep = [workdir, workdir / INPUT_DIR, python, Path(python).absolute().parent, sys.executable, sys.prefix]
    explicit = _paths_to_hide(hide, keep)
    hidden = explicit + [p for p in _paths_to_hide(credential_paths(), keep) if p not in explicit]
    if not isolation.mount_namespace:
        if explicit:
            warnings.append(
                "these paths could not be hidden from the script (no private mount namespace): "
                + ", ".join(explicit)
            )
            _warn_once(warnings[-1])
        if hidden:
            _warn_once("credential files under your home directory stay readable by scripts: "
                       "no private mount namespace")  # fmt: skip
        hidden = []
    outputs = (workdir / WORKING_DIR, workdir / FINAL_DIR)
    plan = Confinement(
        workdir=workdir,
        writable=tuple(folder for folder in outputs if folder.is_dir() and not folder.is_symlink()),
        keep=tuple(_needed_paths(workdir, python)),
        hidden=tuple(Path(p) for p in hidden),
        private_bytes=private_dir_bytes(limits),
    )
    prefix = list(isolation.prefix)
    if isolation.tool == "bwrap":
        prefix = bwrap_command(isolation, plan, cut_network)

    status_r, status_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    config = _launcher_config(limits, isolation, isolated, hidden, plan)
    command = [
        *prefix,
        sys.executable, "-I", "-S", "-c", _LAUNCHER,
        str(status_w), str(lifeline_r), json.dumps(config),
        "--", python, script_name,
    ]  # fmt: skip
    cgroup = PidsCgroup.create(limits.processes + _SANDBOX_TASKS) if limits.processes > 0 else None
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=_script_env(workdir, limits, python, isolation, isolated, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w, lifeline_r),
            start_new_session=True,  # our Ctrl+C is not theirs; the pipeline cancels them itself
        )
    except BaseException:
        for fd in (status_r, status_w, lifeline_r, lifeline_w):
            os.close(fd)
        if cgroup is not None:
            cgroup.remove()
        raise
    os.close(status_w)
    os.close(lifeline_r)

    root = psutil.Process(proc.pid)
    watch = TreeWatch(
        root,
        memory_mb=limits.memory_mb,
        tasks=limits.processes + _SANDBOX_TASKS if limits.processes > 0 else 0,
        disk_mb=limits.disk_mb,
        folders=list(plan.writable),
        cgroup=cgroup,
    )
    deadline = started + limits.timeout_s
    stop_reason = None
    captures: list[_Capture] = []
    try:
        captures.append(_Capture(proc.stdout, workdir / "stdout.txt", OUTPUT_FILE_CAP))
        captures.append(_Capture(proc.stderr, workdir / "stderr.txt", OUTPUT_FILE_CAP))
        _start_when_ready(proc, lifeline_w, cgroup)
        while True:
            try:
                proc.wait(timeout=max(0.0, min(poll_interval, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            stop_reason = watch.check()
            if stop_reason is None and time.monotonic() >= deadline:
                stop_reason = "timeout"
            elif stop_reason is None and cancel is not None and cancel.is_set():
                stop_reason = "cancel"
            if stop_reason:
                _kill_tree(proc, root, isolation.pid_namespace)
                break
    except BaseException:
        _kill_tree(proc, root, isolation.pid_namespace)  # KeyboardInterrupt in the calling thread...
        raise
    finally:
        os.close(lifeline_w)  # tells the launcher to clean up, if it has not yet
        for pipe in (proc.stdout, proc.stderr)[len(captures) :]:
            pipe.close()
        proc.wait()
        wall_s = time.monotonic() - started
        for capture in captures:
            capture.thread.join(timeout=5)
        status_code, launcher_peak_mb = _read_status(status_r)
        if cgroup is not None:
            cgroup.remove()
    if any(capture.thread.is_alive() for capture in captures):
        warnings.append("a process of the script kept its output open after the script ended")
        _warn_once(warnings[-1])

    returncode = status_code if status_code is not None else proc.returncode
    result = ExecResult(
        returncode=returncode,
        stdout=captures[0].text(2000, 8000),
        stderr=captures[1].text(2000, 8000),
        score=score_from_value(captures[0].score_value),
        wall_s=round(wall_s, 3),
        peak_memory_mb=round(max(watch.peak_memory / _MIB, launcher_peak_mb), 1),
        network_isolated=isolated,
        warnings=warnings,
    )
    _apply_stop_reason(result, stop_reason, limits, watch)
    log.debug(
        "script %s/%s: rc=%s wall=%.1fs peak=%.0fMB score=%s",
        workdir.name, script_name, result.returncode, result.wall_s, result.peak_memory_mb, result.score,
    )  # fmt: skip
    return result


def _apply_stop_reason(result: ExecResult, reason: str | None, limits: ExecLimits, watch: TreeWatch) -> None:
    if reason == "timeout":
        result.returncode, result.timed_out = RC_TIMEOUT, True
    elif reason == "memory":
        result.returncode, result.memory_exceeded = RC_MEMORY, True
        result.peak_memory_mb = max(result.peak_memory_mb, round(watch.peak_memory / _MIB, 1))
    elif reason == "processes":
        result.returncode, result.processes_exceeded = RC_PROCESSES, True
        result.warnings.append(f"the script started more than {limits.processes} processes and threads")
    elif reason == "disk":
        result.returncode, result.disk_exceeded = RC_DISK, True
        result.warnings.append(
            f"the script wrote {watch.disk_used / _MIB:.0f} MB into its folder (limit {limits.disk_mb} MB)"
        )
    elif reason == "cancel":
        result.returncode, result.cancelled = RC_CANCELLED, True
    elif result.returncode != 0 and any(
        marker in result.stderr for marker in ("MemoryError", "std::bad_alloc", "Cannot allocate memory")
    ):
        result.warnings.append(f"the script ran out of memory (limit {limits.memory_mb} MB)")
    elif result.returncode != 0 and "File too large" in result.stderr:
        result.warnings.append(f"the script wrote a file larger than its disk limit ({limits.disk_mb} MB)")
