"""The MLE-STAR pipeline end to end on tiny competitions, offline, with the expert brain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from competitions import TINY_CONFIG

import mlestar
from mlestar.brain.expert import ExpertBrain
from mlestar.brain.protocol import BrainContext, ModelCard, Script
from mlestar.cli import main as cli_main
from mlestar.core.events import EventType
from mlestar.errors import AllCandidatesFailed
from mlestar.grading import grade_submission
from mlestar.store import NodeStatus, RunStatus, RunStore, open_run

pytestmark = pytest.mark.slow

PLANTED = 'raise RuntimeError("planted bug")\n'


def _write_config(path: Path, **extra: object) -> Path:
    path.write_text(yaml.safe_dump({**TINY_CONFIG, **extra}))
    return path


def test_run_all_four_phases_and_valid_submission(tiny_binary: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml")
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlestar", "run", str(tiny_binary), "--config", str(config),
         "--runs-dir", str(runs), "--run-id", "e2e"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    run_dir = runs / "e2e"
    store = RunStore(run_dir)
    phases_started = {e.phase for e in store.events(types=[EventType.PHASE_STARTED])}
    assert {"phase1", "phase2", "phase3", "phase4"} <= phases_started
    agents = {n.agent for n in store.nodes()}
    assert {"candidate", "ablation", "refine", "submission"} <= agents
    assert store.events(types=[EventType.ABLATION]), "phase 2 must record an ablation study"
    assert store.status == RunStatus.FINISHED
    # Every score the run selected by is the pipeline's own, from the scripts' saved predictions,
    # and agrees with what the expert's scripts printed.
    selected = [n for n in store.nodes() if n.agent != "ablation" and n.status == NodeStatus.DONE]
    assert selected and {n.info.get("score_source") for n in selected} == {"recomputed"}
    assert not [e.message for e in store.events(types=[EventType.WARNING]) if "score" in e.message]
    # The submission is valid against the sample and grades well on the private answers.
    result = grade_submission(run_dir / "submission.csv", tiny_binary / "private" / "answers.csv",
                              metric="roc_auc", sample_path=tiny_binary / "sample_submission.csv", id_column="id")
    assert result.valid and result.score > 0.75
    for name in ("solution.py", "summary.json"):
        assert (run_dir / name).exists()
    summary = store.get_meta("summary")
    assert summary["scripts_run"] == len(store.nodes())
    assert set(summary["scores_by_phase"]) >= {"phase1", "phase2"}
    # `ls` and `show` read the finished run.
    wide = {**os.environ, "COLUMNS": "250"}
    listing = subprocess.run([sys.executable, "-m", "mlestar", "ls", "--runs-dir", str(runs)],
                             capture_output=True, text=True, env=wide)
    assert "e2e" in listing.stdout and "finished" in listing.stdout
    shown = subprocess.run([sys.executable, "-m", "mlestar", "show", "e2e", "--runs-dir", str(runs)],
                           capture_output=True, text=True, env=wide)
    assert "candidate" in shown.stdout and "best script:" in shown.stdout


def test_sigkill_mid_phase2_then_resume_reruns_nothing_finished(tiny_regression: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml", outer_steps=2, inner_steps=2, ensemble_rounds=1)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlestar", "run", str(tiny_regression), "--config", str(config),
         "--runs-dir", str(runs), "--run-id", "victim"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    run_dir = runs / "victim"
    deadline = time.time() + 600
    killed = False
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if not (run_dir / "run.sqlite").exists():
            continue
        with RunStore(run_dir) as probe:
            refined = [n for n in probe.nodes(phase="phase2") if n.status == NodeStatus.DONE]
        if refined:
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=30)
    assert killed, "the run ended before phase 2 could be interrupted"
    with RunStore(run_dir) as store:
        assert store.status == RunStatus.CRASHED
        finished_before = {n.id: n.step_key for n in store.nodes() if n.status in (NodeStatus.DONE, NodeStatus.FAILED)}
        last_seq = store.events()[-1].seq
    resumed = subprocess.run(
        [sys.executable, "-m", "mlestar", "resume", "victim", "--runs-dir", str(runs)],
        capture_output=True, text=True, timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with RunStore(run_dir) as store:
        restarted = [e.node_id for e in store.events(after=last_seq, types=[EventType.SCRIPT_STARTED])]
        assert restarted, "the resumed run must do the remaining work"
        assert not set(restarted) & set(finished_before), "a finished script ran twice"
        assert store.status == RunStatus.FINISHED
        assert {"phase3", "phase4"} <= {e.phase for e in store.events(types=[EventType.PHASE_STARTED])}
    assert (run_dir / "submission.csv").exists()


class BuggyCandidates(ExpertBrain):
    """Every candidate carries a planted bug that only the debugger removes."""

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        script = super().write_candidate(ctx, card)
        return script.model_copy(update={"code": PLANTED + script.code})

    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None:
        if PLANTED in script.code and "planted bug" in error:
            return script.model_copy(update={"code": script.code.replace(PLANTED, "")})
        return super().debug(ctx, script, error)


class AlwaysBroken(ExpertBrain):
    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        return Script(code="import nonexistent_module_xyz\n", label=f"broken {card.name}")

    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None:
        return None


def test_failing_script_is_debugged_and_run_continues(tiny_binary: Path, tmp_path: Path) -> None:
    result = mlestar.run(
        tiny_binary, runs_dir=tmp_path / "runs", run_id="debugged", brain=BuggyCandidates(),
        **{**TINY_CONFIG, "outer_steps": 0, "ensemble_rounds": 0, "num_tracks": 1},
    )
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    with open_run(tmp_path / "runs", "debugged") as store:
        failed = [n for n in store.nodes() if n.agent == "candidate" and n.status == NodeStatus.FAILED]
        fixed = [n for n in store.nodes() if n.agent == "debug" and n.status == NodeStatus.DONE]
        assert failed and all("planted bug" in (node.error or "") for node in failed)
        # every broken candidate got a debugged child that ran and scored
        assert sorted(parent for node in fixed for parent in node.parent_ids) == sorted(n.id for n in failed)
        assert all(node.score is not None for node in fixed)


def test_every_candidate_failing_ends_with_one_line_error(
    tiny_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(AllCandidatesFailed):
        mlestar.run(tiny_binary, runs_dir=tmp_path / "runs", run_id="api", brain=AlwaysBroken(),
                    **{**TINY_CONFIG, "debug_retries": 0})
    with open_run(tmp_path / "runs", "api") as store:
        assert store.status == RunStatus.FAILED
        assert store.events(types=[EventType.RUN_FAILED])
    run_module = sys.modules["mlestar.pipeline.run"]  # the package re-exports a function named run
    monkeypatch.setattr(run_module, "make_brain", lambda settings, store=None, bus=None: AlwaysBroken())
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", str(tiny_binary), "--runs-dir", str(tmp_path / "runs"), "-M", "2", "-L", "1"])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "candidate scripts failed" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_time_limit_keeps_a_submission(tiny_binary: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    result = mlestar.run(tiny_binary, runs_dir=tmp_path / "runs", run_id="short", time_limit_s=60,
                         **{**TINY_CONFIG, "outer_steps": 4, "inner_steps": 4, "ensemble_rounds": 5})
    assert time.monotonic() - start < 120
    assert result.submission_path is not None
    submission = pd.read_csv(result.submission_path)
    assert list(submission.columns) == ["id", "target"]


def test_missing_llm_key_fails_before_creating_a_run(
    tiny_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file with a key
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["run", str(tiny_binary), "--llm", "openai:gpt-4.1", "--runs-dir", str(tmp_path / "runs")])
    assert exit_info.value.code != 0
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
