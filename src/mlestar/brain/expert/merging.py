"""Candidates, merges and the final-mode switch: turning specs into whole scripts."""

from __future__ import annotations

from mlestar.brain.expert.cards import CARDS, card_for_name, rank_cards
from mlestar.brain.expert.facts import task_facts
from mlestar.brain.expert.render import to_script
from mlestar.brain.expert.solution import new_spec, resize_models, revise, spec_of, unique_key, with_context
from mlestar.brain.protocol import BrainContext, ModelCard, ScoredScript, Script
from mlestar.core import contract


def candidate(ctx: BrainContext, card: ModelCard, cap: int | None = None) -> Script:
    """A complete single-model script for ``card`` (a free-text card maps to the nearest known one)."""
    known = card_for_name(card.name) or card_for_name(card.description[:200])
    ranked = rank_cards(task_facts(ctx), ctx.available_packages)
    if known is None or known.name not in {c.name for c in ranked}:
        known = ranked[0] if ranked else CARDS["hist_gb"]
    spec = new_spec(ctx, known.name, cap)
    return to_script(spec, label=known.name)


def merge(ctx: BrainContext, base: ScoredScript, addition: ScoredScript, cap: int | None = None) -> Script:
    """The base solution training the addition's models too; predictions are blended on fold 0.

    The merged script takes the track's seed, so parallel tracks grow apart from here on.
    """
    old = spec_of(base.script)
    other = spec_of(addition.script)
    if old is None or other is None:
        return base.script
    new = with_context(old, ctx)
    for m in other.models:
        if any(e.card == m.card and e.params == m.params for e in new.models):
            continue  # the same model twice adds time, not diversity
        new.models.append(m.model_copy(update={"key": unique_key(new, m.card)}, deep=True))
    if len(new.models) == len(old.models):
        return base.script
    resize_models(new, cap)
    new.history.append(f"merged {', '.join(m.key for m in other.models)}")
    return revise(base.script, old, new, label=f"merge {new.label}")


def final_code(code: str) -> str:
    """The script switched to final mode (train on everything, predict test, write the submission)."""
    return contract.set_final_mode(code)


def final_script(script: Script) -> Script:
    return Script(code=final_code(script.code), label=f"{script.label} (final)".strip(), info=dict(script.info))
