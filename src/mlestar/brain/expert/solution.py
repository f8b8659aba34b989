"""Building solution specs for a task, and applying changed specs to existing code.

The code is the truth: changing a solution re-renders only the blocks whose spec changed and
splices them into the script as it is, so edits made elsewhere in the code survive.
"""

from __future__ import annotations

from mlestar.brain.expert.blocks import block_order, changed_blocks, insert_block, remove_block, swap_block
from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import TaskFacts, task_facts
from mlestar.brain.expert.neural import fit_seconds
from mlestar.brain.expert.render import render_block, spec_state, to_script
from mlestar.brain.expert.sizing import learning_rate_for, round_budget, text_tuning_affordable
from mlestar.brain.expert.spec import (
    CleaningSpec,
    EncodingSpec,
    FeatureSpec,
    MediaSpec,
    ModelSpec,
    SolutionSpec,
    TrainingSpec,
    attach_state,
    load_spec,
)
from mlestar.brain.protocol import BlockNotFound, BrainContext, Script
from mlestar.core.contract import find_blocks

LOG_METRICS = ("rmsle", "msle", "mean_squared_log_error")


def default_features(facts: TaskFacts, card_name: str) -> FeatureSpec:
    """Features any good first draft has: calendar parts of dates; for tree models, the shape of the
    text and a text model's out-of-fold predictions (stacking), and on text tasks the n-grams'
    leading SVD components too, next to the tabular columns."""
    groups = []
    family = CARDS[card_name].family
    if facts.date_cols:
        groups.append("datetime_parts")
    if facts.text_cols and family not in ("text_linear",):
        groups.append("text_stats")
    if facts.ngram_cols and family in ("gbdt", "forest"):
        groups.append("text_oof")
        if facts.is_text:
            groups.append("text_svd")
    return FeatureSpec(
        groups=groups,
        ratio_cols=list(facts.top_numeric),
        group_pairs=[[c, n] for c in facts.top_cats[:2] for n in facts.top_numeric[:2]],
        interaction_cats=list(facts.top_cats[:3]),
    )


def model_spec(card_name: str, facts: TaskFacts, *, key: str | None = None, share: float = 1.0,
               cap: int | None = None) -> ModelSpec:
    """A card's starting configuration, sized to its share of the script's time budget."""
    card = CARDS[card_name]
    params = dict(card.params)
    if "tune" in params:
        params["tune"] = text_tuning_affordable(facts)
    rounds = round_budget(card_name, facts, share, cap) if card.uses_rounds else 0
    lr_key = card.knobs.learning_rate
    if lr_key is not None and lr_key in params:
        params[lr_key] = learning_rate_for(rounds, params[lr_key])
    early = 100 if rounds >= 1000 else 50
    if cap:
        early = min(early, max(10, cap // 4))
    if card.family == "neural":
        params["fit_seconds"] = fit_seconds(facts, share)
        early = max(3, rounds // 4)  # epochs without a better validation loss
    elif facts.media is not None and card.knobs.bins is not None and card.knobs.bins in params:
        # media features are dense summaries: 63 bins lose nothing and build histograms 4x faster
        params[card.knobs.bins] = min(63, params[card.knobs.bins])
        early = min(early, 30)
    return ModelSpec(key=key or card_name, card=card_name, params=params, max_rounds=rounds, early_stopping=early)


def learning_rate_key(m: ModelSpec) -> str | None:
    """The model's learning-rate parameter, when its card has one and the model sets it."""
    key = CARDS[m.card].knobs.learning_rate
    return key if key is not None and key in m.params else None


def default_media(facts: TaskFacts) -> MediaSpec | None:
    """A first representation: for images, gradients, colours and a thumbnail; for audio, the
    timbre (MFCC), its changes, the shape in time and the spectrum."""
    if facts.media is None:
        return None
    if facts.media.kind == "image":
        return MediaSpec(features=["gradients", "color_hist", "pixels"])
    clip = min(10.0, max(0.25, facts.media.duration_s))
    return MediaSpec(clip_s=clip, features=["mfcc", "deltas", "temporal", "spectral"])


def new_spec(ctx: BrainContext, card_name: str, cap: int | None = None) -> SolutionSpec:
    facts = task_facts(ctx)
    training = TrainingSpec()
    if facts.task_type == "regression" and facts.metric in LOG_METRICS:
        training.target_transform = "log1p"  # the metric lives on a log scale: so should the model
    return SolutionSpec(
        facts=facts,
        cleaning=CleaningSpec(drop_cols=list(facts.drop_cols)),
        features=default_features(facts, card_name),
        encoding=EncodingSpec(),
        models=[model_spec(card_name, facts, cap=cap)],
        training=training,
        media=default_media(facts),
    )


def resize_models(spec: SolutionSpec, cap: int | None = None) -> None:
    """Share the time budget among all models of a spec (after a merge adds one)."""
    share = spec.budget_scale / max(1, len(spec.models))
    for m in spec.models:
        card = CARDS[m.card]
        if not card.uses_rounds:
            continue
        budget = round_budget(m.card, spec.facts, share, cap)
        if card.family == "neural":
            m.params["fit_seconds"] = min(m.params.get("fit_seconds", 1e9), fit_seconds(spec.facts, share))
        if budget < m.max_rounds:
            m.max_rounds = budget
            lr_key = learning_rate_key(m)
            if lr_key is not None:
                m.params[lr_key] = learning_rate_for(budget, m.params[lr_key])


def unique_key(spec: SolutionSpec, card_name: str) -> str:
    taken = {m.key for m in spec.models}
    if card_name not in taken:
        return card_name
    n = 2
    while f"{card_name}_{n}" in taken:
        n += 1
    return f"{card_name}_{n}"


# --- specs and code --------------------------------------------------------------------------------

def with_context(spec: SolutionSpec, ctx: BrainContext) -> SolutionSpec:
    """A copy running with the context's seed and threads (each track has its own seed)."""
    new = spec.copy_deep()
    new.facts.seed = ctx.seed
    new.facts.threads = max(1, ctx.threads)
    return new


def spec_of(script: Script) -> SolutionSpec | None:
    return load_spec(script.code, script.info)


def apply_spec(code: str, spec: SolutionSpec, blocks: list[str]) -> str:
    """``code`` with ``blocks`` re-rendered from ``spec`` (put in place when new, taken out when
    ``spec`` has no such block any more) and the state comment brought up to date."""
    order = block_order(spec)
    for name in blocks:
        if name not in order:
            code = remove_block(code, name)
        elif name in find_blocks(code):
            code = swap_block(code, name, render_block(name, spec))
        else:
            code = insert_block(code, order, name, render_block(name, spec))
    return attach_state(code, spec_state(spec))


def revise(script: Script, old: SolutionSpec, new: SolutionSpec, label: str | None = None) -> Script:
    """The script with every block whose spec changed re-rendered (others kept as they are)."""
    blocks = changed_blocks(old, new)
    present = find_blocks(script.code)
    # blocks both specs have must be in the code; a block one spec lacks (a join) is put in or taken out
    missing = [b for b in blocks if b not in present and b in block_order(old) and b in block_order(new)]
    if missing or not present:  # a script without markers for a changed block: render it whole
        return to_script(new, label=label or script.label)
    try:
        code = apply_spec(script.code, new, blocks)
    except BlockNotFound:  # nothing to put a new block after: render it whole
        return to_script(new, label=label or script.label)
    return to_script(new, code=code, label=label or script.label)
