"""What the sandbox can do on this machine, and the command that confines one script.

Two tools, tried in this order, once per process (:func:`isolation_support`):

* **bubblewrap** (``bwrap``, Debian's ``bubblewrap``): the whole filesystem read-only
  (``--ro-bind / /``) except the script's ``working/`` and ``final/``, a minimal ``/dev``, a private
  size-capped ``/tmp`` and ``/dev/shm``, the hide list covered, new PID/IPC (and network) namespaces,
  every capability dropped. :func:`bwrap_command` builds it for one script.
* **unshare** (util-linux): namespaces only; the launcher then does what it can of the same
  confinement itself inside the private mount namespace (``mlestar.exec.launcher``).

Without either (macOS, a container that forbids namespaces) scripts run under the launcher alone.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Folders every script gets privately, memory-backed and size-capped, instead of the host's.
PRIVATE_DIRS = ("/tmp", "/dev/shm")
# Device nodes a script may need beyond bwrap's minimal /dev: GPUs (NVIDIA, AMD, Intel).
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")
_HIDDEN_DIR_BYTES = 4096


@dataclass(frozen=True)
class Isolation:
    """What the sandbox can do on this machine, for one network setting."""

    tool: str = "none"  # "bwrap", "unshare" or "none"
    prefix: tuple[str, ...] = ()  # unshare's command before the launcher; bwrap's binary
    pid_namespace: bool = False
    network_namespace: bool = False
    user_namespace: bool = False
    mount_namespace: bool = False  # private mounts: files can be hidden, the filesystem made read-only
    reason: str = ""  # why the strongest tool is unavailable, when it is

    @property
    def missing(self) -> list[str]:
        """The protections this setup lacks (empty with bubblewrap)."""
        if self.tool == "bwrap":
            return []
        missing = [] if self.mount_namespace else ["read-only filesystem", "private /tmp", "hidden files"]
        if not self.pid_namespace:
            missing.append("PID namespace")
        return missing


def _unshare_candidates(unshare: str, cut_network: bool, privileged: bool) -> list[list[str]]:
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


def _bwrap_flags(cut_network: bool, privileged: bool) -> list[str]:
    """The namespace and privilege flags every bwrap sandbox gets."""
    flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if cut_network:
        flags.append("--unshare-net")
    if not privileged:
        flags.append("--unshare-user")  # what bwrap does anyway when not root; explicit for root's tests
    # The launcher is the namespace's init: what it leaves behind dies with it, and no process of
    # the script can signal it. No capability survives, so no mount can be undone.
    return [*flags, "--die-with-parent", "--new-session", "--as-pid-1", "--cap-drop", "ALL"]


def _probe(command: list[str]) -> str | None:
    """None when ``command`` runs an empty Python program, else why it does not."""
    probe = [*command, sys.executable, "-I", "-S", "-c", ""]
    try:
        done = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = done.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit status {done.returncode}"


def _try_bwrap(cut_network: bool, privileged: bool) -> tuple[Isolation | None, str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap (`bwrap`) is not installed"
    base = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # An interpreter under /tmp (a checkout there, as CI runners make) is kept visible, as the
    # real command keeps it (bwrap_command): the probe must not fail for the private /tmp alone.
    interpreter = [Path(sys.executable).absolute().parent, Path(sys.prefix), Path(sys.base_prefix)]
    for path in kept_in_private_dirs(p for p in interpreter if p.exists()):
        base += ["--ro-bind", str(path), str(path)]
    error = _probe([*base, *_bwrap_flags(cut_network, privileged), "--"])
    if error is not None:
        return None, f"bwrap failed: {error}"
    isolation = Isolation(
        tool="bwrap",
        prefix=(bwrap,),
        pid_namespace=True,
        network_namespace=cut_network,
        user_namespace=not privileged,
        mount_namespace=True,
    )
    return isolation, ""


def _try_unshare(cut_network: bool, privileged: bool) -> tuple[Isolation | None, str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "the `unshare` command (util-linux) is not installed"
    last_error = ""
    for candidate in _unshare_candidates(unshare, cut_network, privileged):
        error = _probe(candidate)
        if error is None:
            isolation = Isolation(
                tool="unshare",
                prefix=tuple(candidate),
                pid_namespace="--pid" in candidate,
                network_namespace="--net" in candidate,
                user_namespace="--user" in candidate,
                mount_namespace="--mount-proc" in candidate,
            )
            return isolation, ""
        last_error = error
    return None, f"unshare failed: {last_error or 'unknown error'}"


@functools.cache
def isolation_support(
    cut_network: bool = True, *, privileged: bool | None = None, tools: tuple[str, ...] = ("bwrap", "unshare")
) -> Isolation:
    """The strongest setup that really works here (tried once, then cached).

    ``privileged=False`` tries only what an unprivileged user could (for tests run as root);
    ``tools`` limits which tools are tried (tests of the fallback).
    """
    if not sys.platform.startswith("linux"):
        return Isolation(reason=f"namespaces are Linux-only (platform {sys.platform})")
    if privileged is None:
        privileged = os.geteuid() == 0
    reasons = []
    attempts = {"bwrap": _try_bwrap, "unshare": _try_unshare}
    for tool in tools:
        isolation, reason = attempts[tool](cut_network, privileged)
        if isolation is not None:
            return Isolation(**{**isolation.__dict__, "reason": "; ".join(reasons)})
        reasons.append(reason)
    return Isolation(reason="; ".join(reasons))


@dataclass(frozen=True)
class Confinement:
    """The filesystem one script gets: all read-only but ``writable``; ``keep`` must stay visible
    although it lies in a private folder (the script's own folder under /tmp, its input, its Python);
    ``hidden`` is covered (folders by an empty one, so their file names are not listable)."""

    workdir: Path
    writable: tuple[Path, ...]
    keep: tuple[Path, ...]
    hidden: tuple[Path, ...]
    private_bytes: int  # size cap of the private /tmp and /dev/shm each


def _under(path: Path, folders: Iterable[str]) -> bool:
    return any(path == Path(folder) or Path(folder) in path.parents for folder in folders)


def kept_in_private_dirs(paths: Iterable[Path]) -> list[Path]:
    """The paths among ``paths`` that the private /tmp and /dev/shm would cover, parents first,
    without those already inside another one."""
    result: list[Path] = []
    for path in sorted({Path(p) for p in paths if _under(Path(p), PRIVATE_DIRS)}, key=lambda p: len(p.parts)):
        if not any(path == kept or kept in path.parents for kept in result):
            result.append(path)
    return result


def skeleton_roots(kept: Iterable[Path]) -> list[Path]:
    """The top folders under /tmp (or /dev/shm) that hold kept paths without being kept themselves.

    Each gets a tmpfs of its own, holding only the mount points of the kept paths, which is then
    made read-only: so the copy of, say, the competition folder that a script sees under /tmp
    takes no new files either (bwrap binds from the host's tree, so no folder of the private /tmp
    can simply be bound onto itself).
    """
    roots = set()
    for path in kept:
        for folder in PRIVATE_DIRS:
            if Path(folder) in path.parents:
                top = Path(folder) / path.relative_to(folder).parts[0]
                if top != path:
                    roots.add(top)
    return sorted(roots)


def visible(path: Path, kept: Iterable[Path]) -> bool:
    """Whether ``path`` is seen at all by a script whose private folders keep only ``kept``."""
    return not _under(path, PRIVATE_DIRS) or any(path == k or k in path.parents for k in kept)


def listening_unix_sockets(table: str = "/proc/net/unix") -> list[Path]:
    """Paths of the Unix sockets bound on this machine: a read-only filesystem does not stop a
    script from connecting to one (a container runtime's, a database's), covering it does."""
    try:
        with open(table, encoding="utf-8", errors="replace") as handle:
            rows = handle.read().splitlines()[1:]
    except OSError:
        return []
    paths = {Path(fields[-1]) for row in rows if len(fields := row.split()) >= 8}
    return sorted(path for path in paths if path.is_absolute() and os.path.exists(path))


def sockets_to_cover(plan: Confinement) -> list[Path]:
    """The host's Unix sockets a script confined by ``plan`` would otherwise reach."""
    private: Sequence[str] = (*PRIVATE_DIRS, *map(str, plan.writable))
    return [path for path in listening_unix_sockets() if not _under(path, private)]


def gpu_devices() -> list[str]:
    return sorted({match for pattern in GPU_DEVICES for match in glob.glob(pattern)})


def bwrap_command(isolation: Isolation, plan: Confinement, cut_network: bool) -> list[str]:
    """bwrap's command line, up to its ``--``, for one script confined by ``plan``."""
    args = [isolation.prefix[0], "--ro-bind", "/", "/", "--dev", "/dev"]
    for device in gpu_devices():
        args += ["--dev-bind-try", device, device]
    args += ["--proc", "/proc"]
    for folder in PRIVATE_DIRS:
        args += ["--perms", "1777", "--size", str(plan.private_bytes), "--tmpfs", folder]
    kept = [path for path in kept_in_private_dirs(plan.keep) if path.exists()]
    roots = skeleton_roots(kept)
    for root in roots:
        args += ["--size", str(_HIDDEN_DIR_BYTES * 64), "--tmpfs", str(root)]
    for path in kept:
        args += ["--ro-bind", str(path), str(path)]
    for root in roots:
        args += ["--remount-ro", str(root)]
    for path in plan.writable:
        args += ["--bind", str(path), str(path)]
    for path in plan.hidden:
        if not visible(path, kept):
            continue
        if path.is_dir():
            args += ["--size", str(_HIDDEN_DIR_BYTES), "--tmpfs", str(path), "--remount-ro", str(path)]
        else:
            args += ["--ro-bind", "/dev/null", str(path)]
    for socket_path in sockets_to_cover(plan):
        args += ["--ro-bind-try", "/dev/null", str(socket_path)]
    args += _bwrap_flags(cut_network, not isolation.user_namespace)
    return [*args, "--chdir", str(plan.workdir), "--"]
