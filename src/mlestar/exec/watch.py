"""Watching a running script from outside: the memory and the task count of its whole process tree,
and what it has written into its folders. The sandbox polls :class:`TreeWatch` and kills the tree
when a limit is passed; the kernel's own caps (rlimits, a pids cgroup, tmpfs sizes) act first where
they exist, this is what holds everywhere.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from mlestar.exec.cgroups import PidsCgroup

_MIB = 1024 * 1024
_MIN_ENTRY_BYTES = 4096  # an empty file still takes an inode: a million of them are not free
_DISK_POLL_S = 1.0  # the folders are walked at most this often ...
_DISK_POLL_SHARE = 20  # ... and at most 1/20 of the time, however many files they hold


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def _pss(procs: list[psutil.Process]) -> int:
    """Proportional set size: shared pages counted once, split among their users."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error, AttributeError):
            total += proc.memory_full_info().pss
    return total


def tree_memory(procs: list[psutil.Process], limit: int) -> int:
    # RSS is cheap but counts pages shared by forked workers (joblib, DataLoader) once per
    # process; PSS is exact but walks every mapping. Pay for PSS only near the limit, so a
    # script is never killed for memory it shares rather than uses.
    rss = _rss(procs)
    if limit <= 0 or rss <= limit:
        return rss
    pss = _pss(procs)
    return pss if pss > 0 else rss


def tree_tasks(procs: list[psutil.Process]) -> int:
    """Processes and threads of the tree (what a pids cgroup and RLIMIT_NPROC count)."""
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.num_threads()
    return total


def folder_bytes(folders: Iterable[Path]) -> int:
    """Disk used under ``folders`` (symlinks not followed), each entry at least one block."""
    total = 0
    todo = [str(folder) for folder in folders]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += max(info.st_blocks * 512, _MIN_ENTRY_BYTES)
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
    return total


class TreeWatch:
    """One script's limits as seen from outside; :meth:`check` says which one was passed, if any."""

    def __init__(
        self,
        root: psutil.Process,
        *,
        memory_mb: int,
        tasks: int,
        disk_mb: int,
        folders: list[Path],
        cgroup: PidsCgroup | None,
    ) -> None:
        self.root = root
        self.memory_limit = memory_mb * _MIB
        self.task_limit = tasks  # 0: none
        self.disk_limit = disk_mb * _MIB
        self.folders = folders
        self.cgroup = cgroup
        self.peak_memory = 0
        self.disk_used = 0
        self._next_disk_check = 0.0

    def check(self) -> str | None:
        """The limit passed ("memory", "processes" or "disk"), or None."""
        procs = tree(self.root)
        used = tree_memory(procs, self.memory_limit)
        self.peak_memory = max(self.peak_memory, used)
        if self.memory_limit > 0 and used > self.memory_limit:
            return "memory"
        if self.task_limit > 0:
            refused = self.cgroup is not None and self.cgroup.refused_forks() > 0
            # At the cap already: the next fork fails (RLIMIT_NPROC), so this is where it stops.
            if refused or tree_tasks(procs) >= self.task_limit:
                return "processes"
        if self.disk_limit > 0 and time.monotonic() >= self._next_disk_check:
            started = time.monotonic()
            self.disk_used = folder_bytes(self.folders)
            spent = time.monotonic() - started
            self._next_disk_check = time.monotonic() + max(_DISK_POLL_S, _DISK_POLL_SHARE * spent)
            if self.disk_used > self.disk_limit:
                return "disk"
        return None
