"""Ablation studies that really run: one script measuring the solution with parts removed.

The ablation script keeps the solution's harness (setup, loading) and its blocks at module level,
then defines one function per variant that re-declares only the blocks the variant changes and runs
the validation block inside the function, so every variant reuses the loaded data and differs from the
baseline in exactly one component. Each variant prints ``ABLATION <component>: <score>``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlestar.brain.expert.blocks import block_order, changed_blocks
from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import TaskFacts
from mlestar.brain.expert.joins import join_columns, keys_text
from mlestar.brain.expert.moves import AUDIO_GROUPS, FEATURE_GROUP_TEXT, IMAGE_GROUPS
from mlestar.brain.expert.render import render_block
from mlestar.brain.expert.sizing import estimated_script_s
from mlestar.brain.expert.solution import learning_rate_key, model_spec, resize_models, spec_of
from mlestar.brain.expert.spec import INFO_KEY, SolutionSpec, attach_state, read_state
from mlestar.brain.protocol import AblationSummary, ScoredScript, Script
from mlestar.core import contract
from mlestar.core.contract import block_body, find_blocks, wrap_block

Variant = Callable[[SolutionSpec], SolutionSpec | None]


@dataclass(frozen=True)
class Component:
    """A part of a solution an ablation measures by a variant without it: the inverse of some moves.

    ``block`` is the one refinable block an effect of this component points refinement to; the
    ablation script itself re-declares whichever blocks the variant's spec changes.
    """

    id: str
    block: str
    text: str  # what the variant does, in words; {encoding} and {top_numeric} are filled in per solution
    variant: Variant
    undoes: tuple[str, ...] = ()  # ids of the refinement moves the variant takes back

    def describe(self, spec: SolutionSpec) -> str:
        return self.text.format(encoding=describe_encoding(spec), top_numeric=", ".join(spec.facts.top_numeric[:2]))


def _no_features(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.features.groups:
        return None
    new = spec.copy_deep()
    new.features.groups = []
    return new


def _drop_columns(columns_of: Callable[[TaskFacts], list[str]]) -> Variant:
    def variant(spec: SolutionSpec) -> SolutionSpec | None:
        present = [c for c in columns_of(spec.facts) if c not in spec.cleaning.drop_cols]
        left = [c for c in spec.facts.feature_cols if c not in present and c not in spec.cleaning.drop_cols]
        if not present or not left:
            return None  # dropping them would leave nothing to learn from
        new = spec.copy_deep()
        new.cleaning.drop_cols = spec.cleaning.drop_cols + present
        return new

    return variant


def _ordinal(spec: SolutionSpec) -> SolutionSpec | None:
    if not spec.facts.cat_cols or (spec.encoding.method == "ordinal" and not spec.encoding.extras):
        return None
    new = spec.copy_deep()
    new.encoding.method = "ordinal"
    new.encoding.extras = []
    return new


def describe_encoding(spec: SolutionSpec) -> str:
    extras = f" + {' + '.join(spec.encoding.extras)} encoding" if spec.encoding.extras else ""
    return f"{spec.encoding.method} categories{extras}"


def _default_params(spec: SolutionSpec) -> SolutionSpec | None:
    first = spec.models[0]
    default = model_spec(first.card, spec.facts, key=first.key, cap=first.max_rounds or None)
    if default.params == first.params and default.seeds == first.seeds:
        return None
    new = spec.copy_deep()
    new.models[0] = default.model_copy(update={"max_rounds": first.max_rounds or default.max_rounds})
    return new


def _single_model(spec: SolutionSpec) -> SolutionSpec | None:
    if len(spec.models) < 2:
        return None
    new = spec.copy_deep()
    new.models = new.models[:1]
    return new


def _no_bagging(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.training.bagging == "none" and all(m.seeds == 1 for m in spec.models):
        return None
    new = spec.copy_deep()
    new.training.bagging = "none"
    for m in new.models:
        m.seeds = 1
    return new


def _raw_target(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.training.target_transform == "none":
        return None
    new = spec.copy_deep()
    new.training.target_transform = "none"
    return new


def _smaller_trees(spec: SolutionSpec) -> SolutionSpec | None:
    m = spec.models[0]
    capacity = CARDS[m.card].knobs.capacity
    if capacity is None:
        if CARDS[m.card].family not in ("linear", "text_linear"):
            return None
        new = spec.copy_deep()
        # ten times stronger regularisation (C for classifiers, alpha for ridge / SGD)
        if "C" in m.params and spec.facts.task_type != "regression":
            new.models[0].params["C"] = m.params["C"] / 10
        elif "alpha" in m.params:
            new.models[0].params["alpha"] = m.params["alpha"] * 10
        else:
            return None
        return new
    new = spec.copy_deep()
    value = m.params[capacity.param]
    # one capacity step down, leaf counts rounded down
    smaller = value - capacity.step if capacity.additive else int(value // capacity.step)
    new.models[0].params[capacity.param] = max(capacity.low, smaller)
    return new


def _no_class_weight(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.training.class_weight == "none":
        return None
    new = spec.copy_deep()
    new.training.class_weight = "none"
    return new


def _no_char_ngrams(spec: SolutionSpec) -> SolutionSpec | None:
    first = spec.models[0]
    if not first.params.get("use_char", False):
        return None
    new = spec.copy_deep()
    new.models[0].params["use_char"] = False
    return new


def _without_group(group: str) -> Variant:
    def variant(spec: SolutionSpec) -> SolutionSpec | None:
        if group not in spec.features.groups or len(spec.features.groups) < 2:
            return None  # alone it is what "engineered_features" measures
        new = spec.copy_deep()
        new.features.groups = [g for g in spec.features.groups if g != group]
        return new

    return variant


def _faster_learning(spec: SolutionSpec) -> SolutionSpec | None:
    first = spec.models[0]
    key = learning_rate_key(first)
    if key is None or first.params[key] >= 0.3:
        return None
    new = spec.copy_deep()
    new.models[0].params[key] = min(0.3, first.params[key] * 3)
    return new


_HYPERPARAMETER_MOVES = ("lower_lr", "raise_lr", "more_capacity", "less_capacity", "min_leaf_up", "min_leaf_down",
                         "regularize", "fewer_columns", "fewer_rows", "weaker_reg", "stronger_reg", "trigrams",
                         "toggle_chars", "seed_bagging", "patience")
_FEATURE_MOVES = tuple(f"add_{group}" for group in FEATURE_GROUP_TEXT)

def _without_group(group: str) -> Variant:
    def variant(spec: SolutionSpec) -> SolutionSpec | None:
        if spec.media is None or group not in spec.media.features or len(spec.media.features) < 2:
            return None
        new = spec.copy_deep()
        assert new.media is not None
        new.media.features = [g for g in new.media.features if g != group]
        return new

    return variant


def _half_resolution(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.media is None or spec.facts.media is None or spec.facts.media.kind != "image":
        return None
    if spec.media.resolution // 2 < 8:
        return None
    new = spec.copy_deep()
    assert new.media is not None
    new.media.resolution = spec.media.resolution // 2
    return new


def _no_augmentation(spec: SolutionSpec) -> SolutionSpec | None:
    if spec.media is None or spec.media.augment == 0 or not any(CARDS[m.card].family == "neural" for m in spec.models):
        return None
    new = spec.copy_deep()
    assert new.media is not None
    new.media.augment = 0.0
    return new


_MEDIA_GROUP_TEXT = {**IMAGE_GROUPS, **AUDIO_GROUPS}
_MEDIA_COMPONENTS = tuple(
    Component(f"{group}_features", "representation", f"without the {group.replace('_', ' ')} features",
              _without_group(group), (f"add_{group}",))
    for group in _MEDIA_GROUP_TEXT
) + (
    Component("resolution", "media_loading", "the images decoded at half the resolution", _half_resolution,
              ("higher_resolution",)),
    Component("augmentation", "media_loading", "no train-time augmentation", _no_augmentation,
              ("stronger_augmentation",)),
)

# Every component a solution could be measured without, most informative first.
COMPONENTS: dict[str, Component] = {c.id: c for c in (
    Component("blend", "model", "only the first model instead of the blend", _single_model, ("add_model",)),
    *_MEDIA_COMPONENTS,
    Component("engineered_features", "feature_engineering", "without the engineered features", _no_features,
              _FEATURE_MOVES),
    Component("encoding", "categorical_encoding", "plain ordinal codes instead of {encoding}", _ordinal,
              ("onehot", "native", "target_encoding", "count_encoding", "frequency_encoding")),
    Component("categorical_columns", "categorical_encoding", "without the categorical columns",
              _drop_columns(lambda f: f.cat_cols)),
    Component("hyperparameters", "model", "default hyper-parameters for the first model", _default_params,
              _HYPERPARAMETER_MOVES),
    Component("target_transform", "validation", "the raw target instead of its log", _raw_target, ("target_log",)),
    Component("bagging", "validation", "a single model instead of seed / fold bagging", _no_bagging,
              ("fold_bagging", "seed_bagging")),
    Component("class_weight", "model", "without class weights", _no_class_weight, ("class_weight",)),
    Component("text_columns", "model", "without the text columns", _drop_columns(lambda f: f.text_cols)),
    Component("stacked_text_model", "feature_engineering", "without the stacked text model's predictions",
              _without_group("text_oof"),
              ("add_text_oof", "text_model_weaker_reg", "text_model_stronger_reg")),
    Component("text_svd", "feature_engineering", "without the n-gram SVD components",
              _without_group("text_svd"), ("add_text_svd", "more_text_components", "fewer_text_components")),
    Component("char_ngrams", "model", "word n-grams only, no character n-grams", _no_char_ngrams, ("toggle_chars",)),
    Component("top_numeric_columns", "feature_engineering", "without the strongest numeric columns ({top_numeric})",
              _drop_columns(lambda f: f.top_numeric[:2])),
    Component("model_capacity", "model", "a smaller / more regularised first model", _smaller_trees,
              ("more_capacity", "weaker_reg")),
    Component("learning_rate", "model", "a three times higher learning rate", _faster_learning, ("lower_lr",)),
)}


def _without_join(name: str) -> Variant:
    """The solution with one table's joined columns taken out again (by name, in the cleaning block),
    so the variant still loads and joins everything and differs in that table's columns alone."""

    def variant(spec: SolutionSpec) -> SolutionSpec | None:
        join = next((j for j in spec.joins if j.name == name), None)
        if join is None:
            return None
        columns = [c for names in join_columns(join).values() for c in names]
        added = [c for c in columns if c not in spec.cleaning.drop_cols]
        new = spec.copy_deep()
        new.cleaning.drop_cols = spec.cleaning.drop_cols + added
        return new

    return variant


