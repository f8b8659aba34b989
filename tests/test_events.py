"""The one event bus: recorder first, then subscribers in order; scopes tag a thread's events."""

from __future__ import annotations

import threading

import pytest

from mlestar.core.events import Event, EventBus, EventType


def test_the_recorder_numbers_events_before_subscribers_see_them() -> None:
    recorded: list[Event] = []

    def record(event: Event) -> Event:
        numbered = event.model_copy(update={"seq": len(recorded) + 1})
        recorded.append(numbered)
        return numbered

    bus = EventBus(recorder=record)
    seen: list[tuple[str, int]] = []
    bus.subscribe(lambda e: seen.append(("first", e.seq)))
    bus.subscribe(lambda e: seen.append(("second", e.seq)))
    bus.publish(EventType.WARNING, "one")
    bus.publish(EventType.WARNING, "two")
    assert seen == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]


def test_a_failing_subscriber_breaks_nothing_and_can_leave() -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("display crashed")

    unsubscribe = bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e.message))
    bus.publish(EventType.WARNING, "still delivered")
    unsubscribe()
    bus.publish(EventType.WARNING, "again")
    assert seen == ["still delivered", "again"]


def test_scopes_tag_events_per_thread_and_nest() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)

    def track(number: int) -> None:
        with bus.scope(phase="phase2", track=number):
            with bus.scope(node_id=10 + number, step=f"p2/t{number}/o0/code#x"):
                bus.publish(EventType.LLM_CALL, f"call {number}")
            bus.publish(EventType.LLM_CALL, f"after {number}", data={"k": 1})

    threads = [threading.Thread(target=track, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bus.publish(EventType.WARNING, "outside")
    by_message = {e.message: e for e in seen}
    for n in (0, 1):
        inner, outer = by_message[f"call {n}"], by_message[f"after {n}"]
        assert (inner.phase, inner.track, inner.node_id) == ("phase2", n, 10 + n)
        assert inner.data["step"] == f"p2/t{n}/o0/code#x"
        assert (outer.track, outer.node_id, outer.data) == (n, None, {"k": 1})
    assert (by_message["outside"].phase, by_message["outside"].track) == (None, None)


def test_explicit_fields_win_over_the_scope_and_unknown_scopes_are_refused() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.subscribe(seen.append)
    with bus.scope(phase="phase1", track=0):
        bus.publish(EventType.SCRIPT_STARTED, "x", track=1)
    assert (seen[0].phase, seen[0].track) == ("phase1", 1)
    with pytest.raises(TypeError):
        with bus.scope(colour="red"):
            pass
