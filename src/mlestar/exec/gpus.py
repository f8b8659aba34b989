"""GPUs for scripts: which devices there are, and one lease per running script.

Each running script sees only the device it leased (``CUDA_VISIBLE_DEVICES``); a script waits for
a free device rather than share one, unless ``per_device`` allows several scripts on one GPU. A
script's peak GPU memory is read from nvidia-smi while it runs, where nvidia-smi is there.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

CUDA_VISIBLE = "CUDA_VISIBLE_DEVICES"
_GPU_LINE = re.compile(r"^GPU (\d+):", re.MULTILINE)


def detect_gpus() -> list[str]:
    """Device ids of the GPUs of this machine: from ``nvidia-smi -L``, else from torch, else none."""
    if shutil.which("nvidia-smi"):
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        found = _GPU_LINE.findall(listing)
        if found:
            return found
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return [str(i) for i in range(torch.cuda.device_count())]
    return []


def resolve_gpus(choice: str, detected: list[str] | None = None) -> list[str]:
    """The devices a run may use for the ``gpus`` setting: auto, none, or a list like ``0,1``."""
    if choice == "none":
        return []
    if choice == "auto":
        return detect_gpus() if detected is None else list(detected)
    return [part.strip() for part in choice.split(",") if part.strip()]


class GpuPool:
    """Leases of devices to running scripts, at most ``per_device`` scripts on one device."""

    def __init__(self, devices: list[str], per_device: int = 1) -> None:
        self.devices = list(devices)
        self.per_device = max(1, per_device)
        self._in_use = dict.fromkeys(self.devices, 0)
        self._free = threading.Condition()

    def __bool__(self) -> bool:
        return bool(self.devices)

    def acquire(self, cancel: threading.Event | None = None) -> str | None:
        """The least-used device with room, waiting for one; None when cancelled while waiting."""
        with self._free:
            while True:
                open_ = [d for d in self.devices if self._in_use[d] < self.per_device]
                if open_:
                    device = min(open_, key=lambda d: self._in_use[d])
                    self._in_use[device] += 1
                    return device
                if cancel is not None and cancel.is_set():
                    return None
                self._free.wait(timeout=0.2)

    def release(self, device: str) -> None:
        with self._free:
            self._in_use[device] -= 1
            self._free.notify_all()

    @contextmanager
    def lease(self, cancel: threading.Event | None = None) -> Iterator[str | None]:
        device = self.acquire(cancel)
        try:
            yield device
        finally:
            if device is not None:
                self.release(device)


def _compute_apps() -> list[tuple[int, float]]:
    """(pid, MiB) of every process using a GPU, per nvidia-smi."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    apps = []
    for line in out.splitlines():
        pid, _, used = (part.strip() for part in line.partition(","))
        with contextlib.suppress(ValueError):
            apps.append((int(pid), float(used)))
    return apps


def _works_in(pid: int, folder: str) -> bool:
    try:
        cwd = psutil.Process(pid).cwd()
    except (psutil.Error, OSError):
        return False
    return cwd == folder or cwd.startswith(folder + os.sep)


class GpuMemoryWatch:
    """The peak GPU memory (MiB) of the processes working in ``folder``, sampled every ``every_s``."""

    def __init__(self, folder: Path, every_s: float = 1.0) -> None:
        self.folder = os.path.realpath(folder)
        self.every_s = every_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="mlestar-gpu-memory", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            used = sum(mb for pid, mb in _compute_apps() if _works_in(pid, self.folder))
            self.peak_mb = max(self.peak_mb, used)
            self._stop.wait(self.every_s)

    def __enter__(self) -> GpuMemoryWatch:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
