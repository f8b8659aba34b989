"""Targeted refinement: pick the block to improve, plan the next move, and implement it.

Plans are absolute: ``plan.data["state"]`` is the full configuration the block should have, so
implementing a plan does not depend on which earlier plans were kept. The planner continues in a
direction that helped (stacking the next move on top of the best attempt, repeating a move that
may be repeated) and turns around when a move hurt (trying its opposite first).
"""

from __future__ import annotations

import json
from typing import Any

from mlestar.brain.expert.ablation import COMPONENTS
from mlestar.brain.expert.blocks import (
    REFINABLE,
    block_state,
    block_title,
    is_join_block,
    refinable_blocks,
    set_block_state,
)
from mlestar.brain.expert.moves import Move, applicable, find_move, moves_for
from mlestar.brain.expert.render import render_block
from mlestar.brain.expert.solution import spec_of, to_script
from mlestar.brain.expert.spec import SolutionSpec
from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
    BlockPlan,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
    replace_block,
)
from mlestar.core.contract import block_name, find_blocks

# Which refinable block to improve first when ablations do not tell them apart.
_PRIORITY = ("model", "representation", "media_loading", "feature_engineering", "categorical_encoding", "validation",
             "cleaning")


def _key(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True)


def _better(a: float, b: float, lower: bool) -> bool:
    return a < b if lower else a > b


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.6g}"


def block_impacts(summary: AblationSummary | None) -> dict[str, float]:
    """Largest absolute ablation effect per block."""
    impacts: dict[str, float] = {}
    for component, effect in (summary.effects if summary else {}).items():
        known = COMPONENTS.get(component)
        # a join's component is named after the join's block
        named = component in REFINABLE or is_join_block(component)
        block = known.block if known else (component if named else None)
        if block is None:
            continue
        impacts[block] = max(impacts.get(block, 0.0), abs(float(effect)))
    return impacts


def _refined_names(refined_blocks: list[str]) -> set[str]:
    names = set()
    for entry in refined_blocks:
        if entry in REFINABLE or is_join_block(entry):
            names.add(entry)
        elif (name := block_name(entry)) is not None:
            names.add(name)
    return names


def choose_block(
    spec: SolutionSpec, code: str, summary: AblationSummary | None, refined: list[str], variant: int = 0
) -> str | None:
    """The block to refine: not refined yet on this track, then the largest ablation effect, then
    the usual priority. An odd track starts with the runner-up block, so two tracks do not refine
    the same block first."""
    present = find_blocks(code)
    candidates = [b for b in refinable_blocks(spec) if b in present and applicable(spec, b)]
    if not candidates:
        return None
    impacts = block_impacts(summary)
    done = _refined_names(refined)

    def rank(b: str) -> tuple[bool, float, int]:
        # without ablation evidence a join block comes after the fixed ones
        return b in done, -impacts.get(b, 0.0), _PRIORITY.index(b) if b in _PRIORITY else len(_PRIORITY)

    ranked = sorted(candidates, key=rank)
    fresh = [b for b in ranked if b not in done]
    if variant % 2 == 1 and not done and len(fresh) >= 2:
        return fresh[1]
    return ranked[0]


def _plan(spec: SolutionSpec, block: str, move: Move, start: dict[str, Any], chain: list[str],
          base_score: float | None, note: str) -> RefinementPlan | None:
    start_spec = set_block_state(spec, block, start)
    changed = move.apply(start_spec)
    if changed is None:
        return None
    state = block_state(changed, block)
    steps = [_move(block, m).text for m in chain] + [move.text]
    text = f"Refine the {block_title(block)} block: {move.text}"
    if chain:
        text += f", on top of the kept changes ({'; '.join(_move(block, m).text for m in chain)})"
    text += f". {note}".rstrip()
    return RefinementPlan(
        text=text.strip(),
        data={
            "block": block,
            "move": move.id,
            "chain": chain + [move.id],
            "steps": steps,
            "start": _key(start),
            "state": state,
            "base_score": base_score,
            "lower_is_better": spec.facts.lower_is_better,
        },
    )


def _move(block: str, move_id: str) -> Move:
    move = find_move(block, move_id)
    if move is None:
        raise KeyError(f"block '{block}' has no move '{move_id}'")
    return move


