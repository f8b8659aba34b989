"""End to end: ``mlestar run COMPETITION --llm openai-compatible:fake --llm-base-url URL``.

The scripted fake model plays every agent over real HTTP; the pipeline goes through all four
phases and leaves a valid submission. Skipped (visibly) while ``mlestar.pipeline`` is missing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/fakes is importable as "fakes" (no tests/__init__.py)

from fakes.competition import make_clean_competition  # noqa: E402
from fakes.fixtures import Endpoint, _openai_server, isolated_env, openai_fake  # noqa: E402,F401

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("mlestar.pipeline") is None,
        reason="mlestar.pipeline is not there yet: the LLM end-to-end run needs the pipeline",
    ),
]

AGENTS_OF_EVERY_PHASE = {
    "summarizer",
    "retriever",
    "candidate",
    "merger",  # phase 1
    "ablation",
    "ablation_summarizer",
    "extractor",
    "coder",  # phase 2
    "ensemble_planner",
    "ensembler",  # phase 3
    "submission",  # phase 4
}


def test_run_with_the_fake_llm(openai_fake: Endpoint, tmp_path: Path) -> None:
    kind = "binary"  # test_llm_brain.py runs every agent on a regression task
    competition = make_clean_competition(tmp_path / f"toy-{kind}", kind=kind, n_rows=300)
    runs = tmp_path / "runs"
    secret = "sk-e2e-SECRET-7c1d"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "OPENAI_COMPATIBLE_API_KEY": secret,
        "MLESTAR_LLM_BACKOFF_BASE_S": "0.05",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlestar.cli",
            "run",
            str(competition),
            "--llm",
            "openai-compatible:fake",
            "--llm-base-url",
            openai_fake.url,
            "--runs-dir",
            str(runs),
            "--run-id",
            f"e2e-{kind}",
            "--search",
            "off",
            "-M",
            "2",
            "-L",
            "2",
            "-T",
            "1",
            "-K",
            "2",
            "-R",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])

    run_dir = runs / f"e2e-{kind}"
    submission = pd.read_csv(run_dir / "submission.csv")
    sample = pd.read_csv(competition / "sample_submission.csv")
    assert list(submission.columns) == list(sample.columns)
    assert submission["id"].tolist() == sample["id"].tolist() and submission["target"].notna().all()
    assert (run_dir / "solution.py").is_file()

    roles = set(openai_fake.fake.roles())
    assert AGENTS_OF_EVERY_PHASE <= roles, sorted(AGENTS_OF_EVERY_PHASE - roles)
    assert "unknown" not in roles
    # Every request carried the key the run was given, and the key stayed out of the run folder
    # and out of the scripts' environment.
    assert all(r["_headers"].get("authorization") == f"Bearer {secret}" for r in openai_fake.fake.requests)
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), path

    from mlestar.llm import usage_summary
    from mlestar.store.db import RunStore

    with RunStore(run_dir) as store:
        usage = usage_summary(store)
        assert usage.total.calls >= len(AGENTS_OF_EVERY_PHASE)
        assert usage.total.calls - usage.total.cached_calls == openai_fake.fake.count
        assert AGENTS_OF_EVERY_PHASE <= set(usage.per_agent)


def test_listeners_and_the_cli_counter_see_every_llm_call(
    openai_fake: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlestar
    from mlestar.commands.run import ProgressView
    from mlestar.core.events import Event, EventType
    from mlestar.store.db import RunStore

    prices = tmp_path / "prices.yaml"
    prices.write_text("fake: {input: 1.0, output: 2.0}\n")
    monkeypatch.setenv("MLESTAR_PRICES", str(prices))
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-test")
    competition = make_clean_competition(tmp_path / "toy", kind="binary", n_rows=200)
    seen: list[Event] = []
    view = ProgressView(live=False, time_limit_s=None)
    result = mlestar.run(
        competition, runs_dir=tmp_path / "runs", run_id="listened", llm="openai-compatible:fake",
        llm_base_url=openai_fake.url, search="off", num_models=2, num_tracks=2, outer_steps=1, inner_steps=1,
        ensemble_rounds=1, listeners=[seen.append, view],
    )
    assert result.submission_path is not None
    calls = [e for e in seen if e.type == EventType.LLM_CALL]
    with RunStore(result.run_dir) as store:
        recorded = store.llm_calls()
        assert [e.seq for e in calls] == [e.seq for e in store.events(types=[EventType.LLM_CALL])]
    assert len(calls) == len(recorded) >= len(AGENTS_OF_EVERY_PHASE)
    assert all(e.phase in ("phase1", "phase2", "phase3", "phase4") and e.data.get("step") for e in calls)
    refine_calls = [e for e in calls if e.phase == "phase2"]
    assert {e.track for e in refine_calls} == {0, 1}
    assert all(e.node_id is not None for e in refine_calls if e.data["agent"] in ("ablation", "extractor"))
    assert view.cost == pytest.approx(sum(c.cost_usd or 0.0 for c in recorded)) and view.cost > 0
