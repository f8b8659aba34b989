"""Wall-clock planning: the final reserve from measured costs, phase deadlines that keep one step of
every later phase, the first-step allowance, script timeouts and allowances, time spent before."""

from __future__ import annotations

import pytest

from mlestar.pipeline.budget import (
    CLAIM_CAP,
    DEFAULT_FINAL_PASSES,
    FINAL_MARGIN,
    FINAL_RESERVE_MIN_S,
    Budget,
    LoopPlan,
    script_allowance,
)

PAPER = LoopPlan(
    num_models=4, outer_steps=4, inner_steps=4, ensemble_rounds=5, tracks=2, workers=2, final_seeds=3
)


def budget_at(
    elapsed: float,
    limit: float | None = 1000.0,
    scripts: tuple[float, ...] = (),
    plan: LoopPlan = PAPER,
    **kwargs: float,
) -> Budget:
    budget = Budget(limit, spent_before_s=elapsed, plan=plan, **kwargs)
    for wall in scripts:
        budget.record_script(wall)
    return budget


def test_without_a_limit_everything_fits() -> None:
    budget = budget_at(10**6, limit=None, scripts=(3600,))
    assert budget.can_start("phase1", n_scripts=100) and budget.remaining() == float("inf")
    assert budget.script_timeout(900) == 900 and budget.phase_deadline("phase2") == float("inf")


def test_the_final_reserve_comes_from_the_measured_final_cost_not_the_longest_script() -> None:
    budget = budget_at(0, scripts=(20.0, 47.0))
    budget.record_script(200.0, "ablation")  # a long ablation says nothing about the final script
    budget.note_best(47.0)
    # Before any final script ran: validation plus a refit on every row, twice the dev run.
    assert budget.final_script_s() == pytest.approx(DEFAULT_FINAL_PASSES * 47.0)
    budget.record_final(final_wall_s=47.0, dev_wall_s=47.0)  # measured: the final run took as long
    assert budget.final_script_s() == pytest.approx(47.0)
    one_wave_of_seeds = 47.0  # 2 of the 3 seeds run side by side on the 2 workers
    # Both get the margin: a seed run's timeout is cut from the reserve too.
    assert budget.final_reserve_s() == pytest.approx(FINAL_MARGIN * (47.0 + one_wave_of_seeds))
    assert budget.final_reserve_s() < 2.5 * 47.0 + one_wave_of_seeds  # the old rule reserved 118 s
    assert budget_at(0, scripts=(1.0,), plan=LoopPlan(final_seeds=1)).final_reserve_s() == FINAL_RESERVE_MIN_S


def test_a_final_script_on_more_rows_than_the_dev_subsample_is_expected_to_take_longer() -> None:
    small = budget_at(0, scripts=(10.0,), final_rows_ratio=1.0)
    large = budget_at(0, scripts=(10.0,), final_rows_ratio=3.0)
    assert large.final_script_s() == pytest.approx(3 * small.final_script_s())


def test_later_phases_claim_their_loop_capped_but_never_less_than_one_step() -> None:
    budget = budget_at(0, scripts=(10.0,) * 5)
    usable = budget.usable_s()
    # Phase 3's paper loop (5 rounds of a 2-member ensemble, 100 s) fits under its cap.
    assert budget.claimed_s("phase3") == pytest.approx(min(100.0, CLAIM_CAP["phase3"] * usable))
    assert budget.phase_deadline("phase2") == pytest.approx(usable - budget.claimed_s("phase3"))
    # Phase 1 also keeps the first submission, whose final script runs right after it.
    assert budget.phase_deadline("phase1") == pytest.approx(
        usable - budget.final_script_s() - budget.claimed_s("phase2") - budget.claimed_s("phase3")
    )
    # Slow scripts: the loops cannot fit, yet each later phase keeps at least one step.
    slow = budget_at(0, limit=600, scripts=(60.0,) * 5)
    one_outer_step = slow.outer_step_s(1)  # an ablation and one refinement, both tracks side by side
    assert slow.claimed_s("phase2") >= one_outer_step
    assert slow.claimed_s("phase3") >= slow.typical_script_s("ensemble")


def test_a_phase_first_step_may_use_time_the_phase_would_leave_to_later_ones() -> None:
    budget = budget_at(0, limit=600, scripts=(30.0,) * 5)
    soft, hard = budget.phase_deadline("phase2"), budget.phase_deadline("phase2", first=True)
    assert hard == pytest.approx(budget.usable_s() - budget.need_s("phase3")[0]) and hard >= soft
    step = budget.outer_step_s(1)
    late = budget_at(soft - step + 1, limit=600, scripts=(30.0,) * 5)
    assert not late.can_start("phase2", cost_s=step) and late.can_start("phase2", cost_s=step, first=True)


def test_a_step_starts_only_when_its_expected_cost_fits_before_the_deadline() -> None:
    scripts = (20.0,) * 5  # typical script: 20 s
    deadline = budget_at(0, scripts=scripts).phase_deadline("phase1")
    assert budget_at(deadline - 25, scripts=scripts).can_start("phase1")
    assert not budget_at(deadline - 15, scripts=scripts).can_start("phase1")
    assert not budget_at(deadline - 25, scripts=scripts).can_start("phase1", n_scripts=2)
    assert budget_at(deadline - 15, scripts=scripts).can_start("phase2")  # a later phase has more time


def test_costs_are_learned_per_kind_of_script() -> None:
    budget = budget_at(0, scripts=(10.0, 10.0))
    assert budget.typical_script_s("ablation") == 20.0  # not measured yet: about two scripts
    assert budget.typical_script_s("ensemble") == 20.0  # every member of the 2 tracks trains again
    budget.record_script(35.0, "ablation")
    assert budget.typical_script_s("ablation") == 35.0 and budget.typical_script_s() == 10.0
    assert budget.outer_step_s(3) == pytest.approx(35.0 + 3 * 10.0)


