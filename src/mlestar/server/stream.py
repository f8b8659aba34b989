"""Live events as Server-Sent Events, read from the run store's event log.

The log is the only source: a client passes the last ``seq`` it has (``?after=`` or the
``Last-Event-ID`` header EventSource sends on reconnect) and gets everything after it, then new
events as the pipeline writes them (the SQLite file is polled; the pipeline is another process).
The stream closes with an ``end`` event once the run has ended, so clients do not reconnect to a
finished run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from functools import partial

from anyio import to_thread
from starlette.requests import Request

from mlestar.core.events import Event
from mlestar.server.runs import RunService
from mlestar.store import RunStore

BATCH = 500
KEEPALIVE_S = 15.0


def format_event(event: Event) -> str:
    return f"id: {event.seq}\ndata: {event.model_dump_json()}\n\n"


def format_end(status: str, last_seq: int) -> str:
    return f"event: end\ndata: {json.dumps({'status': status, 'last_seq': last_seq})}\n\n"


async def follow(service: RunService, run_id: str, after: int, request: Request) -> AsyncIterator[str]:
    poll = service.settings.poll_interval_s
    yield "retry: 2000\n\n"
    # A run just launched has no folder for a moment: wait for it while its process lives.
    while (folder := service.folder(run_id)) is None:
        if not service.launcher.alive(run_id):
            yield format_end("launch_failed", after)
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(poll)
    store = await to_thread.run_sync(RunStore, folder)
    try:
        last_sent = time.monotonic()
        while True:
            events = await to_thread.run_sync(partial(store.events, after=after, limit=BATCH))
            for event in events:
                yield format_event(event)
                after = event.seq
            if events:
                last_sent = time.monotonic()
                if len(events) == BATCH:
                    continue  # more history waiting: no pause
            elif await to_thread.run_sync(service.stream_ended, store):
                # One last read: events may have landed between the first read and the check.
                tail = await to_thread.run_sync(partial(store.events, after=after, limit=BATCH))
                if not tail:
                    yield format_end(store.status.value, after)
                    return
                continue
            elif time.monotonic() - last_sent > KEEPALIVE_S:
                yield ": keepalive\n\n"  # also how a vanished client gets noticed
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(poll)
    finally:
        store.close()