def join_components(spec: SolutionSpec) -> list[Component]:
    """One component per joined table, named after its block: what the table adds to the score."""
    # the texts are format strings (see Component.describe): a brace in a file name stays a brace
    components = []
    for j in spec.joins:
        text = f"without the {j.file} table (joined on {keys_text(j)})".replace("{", "{{").replace("}", "}}")
        components.append(Component(j.name, j.name, text, _without_join(j.name)))
    return components


def choose(spec: SolutionSpec, previous: list[AblationSummary], limit: int = 3) -> list[tuple[Component, SolutionSpec]]:
    """2-4 components to ablate, preferring those no earlier study measured; every joined table not
    yet measured is, on top of them, so a study names each table's contribution."""
    studied = {name for summary in previous for name in summary.effects}
    components = join_components(spec) + list(COMPONENTS.values())
    usable = [(c, v) for c in components if (v := c.variant(spec)) is not None]
    fresh = [item for item in usable if item[0].id not in studied]
    tables = [item for item in fresh if item[0].id in {j.name for j in spec.joins}]
    chosen = tables + [item for item in fresh if item not in tables][: max(1, limit - len(tables))]
    if len(chosen) < 2:
        chosen += [item for item in usable if item not in chosen][: 2 - len(chosen)]
    return chosen


