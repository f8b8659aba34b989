"""Trimming a script's output for prompts and the store (the score line itself is read by
``mlestar.core.contract``)."""

from __future__ import annotations


def omitted_marker(count: int) -> str:
    return f"\n... {count} characters omitted ...\n"


def trim_output(text: str, head: int = 2000, tail: int = 8000) -> str:
    """Keep the first ``head`` and last ``tail`` characters, with a marker saying how much went.

    Tracebacks and the score line sit at the end, the configuration echo at the start, so both
    ends are worth more than the middle.
    """
    if len(text) <= head + tail:
        return text
    omitted = len(text) - head - tail
    return text[:head] + omitted_marker(omitted) + (text[-tail:] if tail > 0 else "")
