"""Suite 2, short: kill -9 at a few random moments of a run (every phase, the submission, a store
write), each followed by a resume. The benchmark ``benchmarks/kill9.py`` runs 20 with the expert."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from competitions import make_competition
from kill9 import MOMENTS, run_trials, totals

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
DRIVER = Path(__file__).with_name("kill9_driver.py")


def test_runs_killed_at_random_moments_resume_to_a_valid_submission(tmp_path: Path, capsys) -> None:
    competition = make_competition(tmp_path / "competition", "binary", n_rows=200)
    runs_dir = tmp_path / "runs"

    def run(run_id: str) -> list[str]:
        return [sys.executable, str(DRIVER), "run", str(competition), str(runs_dir), run_id]

    def resume(run_id: str) -> list[str]:
        return [sys.executable, str(DRIVER), "resume", str(runs_dir), run_id]

    trials = run_trials(run, resume, runs_dir, competition, kills=len(MOMENTS), seed=7)
    summary = totals(trials)
    with capsys.disabled():
        print(f"\nkill -9 (scripted brain): {summary}")
    failures = [f"{t.run_id} ({t.moment}): {t}" for t in trials if not t.ok]
    assert not failures, "\n".join(failures)
    assert summary["resumed_and_finished"] == len(MOMENTS) and summary["reruns"] == 0
