"""Debugging: recognise common failures in an error text and fix the spec that caused them.

Each rule matches an error, changes the solution spec and re-renders the affected blocks, so a fix
keeps the dev subsampling and the score line by construction. A rule applied once is not applied
again for the same script (``spec.history`` records it); ``None`` means no rule can help.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mlestar.brain.expert.cards import CARDS, fallback_cards
from mlestar.brain.expert.render import render_block, render_script, spec_state
from mlestar.brain.expert.solution import (
    learning_rate_key,
    model_spec,
    resize_models,
    revise,
    spec_of,
    unique_key,
)
from mlestar.brain.expert.spec import SolutionSpec, attach_state, state_kind
from mlestar.brain.protocol import BrainContext, Script
from mlestar.core import contract
from mlestar.core.contract import find_blocks

Fix = Callable[[SolutionSpec, re.Match[str], BrainContext], SolutionSpec | None]


@dataclass(frozen=True)
class Rule:
    id: str
    pattern: re.Pattern[str]
    fix: Fix
    text: str
    max_uses: int = 1  # how often the rule may fire on the same script lineage


def _missing_package(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    package = match.group(1).split(".")[0]
    broken = [m for m in spec.models if CARDS[m.card].package == package]
    if not broken:
        return None
    available = [p for p in ctx.available_packages if p != package]
    new = spec.copy_deep()
    present = {m.card for m in spec.models}
    models = []
    for m in new.models:
        if CARDS[m.card].package != package:
            models.append(m)
            continue
        if package in ("sklearn", "scikit-learn"):
            continue
        options = [c for c in fallback_cards(m.card, new.facts, available, present) if c.package != package]
        if options:
            replacement = options[0].name
            present.add(replacement)
            models.append(model_spec(replacement, new.facts, key=unique_key(new, replacement), cap=m.max_rounds or None))
    if not models:
        return None
    new.models = models
    return new


def _plain_encoding(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    if spec.encoding.method == "ordinal":
        return None
    new = spec.copy_deep()
    new.encoding.method = "ordinal"
    return new


def _lighter(spec: SolutionSpec, factor: float) -> SolutionSpec:
    new = spec.copy_deep()
    new.budget_scale = max(0.05, spec.budget_scale * factor)
    new.training.bagging = "none"
    for m in new.models:
        m.seeds = 1
        if "max_features" in m.params and isinstance(m.params["max_features"], int):
            m.params["max_features"] = max(5000, m.params["max_features"] // 4)
    if len(new.models) > 2:
        new.models = new.models[:2]
    resize_models(new)
    return new


def _out_of_memory(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    new = _lighter(spec, 0.7)
    new.models = new.models[:1]
    for m in new.models:
        bins = CARDS[m.card].knobs.bins
        if bins is not None and bins in m.params:
            m.params[bins] = min(63, m.params[bins])
    rows = spec.training.max_fit_rows or spec.facts.n_rows
    new.training.max_fit_rows = max(1000, int(rows * 0.5))
    new.features.groups = [g for g in new.features.groups if g not in ("cat_interactions", "value_counts", "products")]
    return new


def _cuda_memory(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    """The network does not fit the GPU: half the batch, half the width, and smaller images."""
    neural = [m for m in spec.models if CARDS[m.card].family == "neural"]
    if not neural:
        return None
    new = spec.copy_deep()
    for m in new.models:
        if CARDS[m.card].family == "neural":
            m.params["batch_size"] = max(8, int(m.params.get("batch_size", 64)) // 2)
            m.params["width"] = max(8, int(m.params.get("width", 16)) // 2)
    if new.media is not None and new.media.resolution > 32:
        new.media.resolution = max(32, int(new.media.resolution / 1.5))
    return new


def _timeout(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    new = _lighter(spec, 0.4)
    # Text features cost time of their own: fewer n-grams, and no SVD of them.
    new.features.ngram_vocabulary = max(5000, new.features.ngram_vocabulary // 4)
    new.features.groups = [g for g in new.features.groups if g != "text_svd"]
    for m in new.models:
        if m.params.get("tune"):
            m.params["tune"] = False  # one fit instead of a search over the regularisation
        rate = learning_rate_key(m)
        if rate is not None:
            m.params[rate] = min(0.3, round(m.params[rate] * 2, 4))
        m.early_stopping = max(10, m.early_stopping // 2)
        if CARDS[m.card].family == "forest":
            m.max_rounds = max(50, m.max_rounds // 3)
    return new


def _drop_failing_model(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    key = match.group(1)
    if len(spec.models) < 2 or key not in {m.key for m in spec.models}:
        return None
    new = spec.copy_deep()
    new.models = [m for m in new.models if m.key != key]
    return new


def _drop_features(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    if not spec.features.groups:
        return None
    new = spec.copy_deep()
    new.features.groups = new.features.groups[:-1]
    return new


def _degenerate_features(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    """A model met a column with nothing to learn (all missing or single-valued where it trained),
    typically a joined table's column: filter such columns strictly, then give up the newest join."""
    if spec.training.feature_filter != "strict":
        new = spec.copy_deep()
        new.training.feature_filter = "strict"  # re-renders the validation block, with its filter
        return new
    return _without_join(spec, spec.joins[-1].name) if spec.joins else None