def _catalogue_order(block: str, variant: int) -> list[str]:
    """Move ids in catalogue order for track 0; an odd track takes every other move first (the 2nd,
    4th, ...), so two tracks try different moves from the start; later tracks also rotate the top
    three."""
    ids = [m.id for m in moves_for(block)]
    if variant % 2 == 1:
        ids = ids[1::2] + ids[0::2]
    top, rest = ids[:3], ids[3:]
    shift = (variant // 2) % len(top) if top else 0
    return top[shift:] + top[:shift] + rest


def next_plan(spec: SolutionSpec, block: str, history: list[PlanAttempt], base_score: float | None = None,
              variant: int = 0) -> RefinementPlan | None:
    """The next untried move for ``block``, steered by the scores of the earlier attempts."""
    lower = spec.facts.lower_is_better
    base_state = block_state(spec, block)
    known = {m.id for m in moves_for(block)}
    attempts = [(h.plan.data, h.score) for h in history
                if h.plan.data.get("block") == block and h.plan.data.get("move") in known]
    for data, _ in attempts:
        if base_score is None and data.get("base_score") is not None:
            base_score = float(data["base_score"])
    tried_states = {_key(base_state)} | {_key(d["state"]) for d, _ in attempts if "state" in d}
    tried_pairs = {(d.get("start"), d.get("move")) for d, _ in attempts}

    scored = [(d, s) for d, s in attempts if s is not None]
    best = None
    for data, score in scored:
        if best is None or _better(score, best[1], lower):
            best = (data, score)
    starts: list[tuple[dict[str, Any], list[str], list[str], str]] = []
    if best is not None and (base_score is None or _better(best[1], base_score, lower)):
        data, score = best
        kept = _move(block, data["move"])
        preferred = [data["move"]] if kept.repeat else []
        note = (f"'{kept.text}' improved the score to {_fmt(score)} (base {_fmt(base_score)}); "
                "continuing from there.")
        starts.append((data["state"], list(data.get("chain", [data["move"]])), preferred, note))
    last = attempts[-1] if attempts else None
    preferred_base: list[str] = []
    note = "First step for this block." if not attempts else (
        f"No attempt beat the base score {_fmt(base_score)} yet; trying another direction."
    )
    turn_note = note
    if last is not None and last[0].get("chain") == [last[0].get("move")]:
        last_move = _move(block, last[0]["move"])
        opposite = last_move.opposite
        if opposite and (last[1] is None or base_score is None or not _better(last[1], base_score, lower)):
            preferred_base = [opposite]
            turn_note = (f"'{last_move.text}' gave {_fmt(last[1])} against {_fmt(base_score)}; "
                         "trying the opposite direction.")
    starts.append((base_state, [], preferred_base, note))

    for start, chain, preferred, why in starts:
        order = preferred + [m for m in _catalogue_order(block, variant) if m not in preferred]
        for move_id in order:
            if (_key(start), move_id) in tried_pairs:
                continue
            reason = turn_note if move_id in preferred and not chain else why
            plan = _plan(spec, block, _move(block, move_id), start, chain, base_score, reason)
            if plan is None or _key(plan.data["state"]) in tried_states:
                continue
            return plan
    return None


def extract(script: ScoredScript, summary: AblationSummary | None, refined: list[str], variant: int = 0) -> BlockPlan:
    spec = spec_of(script.script)
    code = script.script.code
    if spec is None:
        return _opaque_block(code)
    name = choose_block(spec, code, summary, refined, variant)
    if name is None:
        return _opaque_block(code)
    plan = next_plan(spec, name, [], script.score, variant)
    if plan is None:  # cannot happen for an applicable block, but never hand back a planless block
        plan = RefinementPlan(text="No refinement left for this block.", data={"block": name})
    impacts = block_impacts(summary)
    if impacts.get(name):
        plan.text += f" (ablation: changing this part moved the score by up to {impacts[name]:.4g})"
    return BlockPlan(block=find_blocks(code)[name], name=name, plan=plan)


def _opaque_block(code: str) -> BlockPlan:
    """A script this brain cannot reason about: hand back a real block with an empty plan."""
    blocks = find_blocks(code)
    name, block = next(iter(blocks.items()), ("script", code))
    return BlockPlan(block=block, name=name, plan=RefinementPlan(text="No structured refinement available.", data={}))


def plan(script: Script, block: str, history: list[PlanAttempt], variant: int = 0) -> RefinementPlan | None:
    spec = spec_of(script)
    name = block_name(block) or _enclosing_block(script.code, block)
    if spec is None or name is None or not moves_for(name):
        return None
    return next_plan(spec, name, history, variant=variant)


def _enclosing_block(code: str, fragment: str) -> str | None:
    for name, text in find_blocks(code).items():
        if fragment in text:
            return name
    return None


def implement(script: Script, block: str, plan_: RefinementPlan) -> Script:
    if block not in script.code:
        raise BlockNotFound("the block to refine is not a verbatim part of the script")
    spec = spec_of(script)
    name = plan_.data.get("block") or block_name(block) or _enclosing_block(script.code, block)
    if spec is None or name is None or "state" not in plan_.data:
        return script
    new_spec = set_block_state(spec, name, plan_.data["state"])
    new_spec.history.append(f"{name}: {plan_.data.get('move', 'change')}")
    whole = find_blocks(script.code).get(name)
    target = block if block_name(block) == name else whole
    if target is None:
        raise BlockNotFound(f"the script has no '{name}' block")
    code = replace_block(script.code, target, render_block(name, new_spec))
    label = f"{spec.label} [{plan_.data.get('move', name)}]"
    return to_script(new_spec, code=code, label=label)
