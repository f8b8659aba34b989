"""What an LLM run costs at the paper's defaults, from measured token counts.

Runs ``mlestar run --llm openai-compatible:fake`` at M=4, L=2, T=4, K=4, R=5 (``--quick``: M=2,
L=2, T=1, K=2, R=1) against the scripted fake OpenAI-compatible server of the test suite (real
HTTP, realistic prompt sizes: the prompts are mlestar's own, with the task's data profile and the
scripts), then multiplies the measured prompt and completion tokens by the price table for a few
hosted models. The fake server reports prompt-cache hits the way OpenAI does (the prefix shared
with an earlier request, in 128-token steps from 1,024 tokens), so the run also measures the share
of prompt tokens a provider's prompt cache would serve.

    python benchmarks/llm_cost.py [--quick] [--out .bench/llm-cost]

The fake model's answers are shorter than a real model's code, so completion tokens are a lower
bound; prompt tokens (most of the bill) are what mlestar really sends. Costs count cached tokens
at the full input price (an upper bound: providers bill them at 10-50%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakes.competition import make_clean_competition  # noqa: E402
from fakes.llm_servers import FakeLLM, make_openai_app  # noqa: E402
from fakes.server import serve  # noqa: E402

from mlestar.llm.prices import PriceTable  # noqa: E402
from mlestar.llm.providers import parse_spec  # noqa: E402
from mlestar.llm.usage import usage_summary  # noqa: E402
from mlestar.store import RunStore  # noqa: E402

PRICED_MODELS = ("openai:gpt-4.1", "openai:gpt-4.1-mini", "anthropic:claude-sonnet-4-5", "gemini:gemini-2.5-pro")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "llm-cost")
    parser.add_argument(
        "--quick", action="store_true", help="M=2 L=2 T=1 K=2 R=1 instead of the paper's loops"
    )
    args = parser.parse_args()
    loops = ["-M", "2", "-L", "2", "-T", "1", "-K", "2", "-R", "1"] if args.quick else [
        "-M", "4", "-L", "2", "-T", "4", "-K", "4", "-R", "5"]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mlestar-llm-cost-"))
    competition = make_clean_competition(work / "toy", kind="binary", n_rows=300)
    with serve(make_openai_app(FakeLLM())) as server:
        env = {**os.environ, "OPENAI_COMPATIBLE_API_KEY": "sk-fake", "MLESTAR_LLM_BACKOFF_BASE_S": "0.05"}
        done = subprocess.run(
            [sys.executable, "-m", "mlestar", "run", str(competition), "--llm", "openai-compatible:fake",
             "--llm-base-url", server.url + "/v1", "--runs-dir", str(work / "runs"), "--run-id", "cost",
             "--search", "off", *loops],
            env=env, capture_output=True, text=True,
        )
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    with RunStore(work / "runs" / "cost") as store:
        usage = usage_summary(store)
    prices = PriceTable.load()
    rows = []
    for spec in PRICED_MODELS:
        cost = prices.cost(parse_spec(spec), usage.total.prompt_tokens, usage.total.completion_tokens)
        rows.append({"model": spec, "cost_usd": None if cost is None else round(cost, 4)})
    result = {
        "calls": usage.total.calls,
        "prompt_tokens": usage.total.prompt_tokens,
        "completion_tokens": usage.total.completion_tokens,
        "cached_prompt_tokens": usage.total.cached_prompt_tokens,
        "cached_share": round(usage.total.cached_share, 4),
        "loops": " ".join(loops),
        "per_agent": {agent: {"calls": t.calls, "prompt_tokens": t.prompt_tokens,
                              "completion_tokens": t.completion_tokens} for agent, t in usage.per_agent.items()},
        "estimated_cost": rows,
    }
    (args.out / "llm_cost.json").write_text(json.dumps(result, indent=2))
    print(f"{usage.total.calls} LLM calls, {usage.total.prompt_tokens:,} prompt + "
          f"{usage.total.completion_tokens:,} completion tokens at {' '.join(loops)}; "
          f"{usage.total.cached_share:.0%} of the prompt tokens served from the provider's prompt cache")
    for agent, totals in sorted(usage.per_agent.items(), key=lambda kv: -kv[1].prompt_tokens):
        print(f"  {agent:22s} {totals.calls:4d} calls {totals.prompt_tokens:9,d} in {totals.completion_tokens:8,d} out")
    for row in rows:
        cost = "no price" if row["cost_usd"] is None else f"${row['cost_usd']:.2f}"
        print(f"  {row['model']:32s} {cost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