def _failing_join(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    return _without_join(spec, match.group(1).lower())


def _without_join(spec: SolutionSpec, name: str) -> SolutionSpec | None:
    if name not in {j.name for j in spec.joins}:
        return None
    new = spec.copy_deep()
    new.joins = [j for j in new.joins if j.name != name]
    return new


def _swap_to_robust(spec: SolutionSpec, match: re.Match[str], ctx: BrainContext) -> SolutionSpec | None:
    """Last resort for an unknown failure inside a model: the most forgiving model we have."""
    first = spec.models[0]
    if first.card == "hist_gb":
        return None
    new = spec.copy_deep()
    new.models = [model_spec("hist_gb", new.facts, key=unique_key(new, "hist_gb"), cap=first.max_rounds or None)]
    new.encoding.method = "ordinal"
    return new


RULES: list[Rule] = [
    Rule("missing_package", re.compile(r"No module named '([\w.]+)'"), _missing_package,
         "a package is not installed: swap its models for installed ones"),
    Rule("timeout", re.compile(r"time limit|timed out|TimeoutExpired", re.IGNORECASE), _timeout,
         "too slow: fewer rounds, faster learning, no bagging", max_uses=3),
    Rule("cuda_memory", re.compile(r"CUDA out of memory|CUBLAS_STATUS_ALLOC_FAILED|CUDA error: out of memory"),
         _cuda_memory, "the network does not fit the GPU: smaller batches, a narrower network", max_uses=2),
    Rule("memory", re.compile(r"(?i:memory limit|MemoryError|bad_alloc|cannot allocate memory|out of memory)|^Killed",
                              re.MULTILINE), _out_of_memory,
         "out of memory: one model, fewer bins, fewer rows per model", max_uses=2),
    Rule("degenerate_features", re.compile(
        r"window shape cannot be larger than input array shape|All features are either constant or ignored|"
        r"there are not useful features|zero-size array to reduction operation"), _degenerate_features,
         "a model met a column with a single value or none (after a join): drop such columns strictly, "
         "then the newest join", max_uses=2),
    Rule("join_failure", re.compile(r"attach_table\(train, test, read_table\(.*?\), (JOIN_\w+)\)"),
         _failing_join, "joining an auxiliary table fails: leave that table out", max_uses=3),
    Rule("dtype", re.compile(
        r"could not convert string to float|Found unknown categor|DataFrame\.dtypes for data must be|"
        r"Cannot setitem on a Categorical|not supported between instances|Invalid columns:|pandas dtypes must be|"
        r"categorical_feature|Input (?:X |y )?contains NaN|unseen|unknown categor|dtype", re.IGNORECASE),
         _plain_encoding, "a type / category error: encode categoricals as plain numeric codes"),
    Rule("model_failure", re.compile(r'in (?:fit|predict)_(\w+)\n'), _drop_failing_model,
         "one model of the blend fails: drop it"),
    Rule("feature_failure", re.compile(r"in add_features\b"), _drop_features,
         "the newest feature group fails: remove it"),
    Rule("encoding_failure", re.compile(r"in (?:encode|target_encode|categorical_columns)\b"), _plain_encoding,
         "the encoding fails: fall back to ordinal codes"),
    Rule("model_swap", re.compile(r"in (?:fit|predict)_\w+|lightgbm|xgboost|catboost|sklearn", re.IGNORECASE),
         _swap_to_robust, "the model fails in an unrecognised way: switch to HistGradientBoosting"),
]


def fix(ctx: BrainContext, script: Script, error: str) -> Script | None:
    kind = state_kind(script.code, script.info)
    spec = spec_of(script)
    if spec is None:
        return _fix_unstructured(script, error, kind)
    used = [h.split(":", 1)[1].strip() for h in spec.history if h.startswith("debug:")]
    label = script.label or spec.label
    for rule in RULES:
        if used.count(rule.id) >= rule.max_uses:
            continue
        match = rule.pattern.search(error)
        if match is None:
            continue
        new = rule.fix(spec, match, ctx)
        if new is None:
            continue
        new.history.append(f"debug: {rule.id}")
        fixed = revise(script, spec, new, label=f"{label} [fix: {rule.id}]")
        if fixed.code != script.code:
            return _restore_harness(fixed, new)
    return None


def _restore_harness(script: Script, spec: SolutionSpec) -> Script:
    """A script missing its score line gets its validation block (and setup) rendered afresh."""
    if contract.mentions_score_line(script.code):
        return script
    code = script.code
    for name in ("setup", "validation"):
        current = find_blocks(code).get(name)
        if current is not None:
            code = code.replace(current, render_block(name, spec))
    if not contract.mentions_score_line(code):
        code = render_script(spec)
    return Script(code=attach_state(code, spec_state(spec)), label=script.label, info=dict(script.info))


_RUNNER = re.compile(r"^for name, run in \[(?P<items>.*)\]:$", re.MULTILINE)
_ITEM = re.compile(r"\('(\w+)', run_\w+\)")


def _fix_unstructured(script: Script, error: str, kind: str | None) -> Script | None:
    """An ablation script whose variant fails (or that runs too long) loses that variant."""
    if kind != "ablation":
        return None
    runner = _RUNNER.search(script.code)
    if runner is None:
        return None
    items = _ITEM.findall(runner.group("items"))
    failing = re.findall(r"in run_(\w+)", error)
    if failing and failing[-1] in items and failing[-1] != "baseline":
        drop = failing[-1]
    elif re.search(r"time limit|memory limit", error, re.IGNORECASE) and len(items) > 2:
        drop = items[-1]
    else:
        return None
    kept = ", ".join(f"({name!r}, run_{name})" for name in items if name != drop)
    code = script.code.replace(runner.group(0), f"for name, run in [{kept}]:")
    return Script(code=code, label=f"{script.label} [without {drop}]", info=dict(script.info))
