"""The registry of the expert's named code blocks, in script order (the markers are the script contract's).

A ``Block`` says everything about one block: its title, its template, whether refinement may rewrite
it, which part of a ``SolutionSpec`` it renders from (its state, read and written back) and the
template's variables. Rendering, refinement and re-rendering of changed blocks all read this list.

Besides the fixed blocks, a solution that joins auxiliary tables has one block per table
(``join_<table>``, its state the table's ``JoinSpec``) after the loading block, preceded by the
``joining`` block of shared helpers; ``block_order(spec)`` gives a solution's blocks in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import TaskFacts
from mlestar.brain.expert.spec import (
    CleaningSpec,
    EncodingSpec,
    FeatureSpec,
    JoinSpec,
    MediaSpec,
    ModelSpec,
    SolutionSpec,
    TrainingSpec,
)
from mlestar.brain.expert.templating import render_template
from mlestar.brain.protocol import BlockNotFound, replace_block
from mlestar.core.contract import find_blocks
from mlestar.task.media import KIND_EXTENSIONS

State = dict[str, Any]


@dataclass(frozen=True)
class Block:
    name: str
    title: str
    template: str  # under templates/
    refinable: bool  # setup and loading are the harness: refinement leaves them alone
    read: Callable[[SolutionSpec], State]  # the part of a spec the block renders from
    write: Callable[[SolutionSpec, State], None]  # puts such a state into a spec (in place)
    values: Callable[[SolutionSpec], dict[str, Any]]  # the template's variables besides the facts ``f``


def metric_code(facts: TaskFacts) -> str:
    """The metric snippet the grader itself runs, embedded verbatim."""
    from mlestar.metrics import default_metric, get_metric

    try:
        return get_metric(facts.metric).code.strip("\n")
    except Exception:  # an unknown metric name: score with the task type's default metric
        return get_metric(default_metric(facts.task_type)).code.strip("\n")


def model_source(m: ModelSpec, facts: TaskFacts) -> str:
    card = CARDS[m.card]
    return render_template(card.template, m=m, f=facts, card=m.card, title=card.title,
                           **card.template_vars).strip("\n")


def model_imports(models: list[ModelSpec]) -> list[str]:
    lines: list[str] = []
    for m in models:
        for line in CARDS[m.card].imports:
            if line not in lines:
                lines.append(line)
    plain = sorted(line for line in lines if line.startswith("import "))
    froms = sorted(line for line in lines if line.startswith("from "))
    return plain + froms


# --- per block: state read, state written, template variables ---------------------------------------

def _read_setup(spec: SolutionSpec) -> State:
    return {"seed": spec.facts.seed, "threads": spec.facts.threads}


def _write_setup(spec: SolutionSpec, state: State) -> None:
    spec.facts.seed = state.get("seed", spec.facts.seed)
    spec.facts.threads = state.get("threads", spec.facts.threads)


# The loading block renders from the task's facts alone: it has no state of its own.
def _read_loading(spec: SolutionSpec) -> State:
    return {}


def _write_loading(spec: SolutionSpec, state: State) -> None:
    return None


def _read_cleaning(spec: SolutionSpec) -> State:
    return spec.cleaning.model_dump(mode="json")


def _write_cleaning(spec: SolutionSpec, state: State) -> None:
    spec.cleaning = CleaningSpec.model_validate(state)


def _read_features(spec: SolutionSpec) -> State:
    return spec.features.model_dump(mode="json")


def _write_features(spec: SolutionSpec, state: State) -> None:
    spec.features = FeatureSpec.model_validate(state)


def _read_encoding(spec: SolutionSpec) -> State:
    return spec.encoding.model_dump(mode="json")


def _write_encoding(spec: SolutionSpec, state: State) -> None:
    spec.encoding = EncodingSpec.model_validate(state)


# Class weights are rendered by the model block (as sample weights), so they are its state.
def _read_model(spec: SolutionSpec) -> State:
    return {"models": [m.model_dump(mode="json") for m in spec.models], "class_weight": spec.training.class_weight}


def _write_model(spec: SolutionSpec, state: State) -> None:
    spec.models = [ModelSpec.model_validate(m) for m in state["models"]]
    spec.training.class_weight = state.get("class_weight", spec.training.class_weight)


def _model_values(spec: SolutionSpec) -> dict[str, Any]:
    families = {CARDS[m.card].family for m in spec.models}
    return {
        "imports": model_imports(spec.models),
        "media": spec.media,
        "class_weight": spec.training.class_weight,
        "models": [model_source(m, spec.facts) for m in spec.models],
        "specs": spec.models,
        "needs_text_helpers": bool(families & {"text_linear", "text_gbdt"}),
        "needs_linear_helpers": bool(families & {"linear", "text_linear"}),
    }


def _read_validation(spec: SolutionSpec) -> State:
    state = spec.training.model_dump(mode="json")
    state.pop("class_weight", None)
    return state


def _write_validation(spec: SolutionSpec, state: State) -> None:
    spec.training = TrainingSpec.model_validate(dict(state, class_weight=spec.training.class_weight))


# Media solutions: their loading (with augmentation) and representation are theirs to refine.
_LOADING_KEYS = ("resolution", "clip_s", "augment")


def _media(spec: SolutionSpec) -> MediaSpec:
    return spec.media if spec.media is not None else MediaSpec()


def _read_media_loading(spec: SolutionSpec) -> State:
    return _media(spec).model_dump(mode="json", include=set(_LOADING_KEYS))


def _read_representation(spec: SolutionSpec) -> State:
    return _media(spec).model_dump(mode="json", exclude=set(_LOADING_KEYS))


def _write_media(spec: SolutionSpec, state: State) -> None:
    spec.media = MediaSpec.model_validate({**_media(spec).model_dump(mode="json"), **state})


def needs_raw(spec: SolutionSpec) -> bool:
    """Whether a model of the solution learns from the decoded files themselves (a neural network)."""
    return any(CARDS[m.card].family == "neural" for m in spec.models)


def _loading_values(spec: SolutionSpec) -> dict[str, Any]:
    kind = spec.facts.media.kind if spec.facts.media else "image"
    return {"r": _media(spec), "extensions": sorted(KIND_EXTENSIONS[kind])}


def _representation_values(spec: SolutionSpec) -> dict[str, Any]:
    return {"r": _media(spec), "raw": needs_raw(spec)}


SETUP = Block("setup", "setup and metric", "setup.py.j2", False, _read_setup, _write_setup,
              lambda spec: {"metric_code": metric_code(spec.facts)})
MODEL = Block("model", "model and hyper-parameters", "model.py.j2", True, _read_model, _write_model, _model_values)
VALIDATION = Block("validation", "training, validation and prediction", "validation.py.j2", True,
                   _read_validation, _write_validation, lambda spec: {"t": spec.training})

MEDIA_BLOCKS: tuple[Block, ...] = (
    SETUP,
    Block("media_loading", "media loading and augmentation", "media_loading.py.j2", True, _read_media_loading,
          _write_media, _loading_values),
    Block("representation", "media representation (features)", "representation.py.j2", True,
          _read_representation, _write_media, _representation_values),
    MODEL,
    VALIDATION,
)

BLOCKS: tuple[Block, ...] = (
    SETUP,
    Block("loading", "data loading", "loading.py.j2", False, _read_loading, _write_loading, lambda spec: {}),
    Block("cleaning", "cleaning", "cleaning.py.j2", True, _read_cleaning, _write_cleaning,
          lambda spec: {"c": spec.cleaning}),
    Block("feature_engineering", "feature engineering", "feature_engineering.py.j2", True, _read_features,
          _write_features, lambda spec: {"fe": spec.features}),
    Block("categorical_encoding", "categorical encoding", "categorical_encoding.py.j2", True, _read_encoding,
          _write_encoding, lambda spec: {"e": spec.encoding}),
    MODEL,
    VALIDATION,
)
_BY_NAME: dict[str, Block] = {b.name: b for b in BLOCKS + MEDIA_BLOCKS}
BLOCK_ORDER = tuple(b.name for b in BLOCKS)  # a table solution's fixed blocks; one with joins has more
REFINABLE = tuple(b.name for b in _BY_NAME.values() if b.refinable)
BLOCK_TITLES = {b.name: b.title for b in _BY_NAME.values()}


# --- join blocks: one per auxiliary table, after the loading block ----------------------------------
JOINING = "joining"
JOIN_PREFIX = "join_"
_JOINS_AFTER = BLOCK_ORDER.index("loading") + 1


def is_join_block(name: str) -> bool:
    return name.startswith(JOIN_PREFIX)


def find_join(spec: SolutionSpec, name: str) -> JoinSpec | None:
    return next((j for j in spec.joins if j.name == name), None)


def _join_block(name: str) -> Block:
    def read(spec: SolutionSpec) -> State:
        join = find_join(spec, name)
        return join.model_dump(mode="json") if join is not None else {}

    def write(spec: SolutionSpec, state: State) -> None:
        others = [j for j in spec.joins if j.name != name]
        if not state:
            spec.joins = others
            return
        join = JoinSpec.model_validate(state)
        at = next((i for i, j in enumerate(spec.joins) if j.name == name), len(spec.joins))
        spec.joins = others[:at] + [join] + others[at:]

    def values(spec: SolutionSpec) -> dict[str, Any]:
        join = find_join(spec, name)
        if join is None:
            raise KeyError(f"the solution joins no table as '{name}'")
        return join_values(join)

    title = f"join of the {name.removeprefix(JOIN_PREFIX)} table"
    return Block(name, title, "join.py.j2", True, read, write, values)


def join_values(join: JoinSpec) -> dict[str, Any]:
    if join.relation == "lookup":
        relation = "a lookup table, one row per key"
    else:
        aggregations = "/".join((["count"] if join.count else []) + join.aggregations)
        relation = f"about {join.rows_per_key:.3g} rows per key, aggregated per key ({aggregations})"
    lines = []
    for link in join.links:
        test = "" if link.test_coverage is None else f", {link.test_coverage:.1%} of the test rows"
        share = f"{link.coverage:.1%} of the train rows{test}"
        lines.append(f"{link.prefix}: joined on {link.key_text()}; intake matched {share}")
    return {"j": join, "plan": join.plan(), "relation": relation, "coverage_lines": lines}


def _joining_source() -> str:
    """``mlestar/task/joining.py`` without its docstring and imports: the helpers a script embeds."""
    import ast
    import inspect

    from mlestar.task import joining

    source = inspect.getsource(joining)
    tree = ast.parse(source)
    lines = source.splitlines()
    kept = [node for node in tree.body
            if not isinstance(node, (ast.Import, ast.ImportFrom))
            and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    start = (kept[0].lineno - 1) if kept else len(lines)
    return "\n".join(lines[start:]).strip("\n")


_JOINING_BLOCK = Block(JOINING, "join helpers", "joining.py.j2", False, lambda spec: {},
                       lambda spec, state: None, lambda spec: {"helpers": _joining_source()})


def block_order(spec: SolutionSpec) -> list[str]:
    """The blocks of ``spec``'s script, in order (media solutions have blocks of their own)."""
    if spec.media is not None:
        return [b.name for b in MEDIA_BLOCKS]
    joins = [JOINING] + [j.name for j in spec.joins] if spec.joins else []
    return list(BLOCK_ORDER[:_JOINS_AFTER]) + joins + list(BLOCK_ORDER[_JOINS_AFTER:])


