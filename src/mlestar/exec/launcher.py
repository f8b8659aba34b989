"""The launcher: the process between the sandbox and a script (see :mod:`mlestar.exec.sandbox`).

The sandbox reads this file as text and runs it as::

    python -I -S -c <this file> status_fd lifeline_fd CONFIG -- python script.py

* ``status_fd``: write end of a pipe; one line comes back on it when the script has ended,
  ``exit N PEAK_KB``, ``signal N PEAK_KB`` or ``lost 0 PEAK_KB`` (the script was reaped elsewhere).
* ``lifeline_fd``: read end of a pipe. The sandbox writes one byte when the script may start (it
  first puts the launcher into the script's cgroup); when it closes its end, or dies, the script is
  killed.
* ``CONFIG``: a JSON object (:class:`Args` lists its fields): resource limits, whether to bring up
  the loopback device of a fresh network namespace, paths to cover, and, under ``unshare`` (no
  bubblewrap), the filesystem confinement to set up in the private mount namespace.

``-I -S`` (no user paths, no site-packages) make it start in a few milliseconds and leave it the
standard library only, so it imports nothing of mlestar. Importing it runs nothing: ``main`` runs
only as ``__main__``, which is what ``-c`` makes it; tests import its helpers.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import sys
import threading
import time
from stat import S_ISBLK

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
CAP_LAST = 63
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ = "16sH22x"  # struct ifreq: interface name, flags, padding
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC = 1, 2, 4, 8, 4096, 16384
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # as mlestar.exec.isolation.PRIVATE_DIRS
RC_CANNOT_START = 127  # as a shell reports a command it cannot run
RC_KILLED = 137  # the launcher's exit code when the lifeline went, as a SIGKILL reads in a shell
KILL_ROUNDS = 200  # passes of kill_all at most, against a tree that keeps forking


class Args:
    """The launcher's command line (see the module docstring)."""

    def __init__(self, status_fd: int, lifeline_fd: int, config: dict, command: list[str]) -> None:
        self.status_fd = status_fd
        self.lifeline_fd = lifeline_fd
        self.data_limit = int(config.get("data_limit", 0))  # RLIMIT_DATA in bytes (0: none)
        self.file_limit = int(config.get("file_limit", 0))  # RLIMIT_FSIZE in bytes (0: none)
        self.process_limit = int(config.get("process_limit", 0))  # RLIMIT_NPROC in a user namespace
        self.loopback = bool(config.get("loopback", False))
        self.hidden = [str(p) for p in config.get("hidden", [])]
        self.confine = config.get("confine")  # {"writable", "keep", "private_bytes"} or None
        self.drop_privileges = bool(config.get("drop_privileges", False))
        self.command = command


def parse_args(argv: list[str]) -> Args:
    """``argv`` without the program name: three fields, ``--``, then the script's command line."""
    if len(argv) < 4 or argv[3] != "--":
        raise ValueError("usage: status_fd lifeline_fd CONFIG -- command...")
    config = json.loads(argv[2])
    if not isinstance(config, dict):
        raise ValueError("CONFIG must be a JSON object")
    return Args(int(argv[0]), int(argv[1]), config, argv[4:])


def libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    # Best effort: without ctypes, or off Linux, the script still runs, only less tightly held.
    with contextlib.suppress(ImportError, OSError, AttributeError):
        libc().prctl(option, value, 0, 0, 0)


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


def warn(message: str) -> None:
    os.write(2, f"mlestar launcher: {message}\n".encode())


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    import ctypes

    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    if libc().mount(encode(source), target.encode(), encode(fstype), flags, encode(data)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def hide(paths: list[str]) -> None:
    """Cover folders with an empty read-only tmpfs and files with /dev/null."""
    # Only ever called inside our own private mount namespace (unshare --mount-proc): covering a
    # path here is invisible to the rest of the machine.
    read_only = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for path in paths:
        with contextlib.suppress(OSError):
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", read_only, "size=4k,mode=0555")
            elif os.path.exists(path):
                mount("/dev/null", path, None, MS_BIND)


def set_read_only(path: str, read_only: bool, recursive: bool) -> None:
    """mount_setattr(2) (Linux 5.12): flip the read-only flag of the mounts at ``path``."""
    import ctypes

    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY if read_only else 0, 0 if read_only else MOUNT_ATTR_RDONLY)
    flags = AT_RECURSIVE if recursive else 0
    done = libc().syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), 32)
    if done != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount_setattr {path}: {os.strerror(error)}")


