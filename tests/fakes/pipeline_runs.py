"""Whole LLM-brain runs of the pipeline against a fake server, and what they selected.

``llm_run`` runs the four phases on a tiny competition with a fake OpenAI-compatible (or
Anthropic) server whose answers come from ``responder`` (the scripted model, or a recorded
conversation), with ``faults`` injected by request number. ``selections`` says what the run chose
at every point, so two runs can be compared: which scripts ran (agent, label, outcome), which
solution was best and which one the submission came from.

Run as a script to record a new conversation with the scripted model::

    python tests/fakes/pipeline_runs.py OUT_FOLDER
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.competition import make_clean_competition  # noqa: E402
from fakes.llm_servers import FakeLLM, make_anthropic_app, make_openai_app  # noqa: E402
from fakes.server import serve  # noqa: E402
from mlestar.store import NodeStatus, RunStore  # noqa: E402

# Small loops (M=2, L=2, T=1, K=1, R=1): every phase and both tracks, in well under a minute.
LOOPS: dict[str, Any] = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 1,
    "ensemble_rounds": 1,
    "search": "off",
    "workers": 2,
    "threads_per_script": 1,
}
# Process settings: retries wait milliseconds, not seconds.
FAST_RETRIES = {
    "MLESTAR_LLM_BACKOFF_BASE_S": "0.01",
    "MLESTAR_LLM_BACKOFF_MAX_S": "0.05",
    "MLESTAR_LLM_RATE_LIMIT_WAIT_S": "5",
}


@dataclass
class LLMRun:
    result: Any  # mlestar.RunResult
    fake: FakeLLM
    competition: Path


def llm_run(
    root: Path,
    *,
    responder: Callable[[list[dict[str, Any]]], str] | None = None,
    faults: dict[int, str] | None = None,
    provider: str = "openai-compatible",
    kind: str = "binary",
    run_id: str = "run",
    competition: Path | None = None,
    **settings: Any,
) -> LLMRun:
    import mlestar

    competition = competition or root / f"toy-{kind}"
    if not competition.exists():
        make_clean_competition(competition, kind=kind, n_rows=300)
    fake = FakeLLM(responder=responder, faults=dict(faults or {}))
    app, suffix = (
        (make_anthropic_app(fake), "") if provider == "anthropic" else (make_openai_app(fake), "/v1")
    )
    spec = "anthropic:claude-sonnet-4-5" if provider == "anthropic" else f"{provider}:fake"
    with serve(app) as server:
        result = mlestar.run(
            competition,
            runs_dir=root / "runs",
            run_id=run_id,
            llm=spec,
            llm_base_url=server.url + suffix,
            **{**LOOPS, **settings},
        )
    return LLMRun(result, fake, competition)


def selections(run_dir: Path) -> dict[str, Any]:
    """What a run chose: its scripts (phase, agent, label, outcome), the best and the submitted one."""
    with RunStore(run_dir) as store:
        nodes = store.nodes()
        by_id = {node.id: node for node in nodes}
        best = store.get_meta("best") or {}
        submission = store.get_meta("submission") or {}

    def label(node_id: Any) -> str | None:
        node = by_id.get(int(node_id)) if node_id else None
        return node.label if node else None

    scripts = sorted(
        (node.phase, node.agent, node.label, node.status.value)
        for node in nodes
        if node.status in (NodeStatus.DONE, NodeStatus.FAILED)
    )
    return {
        "scripts": scripts,
        "best": label(best.get("node_id")),
        "submitted_from": label(submission.get("source_node_id")),
    }


def main() -> None:
    from fakes.replay import Recorder
    from fakes.scripted_model import respond

    out = Path(sys.argv[1]).resolve()
    os.environ.update(FAST_RETRIES)
    root = out.parent / f".{out.name}-work"
    run = llm_run(root, responder=Recorder(respond, out))
    print(run.result.status, run.result.best_score, f"{run.fake.count} requests recorded in {out}")


if __name__ == "__main__":
    main()