def test_script_timeouts_never_pass_the_budget_and_keep_the_reserve() -> None:
    budget = budget_at(900, scripts=(10.0,), plan=LoopPlan(final_seeds=1))  # 100 s left
    assert budget.script_timeout(900) == pytest.approx(100 - budget.final_reserve_s(), abs=0.5)
    assert budget.script_timeout(900, final=True) == pytest.approx(100, abs=0.5)
    # An evaluation run of the last phase keeps only the final script's share free.
    final_share = FINAL_MARGIN * budget.final_script_s()
    assert budget.script_timeout(900, keep_s=final_share) == pytest.approx(100 - final_share, abs=0.5)
    assert budget.script_timeout(30) == 30
    assert budget_at(2000).script_timeout(900) == 5.0  # out of time: the shortest timeout, not zero


def test_the_script_allowance_leaves_room_for_one_step_of_every_phase() -> None:
    allowance = script_allowance(300, 900, PAPER)
    # 2 waves of candidates, a merge, the first submission (2), ablation + refinement (2), an
    # ensemble, a wave of seeds and the final script (2): 11 scripts one after the other.
    assert allowance == pytest.approx(300 / 11)
    assert script_allowance(300, 900, PAPER, final_rows_ratio=1.5) < allowance
    assert script_allowance(None, 900, PAPER) == 900 and script_allowance(36_000, 900, PAPER) == 900


def test_time_spent_before_a_resume_counts() -> None:
    assert budget_at(400).remaining() == pytest.approx(600, abs=0.5)
    assert budget_at(400).elapsed() >= 400


def test_typical_script_is_the_median_of_the_recent_ones() -> None:
    assert budget_at(0).typical_script_s() == 30.0
    assert budget_at(0, scripts=(2, 100, 4)).typical_script_s() == 4
    assert budget_at(0, scripts=(0.01,)).typical_script_s() == 1.0


def test_no_time_is_held_for_a_later_phase_whose_single_step_cannot_fit_any_more() -> None:
    scripts = (30.0,) * 5
    early = budget_at(0, limit=600, scripts=scripts)
    assert early.phase_deadline("phase1", first=True) < early.usable_s()  # phases 2 and 3 still fit
    late = budget_at(early.usable_s() - 20, limit=600, scripts=scripts)  # 20 s of usable time left
    assert late.phase_deadline("phase1", first=True) == pytest.approx(late.usable_s())
    assert late.can_start("phase1", cost_s=15, first=True)


def crash_like_budget(elapsed: float) -> Budget:
    """The clock of a 300 s run on 20k rows: cheap single-model candidates, then a 24 s best merge."""
    budget = budget_at(elapsed, limit=300, scripts=(8.8, 8.6, 11.8, 12.3, 13.1, 13.7, 21.3, 17.7))
    budget.note_best(24.2)
    budget.record_final(final_wall_s=25.5, dev_wall_s=24.2)
    return budget


def test_scripts_built_from_the_best_solution_are_expected_to_cost_what_it_costs() -> None:
    assert budget_at(0, scripts=(8.8, 8.6, 11.8)).typical_script_s() == pytest.approx(8.8)
    budget = crash_like_budget(0)
    assert budget.typical_script_s() == pytest.approx(24.2)  # not the candidates' 12.7 s median
    assert budget.need_s("phase3")[0] == pytest.approx(2 * 24.2)  # both tracks' bests train again
    assert budget.typical_script_s("ablation") == pytest.approx(2 * 24.2)
    for _ in range(10):  # slower scripts still raise the estimate above the floor
        budget.record_script(60.0)
    assert budget.typical_script_s() == pytest.approx(60.0)


def test_a_refinement_that_would_crowd_out_the_first_ensemble_round_does_not_start() -> None:
    # 180 s in: one more 24 s refinement would end past the time phase 3's first round needs.
    late = crash_like_budget(180)
    assert not late.can_start("phase2", first=True)
    # At that point phase 3's first round (the two tracks' bests, about 48 s) still fits.
    assert crash_like_budget(185).can_start("phase3", kind="ensemble", first=True)


def test_an_ensemble_final_is_expected_from_its_own_kind_not_from_single_solutions() -> None:
    budget = budget_at(0, limit=300, scripts=(10.0,) * 4, final_rows_ratio=1.5)
    budget.record_final(final_wall_s=12.0, dev_wall_s=10.0)  # a single solution's final: 1.2 x
    assert budget.final_passes(ensemble=False) == pytest.approx(1.2)
    # No ensemble final measured yet: a validation and a refit of every member on every row.
    assert budget.final_passes(ensemble=True) == pytest.approx(DEFAULT_FINAL_PASSES * 1.5)
    budget.record_final(final_wall_s=80.0, dev_wall_s=25.0, ensemble=True)  # e.g. killed after 80 s
    assert budget.final_passes(ensemble=True) == pytest.approx(3.2)
    assert budget.final_script_s(25.0, ensemble=True) == pytest.approx(80.0)
    # The reserve follows the best solution: an ensemble best makes it grow, and refinements keep
    # being expected at the single best's cost.
    budget.note_best(12.0)
    single_reserve = budget.final_reserve_s()
    budget.note_best(25.0, ensemble=True)
    assert budget.final_reserve_s() == pytest.approx(FINAL_MARGIN * (80.0 + 25.0))
    assert budget.final_reserve_s() > single_reserve
    assert budget.typical_script_s() == pytest.approx(12.0)