def _indent(code: str) -> str:
    return textwrap.indent(code, "    ", lambda line: bool(line.strip()))


def _budget_scaled(spec: SolutionSpec, runs: int) -> SolutionSpec:
    """A copy whose models fit ``runs`` trainings into one script's time."""
    f = spec.facts
    estimate = estimated_script_s([m.card for m in spec.models], f, [m.max_rounds for m in spec.models])
    if estimate * runs <= 0.6 * f.timeout_s:
        return spec
    scaled = spec.copy_deep()
    scaled.budget_scale = max(0.1, spec.budget_scale * 0.6 * f.timeout_s / (estimate * runs))
    resize_models(scaled)
    return scaled


def write(script: ScoredScript, previous: list[AblationSummary]) -> Script:
    spec = spec_of(script.script)
    if spec is None:
        return _baseline_only(script.script)
    chosen = choose(spec, previous)
    code = script.script.code
    blocks = find_blocks(code)
    if not chosen or any(name not in blocks for name in block_order(spec)):
        return _baseline_only(script.script)
    runs = len(chosen) + 1
    scaled = _budget_scaled(spec, runs)
    shared = dict(blocks)
    if scaled is not spec:
        shared["model"] = render_block("model", scaled)
    validation = _rename_score(block_body(blocks["validation"]))
    prelude, run_part = _split_run(validation)

    parts = [
        f'"""Ablation study of {script.script.label or spec.label}: the baseline and {len(chosen)} variants, each\n'
        "differing from it in one component. Prints 'ABLATION <component>: <score>' per variant.\n"
        '"""\n'
    ]
    parts += [shared[name] for name in block_order(spec) if name != "validation"]
    # The validation helpers are shared; each variant runs the validation itself.
    parts.append(wrap_block("validation_helpers", prelude))
    functions = [("baseline", "the solution as it is", "", False)]
    measured = {}
    for component, variant in chosen:
        redeclared = _redeclared(spec, variant)
        text = component.describe(spec)
        # The state names the blocks the variant's function re-declares, not the component's own block.
        measured[component.id] = {"block": "+".join(redeclared), "text": text}
        if scaled is not spec:
            variant = variant.copy_deep()
            variant.budget_scale = scaled.budget_scale
            resize_models(variant)
        altered = "\n".join(block_body(render_block(name, variant)) for name in redeclared)
        # A re-declared validation block runs the validation itself.
        validates = "validation" in redeclared
        functions.append((component.id, text, _rename_score(altered) if validates else altered, validates))
    runner = [contract.begin_marker("ablation")]
    for name, text, altered, validates in functions:
        run = "" if validates else run_part
        body = (altered + "\n" if altered else "") + run + "\nreturn VAL_SCORE\n"
        runner.append(f"def run_{name}():\n    \"\"\"{text[0].upper() + text[1:]}.\"\"\"\n{_indent(body)}")
    # Every variant saves its fold-0 predictions; the script's are the baseline's (the contract).
    predictions = f"os.path.join(OUTPUT_DIR, {contract.VAL_PREDICTIONS_NAME!r})"
    runner.append(
        "results = {}\n"
        f"for name, run in [{', '.join(f'({n!r}, run_{n})' for n, _, _, _ in functions)}]:\n"
        "    print(f\"--- ablation variant: {name}\")\n"
        "    results[name] = run()\n"
        "    if name == 'baseline':\n"
        f"        with open({predictions}, 'rb') as saved:\n"
        "            baseline_predictions = saved.read()\n"
        f"    {contract.ablation_print('name', 'results[name]')}\n"
        f"with open({predictions}, 'wb') as kept:\n"
        "    kept.write(baseline_predictions)\n"
        + contract.score_print("results['baseline']") + "\n"
        + contract.end_marker("ablation")
    )
    parts.append("\n\n".join(runner) + "\n")
    state = {
        "kind": "ablation",
        "lower_is_better": spec.facts.lower_is_better,
        "metric": spec.facts.metric,
        "components": measured,
    }
    body = "\n\n".join(p.rstrip("\n") + "\n" for p in parts)
    return Script(code=attach_state(body, state), label=f"ablation of {spec.label}", info={INFO_KEY: state})


