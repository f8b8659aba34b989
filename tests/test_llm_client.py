"""The LLM client over real HTTP against local fake servers: retries, errors, cost, budget, cache."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.fixtures import (  # noqa: E402
    Endpoint,
    _anthropic_server,  # noqa: F401
    _openai_server,  # noqa: F401
    anthropic_fake,  # noqa: F401
    bus_of,
    fast_settings,
    isolated_env,  # noqa: F401
    llm_client,
    openai_fake,  # noqa: F401
    store,  # noqa: F401
)
from fakes.llm_servers import Reply, error  # noqa: E402
from fakes.server import free_port  # noqa: E402

from mlestar.brain.llm import LLMBrain  # noqa: E402
from mlestar.core.events import EventType  # noqa: E402
from mlestar.errors import BudgetExhausted, ConfigError, MlestarError  # noqa: E402
from mlestar.llm import (  # noqa: E402
    AuthenticationFailed,
    CacheMiss,
    LLMClient,
    LLMError,
    MissingAPIKey,
    ModelNotFound,
    RetriesExhausted,
    ServerUnreachable,
    parse_spec,
    usage_summary,
)
from mlestar.llm.prices import PriceTable  # noqa: E402
from mlestar.settings import Settings  # noqa: E402
from mlestar.store.db import RunStore  # noqa: E402

HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- retries ---------------------------------------------------------------------------------------
def test_429_then_success_respects_retry_after(openai_fake: Endpoint, store: RunStore) -> None:
    openai_fake.fake.queue(error(429, "Rate limit reached", **{"Retry-After": "7"}), "hello!")
    sleeps: list[float] = []
    client = llm_client(fast_settings(openai_fake.url, llm_backoff_max_s=30), store, sleep=sleeps.append)
    response = client.complete(HELLO, agent="summarizer")
    assert response.text == "hello!"
    assert openai_fake.fake.count == 2
    assert sleeps == [7.0]  # the server's Retry-After, not our own backoff
    calls = store.llm_calls()
    assert len(calls) == 1 and calls[0].error is None and calls[0].agent == "summarizer"


def test_500_storm_exhausts_retries_with_one_line_error(openai_fake: Endpoint, store: RunStore) -> None:
    openai_fake.fake.queue(*[error(500, "The server had an error while processing your request.")] * 5)
    client = llm_client(fast_settings(openai_fake.url, llm_max_retries=2), store)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted) as info:
        client.complete(HELLO, agent="coder")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "\n" not in message and "500" in message and "gave up after 2 retries" in message
    assert isinstance(info.value, MlestarError)
    assert openai_fake.fake.count == 3  # first try + 2 retries, then stop
    [call] = store.llm_calls()
    assert call.error and call.agent == "coder"


def test_backoff_grows_exponentially_without_retry_after(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(error(503), error(502), "ok")
    sleeps: list[float] = []
    client = llm_client(
        fast_settings(openai_fake.url, llm_backoff_base_s=1.0, llm_backoff_max_s=60), None, sleep=sleeps.append
    )
    assert client.complete(HELLO).text == "ok"
    assert len(sleeps) == 2 and 1.0 <= sleeps[0] <= 1.1 and 2.0 <= sleeps[1] <= 2.2


# -- errors the user must act on -------------------------------------------------------------------
def test_bad_key_is_one_line_and_never_echoes_the_key(
    openai_fake: Endpoint, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-wrong-0123456789abcdef"
    openai_fake.fake.api_key = "sk-right"
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", secret)
    client = llm_client(fast_settings(openai_fake.url), store)
    with pytest.raises(AuthenticationFailed) as info:
        client.complete(HELLO)
    message = str(info.value)
    assert "401" in message and "OPENAI_COMPATIBLE_API_KEY" in message and "\n" not in message
    assert secret not in message
    assert openai_fake.fake.count == 1  # a rejected key is not retried


def test_unknown_model(openai_fake: Endpoint) -> None:
    openai_fake.fake.models = {"fake"}
    client = llm_client(fast_settings(openai_fake.url, spec="openai-compatible:no-such-model"))
    with pytest.raises(ModelNotFound, match=r"'no-such-model' not found .*404"):
        client.complete(HELLO)
    assert openai_fake.fake.count == 1


def test_unreachable_server_fails_fast() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = llm_client(fast_settings(url, llm_max_retries=3, llm_backoff_base_s=1.0))
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match="connection refused") as info:
        client.complete(HELLO)
    assert time.monotonic() - started < 3  # no backoff for a server that is not there
    assert url.rstrip("/") in str(info.value)


def test_missing_key_names_the_variable() -> None:
    settings = Settings(llm="openai:gpt-4.1")
    with pytest.raises(MissingAPIKey, match="OPENAI_API_KEY"):
        LLMBrain.from_settings(settings)  # preflight: fails at start, not mid-run
    with pytest.raises(MissingAPIKey, match="ANTHROPIC_API_KEY"):
        LLMClient(Settings(llm="anthropic:claude-sonnet-4-5")).preflight()
    with pytest.raises(ConfigError, match="base URL"):
        LLMClient(Settings(llm="openai-compatible:x")).preflight()


def test_key_from_dotenv_does_not_enter_the_environment(
    openai_fake: Endpoint, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    (isolated_env / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\n", encoding="utf-8")
    openai_fake.fake.api_key = "sk-from-dotenv"
    client = llm_client(fast_settings(openai_fake.url, spec="openai:gpt-4.1"))
    assert client.complete(HELLO).text
    assert "OPENAI_API_KEY" not in os.environ  # scripts inherit os.environ; the key must not be there
    assert openai_fake.fake.requests[-1]["_headers"]["authorization"] == "Bearer sk-from-dotenv"


def test_bad_request_detail_is_redacted(openai_fake: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-live-abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    openai_fake.fake.queue(error(400, f"Invalid parameter for key {secret}: max_tokens too large"))
    client = llm_client(fast_settings(openai_fake.url, spec="openai:gpt-4.1"))
    with pytest.raises(LLMError) as info:
        client.complete(HELLO)
    assert "400" in str(info.value) and secret not in str(info.value) and "***" in str(info.value)


def test_no_key_in_the_run_store(
    openai_fake: Endpoint, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-proj-SECRET-4f7c2a9e1b"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    openai_fake.fake.api_key = secret
    settings = fast_settings(openai_fake.url, spec="openai:gpt-4.1")
    client = llm_client(settings, store)
    client.complete(HELLO, agent="summarizer")
    client.complete(HELLO, agent="summarizer")  # cached
    openai_fake.fake.queue(error(400, f"bad request from {secret}"), *[error(500, f"boom {secret}")] * 3)
    for messages in (ask("one"), ask("two")):
        with pytest.raises(LLMError):
            client.complete(messages, agent="coder")
    monkeypatch.setenv("OPENAI_API_KEY", secret + "-wrong")
    with pytest.raises(AuthenticationFailed):
        llm_client(settings, store).complete(ask("three"))
    store.set_meta("config", settings.run_values())
    store.close()
    for path in store.run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path.name


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK's notice about the model's end of life
def test_anthropic_messages_usage_and_retry(
    anthropic_fake: Endpoint, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    anthropic_fake.fake.api_key = "sk-ant-test"
    anthropic_fake.fake.queue(
        Reply(status=529, error_message="Overloaded"), Reply(text="Hi there.", usage=(1000, 100))
    )
    client = llm_client(fast_settings(anthropic_fake.url + "/v1", spec="anthropic:claude-sonnet-4-5"), store)
    response = client.complete(HELLO, agent="planner")
    assert response.text == "Hi there."
    assert (response.prompt_tokens, response.completion_tokens) == (1000, 100)
    assert response.cost_usd == pytest.approx((1000 * 3 + 100 * 15) / 1e6)
    body = anthropic_fake.fake.requests[-1]
    # The system prompt travels in Anthropic's own field, marked for its prompt cache.
    assert body["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    headers = body["_headers"]
    assert "sk-ant-test" in (
        headers.get("x-api-key", ""),
        headers.get("authorization", "").removeprefix("Bearer "),
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    with pytest.raises(AuthenticationFailed, match="ANTHROPIC_API_KEY"):
        llm_client(fast_settings(anthropic_fake.url, spec="anthropic:claude-sonnet-4-5")).complete(ask("x"))


def test_openai_reasoning_models_get_their_parameters(
    openai_fake: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    llm_client(fast_settings(openai_fake.url, spec="openai:o3", llm_reasoning_tokens=900)).complete(
        HELLO, max_tokens=100
    )
    body = openai_fake.fake.requests[-1]
    # The answer's allowance plus the thinking allowance of a reasoning model.
    assert body["max_completion_tokens"] == 1000 and "temperature" not in body and "max_tokens" not in body
    assert "reasoning_effort" not in body  # the provider's default unless the setting asks
    llm_client(fast_settings(openai_fake.url, spec="openai:o3", llm_reasoning_effort="high")).complete(HELLO)
    assert openai_fake.fake.requests[-1]["reasoning_effort"] == "high"
    llm_client(fast_settings(openai_fake.url, spec="openai:gpt-4.1")).complete(
        HELLO, max_tokens=100, temperature=0.2
    )
    body = openai_fake.fake.requests[-1]
    assert body["max_tokens"] == 100 and body["temperature"] == 0.2


# -- usage, cost and budget ------------------------------------------------------------------------
def test_cost_accounting_adds_up_per_agent_and_run(
    openai_fake: Endpoint, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    openai_fake.fake.queue(
        Reply("a", usage=(1000, 500)),
        Reply("b", usage=(2000, 100)),
        Reply("c", usage=(400, 400)),
        Reply("d" * 400, usage=None),
    )
    client = llm_client(fast_settings(openai_fake.url, spec="openai:gpt-4.1"), store)
    client.complete(ask("1"), agent="coder")
    client.complete(ask("2"), agent="coder")
    client.complete(ask("3"), agent="planner")
    estimated = client.complete(ask("4" * 40), agent="planner")
    client.complete(ask("1"), agent="coder")  # cache hit: free
    assert (estimated.prompt_tokens, estimated.completion_tokens) == (10, 100)  # ~4 chars per token

    price_in, price_out = 2.0 / 1e6, 8.0 / 1e6  # gpt-4.1
    summary = usage_summary(store)
    coder, planner = summary.per_agent["coder"], summary.per_agent["planner"]
    assert (coder.calls, coder.cached_calls, coder.prompt_tokens, coder.completion_tokens) == (
        3,
        1,
        3000,
        600,
    )
    assert coder.cost_usd == pytest.approx(3000 * price_in + 600 * price_out)
    assert planner.cost_usd == pytest.approx(410 * price_in + 500 * price_out)
    assert summary.total.cost_usd == pytest.approx(coder.cost_usd + planner.cost_usd)
    assert summary.total.total_tokens == coder.total_tokens + planner.total_tokens == 4510
    assert summary.per_model["openai:gpt-4.1"].calls == 5
    events = store.events(types=[EventType.LLM_CALL])
    assert len(events) == 5 and sum(e.data["cost_usd"] or 0 for e in events) == pytest.approx(
        summary.total.cost_usd
    )
    assert [e.data["cached"] for e in events] == [False, False, False, False, True]
    assert client.budget.spent_usd == pytest.approx(summary.total.cost_usd)


def test_unknown_model_counts_tokens_only_and_price_file_extends(
    openai_fake: Endpoint, store: RunStore, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    openai_fake.fake.queue(Reply("a", usage=(100, 50)), Reply("b", usage=(1_000_000, 1_000_000)))
    llm_client(fast_settings(openai_fake.url), store).complete(ask("1"))
    prices = isolated_env / "prices.yaml"
    prices.write_text("fake: {input: 0.5, output: 1.5}\ngpt-4.1: [1, 2]\n", encoding="utf-8")
    monkeypatch.setenv("MLESTAR_PRICES", str(prices))
    response = llm_client(fast_settings(openai_fake.url), store).complete(ask("2"))
    assert response.cost_usd == pytest.approx(2.0)
    first, second = store.llm_calls()
    assert first.cost_usd is None and first.prompt_tokens == 100
    summary = usage_summary(store)
    assert summary.total.unpriced_calls == 1 and summary.total.cost_usd == pytest.approx(2.0)
    table = PriceTable.load(Settings.load().prices)
    assert table.lookup(parse_spec("openai:gpt-4.1")).input == 1.0  # user prices override built-ins
    assert table.lookup(parse_spec("openai:gpt-4o-2024-08-06")).input == 2.5  # dated snapshot -> base price
    assert table.lookup(parse_spec("openai:gpt-4o-mini")).input == 0.15
    assert table.lookup(parse_spec("openrouter:anthropic/claude-sonnet-4.5")).output == 15.0
    assert table.lookup(parse_spec("ollama:llama3")) is None


def test_budget_stops_before_the_call(
    openai_fake: Endpoint, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    openai_fake.fake.queue(Reply("first", usage=(1000, 500)))  # $0.006 with gpt-4.1
    settings = fast_settings(openai_fake.url, spec="openai:gpt-4.1", budget_usd=0.005)
    client = llm_client(settings, store)
    client.complete(ask("1"), agent="coder")
    with pytest.raises(BudgetExhausted, match=r"\$0\.0060 of \$0\.0050"):
        client.complete(ask("2"), agent="coder")
    assert openai_fake.fake.count == 1  # the refused call never reached the server
    assert client.complete(ask("1"), agent="coder").cached  # replays stay free and allowed
    assert len(store.events(types=[EventType.BUDGET])) == 1
    # A resumed run remembers what it spent.
    with pytest.raises(BudgetExhausted):
        llm_client(settings, RunStore(store.run_dir)).complete(ask("3"))
    assert openai_fake.fake.count == 1


def test_token_budget(openai_fake: Endpoint) -> None:
    openai_fake.fake.queue(Reply("a", usage=(60, 50)))
    client = llm_client(fast_settings(openai_fake.url, budget_tokens=100, budget_reserve_share=0.0))
    client.complete(ask("1"))
    with pytest.raises(BudgetExhausted, match="110 of 100 tokens"):
        client.complete(ask("2"))


def test_budget_reserve_lets_the_submission_be_written(openai_fake: Endpoint, store: RunStore) -> None:
    openai_fake.fake.queue(Reply("a", usage=(800, 50)), Reply("b", usage=(100, 100)))
    settings = fast_settings(openai_fake.url, budget_tokens=1000, budget_reserve_share=0.2)
    client = llm_client(settings, store)
    client.complete(ask("1"), agent="coder")  # 850 tokens: past the 800 ordinary calls may use
    with pytest.raises(BudgetExhausted, match="kept for the submission"):
        client.complete(ask("2"), agent="coder")
    client.complete(ask("3"), agent="submission", use_reserve=True)  # 1050 tokens now
    with pytest.raises(BudgetExhausted, match="1050 of 1000 tokens$"):
        client.complete(ask("4"), agent="submission", use_reserve=True)
    assert openai_fake.fake.count == 2
    assert len(store.events(types=[EventType.BUDGET])) == 2


# -- cache and replay ------------------------------------------------------------------------------
def test_repeated_request_is_served_from_the_cache(openai_fake: Endpoint, store: RunStore) -> None:
    client = llm_client(fast_settings(openai_fake.url), store)
    first = client.complete(HELLO, agent="summarizer")
    second = client.complete(HELLO, agent="summarizer")
    assert openai_fake.fake.count == 1  # no second HTTP request
    assert second.text == first.text and second.cached and second.cost_usd == 0.0
    client.complete(HELLO, agent="summarizer", temperature=0.0)  # other parameters: a new request
    assert openai_fake.fake.count == 2
    assert [c.cached for c in store.llm_calls()] == [False, True, False]


def test_resumed_run_replays_without_the_server(openai_fake: Endpoint, store: RunStore) -> None:
    answers = [llm_client(fast_settings(openai_fake.url), store).complete(ask(str(i))).text for i in range(3)]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    replay = llm_client(fast_settings(dead, llm_cache_mode="replay"), RunStore(store.run_dir))
    assert [replay.complete(ask(str(i))).text for i in range(3)] == answers
    with pytest.raises(CacheMiss, match="replay mode"):
        replay.complete(ask("new"))
    # Resume in normal mode: finished calls are free, only new ones go out.
    resumed = llm_client(fast_settings(openai_fake.url), RunStore(store.run_dir))
    before = openai_fake.fake.count
    assert resumed.complete(ask("0")).cached and openai_fake.fake.count == before


def test_cross_run_cache_file(openai_fake: Endpoint, tmp_path: Path) -> None:
    shared = tmp_path / "cache" / "llm.sqlite"
    one = RunStore.create(tmp_path / "runs" / "a")
    two = RunStore.create(tmp_path / "runs" / "b")
    text = llm_client(fast_settings(openai_fake.url, llm_cache_file=shared), one).complete(HELLO).text
    again = llm_client(fast_settings(openai_fake.url, llm_cache_file=shared), two).complete(HELLO)
    assert again.cached and again.text == text and openai_fake.fake.count == 1
    assert two.cache_get(again.request_hash) is not None  # copied into the run for its own replays


def test_seed_salt_separates_tracks(openai_fake: Endpoint, store: RunStore) -> None:
    client = llm_client(fast_settings(openai_fake.url), store)
    client.complete(HELLO, salt="seed=0")
    client.complete(HELLO, salt="seed=1")
    client.complete(HELLO, salt="seed=0")
    assert openai_fake.fake.count == 2


# -- settings and models ---------------------------------------------------------------------------
def test_specs_and_agent_overrides(openai_fake: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = parse_spec("ollama:qwen2.5-coder:32b")
    assert (spec.provider, spec.model, spec.info.base_url) == (
        "ollama",
        "qwen2.5-coder:32b",
        "http://localhost:11434/v1",
    )
    assert parse_spec("gemini:gemini-2.5-pro").info.base_url.startswith(
        "https://generativelanguage.googleapis.com"
    )
    for bad in ("gpt-4.1", "openai:"):
        with pytest.raises(ConfigError):
            Settings.load(llm=bad)
    with pytest.raises(ConfigError, match="unknown LLM provider"):
        LLMClient(Settings.load(llm="nope:model")).preflight()
    monkeypatch.setenv("MLESTAR_LLM", "vllm:my-model")
    monkeypatch.setenv("MLESTAR_BUDGET_USD", "2.5")
    monkeypatch.setenv("MLESTAR_LLM_AGENT_MODELS", '{"coder": "openai-compatible:big"}')
    settings = Settings.load()
    assert (settings.llm, settings.budget_usd, settings.llm_spec_for("coder")) == (
        "vllm:my-model",
        2.5,
        "openai-compatible:big",
    )
    monkeypatch.delenv("MLESTAR_BUDGET_USD")  # these models have no price: no dollar budget for them

    client = llm_client(fast_settings(openai_fake.url, llm_agent_models={"coder": "openai-compatible:big"}))
    client.complete(ask("a"), agent="coder")
    client.complete(ask("a"), agent="planner")
    assert [r["model"] for r in openai_fake.fake.requests] == ["big", "fake"]


def test_parallel_calls_are_all_recorded(openai_fake: Endpoint, store: RunStore) -> None:
    client = llm_client(fast_settings(openai_fake.url), store)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            client.complete(ask(f"question {i}"), agent=f"track{i % 2}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(store.llm_calls()) == 8 and openai_fake.fake.count == 8
    assert usage_summary(store).per_agent["track0"].calls == 4


def test_events_carry_the_pipeline_context_and_models_are_listed(openai_fake: Endpoint, store: RunStore) -> None:
    bus = bus_of(store)
    assert bus is not None
    seen: list[EventType] = []
    bus.subscribe(lambda event: seen.append(event.type))
    client = LLMClient(fast_settings(openai_fake.url), store, bus)
    with bus.scope(phase="phase2", track=1, node_id=7, step="p2/t1/o0/ablation/code#abc"):
        client.complete(ask("inside"), agent="coder")
    client.complete(ask("outside"), agent="coder")
    inside, outside = store.events(types=[EventType.LLM_CALL])
    assert (inside.phase, inside.track, inside.node_id) == ("phase2", 1, 7)
    assert inside.data["step"] == "p2/t1/o0/ablation/code#abc"
    assert (outside.phase, outside.track) == (None, None)
    assert seen == [EventType.LLM_CALL, EventType.LLM_CALL]  # subscribers see what the store records

    import openai

    openai_fake.fake.models = {"fake", "fake-large"}
    listed = openai.OpenAI(api_key="x", base_url=openai_fake.url).models.list()
    assert sorted(m.id for m in listed.data) == ["fake", "fake-large"]