def _mount_point_like(source: str, target: str) -> None:
    """Make ``target`` (inside a fresh tmpfs) a folder or an empty file, as ``source`` is."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "a"):
            pass


def private_dir(folder: str, keep: list[str], size: int) -> None:
    """A fresh size-capped tmpfs over ``folder``, with the paths of ``keep`` inside it bound back.

    The folders made to hold their mount points are bound onto themselves, so that they stay
    read-only when the tmpfs itself is made writable again (as mlestar.exec.isolation.skeleton_dirs).
    """
    prefix = folder.rstrip("/") + "/"
    inside = [p for p in keep if p.startswith(prefix) and os.path.exists(p)]
    inside = [p for p in inside if not any(p.startswith(other + "/") for other in inside if other != p)]
    old = os.open(folder, os.O_PATH | os.O_DIRECTORY)  # the covered folder stays reachable through it
    try:
        mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
        for path in sorted(inside, key=len):
            source = f"/proc/self/fd/{old}/{os.path.relpath(path, folder)}"
            _mount_point_like(source, path)
            mount(source, path, None, MS_BIND | MS_REC)
    finally:
        os.close(old)
    skeleton = {parent for path in inside for parent in _parents(path) if parent.startswith(prefix)}
    for path in sorted(skeleton, key=len, reverse=True):
        mount(path, path, None, MS_BIND | MS_REC)


def _parents(path: str) -> list[str]:
    parents = []
    while (path := os.path.dirname(path)) not in ("/", ""):
        parents.append(path)
    return parents


def block_devices(root: str = "/dev") -> list[str]:
    """Block device nodes: without capabilities root may still write a disk through them."""
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError):
                if S_ISBLK(os.lstat(path).st_mode):
                    found.append(path)
    return found


def confine(writable: list[str], keep: list[str], private_bytes: int) -> None:
    """What bubblewrap would do, done by hand in our private mount namespace: everything read-only
    but ``writable`` and a private /tmp and /dev/shm (``keep`` stays visible inside them)."""
    for folder in PRIVATE_DIRS:
        if os.path.isdir(folder):
            try:
                private_dir(folder, keep, private_bytes)
            except OSError as exc:
                warn(f"no private {folder}: {exc}")
    for path in block_devices():
        with contextlib.suppress(OSError):
            mount("/dev/null", path, None, MS_BIND)
    for path in writable:
        mount(path, path, None, MS_BIND)  # its own mount, so that it alone can stay writable
    try:
        set_read_only("/", True, recursive=True)
        for path in [*writable, *(f for f in PRIVATE_DIRS if os.path.isdir(f))]:
            set_read_only(path, False, recursive=False)
    except OSError as exc:
        warn(f"the filesystem stays writable: {exc}")
    # Our working folder was entered before the mounts: enter it again through them.
    os.chdir(os.getcwd())


def drop_privileges() -> None:
    """No capability for the script and nothing that could give one back (setuid programs)."""
    import ctypes

    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(CAP_LAST + 1):
        prctl(PR_CAPBSET_DROP, cap)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc().capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        warn(f"capabilities not dropped: {os.strerror(ctypes.get_errno())}")


def in_user_namespace(uid_map: str = "/proc/self/uid_map") -> bool:
    try:
        with open(uid_map) as handle:
            return handle.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def limit_resources(args: Args) -> None:
    """Rlimits inherited by everything the script starts (0: no cap); core dumps are forbidden."""
    limits = [(resource.RLIMIT_CORE, 0)]
    if args.data_limit > 0:
        limits.append((resource.RLIMIT_DATA, args.data_limit))
    if args.file_limit > 0:
        limits.append((resource.RLIMIT_FSIZE, args.file_limit))
    # Counted per user, across user namespaces only inside one (and never for real root): only
    # there does it cap the script's own processes rather than all of the user's.
    if args.process_limit > 0 and in_user_namespace():
        limits.append((resource.RLIMIT_NPROC, args.process_limit))
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (OSError, ValueError) as exc:  # reported, not fatal: the sandbox watches the tree itself
            warn(f"rlimit {kind} not set: {exc}")


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


def start_script(command: list[str], close: tuple[int, ...], drop: bool = False) -> int:
    """Fork and exec ``command`` with the file descriptors ``close`` closed; the child's pid."""
    pid = os.fork()
    if pid == 0:
        # Nothing may escape this block: the child would run on as a second launcher.
        try:
            for fd in close:
                os.close(fd)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # not inherited across fork
            if drop:
                drop_privileges()
            os.execv(command[0], command)
        except BaseException as exc:  # noqa: BLE001 - reported on stderr, then the child exits
            os.write(2, f"mlestar launcher: cannot start {command[0]}: {exc}\n".encode())
        os._exit(RC_CANNOT_START)
    return pid


def wait_for_start(fd: int) -> None:
    """Block until the sandbox says the script may start; exit when it went away instead."""
    while True:
        try:
            if os.read(fd, 1):
                return
        except InterruptedError:
            continue
        except OSError:
            pass
        os._exit(RC_KILLED)


def watch_lifeline(fd: int) -> None:
    """Wait for the sandbox to close its end of the lifeline (or to die), then kill the script."""
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass
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
    prctl(PR_SET_DUMPABLE, 0)  # the script may not ptrace us (and so forge our status line)
    if args.loopback:
        loopback_up()
    if args.confine:
        confine(args.confine["writable"], args.confine["keep"], int(args.confine["private_bytes"]))
    if args.hidden:
        hide(args.hidden)
    limit_resources(args)
    wait_for_start(args.lifeline_fd)
    # The script must neither write our status line nor hold the lifeline open.
    script = start_script(args.command, (args.status_fd, args.lifeline_fd), args.drop_privileges)
    threading.Thread(target=watch_lifeline, args=(args.lifeline_fd,), daemon=True).start()
    status = wait_for(script)
    kill_all()
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    os.write(args.status_fd, status_line(status, peak_kb).encode())
    os._exit(0)  # no interpreter teardown while the lifeline thread may still be running


if __name__ == "__main__":
    main()
