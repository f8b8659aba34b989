"""The LLM client against what real providers do, over real HTTP: rate limits and their waits,
requests too long for the window or the answer cap, answers cut off, empty, refused or wrapped in
thinking, local servers' context windows, prompt caching, budgets without prices."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.fixtures import (  # noqa: E402
    Endpoint,
    _anthropic_server,  # noqa: F401
    _ollama_server,  # noqa: F401
    _openai_server,  # noqa: F401
    anthropic_fake,  # noqa: F401
    fast_settings,
    isolated_env,  # noqa: F401
    llm_client,
    ollama_fake,  # noqa: F401
    openai_fake,  # noqa: F401
    store,  # noqa: F401
)
from fakes.llm_servers import DECOY, Reply, error  # noqa: E402

from mlestar.core.events import EventType  # noqa: E402
from mlestar.errors import ConfigError  # noqa: E402
from mlestar.llm import RetriesExhausted, usage_summary  # noqa: E402
from mlestar.llm.client import CONTINUE_PROMPT, join_continuation  # noqa: E402
from mlestar.llm.errors import ContextTooLong, NoAnswer, OutputLimitTooHigh, RequestRejected  # noqa: E402
from mlestar.llm.providers import parse_spec, rejection  # noqa: E402
from mlestar.llm.reasoning import is_reasoning_model, strip_reasoning  # noqa: E402
from mlestar.store.db import RunStore  # noqa: E402

ANSWER = "```python\nimport os\nprint(os.sep)\n```\n"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


def answering(text: str):  # noqa: ANN201 - a responder for the fake
    return lambda messages: text


# -- rate limits and server errors -------------------------------------------------------------------
def test_rate_limit_waits_come_from_the_server_in_any_of_its_forms(openai_fake: Endpoint) -> None:
    gemini = Reply(
        status=429,
        error_body=[
            {
                "error": {
                    "code": 429,
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}],
                }
            }
        ],
    )
    openai_fake.fake.queue(error(429, "slow down", **{"retry-after-ms": "1500"}), gemini, error(429), "ok")
    sleeps: list[float] = []
    client = llm_client(
        fast_settings(openai_fake.url, llm_backoff_base_s=1.0, llm_backoff_max_s=60), sleep=sleeps.append
    )
    assert client.complete(ask("hi")).text == "ok"
    # retry-after-ms, Gemini's retryDelay in the body, then our own backoff (nothing said).
    assert sleeps[:2] == [1.5, 37.0] and 4.0 <= sleeps[2] <= 4.5


def test_a_rate_limit_storm_is_waited_out_for_minutes_not_retries(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(*[error(429, "Too many requests")] * 9, "finally")
    sleeps: list[float] = []
    settings = fast_settings(
        openai_fake.url,
        llm_max_retries=2,
        llm_backoff_base_s=1.0,
        llm_backoff_max_s=60,
        llm_rate_limit_wait_s=300,
    )
    assert llm_client(settings, sleep=sleeps.append).complete(ask("x")).text == "finally"
    assert len(sleeps) == 9 > settings.llm_max_retries  # rate limits are waited out, not counted as retries
    assert max(sleeps) <= 60 and 150 < sum(sleeps) <= 300

    openai_fake.fake.queue(*[error(429, "Too many requests", **{"Retry-After": "40"})] * 20)
    sleeps.clear()
    with pytest.raises(RetriesExhausted, match=r"still rate limited after 100s"):
        llm_client(fast_settings(openai_fake.url, llm_rate_limit_wait_s=100), sleep=sleeps.append).complete(
            ask("y")
        )
    assert sleeps == [40.0, 40.0, 20.0]  # the server's wait, up to the patience left


# -- requests the server refuses -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "kind", "limit", "prompt"),
    [
        (
            "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens "
            "(7000 in the messages, 2000 in the completion). Please reduce the length of the messages.",
            ContextTooLong,
            8192,
            7000,
        ),
        (
            "'max_tokens' or 'max_completion_tokens' is too large: 2000. This model's maximum context length "
            "is 4096 tokens and your request has 3000 input tokens (2000 > 4096 - 3000).",
            ContextTooLong,
            4096,
            3000,
        ),
        ("prompt is too long: 210000 tokens > 200000 maximum", ContextTooLong, 200000, 210000),
        (
            "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, "
            "decrease input length",
            ContextTooLong,
            200000,
            198000,
        ),
        (
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
            ContextTooLong,
            1048576,
            1200000,
        ),
        (
            "max_tokens is too large: 100000. This model supports at most 16384 completion tokens, "
            "whereas you provided 100000.",
            OutputLimitTooHigh,
            16384,
            None,
        ),
        (
            "max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for claude",
            OutputLimitTooHigh,
            64000,
            None,
        ),
        ("Your request was flagged by our content policy.", RequestRejected, None, None),
    ],
)
def test_refusals_are_read_for_what_can_be_done_about_them(message, kind, limit, prompt) -> None:
    found = rejection(parse_spec("openai:gpt-4.1"), 400, message)
    assert type(found) is kind and "\n" not in str(found)
    if kind is ContextTooLong:
        assert (found.limit_tokens, found.prompt_tokens) == (limit, prompt)
    elif kind is OutputLimitTooHigh:
        assert found.cap == limit


def test_an_answer_cap_above_the_models_is_lowered_and_remembered(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(
        error(400, "max_tokens is too large: 8192. This model supports at most 4096 completion tokens."),
        "a",
        "b",
    )
    client = llm_client(fast_settings(openai_fake.url))
    assert client.complete(ask("1"), max_tokens=8192).text == "a"
    assert client.complete(ask("2"), max_tokens=8192).text == "b"
    assert [r["max_tokens"] for r in openai_fake.fake.requests] == [8192, 4096, 4096]


def test_a_context_too_short_for_the_answer_asks_for_a_shorter_answer(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(
        error(
            400,
            "This model's maximum context length is 6000 tokens. However, you requested 10192 tokens "
            "(2000 in the messages, 8192 in the completion).",
        ),
        "fits",
    )
    client = llm_client(fast_settings(openai_fake.url))
    assert client.complete(ask("x"), max_tokens=8192).text == "fits"
    assert openai_fake.fake.requests[1]["max_tokens"] == 6000 - 2000 - 16
    assert client.context_window(client.spec_for("default")) == 6000  # learned for the next prompts
    # A prompt that does not fit at all is not sent: the caller must shorten it.
    with pytest.raises(ContextTooLong) as info:
        client.complete(ask("x" * 30_000))
    assert info.value.limit_tokens == 6000 and openai_fake.fake.count == 2


def test_vllm_window_comes_from_its_model_list(openai_fake: Endpoint) -> None:
    openai_fake.fake.max_model_len = 4000  # prompt + max_tokens above this is a 400, as vLLM does
    client = llm_client(fast_settings(openai_fake.url, spec="vllm:fake"))
    assert client.context_window(client.spec_for("coder")) == 4000
    assert client.complete(ask("p" * 4000), max_tokens=8192).text
    assert openai_fake.fake.served == ["reply"]  # no 400: the answer's allowance was fitted to the window
    assert client.prompt_budget("coder", 8192) == 4000 - 1024


# -- answers that are cut off, empty, refused or wrapped in thinking -------------------------------
def test_a_cut_off_answer_is_continued_where_it_stopped(openai_fake: Endpoint, store: RunStore) -> None:
    full = "Here it is:\n\n```python\n" + "".join(f"x{i} = {i}\n" for i in range(60)) + "```\n"
    openai_fake.fake.responder = answering(full)
    openai_fake.fake.faults = {1: "cut"}
    client = llm_client(fast_settings(openai_fake.url), store)
    response = client.complete(ask("write it"), agent="coder")
    assert response.text == full
    first, second = openai_fake.fake.requests
    assert second["messages"][-1]["content"] == CONTINUE_PROMPT
    assert second["messages"][-2]["role"] == "assistant" and full.startswith(
        second["messages"][-2]["content"]
    )
    [event] = store.events(types=[EventType.LLM_CALL])
    assert event.data["continuations"] == 1 and event.data["requests"] == 2
    assert response.completion_tokens == sum(
        len(t) // 4 for t in (full[: len(full) // 2], full[len(full) // 2 :])
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_claude_continues_a_prefilled_answer(
    anthropic_fake: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-x")
    full = "The block:\n```python\n" + "y = 1\n" * 40 + "```\n"
    anthropic_fake.fake.responder = answering(full)
    anthropic_fake.fake.faults = {1: "cut"}
    client = llm_client(fast_settings(anthropic_fake.url, spec="anthropic:claude-sonnet-4-5"))
    assert client.complete(ask("go")).text == full
    assert anthropic_fake.fake.requests[1]["messages"][-1]["role"] == "assistant"  # prefill, no new turn


def test_joining_a_continuation_drops_a_restarted_fence_and_nothing_else() -> None:
    cut = "Sure:\n```python\nimport os\nvalue = compute_something(alpha=1)\n"
    assert join_continuation(cut, "```python\nprint(value)\n```") == cut + "print(value)\n```"
    # Code repeats itself: a line like the last one is kept.
    repeated = "value = compute_something(alpha=1)\nprint(value)\n"
    assert join_continuation(cut, repeated) == cut + repeated
    assert join_continuation("plain text, ", "```python\nx = 1\n```") == "plain text, ```python\nx = 1\n```"


@pytest.mark.parametrize("fault", ["empty", "null", "refusal"])
def test_empty_and_refused_answers_are_asked_again(openai_fake: Endpoint, fault: str) -> None:
    openai_fake.fake.responder = answering(ANSWER)
    openai_fake.fake.faults = {1: fault}
    assert llm_client(fast_settings(openai_fake.url)).complete(ask("x")).text == ANSWER
    assert openai_fake.fake.served == [fault, "queued"]


def test_an_answer_that_never_comes_fails_the_call_not_the_parser(
    openai_fake: Endpoint, store: RunStore
) -> None:
    openai_fake.fake.queue(*[Reply(None)] * 3)
    with pytest.raises(NoAnswer, match="empty answer 3 times"):
        llm_client(fast_settings(openai_fake.url, llm_max_retries=2), store).complete(
            ask("x"), agent="planner"
        )
    assert usage_summary(store).total.failed_calls == 1


def test_thinking_is_stripped_before_anyone_parses_the_answer(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(
        Reply(DECOY + ANSWER),
        Reply(ANSWER, reasoning="thinking sent apart, as DeepSeek does"),
        Reply("<think>I keep thinking and never get to the answer```python\nbad()\n```"),
        Reply("still thinking...</think>\n\nNO_NEW_PLAN"),  # the chat template opened the block
    )
    client = llm_client(fast_settings(openai_fake.url))
    assert client.complete(ask("1")).text == ANSWER
    assert client.complete(ask("2")).text == ANSWER
    assert client.complete(ask("3")).text == "NO_NEW_PLAN\n"  # only thinking counts as empty: asked again


def test_thinking_that_fills_the_allowance_gets_more_room(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(Reply("<think>" + "hmm " * 50, finish="length"), ANSWER)
    client = llm_client(
        fast_settings(openai_fake.url, spec="openai-compatible:qwen3-32b", llm_reasoning_tokens=1000)
    )
    assert client.complete(ask("x"), max_tokens=2000).text == ANSWER
    assert [r["max_tokens"] for r in openai_fake.fake.requests] == [3000, 6000]


def test_reasoning_models_and_the_thinking_they_write() -> None:
    for name in (
        "o3",
        "gpt-5-mini",
        "gemini-2.5-pro",
        "deepseek-r1:32b",
        "deepseek/deepseek-r1",
        "qwen3:30b",
        "qwq",
    ):
        assert is_reasoning_model(name), name
    for name in ("gpt-4.1", "claude-sonnet-4-5", "qwen2.5-coder:32b", "llama3.3"):
        assert not is_reasoning_model(name), name
    assert strip_reasoning("<thinking>x</thinking>answer") == "answer\n"
    assert strip_reasoning("no tags < here") == "no tags < here"


# -- local servers ---------------------------------------------------------------------------------------
def test_ollama_gets_its_context_size_with_every_request(ollama_fake: Endpoint) -> None:
    ollama_fake.fake.model_context = 131_072
    long_prompt = "Target column(s): churned\n" + "filler line of the data profile\n" * 600  # ~5k tokens
    seen: list[str] = []
    ollama_fake.fake.responder = lambda messages: seen.append(messages[-1]["content"]) or "ok"
    client = llm_client(fast_settings(ollama_fake.url, spec="ollama:qwen2.5-coder:32b"))
    assert client.complete(ask(long_prompt)).text == "ok"
    body = ollama_fake.fake.requests[-1]
    assert body["options"]["num_ctx"] == 32_768 and body["options"]["num_predict"] > 0
    assert seen[-1].startswith("Target column(s)")  # the whole prompt arrived; nothing was cut off
    ollama_fake.fake.model_context = 4096  # a model trained on less: its own length
    client = llm_client(fast_settings(ollama_fake.url, spec="ollama:small"))
    with pytest.raises(ContextTooLong, match="4096"):
        client.complete(ask(long_prompt))  # does not fit: not sent, so not silently truncated
    assert llm_client(
        fast_settings(ollama_fake.url, spec="ollama:x", llm_context_tokens=8192)
    ).context_window(parse_spec("ollama:x")) == min(8192, 4096)


def test_without_num_ctx_ollama_would_drop_the_start_of_the_prompt(ollama_fake: Endpoint) -> None:
    import httpx

    seen: list[str] = []
    ollama_fake.fake.responder = lambda messages: seen.append("".join(m["content"] for m in messages)) or "ok"
    prompt = "RULES AT THE START\n" + "x" * 20_000
    httpx.post(
        f"{ollama_fake.url}/api/chat",
        json={"model": "m", "messages": [{"role": "user", "content": prompt}], "stream": False},
    )
    assert "RULES AT THE START" not in seen[-1]  # the fake behaves like Ollama's default context


# -- prompt caching and budgets ----------------------------------------------------------------------------
def test_prompt_cache_hits_are_counted(openai_fake: Endpoint, store: RunStore) -> None:
    shared = "The competition and its rules. " * 400  # ~3k tokens, the same in every request
    client = llm_client(fast_settings(openai_fake.url), store)
    openai_fake.fake.responder = answering("ok")
    for role in ("planner", "coder"):
        client.complete(
            [{"role": "system", "content": shared}, {"role": "user", "content": f"[{role}]"}], agent=role
        )
    first, second = store.llm_calls()
    assert first.cached_prompt_tokens == 0 and second.cached_prompt_tokens >= 2048
    total = usage_summary(store).total
    assert 0.4 < total.cached_share < 0.6


def test_a_dollar_budget_needs_prices(
    openai_fake: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match=r"no price is known for openai-compatible:fake.*--budget-tokens"):
        llm_client(fast_settings(openai_fake.url, budget_usd=1.0))
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake: {input: 1.0, output: 2.0}\n")
    monkeypatch.setenv("MLESTAR_PRICES", str(prices))
    assert llm_client(fast_settings(openai_fake.url, budget_usd=1.0)).budget.budget_usd == 1.0
    monkeypatch.delenv("MLESTAR_PRICES")
    assert llm_client(fast_settings(openai_fake.url, budget_tokens=1000)).budget.budget_tokens == 1000
