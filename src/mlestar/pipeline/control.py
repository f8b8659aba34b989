"""Stopping a run from outside: Ctrl+C and SIGTERM in this process, stop requests from others."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from mlestar.store import Control, RunStore


class ControlWatcher:
    """Polls the store for a stop request from another process (web UI) and acts at once."""

    def __init__(self, store: RunStore, on_stop: Callable[[], None], interval: float = 1.0) -> None:
        self._store, self._on_stop, self._interval = store, on_stop, interval
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlestar-control", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed.wait(self._interval):
            try:
                if self._store.control() == Control.STOP:
                    self._on_stop()
                    return
            except Exception:  # the store is busy or closing; try again next tick
                continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)


def install_signal_handlers(request_stop: Callable[[], None]) -> Callable[[], None]:
    """Ctrl+C / SIGTERM: first one stops cleanly (scripts killed, run resumable), second one forces."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    presses = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        presses["n"] += 1
        request_stop()
        if presses["n"] > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
