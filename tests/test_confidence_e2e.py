"""A real expert run reports how sure it is: summary.json's final_evaluation and the CLI's last lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from competitions import TINY_CONFIG

from mlestar.pipeline.evaluation import interval

pytestmark = pytest.mark.slow


def test_a_real_run_validates_its_solution_with_three_seeds(tiny_binary: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    # One candidate, no refinement: the run is its first submission, three seed runs and the final script.
    small = {**TINY_CONFIG, "num_models": 1, "num_tracks": 1, "outer_steps": 0, "ensemble_rounds": 0,
             "final_seeds": 3}
    config.write_text(yaml.safe_dump(small))
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, "-m", "mlestar", "run", str(tiny_binary), "--config", str(config),
         "--runs-dir", str(runs), "--run-id", "sure"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    summary = json.loads((runs / "sure" / "summary.json").read_text())
    final = summary["final_evaluation"]
    assert final["seeds"] == 3 and final["seed_values"] == [7919, 7920, 7921]
    mean, std, ci95 = interval(final["scores"])
    assert final["ci95"] == pytest.approx(ci95) and ci95[0] <= mean <= ci95[1]
    assert 0.5 < final["mean"] <= 1.0  # ROC AUC of a real model on a real signal
    # Model seeds really vary the scripts (LightGBM / CatBoost bagging, the blend's halves ...).
    assert len(set(final["scores"])) > 1 or final["std"] == 0.0
    assert "over 3 seeds, 95% interval" in proc.stdout
    assert summary["time_used"]["ended_because"] == "no time limit: the paper's loops are done"