def _redeclared(spec: SolutionSpec, variant: SolutionSpec) -> list[str]:
    """The blocks a variant's function re-declares: those it changes, and for a change of how media
    are decoded everything downstream too (the representation and the models read its settings)."""
    changed = changed_blocks(spec, variant)
    if "media_loading" in changed:
        changed = list(dict.fromkeys(changed + ["representation", "model"]))
    return [name for name in block_order(spec) if name in changed]


RUN_MARKER = "# ---- run:"


def _split_run(validation: str) -> tuple[str, str]:
    """(helpers and settings, the statements that run the validation) of a validation block body."""
    index = validation.find(RUN_MARKER)
    if index < 0:
        return "", validation
    return validation[:index].rstrip("\n") + "\n", validation[index:]


def _rename_score(code: str) -> str:
    """Variants report their score through ``return``; only the runner prints the score line."""
    return contract.rename_score_label(code, "Variant validation performance")


def _baseline_only(script: Script) -> Script:
    """A script this brain cannot decompose: its ablation is the script itself as the baseline."""
    code = script.code.rstrip("\n") + (
        "\n\n# Only the baseline could be measured for this script.\n"
        + contract.ablation_print('"baseline"', "VAL_SCORE") + "\n" if "VAL_SCORE" in script.code else "\n"
    )
    state = {"kind": "ablation", "components": {}}
    return Script(code=code, label=f"ablation of {script.label}", info={INFO_KEY: state})


