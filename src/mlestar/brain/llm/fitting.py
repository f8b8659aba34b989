"""Fitting a prompt into a token budget by dropping its least useful parts first.

The order, least useful first: earlier rejected answers of the same conversation, the content of
web search results (then results themselves), the oldest plans tried and ablation studies seen,
knowledge-base hints, then shorter script output, error text, data profile and description (cut
by section priority). The code a role works on is never cut: if the prompt still does not fit,
the step cannot be done with this model's window and the caller gets ``ContextTooLong``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlestar.brain.llm.trimming import clip, trim_description, trim_output
from mlestar.llm.errors import ContextTooLong
from mlestar.llm.providers import Message
from mlestar.llm.tokens import count_messages

Variables = dict[str, Any]
Shrink = Callable[[Variables], "Variables | None"]  # a smaller copy, or None when nothing is left to cut
MIN_TEXT = 800  # characters a trimmed text keeps at the least


def _drop_oldest(name: str, keep: int) -> Shrink:
    def shrink(v: Variables) -> Variables | None:
        items = v.get(name) or []
        if len(items) <= keep:
            return None
        return {**v, name: items[len(items) - max(keep, len(items) // 2) :]}

    return shrink


def _drop_latest(name: str) -> Shrink:
    def shrink(v: Variables) -> Variables | None:
        items = v.get(name) or []
        if not items:
            return None
        return {**v, name: items[: len(items) // 2]}

    return shrink


def _search_content(v: Variables) -> Variables | None:
    results = v.get("results") or []
    if not any(getattr(r, "content", "") for r in results):
        return None
    return {**v, "results": [r.model_copy(update={"content": ""}) for r in results]}


def _halve(name: str, cut: Callable[[str, int], str]) -> Shrink:
    def shrink(v: Variables) -> Variables | None:
        text = v.get(name) or ""
        if len(text) <= MIN_TEXT:
            return None
        return {**v, name: cut(text, max(MIN_TEXT, len(text) // 2))}

    return shrink


STEPS: tuple[Shrink, ...] = (
    _search_content,
    _drop_latest("results"),
    _drop_oldest("history", keep=1),
    _drop_oldest("previous", keep=0),
    _drop_latest("hints"),
    _halve("output", trim_output),
    _halve("error", clip),
    _halve("data_report", clip),
    _halve("description", trim_description),
)


def fit_messages(
    render: Callable[[Variables], list[Message]],
    variables: Variables,
    extra: list[Message],
    budget: int | None,
) -> tuple[list[Message], Variables]:
    """The messages for ``variables`` (plus the conversation so far, ``extra``) within ``budget`` tokens.

    Raises ``ContextTooLong`` when even the shortest prompt is over the budget."""
    messages = render(variables)
    if budget is None or count_messages([*messages, *extra]) <= budget:
        return [*messages, *extra], variables
    if len(extra) > 2:
        extra = extra[-2:]  # of the earlier answers that were rejected, the last one is enough
    for step in STEPS:
        while count_messages([*messages, *extra]) > budget:
            smaller = step(variables)
            if smaller is None:
                break
            variables = smaller
            messages = render(variables)
    size = count_messages([*messages, *extra])
    if size > budget:
        raise ContextTooLong(
            f"the prompt needs about {size} tokens even when shortened; the model's window leaves {budget}",
            prompt_tokens=size,
        )
    return [*messages, *extra], variables
