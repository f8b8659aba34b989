"""Whole offline runs on small image and audio competitions: every phase, media blocks in the
ablations, a valid submission that beats chance clearly (slow tier, a few minutes each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from media_builders import build_media

import mlestar
from mlestar.core.events import EventType
from mlestar.grading import grade_submission
from mlestar.store import RunStatus, open_run
from mlestar.task import load_task

pytestmark = pytest.mark.slow

SETTINGS = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 1,
    "ensemble_rounds": 1,
    "debug_retries": 1,
    "script_timeout_s": 40,
    "n_folds": 2,  # small sets are scored out of fold: two folds halve the fits of five
    "workers": 2,
    "threads_per_script": 1,
}
MEDIA_BLOCKS = {"media_loading", "representation"}


@pytest.mark.parametrize(("name", "rows", "chance"), [("shapes", 400, 0.2), ("tones", 200, 0.2)])
def test_media_run_goes_through_every_phase(tmp_path: Path, name: str, rows: int, chance: float) -> None:
    folder = build_media(name, tmp_path / name, n=rows)
    runs = tmp_path / "runs"
    result = mlestar.run(folder, runs_dir=runs, run_id=name, **SETTINGS)
    assert result.status == RunStatus.FINISHED and result.submission_path is not None
    with open_run(runs, name) as store:
        phases = {e.phase for e in store.events(types=[EventType.PHASE_STARTED])}
        assert {"phase1", "phase2", "phase3", "phase4"} <= phases
        agents = {n.agent for n in store.nodes()}
        assert {"candidate", "ablation", "refine", "ensemble", "submission"} <= agents
        ablated = {
            block
            for n in store.nodes()
            if n.agent == "ablation"
            for c in n.info["script_info"]["expert"]["components"].values()
            for block in c["block"].split("+")
        }
        assert ablated & MEDIA_BLOCKS, ablated
    task = load_task(folder)
    graded = grade_submission(result.submission_path, task.answers_file, metric=task.metric,
                              sample_path=folder / "sample_submission.csv", id_column="id")
    assert graded.valid and graded.score > 2 * chance