def blocks_of(spec: SolutionSpec) -> tuple[Block, ...]:
    return tuple(block_for(name) for name in block_order(spec))


def refinable_blocks(spec: SolutionSpec) -> list[str]:
    return [name for name in block_order(spec) if name in REFINABLE or is_join_block(name)]


def block_title(name: str) -> str:
    return BLOCK_TITLES.get(name) or block_for(name).title


def block_for(name: str) -> Block:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name == JOINING:
        return _JOINING_BLOCK
    if is_join_block(name):
        return _join_block(name)
    raise KeyError(f"no block named '{name}'")


def render_body(name: str, spec: SolutionSpec) -> str:
    """The code of block ``name`` (without its markers) rendered from ``spec``."""
    block = block_for(name)
    return render_template(block.template, f=spec.facts, **block.values(spec))


def block_state(spec: SolutionSpec, name: str) -> State:
    """The part of ``spec`` block ``name`` renders from."""
    return block_for(name).read(spec)


def set_block_state(spec: SolutionSpec, name: str, state: State) -> SolutionSpec:
    """A copy of ``spec`` whose block ``name`` renders from ``state``."""
    new = spec.copy_deep()
    block_for(name).write(new, state)
    return new


def _merged_order(old: SolutionSpec, new: SolutionSpec) -> list[str]:
    names = block_order(new)
    for name in block_order(old):
        if name not in names:  # a block only the old spec has (a join taken out) keeps its place
            after = block_order(old)[: block_order(old).index(name)]
            at = max((names.index(n) + 1 for n in after if n in names), default=0)
            names.insert(at, name)
    return names