def summarize(ablation: Script, output: str, lower_is_better: bool) -> AblationSummary:
    state: dict[str, Any] = read_state(ablation.code, ablation.info) or {}
    lower = bool(state.get("lower_is_better", lower_is_better))
    described = state.get("components", {})
    values = contract.ablation_results(output)
    baseline = values.pop("baseline", None)
    if baseline is None:
        baseline = contract.parse_score(output)
    if baseline is None:
        return AblationSummary(text="The ablation study produced no baseline score; nothing was learned.",
                               effects={}, baseline_score=None)
    sign = -1.0 if lower else 1.0
    effects = {name: sign * (value - baseline) for name, value in values.items()}
    direction = "lower" if lower else "higher"
    metric = state.get("metric", "score")
    lines = [f"Baseline {metric}: {baseline:.6g} ({direction} is better)."]
    for name, effect in sorted(effects.items(), key=lambda item: item[1]):
        what = described.get(name, {}).get("text", name.replace("_", " "))
        if effect == 0:
            verdict = "the same as the baseline"
        else:
            verdict = f"{'worse' if effect < 0 else 'better'} than the baseline by {abs(effect):.4g}"
        lines.append(f"Variant '{name}' ({what}): {values[name]:.6g}, {verdict}.")
    missing = [n for n in described if n not in values]
    if missing:
        lines.append(f"No result for: {', '.join(missing)}.")
    if effects:
        key, effect = max(effects.items(), key=lambda item: abs(item[1]))
        if effect < 0:
            lines.append(f"Most important component: '{key}' (removing it costs {abs(effect):.4g}); "
                         "it carries the score and is worth refining further.")
        elif effect > 0:
            lines.append(f"Most impactful component: '{key}' (altering it gains {effect:.4g}); "
                         "as it stands it hurts and should be reworked.")
        else:
            lines.append("No component changed the score.")
    return AblationSummary(text=" ".join(lines), effects=effects, baseline_score=baseline)
