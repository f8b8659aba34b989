"""Auxiliary tables, run for real: on synthetic competitions whose signal sits partly in auxiliary
tables, the data-usage revision runs, passes the pipeline's gate and beats the same solution without
the tables; the issue's crash (an all-missing joined column in HistGradientBoosting) is fixed by the
debugger; a whole run keeps the revision and its ablation names every joined table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from competitions import aux_competition
from test_expert_support import ROUNDS, assert_ran, run_code

import mlestar
from mlestar.brain.expert import ExpertBrain
from mlestar.brain.protocol import BrainContext, ModelCard, Script
from mlestar.core.events import EventType
from mlestar.exec.workspace import build_input_dir
from mlestar.pipeline.phases import USAGE_TOLERANCE
from mlestar.pipeline.split import write_folds
from mlestar.store import RunStore
from mlestar.task import load_task
from mlestar.task.views import input_view

pytestmark = pytest.mark.slow

N_TRAIN, N_TEST = 800, 200
# (case, model card, smallest gain over the run without the tables); measured gains are about four
# times these (see the report of issue 18), so the margins leave room for other seeds.
CASES = [
    ("hourly", "hist_gb", 0.05),
    ("lookup", "lightgbm", 0.2),
    ("many", "hist_gb", 0.05),
    ("reference", "hist_gb", 0.05),
]


def context(root: Path, case: str) -> tuple[BrainContext, Path]:
    task = load_task(aux_competition(root / "competition", case, n_train=N_TRAIN, n_test=N_TEST))
    folds = write_folds(task, root / "data" / "folds.csv", seed=0)
    dev = build_input_dir(root / "data" / "dev", input_view(task, final=False).links, folds_csv=folds)
    ctx = BrainContext(
        task=task,
        seed=0,
        n_dev_rows=int(pd.read_csv(folds)["dev"].sum()),
        script_timeout_s=120,
        threads=1,
        available_packages=["sklearn", "lightgbm", "numpy", "pandas"],
    )
    return ctx, dev


def relative_gain(new: float, old: float, lower_is_better: bool) -> float:
    return (old - new) / abs(old) if lower_is_better else (new - old) / abs(old)


@pytest.mark.parametrize(("case", "card", "margin"), CASES)
def test_the_data_usage_revision_runs_is_kept_and_beats_the_solution_without_the_tables(
    case, card, margin, tmp_path
):
    ctx, dev = context(tmp_path, case)
    brain = ExpertBrain(max_rounds=ROUNDS)
    base = brain.write_candidate(ctx, ModelCard(name=card))
    report = brain.check_data_usage(ctx, base)
    assert not report.all_used and report.script is not None, report.reason
    without = assert_ran(run_code(base.code, dev, tmp_path / "without"))
    result = run_code(report.script.code, dev, tmp_path / "with")
    joined = assert_ran(result)
    assert "Traceback" not in result.stderr
    lower = ctx.task.lower_is_better
    gain = relative_gain(joined, without, lower)
    print(
        f"{case} ({card}, {ctx.task.metric}): without the tables {without:.4f}, with {joined:.4f}, "
        f"relative gain {gain:+.1%}"
    )
    assert -gain <= USAGE_TOLERANCE  # the pipeline's gate keeps the revision
    assert gain >= margin


def test_the_issue_crash_is_recognised_and_fixed_by_the_debugger(tmp_path):
    ctx, dev = context(tmp_path, "reference")
    brain = ExpertBrain(max_rounds=ROUNDS)
    revised = brain.check_data_usage(ctx, brain.write_candidate(ctx, ModelCard(name="hist_gb"))).script
    assert revised is not None
    # without both guards (as in the issue's scripts) the all-missing cities_survey column reaches the model
    unguarded = revised.code.replace("drop = degenerate_columns(train, new)", "drop = []").replace(
        "    return without_degenerate(fit_frame, other_frames)", "    return fit_frame, other_frames"
    )
    assert unguarded.count("drop = []") == 1 and "return fit_frame, other_frames\n" in unguarded
    broken = Script(code=unguarded, label=revised.label, info=revised.info)
    crash = run_code(broken.code, dev, tmp_path / "broken")
    assert crash.returncode != 0 and "window shape cannot be larger than input array shape" in crash.stderr
    fixed = brain.debug(ctx, broken, crash.stderr)
    assert fixed is not None and "[fix: degenerate_features]" in (fixed.label or "")
    assert_ran(run_code(fixed.code, dev, tmp_path / "fixed"))


def test_a_whole_run_keeps_the_joins_and_its_ablation_names_every_table(tmp_path):
    competition = aux_competition(tmp_path / "competition", "all", n_train=N_TRAIN, n_test=N_TEST)
    result = mlestar.run(
        competition,
        brain=ExpertBrain(max_rounds=ROUNDS),
        runs_dir=tmp_path / "runs",
        run_id="aux",
        num_models=1,
        num_tracks=1,
        outer_steps=1,
        inner_steps=0,  # the ablation is what is looked at; no refinement step after it
        ensemble_rounds=0,
        script_timeout_s=120,
        workers=2,
        threads_per_script=1,
    )
    store = RunStore(tmp_path / "runs" / "aux")
    usage = [e for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == "data_usage"]
    assert len(usage) == 1
    (check,) = usage
    assert check.data["verdict"] == "revised" and check.data["kept"], check.message
    assert "complaints.csv: its best key" in check.data["reason"]
    (ablation,) = store.events(types=[EventType.ABLATION])
    tables = {"join_cities", "join_grades", "join_shops", "join_transactions", "join_weather"}
    assert tables <= set(ablation.data["effects"])
    print("ablation of the joined run:", ablation.data["summary"])
    assert all(f"Variant '{name}' (without the " in ablation.data["summary"] for name in tables)
    assert result.solution_path is not None
    assert "# === BLOCK: join_weather ===" in Path(result.solution_path).read_text()