def changed_blocks(old: SolutionSpec, new: SolutionSpec) -> list[str]:
    """The blocks, in script order, that render differently from ``new`` than from ``old`` (blocks
    one of them lacks included)."""
    old_names, new_names = set(block_order(old)), set(block_order(new))
    return [
        name
        for name in _merged_order(old, new)
        if (name in old_names) != (name in new_names)
        or block_for(name).read(old) != block_for(name).read(new)
    ]


def swap_block(code: str, name: str, new_block: str) -> str:
    """Replace block ``name`` of ``code`` by ``new_block`` (raises BlockNotFound when absent)."""
    current = find_blocks(code).get(name)
    if current is None:
        raise BlockNotFound(f"the script has no '{name}' block")
    return replace_block(code, current, new_block)


def insert_block(code: str, order: list[str], name: str, new_block: str) -> str:
    """``code`` with ``new_block`` placed after the nearest block that comes before ``name`` in
    ``order`` (raises BlockNotFound when the script has none of them)."""
    present = find_blocks(code)
    before = [n for n in order[: order.index(name)] if n in present]
    if not before:
        raise BlockNotFound(f"the script has no block to put '{name}' after")
    anchor = present[before[-1]]
    return code.replace(anchor, anchor + "\n\n" + new_block, 1)  # the spacing render_script gives


def remove_block(code: str, name: str) -> str:
    """``code`` without block ``name`` (unchanged when it has none)."""
    current = find_blocks(code).get(name)
    if current is None:
        return code
    spaced = "\n\n" + current
    return code.replace(spaced, "", 1) if spaced in code else code.replace(current, "", 1)
