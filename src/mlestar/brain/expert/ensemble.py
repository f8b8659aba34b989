"""Planned ensembling of the track winners into one self-contained script.

Each solution's whole pipeline is wrapped as a function (its code indented into a ``def``) that
returns its fold-0 and test predictions; the ensemble block combines them per the plan. The
module-level setup block (constants, metric, submission writer) and ``FINAL_MODE`` flag govern
every member, so ``write_submission`` flips a single line.
"""

from __future__ import annotations

import ast
import textwrap

from mlestar.brain.expert.render import render_block
from mlestar.brain.expert.sizing import estimated_script_s
from mlestar.brain.expert.solution import resize_models, spec_of
from mlestar.brain.expert.spec import INFO_KEY, SolutionSpec, attach_state, strip_state
from mlestar.brain.expert.templating import render_template
from mlestar.brain.protocol import EnsembleAttempt, RefinementPlan, ScoredScript, Script
from mlestar.core import contract
from mlestar.core.contract import find_blocks, wrap_block
from mlestar.core.pyparse import parse_python

METHODS = {
    "mean": "average the solutions' fold-0 and test predictions with equal weights",
    "weighted": "weighted average, better-scoring solutions weigh more (weights by fold-0 score rank)",
    "rank_mean": "average of rank-normalised predictions (only the order matters to the metric)",
    "hill_climb": "hill-climbing weights: greedy forward selection on fold-0 predictions, cross-fitted",
    "stacking": "stacking: a linear level-2 model on the fold-0 predictions, out-of-fold over 5 inner folds",
}
RANK_METRICS = ("roc_auc",)


def _methods_for(spec: SolutionSpec) -> list[str]:
    order = ["mean", "weighted", "rank_mean", "hill_climb", "stacking"]
    if spec.facts.metric not in RANK_METRICS:
        order.remove("rank_mean")  # ranks are not probabilities or values
    return order


def plan(solutions: list[ScoredScript], history: list[EnsembleAttempt]) -> RefinementPlan | None:
    specs = [spec_of(s.script) for s in solutions]
    if len(solutions) < 2 or any(s is None for s in specs):
        return None
    spec = specs[0]
    assert spec is not None
    tried = {h.plan.data.get("method") for h in history}
    scores = [f"{s.score:.6g}" if s.score is not None else "failed" for s in solutions]
    done = [f"{h.plan.data.get('method')}: {h.score:.6g}" if h.score is not None else f"{h.plan.data.get('method')}: failed"
            for h in history]
    for method in _methods_for(spec):
        if method in tried:
            continue
        text = f"Ensemble the {len(solutions)} solutions (fold-0 scores {', '.join(scores)}): {METHODS[method]}."
        if done:
            text += f" Tried so far: {'; '.join(done)}."
        return RefinementPlan(text=text, data={"method": method, "members": len(solutions)})
    return None


def _strip_for_wrapping(code: str) -> str:
    """A solution's code ready to live inside a function: no docstring, no state comment, no own
    FINAL_MODE flag (it reads the ensemble's), and no score line of its own."""
    code = strip_state(code)
    tree = parse_python(code)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(getattr(tree.body[0], "value", None), ast.Constant):
        end = tree.body[0].end_lineno or 0
        code = "\n".join(code.split("\n")[end:])
    code = contract.drop_final_flag(code)
    return contract.rename_score_label(code, "Member validation performance").strip("\n") + "\n"


def wrap_solution(code: str, name: str, classification: bool) -> str:
    body = _strip_for_wrapping(code)
    returns = (
        '{"val": VAL_PRED, "rows": VAL_ROWS, "y": Y_VAL, "test": TEST_PRED, "score": VAL_SCORE, '
        + ('"classes": CLASSES}' if classification else '"classes": None}')
    )
    doc = f'"""The whole pipeline of {name.replace("_", " ")}; returns its fold-0 and test predictions."""\n'
    inner = doc + body + f"\nreturn {returns}\n"
    return f"def {name}():\n" + textwrap.indent(inner, "    ", lambda line: bool(line.strip()))


def _fit_budget(solutions: list[ScoredScript], specs: list[SolutionSpec]) -> list[str]:
    """Members' code, with models shrunk when running them all would not fit one script's time."""
    codes = [s.script.code for s in solutions]
    f = specs[0].facts
    total = sum(estimated_script_s([m.card for m in s.models], f, [m.max_rounds for m in s.models]) for s in specs)
    if total <= 0.6 * f.timeout_s:
        return codes
    shrunk = []
    for code, spec in zip(codes, specs, strict=True):
        scaled = spec.copy_deep()
        scaled.budget_scale = max(0.1, spec.budget_scale * 0.6 * f.timeout_s / total)
        resize_models(scaled)
        if "model" in find_blocks(code):
            code = code.replace(find_blocks(code)["model"], render_block("model", scaled))
        shrunk.append(code)
    return shrunk


def implement(solutions: list[ScoredScript], plan_: RefinementPlan) -> Script:
    specs = [spec_of(s.script) for s in solutions]
    usable = [(s, p) for s, p in zip(solutions, specs, strict=True) if p is not None]
    if len(usable) < 2:
        best = solutions[0].script if solutions else Script(code="")
        return best
    members = [s for s, _ in usable]
    member_specs = [p for _, p in usable]
    spec = member_specs[0]
    method = str(plan_.data.get("method", "mean"))
    if method not in METHODS:
        method = "mean"
    codes = _fit_budget(members, member_specs)
    names = [f"solution_{i + 1}" for i in range(len(codes))]
    header = (
        f'"""Ensemble of {len(codes)} solutions ({", ".join(p.label for p in member_specs)}): {METHODS[method]}.\n\n'
        "Every member's whole pipeline runs as a function on the same fixed split; the ensemble block combines\n"
        "their fold-0 predictions (scored below) and, with FINAL_MODE = True, their test predictions.\n"
        '"""\n'
    )
    setup = find_blocks(members[0].script.code).get("setup") or render_block("setup", spec)
    wrapped = [wrap_solution(code, name, spec.facts.classification) for code, name in zip(codes, names, strict=True)]
    combine = render_template("ensemble.py.j2", method=method, members=names, f=spec.facts)
    parts = [header, setup, wrap_block("members", "\n\n".join(wrapped)), wrap_block("ensemble", combine)]
    state = {"kind": "ensemble", "method": method, "members": [p.label for p in member_specs]}
    code = attach_state("\n\n".join(p.rstrip("\n") + "\n" for p in parts), state)
    return Script(code=code, label=f"ensemble ({method}) of {len(codes)}", info={INFO_KEY: state})
