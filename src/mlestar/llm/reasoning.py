"""Reasoning models: which models think before they answer, and the thinking taken out of answers.

Open reasoning models (DeepSeek-R1, Qwen3, QwQ, many fine-tunes) served by vLLM, Ollama or
llama.cpp often put their thinking into the answer itself, between ``<think>`` and ``</think>``.
That text is full of drafts (fenced code, half-written JSON, "NO_NEW_PLAN?"), so it must go before
any parser sees the answer. Servers that split it off (``reasoning_content``, ``reasoning``,
Ollama's ``thinking``) need nothing more: the client reads the answer field only.
"""

from __future__ import annotations

import re

_TAGS = ("think", "thinking", "reasoning", "thought")
_CLOSED = re.compile(rf"<({'|'.join(_TAGS)})>.*?</\1>", re.S | re.I)
_OPEN_TAIL = re.compile(rf"<({'|'.join(_TAGS)})>.*\Z", re.S | re.I)
_ANY_TAG = re.compile(rf"</?({'|'.join(_TAGS)})>", re.I)
_LONE_CLOSE = re.compile(rf"\A.*?</({'|'.join(_TAGS)})>", re.S | re.I)


def strip_reasoning(text: str) -> str:
    """The answer without its thinking.

    Handles closed blocks anywhere, a block the answer was cut off in (everything after an unclosed
    opening tag is thinking), and chat templates that open the block in the prompt, so that the
    answer starts inside it and only a closing tag shows where the thinking ends.
    """
    if not text or not _ANY_TAG.search(text):
        return text
    stripped = _CLOSED.sub("", text)
    # Closed blocks are gone: a closing tag left over had its opening tag in the prompt.
    stripped = _LONE_CLOSE.sub("", stripped, count=1)
    stripped = _OPEN_TAIL.sub("", stripped)
    return stripped.strip("\n") + ("\n" if stripped.strip() else "")


# Model names (after any "vendor/" prefix) of models that reason before answering.
_REASONING_NAMES = re.compile(
    r"^(o1|o3|o4|gpt-5|gemini-2\.5|gemini-3|deepseek-r1|deepseek-reasoner|qwq|qwen3|"
    r"magistral|phi-4-reasoning)",
    re.I,
)


def is_reasoning_model(model: str) -> bool:
    """Whether ``model`` thinks before it answers (so it needs tokens for thinking on top).

    Claude thinks only when asked to (extended thinking, ``llm_reasoning_effort``), so it is not
    listed here."""
    name = model.rsplit("/", 1)[-1].lower()
    return bool(_REASONING_NAMES.match(name)) or "-thinking" in name or "-reasoning" in name
