"""GPUs for scripts: which devices there are, and one lease per running script.

Each running script sees only the device it leased (``CUDA_VISIBLE_DEVICES``); a script waits for
a free device rather than share one, unless ``per_device`` allows several scripts on one GPU. A
script's peak GPU memory is read from nvidia-smi while it runs, where nvidia-smi is there.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
