"""Publishing events into a run store the way a run does (through the bus, the store recording)."""

from __future__ import annotations

from typing import Any

from mlestar.core.events import Event, EventBus, EventType
from mlestar.store import RunStore


def publish(store: RunStore, type_: EventType, message: str = "", **fields: Any) -> Event:
    return EventBus(recorder=store.append_event).publish(type_, message, **fields)
