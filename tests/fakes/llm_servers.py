"""Fake LLM servers speaking the OpenAI chat-completions, Anthropic messages and Ollama chat wire formats.

A test queues replies (``FakeLLM.queue``): plain text, text without a usage block, a cut-off or
empty answer, a refusal, or an HTTP error with headers and body. When the queue is empty the fake
answers with ``responder`` (by default the scripted model of ``tests.fakes.scripted_model``, which
plays every MLE-STAR agent). ``faults`` injects what real providers do into that stream by request
number (``FAULTS`` names them: think blocks with decoy code, 429 storms with and without
Retry-After, Gemini's ``retryDelay``, 500s, a 400 for a context too long, a cut-off answer whose
continuation is served when asked for, empty and ``None`` content, refusals).

Like the real services, the fakes report prompt-cache hits (OpenAI: the prefix shared with an
earlier request, in 128-token steps from 1,024 tokens; Anthropic: a ``cache_control`` system block
seen before), and can enforce a context window (vLLM's ``max_model_len``: a 400 when prompt plus
``max_tokens`` exceed it; Ollama: prompts beyond ``num_ctx`` silently lose their beginning).
Every request body and its headers are logged so tests can count requests and inspect prompts.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CONTINUE_MARK = "Your answer was cut off"  # how the client asks for the rest of a cut-off answer
OLLAMA_DEFAULT_CTX = 2048


@dataclass
class Reply:
    text: str | None = ""  # None: the server sends ``"content": null``
    usage: tuple[int, int] | None | bool = True  # True: computed; None: omitted; (in, out): given
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = ""
    error_body: Any = None  # a body to send instead of the provider's usual error object
    delay_s: float = 0.0
    finish: str = "stop"  # "stop", "length" (cut off) or "refusal"
    refusal: str | None = None
    reasoning: str | None = None  # sent apart from the answer (reasoning_content / thinking)


def error(status: int, message: str = "", **headers: str) -> Reply:
    return Reply(status=status, error_message=message or f"fake error {status}", headers=headers)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def _prompt_text(messages: list[dict[str, Any]], system: Any = None) -> str:
    return _content_text(system) + "".join(_content_text(m.get("content", "")) for m in messages)


DECOY = (
    "<think>\nThe user wants an answer. A first draft:\n```python\nprint('decoy draft')\n```\n"
    '```json\n{"leak": true, "reason": "decoy"}\n```\nNO_NEW_PLAN? No, better to answer properly.\n</think>\n'
)


def _context_error(prompt: int, limit: int, wanted: int) -> Reply:
    return Reply(
        status=400,
        error_message=(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{prompt + wanted} tokens ({prompt} in the messages, {wanted} in the completion). "
            "Please reduce the length of the messages or completion."
        ),
    )


# Each fault turns the reply the fake would have sent (``answer``) into what a real provider sends.
FAULTS: dict[str, Callable[[str, int, int], list[Reply]]] = {
    "think": lambda answer, prompt, wanted: [Reply(DECOY + answer)],
    "429": lambda answer, prompt, wanted: [
        error(429, "Rate limit reached", **{"Retry-After": "0.05"}),
        Reply(answer),
    ],
    "429-ms": lambda answer, prompt, wanted: [
        error(429, "Slow down", **{"retry-after-ms": "40"}),
        Reply(answer),
    ],
    "429-storm": lambda answer, prompt, wanted: [*[error(429, "Too many requests")] * 4, Reply(answer)],
    "gemini-429": lambda answer, prompt, wanted: [
        Reply(
            status=429,
            error_body=[
                {
                    "error": {
                        "code": 429,
                        "message": "Resource has been exhausted (e.g. check quota).",
                        "status": "RESOURCE_EXHAUSTED",
                        "details": [
                            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.05s"}
                        ],
                    }
                }
            ],
        ),
        Reply(answer),
    ],
    "500": lambda answer, prompt, wanted: [error(500, "The server had an error"), error(503), Reply(answer)],
    "529": lambda answer, prompt, wanted: [error(529, "Overloaded"), Reply(answer)],
    # The window is a little short of prompt + max_tokens: the client must ask for a shorter answer.
    "context": lambda answer, prompt, wanted: [
        _context_error(prompt, prompt + wanted - 1, wanted),
        Reply(answer),
    ],
    "cut": lambda answer, prompt, wanted: [Reply(answer[: max(1, len(answer) // 2)], finish="length")],
    "empty": lambda answer, prompt, wanted: [Reply(""), Reply(answer)],
    "null": lambda answer, prompt, wanted: [Reply(None), Reply(answer)],
    "refusal": lambda answer, prompt, wanted: [
        Reply(None, refusal="I'm sorry, I cannot help with that.", finish="refusal"),
        Reply(answer),
    ],
}


@dataclass
class FakeLLM:
    api_key: str | None = None  # when set, any other key is rejected with 401
    models: set[str] | None = None  # when set, other models get 404
    responder: Callable[[list[dict[str, Any]]], str] | None = None
    # fresh request number (1-based; retries and continuations the fake answers from its queue do
    # not count) -> FAULTS name
    faults: dict[int, str] = field(default_factory=dict)
    max_model_len: int | None = None  # vLLM: listed with the models and enforced (400)
    model_context: int = 32_768  # what Ollama's /api/show reports
    requests: list[dict[str, Any]] = field(default_factory=list)
    served: list[str] = field(default_factory=list)  # per request: "reply", "queued" or a fault name
    _queue: deque[Reply] = field(default_factory=deque)
    _prompts: list[str] = field(default_factory=list)
    _full: dict[str, str] = field(default_factory=dict)  # prompt -> the whole answer given to it
    _fresh: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, *replies: Reply | str) -> None:
        with self._lock:
            self._queue.extend(Reply(text=r) if isinstance(r, str) else r for r in replies)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def roles(self) -> list[str]:
        """The agent role of every request, from the marker the LLM brain puts in its prompts."""
        from .scripted_model import agent_role

        return [agent_role(r["messages"]) for r in self.requests]

    def reset(self) -> None:
        with self._lock:
            self.api_key = None
            self.models = None
            self.responder = None
            self.faults = {}
            self.max_model_len = None
            self.model_context = 32_768
            self.requests.clear()
            self.served.clear()
            self._queue.clear()
            self._prompts.clear()
            self._full.clear()
            self._fresh = 0

    def log_rejected(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append({**body, "_headers": headers})
            self.served.append("rejected")

    def answer(self, messages: list[dict[str, Any]]) -> str:
        """What the model says to ``messages``; a request for the rest of a cut-off answer gets the rest."""
        responder = self.responder
        if responder is None:
            from .scripted_model import respond as responder
        continuing = len(messages) >= 2 and (
            messages[-1].get("role") == "assistant"
            or (
                _content_text(messages[-1].get("content")).startswith(CONTINUE_MARK)
                and messages[-2].get("role") == "assistant"
            )
        )
        if not continuing:
            full = responder(messages)
            with self._lock:
                self._full[_prompt_text(messages)] = full
            return full
        partial_at = len(messages) - (1 if messages[-1].get("role") == "assistant" else 2)
        partial = _content_text(messages[partial_at].get("content"))
        with self._lock:
            full = self._full.get(_prompt_text(messages[:partial_at]))
        if full is None:
            full = responder(messages[:partial_at])
        if full.startswith(partial):
            return full[len(partial) :]
        stripped = partial.rstrip()  # Anthropic prefill drops trailing whitespace
        return full[len(stripped) :] if full.startswith(stripped) else full

    def next_reply(self, body: dict[str, Any], headers: dict[str, str], wanted: int = 0) -> Reply:
        messages = body["messages"]
        prompt = _tokens(_prompt_text(messages, body.get("system")))
        with self._lock:
            self.requests.append({**body, "_headers": headers})
            if self._queue:
                self.served.append("queued")
                return self._queue.popleft()
            self._fresh += 1
            fault = self.faults.pop(self._fresh, None)
        if self.max_model_len is not None and prompt + wanted > self.max_model_len:
            with self._lock:
                self.served.append("over max_model_len")
            return _context_error(prompt, self.max_model_len, wanted)
        text = self.answer(messages)
        if fault is None:
            with self._lock:
                self.served.append("reply")
            return Reply(text=text)
        first, *rest = FAULTS[fault](text, prompt, wanted)
        with self._lock:
            self.served.append(fault)
            self._queue.extendleft(reversed(rest))
        return first

    def cached_prefix_tokens(self, text: str, *, step: int = 128, minimum: int = 1024) -> int:
        """OpenAI-style prompt caching: the prefix shared with an earlier prompt, in whole steps."""
        with self._lock:
            best = max((_common_prefix(text, seen) for seen in self._prompts), default=0)
            self._prompts.append(text)
        tokens = best // 4
        return 0 if tokens < minimum else tokens // step * step

    def seen_system(self, system: str) -> bool:
        """Anthropic-style caching: whether this cache_control block was sent before."""
        key = "\x00system\x00" + system
        with self._lock:
            seen = key in self._prompts
            if not seen:
                self._prompts.append(key)
        return seen


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def make_openai_app(fake: FakeLLM) -> FastAPI:
    app = FastAPI()
    ids = itertools.count(1)

    def err(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return JSONResponse(body, status_code=status, headers=headers or {})

    def check(request: Request, model: str | None) -> JSONResponse | None:
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if fake.api_key is not None and key != fake.api_key:
            # Like the real service, echo the rejected key back: the client must not repeat it.
            return err(401, f"Incorrect API key provided: {key}.", "invalid_request_error")
        if model is not None and fake.models is not None and model not in fake.models:
            return err(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
            )
        return None

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        rejected = check(request, None)
        if rejected is not None:
            return rejected
        names = sorted(fake.models or {"fake"})
        extra = {"max_model_len": fake.max_model_len} if fake.max_model_len else {}
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fake", **extra} for n in names],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        rejected = check(request, body.get("model"))
        if rejected is not None:
            fake.log_rejected(body, dict(request.headers))
            return rejected
        wanted = int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
        reply = fake.next_reply(body, dict(request.headers), wanted)
        if reply.delay_s:
            time.sleep(reply.delay_s)
        if reply.status != 200:
            if reply.error_body is not None:
                return JSONResponse(reply.error_body, status_code=reply.status, headers=reply.headers)
            kind = {429: "rate_limit_exceeded", 400: "invalid_request_error"}.get(
                reply.status, "server_error"
            )
            return err(reply.status, reply.error_message, kind, reply.headers)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.reasoning is not None:
            message["reasoning_content"] = reply.reasoning
        finish = {"refusal": "stop"}.get(reply.finish, reply.finish)
        payload: dict[str, Any] = {
            "id": f"chatcmpl-fake{next(ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        prompt_text = _prompt_text(body["messages"])
        cached = fake.cached_prefix_tokens(prompt_text)
        if reply.usage is not None:
            prompt, completion = (
                reply.usage
                if isinstance(reply.usage, tuple)
                else (_tokens(prompt_text), _tokens(reply.text or ""))
            )
            payload["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": min(cached, prompt)},
            }
        return JSONResponse(payload)

    return app


def make_anthropic_app(fake: FakeLLM) -> FastAPI:
    app = FastAPI()
    ids = itertools.count(1)

    def err(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            {"type": "error", "error": {"type": kind, "message": message}},
            status_code=status,
            headers=headers or {},
        )

    @app.post("/v1/messages")
    async def messages(request: Request) -> Any:
        body = await request.json()
        # Older SDKs send x-api-key, newer ones a bearer token.
        key = (
            request.headers.get("x-api-key")
            or request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        if fake.api_key is not None and key != fake.api_key:
            fake.log_rejected(body, dict(request.headers))
            return err(401, "authentication_error", "invalid x-api-key")
        if fake.models is not None and body.get("model") not in fake.models:
            fake.log_rejected(body, dict(request.headers))
            return err(404, "not_found_error", f"model: {body.get('model')}")
        system = _content_text(body.get("system"))
        # The scripted model reads the system prompt like any other message.
        as_chat = ([{"role": "system", "content": system}] if system else []) + body["messages"]
        reply = fake.next_reply(
            {**body, "messages": as_chat}, dict(request.headers), int(body.get("max_tokens", 0))
        )
        if reply.status != 200:
            if reply.error_body is not None:
                return JSONResponse(reply.error_body, status_code=reply.status, headers=reply.headers)
            kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(
                reply.status, "api_error"
            )
            return err(reply.status, kind, reply.error_message, reply.headers)
        content = (
            [{"type": "thinking", "thinking": reply.reasoning, "signature": "x"}] if reply.reasoning else []
        )
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        stop = {"length": "max_tokens", "refusal": "refusal"}.get(reply.finish, "end_turn")
        payload: dict[str, Any] = {
            "id": f"msg_fake{next(ids)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
        }
        marked = isinstance(body.get("system"), list) and any(
            isinstance(b, dict) and b.get("cache_control") for b in body["system"]
        )
        cache_read = _tokens(system) if marked and fake.seen_system(system) else 0
        cache_write = _tokens(system) if marked and not cache_read else 0
        prompt, completion = (
            reply.usage
            if isinstance(reply.usage, tuple)
            else (_tokens(_prompt_text(body["messages"], system)), _tokens(reply.text or ""))
        )
        # Anthropic counts cached and newly cached tokens apart from the rest of the prompt.
        payload["usage"] = {
            "input_tokens": max(0, prompt - cache_read - cache_write),
            "output_tokens": completion,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        }
        return JSONResponse(payload)

    return app


def make_ollama_app(fake: FakeLLM) -> FastAPI:
    """Ollama's native API: ``/api/chat`` keeps only the last ``num_ctx`` tokens of a prompt, silently."""
    app = FastAPI()

    @app.post("/api/show")
    async def show(request: Request) -> Any:
        body = await request.json()
        if fake.models is not None and body.get("model") not in fake.models:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        return {"model_info": {"general.architecture": "qwen2", "qwen2.context_length": fake.model_context}}

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await request.json()
        if fake.models is not None and body.get("model") not in fake.models:
            fake.log_rejected(body, dict(request.headers))
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or OLLAMA_DEFAULT_CTX)
        kept, budget = [], num_ctx * 4
        for message in reversed(body["messages"]):  # what does not fit is dropped from the start
            text = _content_text(message.get("content"))
            if budget <= 0:
                break
            kept.insert(0, {**message, "content": text[-budget:]})
            budget -= len(text)
        reply = fake.next_reply(
            {**body, "messages": kept}, dict(request.headers), int(options.get("num_predict", 0))
        )
        if reply.status != 200:
            return JSONResponse(
                {"error": reply.error_message}, status_code=reply.status, headers=reply.headers
            )
        return {
            "model": body.get("model"),
            "created_at": "2026-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": reply.text or ""},
            "done": True,
            "done_reason": "length" if reply.finish == "length" else "stop",
            "prompt_eval_count": _tokens(_prompt_text(kept)),
            "eval_count": _tokens(reply.text or ""),
        }

    return app
