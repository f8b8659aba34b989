"""A pids cgroup per script, where this process may make one: the kernel then refuses forks past the
cap (the script sees EAGAIN), for root too, whom RLIMIT_NPROC does not bind.

cgroup v1 (a ``pids`` hierarchy) and v2 (the ``pids`` controller enabled for our cgroup's children)
both work; containers usually mount the hierarchy read-only, and then the sandbox falls back to
counting the script's tasks itself. Found once per process by making (and removing) a probe cgroup.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

_PREFIX = "mlestar-"
_counter = itertools.count()


def _mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every line of /proc/self/mountinfo."""
    result = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            result.append((fields[4].replace("\\040", " "), tail[0], tail[2]))
    return result


def pids_parent(mountinfo: str, cgroup_table: str) -> Path | None:
    """The folder under which this process's pids cgroups would be made (v1 first, then v2)."""
    own: dict[str, str] = {}
    for line in cgroup_table.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                own[controller] = parts[2]
    mounts = _mounts(mountinfo)
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "pids" in options.split(",") and "pids" in own:
            return Path(point) / own["pids"].lstrip("/")
    for point, fstype, _options in mounts:
        if fstype == "cgroup2" and "" in own:
            return Path(point) / own[""].lstrip("/")
    return None


def _remove_stale(parent: Path) -> None:
    """Empty cgroups of mlestar processes that died without removing them (kill -9)."""
    for child in parent.glob(f"{_PREFIX}*"):
        pid = child.name[len(_PREFIX) :].split("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            with contextlib.suppress(OSError):
                child.rmdir()


@functools.cache
def _usable_parent() -> Path | None:
    try:
        parent = pids_parent(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())
    except OSError:
        return None
    if parent is None or not os.access(parent, os.W_OK):
        return None
    probe = parent / f"{_PREFIX}{os.getpid()}-probe"
    try:
        probe.mkdir(exist_ok=True)
        try:
            (probe / "pids.max").write_text("16")
        finally:
            probe.rmdir()
    except OSError as exc:
        log.debug("no pids cgroup under %s: %s", parent, exc)
        return None
    _remove_stale(parent)
    return parent


class PidsCgroup:
    """One script's cgroup; every process added, and all they start, count against ``limit``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, limit: int) -> PidsCgroup | None:
        """A new cgroup capped at ``limit`` tasks, or None where none can be made."""
        parent = _usable_parent()
        if parent is None or limit <= 0:
            return None
        path = parent / f"{_PREFIX}{os.getpid()}-{next(_counter)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(limit))
        except OSError as exc:
            log.debug("cannot make the cgroup %s: %s", path, exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(path)

    def add(self, pids: Iterable[int]) -> None:
        """Move these processes in (their children from now on are born inside)."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    def refused_forks(self) -> int:
        """How many forks the cap refused so far (``pids.events``)."""
        try:
            text = (self.path / "pids.events").read_text()
        except OSError:
            return 0
        fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(fields.get("max", 0))

    def remove(self) -> None:
        """Remove the cgroup once its processes are gone (they are being killed: wait a little)."""
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)
        log.debug("cgroup %s left behind: it still holds processes", self.path)
