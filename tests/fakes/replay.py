"""Recorded conversations with a model, and a responder that plays them back.

A conversation is a folder in the format of ``shared/tools/llm_bridge.py``: ``NNNN.prompt.md`` (the
request, rendered) and ``NNNN.response.md`` (the answer) for each request, in the order they were
made (``NNNN.request.json`` may sit beside them; it is not needed).

Playback matches answers by agent role and order, not by a hash of the prompt, so a recording
still plays after the prompts change a little: a request gets the next unused answer recorded for
its role, chosen among the next few of that role by how alike the prompts are (tracks run in
parallel, so two requests of one role may arrive in another order than they were recorded).

Run as a script to serve a conversation over the OpenAI wire format::

    python tests/fakes/replay.py --dir tests/fixtures/conversations/scripted-binary --port 8765
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLE_RE = re.compile(r"\[mlestar agent: (\w+)\]")
LOOKAHEAD = 4  # recorded answers of a role considered for one request


def render(messages: list[dict[str, Any]]) -> str:
    """A request as readable text (the bridge's ``NNNN.prompt.md``)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
        out.append(f"## {str(message.get('role', '?')).upper()}\n\n{content}\n")
    return "\n".join(out)


def role_of(text: str) -> str:
    match = ROLE_RE.search(text)
    return match.group(1) if match else "unknown"


@dataclass(frozen=True)
class Turn:
    number: int
    role: str
    prompt: str
    response: str


def load_conversation(folder: Path) -> list[Turn]:
    turns = []
    for answer in sorted(Path(folder).glob("*.response.md")):
        stem = answer.name.removesuffix(".response.md")
        prompt_file = answer.with_name(f"{stem}.prompt.md")
        prompt = prompt_file.read_text(encoding="utf-8") if prompt_file.exists() else ""
        turns.append(Turn(int(stem), role_of(prompt), prompt, answer.read_text(encoding="utf-8")))
    if not turns:
        raise FileNotFoundError(f"no NNNN.response.md files in {folder}")
    return turns


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def likeness(a: str, b: str) -> float:
    """How alike two prompts are, line by line and in order (1.0: the same lines in the same order;
    two merges of the same scripts in the other order are told apart)."""
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, _lines(a), _lines(b), autojunk=False).ratio()


class ReplayExhausted(RuntimeError):
    """A request came for a role whose recorded answers are all used."""


@dataclass
class Replay:
    """A responder for ``FakeLLM``: recorded answers by role and order."""

    turns: list[Turn]
    fallback: Callable[[list[dict[str, Any]]], str] | None = None
    used: set[int] = field(default_factory=set)
    # The same request asked again (after an empty answer, a refusal, a lost connection) gets the
    # same answer, as from a model at temperature 0, and uses up no other recorded answer.
    answered: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_folder(cls, folder: Path, **kwargs: Any) -> Replay:
        return cls(load_conversation(folder), **kwargs)

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        text = render(messages)
        role = role_of(text)
        with self._lock:
            if text in self.answered:
                return self.answered[text]
            pending = [t for t in self.turns if t.role == role and t.number not in self.used][:LOOKAHEAD]
            if not pending:
                if self.fallback is None:
                    raise ReplayExhausted(f"no recorded answer left for the {role} role")
                return self.fallback(messages)
            best = max(pending, key=lambda t: (likeness(text, t.prompt), -t.number))
            self.used.add(best.number)
            self.answered[text] = best.response
            return best.response


@dataclass
class Recorder:
    """Wraps a responder and writes every request and answer to ``folder`` in the bridge's format."""

    responder: Callable[[list[dict[str, Any]]], str]
    folder: Path
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        answer = self.responder(messages)
        with self._lock:
            self._count += 1
            stem = self.folder / f"{self._count:04d}"
            self.folder.mkdir(parents=True, exist_ok=True)
            stem.with_suffix(".prompt.md").write_text(render(messages), encoding="utf-8")
            stem.with_suffix(".response.md").write_text(answer, encoding="utf-8")
        return answer


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import uvicorn

    from fakes.llm_servers import FakeLLM, make_openai_app

    parser = argparse.ArgumentParser(
        description="Serve a recorded conversation as an OpenAI-compatible endpoint."
    )
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    fake = FakeLLM(responder=Replay.from_folder(args.dir))
    uvicorn.run(make_openai_app(fake), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
