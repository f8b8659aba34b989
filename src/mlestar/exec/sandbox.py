"""Running one generated script under a time limit, a memory limit and (where possible) no network.

How a script is started::

    [unshare --user --map-root-user --pid --fork --kill-child --mount-proc --net]   (when available)
        python -I -S -c <LAUNCHER> ...                                                (always)
            python script.py                                                          (the script)

* ``unshare`` puts the script into new namespaces. A PID namespace makes cleanup exact: when its
  first process (the launcher) exits, the kernel kills every process left in it, including ones
  that double-forked or called setsid. A network namespace has only a loopback device, so the
  script cannot reach the host or the internet. Unprivileged users get both through a user
  namespace (``--map-root-user``, like ``unshare -rn``). What works is found out once per process
  by actually trying (:func:`isolation_support`).
* The launcher (:mod:`mlestar.exec.launcher`, stdlib Python) works with or without namespaces.
  It sets the memory rlimit inherited by everything the script starts, marks itself a child
  subreaper (``PR_SET_CHILD_SUBREAPER``) so orphans of the script are re-parented to it rather
  than to init, runs the script, and when the script ends kills and reaps everything still left.
  It reports the script's own exit status to us over a pipe, so the namespaces in between never
  blur it. It also holds the read end of a "lifeline" pipe: when we close our end, or die, it
  kills the script.
* With a private mount namespace the launcher also covers files the script must not read
  (private answers, a development run's test file, the user's credential files such as
  ~/.kaggle or ~/.aws) with an empty read-only tmpfs or /dev/null, for the script's eyes only.
* This process watches the clock and the memory of the whole tree (psutil) and kills the tree
  when a limit is passed.

Return codes in :class:`ExecResult`: the script's exit code; ``-N`` when a signal N that we did
not send ended it (``-11`` segfault, ``-9`` the kernel's OOM killer...); :data:`RC_TIMEOUT` (124,
as ``timeout(1)``) past the time limit; :data:`RC_MEMORY` (137, as an OOM kill reads in a shell)
when the watcher killed it for memory; :data:`RC_CANCELLED` (130, as Ctrl+C) when cancelled.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlestar.core.contract import last_score_value, score_from_value
from mlestar.exec.environment import credential_paths, scrubbed_env
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.output import omitted_marker, trim_output

log = logging.getLogger(__name__)

RC_TIMEOUT = 124
RC_MEMORY = 137
RC_CANCELLED = 130

OUTPUT_FILE_CAP = 20 * 1024 * 1024  # bytes kept on disk per stream; the rest is counted, not stored
_KEEP_BYTES = 64 * 1024  # head and tail of each stream kept in memory for the trimmed text
_LINE_KEEP = 4096  # the end of an unfinished line kept while looking for the score line
_MIB = 1024 * 1024

# The launcher's source, read once and passed to `python -I -S -c` (its docstring lists the arguments).
_LAUNCHER = Path(__file__).with_name("launcher.py").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Isolation:
    """What the sandbox can do on this machine, for one network setting."""

    prefix: tuple[str, ...] = ()  # command put before the launcher (empty: no namespaces)
    pid_namespace: bool = False
    network_namespace: bool = False
    user_namespace: bool = False
    mount_namespace: bool = False  # private mounts: files can be hidden from the script
    reason: str = ""  # why namespaces are unavailable, when they are


def _candidates(unshare: str, cut_network: bool, privileged: bool) -> list[list[str]]:
    # Root can create namespaces directly; everyone else needs a user namespace, in which they are
    # root (mapped to their own uid outside) and so may make the others.
    users = [[], ["--user", "--map-root-user"]] if privileged else [["--user", "--map-root-user"]]
    pids = [
        ["--pid", "--fork", "--kill-child", "--mount-proc"],
        ["--pid", "--fork", "--kill-child"],
        [],
    ]
    net = ["--net"] if cut_network else []
    result = []
    for user in users:
        for pid in pids:
            if pid or net:
                result.append([unshare, *user, *pid, *net])
    return result


@functools.cache
def isolation_support(cut_network: bool = True, *, privileged: bool | None = None) -> Isolation:
    """The strongest namespace setup that really works here (tried once, then cached).

    ``privileged=False`` tries only what an unprivileged user could (for tests run as root).
    """
    if not sys.platform.startswith("linux"):
        return Isolation(reason=f"namespaces are Linux-only (platform {sys.platform})")
    if privileged is None:
        privileged = os.geteuid() == 0
    unshare = shutil.which("unshare")
    if unshare is None:
        return Isolation(reason="the `unshare` command (util-linux) is not installed")
    last_error = ""
    for candidate in _candidates(unshare, cut_network, privileged):
        probe = [*candidate, sys.executable, "-I", "-S", "-c", ""]
        try:
            done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            last_error = str(exc)
            continue
        if done.returncode == 0:
            return Isolation(
                prefix=tuple(candidate),
                pid_namespace="--pid" in candidate,
                network_namespace="--net" in candidate,
                user_namespace="--user" in candidate,
                mount_namespace="--mount-proc" in candidate,
            )
        last_error = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        last_error = last_error[0]
    return Isolation(reason=f"unshare failed: {last_error or 'unknown error'}")


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


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _tree_rss(root: psutil.Process) -> int:
    total = 0
    for proc in _tree(root):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _tree_pss(root: psutil.Process) -> int:
    """Proportional set size of the tree: shared pages counted once, split among their users."""
    total = 0
    for proc in _tree(root):
        with contextlib.suppress(psutil.Error, AttributeError):
            total += proc.memory_full_info().pss
    return total


def _tree_memory(root: psutil.Process, limit: int) -> int:
    # RSS is cheap but counts pages shared by forked workers (joblib, DataLoader) once per
    # process; PSS is exact but walks every mapping. Pay for PSS only near the limit, so a
    # script is never killed for memory it shares rather than uses.
    rss = _tree_rss(root)
    if limit <= 0 or rss <= limit:
        return rss
    pss = _tree_pss(root)
    return pss if pss > 0 else rss


def _kill_tree(proc: subprocess.Popen, root: psutil.Process) -> None:
    """SIGKILL every descendant, then the top process.

    The top process goes last: without a PID namespace it is the launcher, the subreaper that
    catches (and kills) whatever forks while we are killing; killed first, its orphans would be
    handed to init and escape.
    """
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
    workdir: Path, limits: ExecLimits, python: str, isolated: bool, extra_env: dict | None
) -> dict[str, str]:
    working = workdir / "working"
    offline = (
        # Fail fast instead of retrying downloads for minutes inside a namespace with no route out.
        {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if isolated
        else {}
    )
    env = scrubbed_env(
        limits.threads, {**offline, **(extra_env or {})}, home=working if working.is_dir() else workdir
    )
    bin_dir = str(Path(python).parent)
    if bin_dir not in env["PATH"].split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    return env


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


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
    else:
        log.debug(message)


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

    ``namespaces=False`` skips unshare (the launcher alone keeps cleanup exact; the network is
    not cut). ``cancel``, when set by another thread, kills the script (``cancelled=True``).
    ``hide``: files or folders the script must not read (private answers, the run store, the test
    file of a development run...); they are covered, together with the user's credential files,
    where a private mount namespace exists, and a warning says so where it does not.
    ``stdout.txt`` / ``stderr.txt`` in ``workdir`` get the full output (capped at 20 MB each).
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

    # Never cover what the script needs to start: its folder, its input, its interpreter and venv.
    keep = [workdir, workdir / "input", python, Path(python).absolute().parent, sys.executable, sys.prefix]
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

    status_r, status_w = os.pipe()
    lifeline_r, lifeline_w = os.pipe()
    command = [
        *isolation.prefix,
        sys.executable, "-I", "-S", "-c", _LAUNCHER,
        str(status_w), str(lifeline_r), str(data_limit_bytes(limits.memory_mb)), str(int(isolated)),
        "\n".join(hidden),
        "--", python, script_name,
    ]  # fmt: skip
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env=_script_env(workdir, limits, python, isolated, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(status_w, lifeline_r),
            start_new_session=True,  # our Ctrl+C is not theirs; the pipeline cancels them itself
        )
    except BaseException:
        for fd in (status_r, status_w, lifeline_r, lifeline_w):
            os.close(fd)
        raise
    os.close(status_w)
    os.close(lifeline_r)

    root = psutil.Process(proc.pid)
    limit_bytes = limits.memory_mb * _MIB
    deadline = started + limits.timeout_s
    peak = 0
    stop_reason = None
    captures: list[_Capture] = []
    try:
        captures.append(_Capture(proc.stdout, workdir / "stdout.txt", OUTPUT_FILE_CAP))
        captures.append(_Capture(proc.stderr, workdir / "stderr.txt", OUTPUT_FILE_CAP))
        while True:
            try:
                proc.wait(timeout=max(0.0, min(poll_interval, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            used = _tree_memory(root, limit_bytes)
            peak = max(peak, used)
            if limits.memory_mb > 0 and used > limit_bytes:
                stop_reason = "memory"
            elif time.monotonic() >= deadline:
                stop_reason = "timeout"
            elif cancel is not None and cancel.is_set():
                stop_reason = "cancel"
            if stop_reason:
                _kill_tree(proc, root)
                break
    except BaseException:
        _kill_tree(proc, root)  # KeyboardInterrupt in the calling thread, unwritable workdir...
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
        peak_memory_mb=round(max(peak / _MIB, launcher_peak_mb), 1),
        network_isolated=isolated,
        warnings=warnings,
    )
    if stop_reason == "timeout":
        result.returncode, result.timed_out = RC_TIMEOUT, True
    elif stop_reason == "memory":
        result.returncode, result.memory_exceeded = RC_MEMORY, True
        result.peak_memory_mb = max(result.peak_memory_mb, round(peak / _MIB, 1))
    elif stop_reason == "cancel":
        result.returncode, result.cancelled = RC_CANCELLED, True
    elif result.returncode != 0 and any(
        marker in result.stderr for marker in ("MemoryError", "std::bad_alloc", "Cannot allocate memory")
    ):
        result.warnings.append(f"the script ran out of memory (limit {limits.memory_mb} MB)")
    log.debug(
        "script %s/%s: rc=%s wall=%.1fs peak=%.0fMB score=%s",
        workdir.name, script_name, result.returncode, result.wall_s, result.peak_memory_mb, result.score,
    )  # fmt: skip
    return result
