"""Typed events and the one bus every part of a run publishes them on.

Producers (the pipeline, the LLM client, web search, the report) call ``EventBus.publish``. The
bus hands each event first to its recorder (the run store, which persists it and numbers it) and
then to every subscriber in order (the CLI progress view, user listeners, integrations). The web
UI follows the recorded events from the store, so it sees exactly what the recorder wrote.

A scope (phase, track, node, step) set with ``with bus.scope(...)`` tags every event published by
that thread while inside, so an LLM call made deep in a brain says which step it served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class EventType(str, Enum):
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    RUN_PAUSED = "run_paused"
    RUN_STOPPED = "run_stopped"
    RUN_FINISHED = "run_finished"
    RUN_FAILED = "run_failed"
    PHASE_STARTED = "phase_started"
    PHASE_FINISHED = "phase_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    SCRIPT_STARTED = "script_started"
    SCRIPT_FINISHED = "script_finished"
    BEST_UPDATED = "best_updated"
    SUBMISSION_WRITTEN = "submission_written"
    ABLATION = "ablation"
    CHECK = "check"  # leakage / data-usage verdicts and whether their fix was kept
    LLM_CALL = "llm_call"
    BUDGET = "budget"
    WARNING = "warning"


class Event(BaseModel):
    seq: int = 0  # assigned by the recorder; strictly increasing within a run
    ts: float = Field(default_factory=time.time)
    type: EventType
    phase: str | None = None
    track: int | None = None
    node_id: int | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


Listener = Callable[[Event], None]
Recorder = Callable[[Event], Event]  # persists an event and returns it numbered

_SCOPE_FIELDS = ("phase", "track", "node_id", "step")


class EventBus:
    """Thread-safe publish/subscribe for one run's events, recorder first."""

    def __init__(self, recorder: Recorder | None = None) -> None:
        self._recorder = recorder
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it again."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @contextmanager
    def scope(self, **fields: Any) -> Iterator[None]:
        """Tag this thread's events with ``phase``/``track``/``node_id``/``step`` while inside."""
        unknown = set(fields) - set(_SCOPE_FIELDS)
        if unknown:
            raise TypeError(f"unknown scope fields: {sorted(unknown)}")
        previous = self.current_scope()
        self._local.scope = {**previous, **{k: v for k, v in fields.items() if v is not None}}
        try:
            yield
        finally:
            self._local.scope = previous

    def current_scope(self) -> dict[str, Any]:
        return dict(getattr(self._local, "scope", {}))

    def publish(self, type_: EventType, message: str = "", **fields: Any) -> Event:
        """Record and deliver one event; fields left out are filled from the thread's scope."""
        scope = self.current_scope()
        step = scope.pop("step", None)
        for name, value in scope.items():
            if fields.get(name) is None:
                fields[name] = value
        if step is not None:
            fields["data"] = {"step": step, **(fields.get("data") or {})}
        event = Event(type=type_, message=message, **fields)
        if self._recorder is not None:
            event = self._recorder(event)
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # a broken display or integration must never break the run
                log.warning("event listener %r failed", listener, exc_info=True)
        return event
