"""CLI commands: ``mlestar llm check`` (one tiny request) and ``mlestar llm prices``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

llm_app = typer.Typer(help="Check an LLM endpoint and show the price table.", no_args_is_help=True)
console = Console()


@llm_app.command("check")
def check(
    llm: str = typer.Option(
        ..., "--llm", help="provider:model, e.g. openai:gpt-4.1 or ollama:qwen2.5-coder:32b"
    ),
    base_url: str | None = typer.Option(None, "--llm-base-url", help="override the provider's endpoint"),
    timeout: float = typer.Option(60.0, "--timeout", help="request timeout in seconds"),
) -> None:
    """Send one tiny request and print the model, latency and tokens."""
    from mlestar.llm import LLMClient
    from mlestar.settings import Settings

    settings = Settings.load(
        llm=llm, llm_base_url=base_url, llm_timeout_s=timeout, llm_max_retries=1, llm_cache_mode="off"
    )
    client = LLMClient(settings)
    response = client.complete(
        [{"role": "user", "content": "Reply with the single word: pong"}],
        agent="check",
        temperature=0.0,
        max_tokens=16,
    )
    backend = client.backend(client.spec_for("check"))
    reply = " ".join(response.text.split())[:80] or "(empty)"
    cost = "unknown price" if response.cost_usd is None else f"${response.cost_usd:.6f}"
    console.print(f"[green]ok[/] {response.spec} at {backend.base_url}", highlight=False)
    console.print(
        f"latency {response.latency_s:.2f}s, tokens {response.prompt_tokens} in /"
        f" {response.completion_tokens} out, {cost}; reply: {reply}",
        highlight=False,
    )


@llm_app.command("prices")
def prices(
    prices_file: Path | None = typer.Option(
        None, "--prices-file", help="YAML/JSON file of extra prices (default: env MLESTAR_PRICES)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """The price table, USD per 1M tokens."""
    from mlestar.llm import PriceTable
    from mlestar.settings import Settings

    table = PriceTable.load(prices_file or Settings.load().prices)
    rows = sorted(table.prices.items())
    if as_json:
        data = {name: {"input": p.input, "output": p.output, "user": name in table.user} for name, p in rows}
        typer.echo(json.dumps(data, indent=2))
        return
    view = Table(title="LLM prices (USD per 1M tokens)")
    view.add_column("model")
    view.add_column("input", justify="right")
    view.add_column("output", justify="right")
    view.add_column("from")
    for name, price in rows:
        view.add_row(
            name, f"{price.input:g}", f"{price.output:g}", "user" if name in table.user else "built-in"
        )
    console.print(view)
    console.print(
        "Models not listed (and local servers) count tokens only. Add prices with MLESTAR_PRICES=file.yaml."
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.add_typer(llm_app, name="llm")
