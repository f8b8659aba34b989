"""Counting prompt tokens before a request is sent, so prompts can be fitted to a context window.

With ``tiktoken`` installed its ``o200k_base`` encoding counts; without it an estimate of 3.5
characters per token does, which errs on the high side for English and is about right for code.
Either way the count is an estimate for models with other tokenizers: callers keep a margin.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

CHARS_PER_TOKEN = 3.5
MESSAGE_OVERHEAD = 4  # role markers and separators around each message


@functools.lru_cache(maxsize=1)
def _encoder() -> Callable[[str], int] | None:
    try:
        import tiktoken

        encoding = tiktoken.get_encoding("o200k_base")
    except Exception:  # not installed, or its vocabulary file cannot be loaded offline
        return None
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def count_tokens(text: str) -> int:
    if not text:
        return 0
    encode = _encoder()
    return encode(text) if encode is not None else math.ceil(len(text) / CHARS_PER_TOKEN)


def count_messages(messages: Sequence[dict[str, Any]]) -> int:
    return sum(count_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in messages)
