"""The launcher: the process between the sandbox and a script (see :mod:`mlestar.exec.sandbox`).

The sandbox reads this file as text and runs it as::

    python -I -S -c <this file> status_fd lifeline_fd data_limit loopback hidden -- python script.py

* ``status_fd``: write end of a pipe; one line comes back on it when the script has ended,
  ``exit N PEAK_KB``, ``signal N PEAK_KB`` or ``lost 0 PEAK_KB`` (the script was reaped elsewhere).
* ``lifeline_fd``: read end of a pipe; when the sandbox closes its end, or dies, the script is killed.
* ``data_limit``: RLIMIT_DATA in bytes for the script and everything it starts (0: none).
* ``loopback``: 1 inside a fresh network namespace, whose loopback device starts down.
* ``hidden``: newline-separated paths to cover; empty unless there is a private mount namespace.

``-I -S`` (no user paths, no site-packages) make it start in a few milliseconds and leave it the
standard library only, so it imports nothing of mlestar. Importing it runs nothing: ``main`` runs
only as ``__main__``, which is what ``-c`` makes it; tests import its helpers.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH22x"  # struct ifreq: interface name, flags, padding
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 1, 2, 4, 8, 4096
RC_CANNOT_START = 127  # as a shell reports a command it cannot run
RC_KILLED = 137  # the launcher's exit code when the lifeline went, as a SIGKILL reads in a shell
KILL_ROUNDS = 200  # passes of kill_all at most, against a tree that keeps forking


class Args:
    """The launcher's command line (see the module docstring)."""

    def __init__(
        self,
        status_fd: int,
        lifeline_fd: int,
        data_limit: int,
        loopback: bool,
        hidden: list[str],
        command: list[str],
    ) -> None:
        self.status_fd = status_fd
        self.lifeline_fd = lifeline_fd
        self.data_limit = data_limit
        self.loopback = loopback
        self.hidden = hidden
        self.command = command


def parse_args(argv: list[str]) -> Args:
    """``argv`` without the program name: five fields, ``--``, then the script's command line."""
    status_fd, lifeline_fd, data_limit, loopback = (int(value) for value in argv[:4])
    hidden = argv[4].split("\n") if argv[4] else []
    return Args(status_fd, lifeline_fd, data_limit, bool(loopback), hidden, argv[6:])


def prctl(option: int, value: int) -> None:
    # Best effort: without ctypes, or off Linux, the script still runs, only less tightly held.
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def loopback_up() -> None:
    # A fresh network namespace has its loopback down; bring it up so that code talking to
    # itself over 127.0.0.1 still works. Best effort: it needs CAP_NET_ADMIN in the namespace.
    with contextlib.suppress(ImportError, OSError):
        import fcntl
        import socket
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack(IFREQ, b"lo", 0)
            flags = struct.unpack(IFREQ, fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def hide(paths: list[str]) -> None:
    """Cover folders with an empty read-only tmpfs and files with /dev/null."""
    # Only ever called inside our own private mount namespace (unshare --mount-proc): covering a
    # path here is invisible to the rest of the machine.
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    read_only = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for path in paths:
        target = path.encode()
        if os.path.isdir(path):
            libc.mount(b"tmpfs", target, b"tmpfs", read_only, b"size=4k,mode=0555")
        elif os.path.exists(path):
            libc.mount(b"/dev/null", target, None, MS_BIND, None)


def limit_memory(data_limit: int) -> None:
    """Cap the writable memory of everything the script starts (0: no cap) and forbid core dumps."""
    try:
        if data_limit > 0:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:  # reported, not fatal: the sandbox watches memory itself
        os.write(2, f"mlestar launcher: memory rlimit not set: {exc}\n".encode())


def parent_of(stat: bytes) -> int:
    """The parent pid in the text of /proc/PID/stat."""
    # The command name, in parentheses, may itself hold spaces and parentheses: read after the last one.
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def children_by_parent(proc: str = "/proc") -> dict[int, list[int]]:
    """Every process in ``proc``, listed under its parent's pid."""
    children: dict[int, list[int]] = {}
    for name in os.listdir(proc):
        if name.isdigit():
            # A process may end, or a stat be unreadable, while we look: it is then not listed.
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"{proc}/{name}/stat", "rb") as handle,
            ):
                children.setdefault(parent_of(handle.read()), []).append(int(name))
    return children


def descendants_of(root: int, children: dict[int, list[int]]) -> list[int]:
    """The pids below ``root`` in ``children`` (as :func:`children_by_parent` lists them)."""
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def descendants() -> list[int]:
    return descendants_of(os.getpid(), children_by_parent())


def reap(block: bool) -> bool:
    """Wait for ended children; True once none is left (with ``block``: after waiting for them all)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return True
        except InterruptedError:
            continue
        if pid == 0:
            return False


def kill_all() -> None:
    """SIGKILL every process the script left behind, and reap them."""
    if os.getpid() == 1:
        # Init of our own PID namespace: -1 reaches exactly the processes of this namespace.
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
        reap(True)
        return
    # No PID namespace: orphans were re-parented to us (subreaper), so every process the script
    # left behind descends from us. Repeat, since a process may fork while we kill.
    for _ in range(KILL_ROUNDS):
        pids = descendants()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not reap(False):
            time.sleep(0.01)
    reap(False)


def start_script(command: list[str], close: tuple[int, ...]) -> int:
    """Fork and exec ``command`` with the file descriptors ``close`` closed; the child's pid."""
    pid = os.fork()
    if pid == 0:
        # Nothing may escape this block: the child would run on as a second launcher.
        try:
            for fd in close:
                os.close(fd)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # not inherited across fork
            os.execv(command[0], command)
        except BaseException as exc:  # noqa: BLE001 - reported on stderr, then the child exits
            os.write(2, f"mlestar launcher: cannot start {command[0]}: {exc}\n".encode())
        os._exit(RC_CANNOT_START)
    return pid


def watch_lifeline(fd: int) -> None:
    """Wait for the sandbox to close its end of the lifeline (or to die), then kill the script."""
    with contextlib.suppress(OSError):
        os.read(fd, 1)
    kill_all()
    os._exit(RC_KILLED)


def wait_for(script: int) -> int | None:
    """The wait status of ``script``, reaping the orphans that end first.

    None when the script was reaped elsewhere (by :func:`watch_lifeline`'s :func:`kill_all`).
    """
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return None
        except InterruptedError:
            continue
        if pid == script:
            return status


def status_line(status: int | None, peak_kb: int) -> str:
    """What goes back over the status pipe for a wait status (see the module docstring)."""
    if status is None:
        report = "lost 0"
    elif os.WIFSIGNALED(status):
        report = f"signal {os.WTERMSIG(status)}"
    else:
        report = f"exit {os.waitstatus_to_exitcode(status)}"
    return f"{report} {peak_kb}\n"


def main() -> None:
    args = parse_args(sys.argv[1:])
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of the script come to us, where kill_all finds them
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die with unshare / with mlestar
    if args.loopback:
        loopback_up()
    if args.hidden:
        hide(args.hidden)
    limit_memory(args.data_limit)
    # The script must neither write our status line nor hold the lifeline open.
    script = start_script(args.command, (args.status_fd, args.lifeline_fd))
    threading.Thread(target=watch_lifeline, args=(args.lifeline_fd,), daemon=True).start()
    status = wait_for(script)
    kill_all()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    os.write(args.status_fd, status_line(status, peak_kb).encode())
    os._exit(0)  # no interpreter teardown while the lifeline thread may still be running


if __name__ == "__main__":
    main()
