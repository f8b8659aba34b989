"""Wall-clock planning: phase deadlines, the final reserve, script timeouts, time spent before."""

from __future__ import annotations

import pytest

from mlestar.pipeline.budget import FINAL_RESERVE_MIN_S, FINAL_SLOWDOWN, PHASE_DEADLINE_SHARE, Budget


def budget_at(elapsed: float, limit: float | None = 1000.0, scripts: tuple[float, ...] = ()) -> Budget:
    budget = Budget(limit, spent_before_s=elapsed)
    budget.started_at -= 0.0
    for wall in scripts:
        budget.record_script(wall)
    return budget


def test_without_a_limit_everything_fits() -> None:
    budget = budget_at(10**6, limit=None, scripts=(3600,))
    assert budget.can_start("phase1", n_scripts=100) and budget.remaining() == float("inf")
    assert budget.script_timeout(900) == 900


def test_phases_have_deadlines_inside_the_usable_time() -> None:
    budget = budget_at(0, scripts=(10, 10, 10))
    usable = 1000 - budget.final_reserve_s()
    for phase, share in PHASE_DEADLINE_SHARE.items():
        assert budget.phase_deadline(phase) == pytest.approx(usable * share)
    assert budget.phase_deadline("phase1") < budget.phase_deadline("phase2") < budget.phase_deadline("phase3")


def test_a_step_starts_only_when_its_expected_cost_fits_before_the_deadline() -> None:
    scripts = (20.0,) * 5  # typical script: 20 s
    deadline = budget_at(0, scripts=scripts).phase_deadline("phase1")
    assert budget_at(deadline - 25, scripts=scripts).can_start("phase1")
    assert not budget_at(deadline - 15, scripts=scripts).can_start("phase1")
    assert not budget_at(deadline - 25, scripts=scripts).can_start("phase1", n_scripts=2)
    assert budget_at(deadline - 15, scripts=scripts).can_start("phase2")  # a later phase has more time


def test_the_final_reserve_grows_with_the_longest_script() -> None:
    assert budget_at(0).final_reserve_s() == max(FINAL_RESERVE_MIN_S, FINAL_SLOWDOWN * 30.0)  # no script yet
    assert budget_at(0, scripts=(1.0,)).final_reserve_s() == FINAL_RESERVE_MIN_S
    assert budget_at(0, scripts=(5.0, 40.0, 8.0)).final_reserve_s() == pytest.approx(FINAL_SLOWDOWN * 40.0)


def test_script_timeouts_never_pass_the_budget_and_keep_the_reserve() -> None:
    budget = budget_at(900, scripts=(10.0,))  # 100 s left, reserve 25 s
    assert budget.script_timeout(900) == pytest.approx(100 - budget.final_reserve_s(), abs=0.5)
    assert budget.script_timeout(900, final=True) == pytest.approx(100, abs=0.5)
    assert budget.script_timeout(30) == 30
    assert budget_at(2000).script_timeout(900) == 5.0  # out of time: the shortest timeout, not zero


def test_time_spent_before_a_resume_counts() -> None:
    assert budget_at(400).remaining() == pytest.approx(600, abs=0.5)
    assert budget_at(400).elapsed() >= 400


def test_typical_script_is_the_median_of_the_recent_ones() -> None:
    assert budget_at(0).typical_script_s() == 30.0
    assert budget_at(0, scripts=(2, 100, 4)).typical_script_s() == 4
    assert budget_at(0, scripts=(0.01,)).typical_script_s() == 1.0
