"""Rendering solution specs into whole scripts, block by block (the blocks are ``blocks.BLOCKS``).

Templates live in ``templates/``: one per block, one per model card. Rendering is a pure function
of the spec, so the same spec always gives byte-identical code.
"""

from __future__ import annotations

from typing import Any

from mlestar.brain.expert.blocks import block_order, render_body
from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.spec import INFO_KEY, SolutionSpec, attach_state
from mlestar.brain.protocol import Script
from mlestar.core import contract
from mlestar.core.contract import wrap_block


def render_block(name: str, spec: SolutionSpec) -> str:
    return wrap_block(name, render_body(name, spec))


def docstring(spec: SolutionSpec) -> str:
    f = spec.facts
    models = " + ".join(CARDS[m.card].title for m in spec.models)
    return (
        f'"""{f.name}: {models}.\n\n'
        f"Task: {f.task_type} on {f.media.kind + ' files' if f.media else f.modality + ' data'}, target {', '.join(f.targets)}, metric {f.metric} "
        f"({'lower' if f.lower_is_better else 'higher'} is better).\n"
        "Written by mlestar's expert policy. Data comes from ./input/; ./input/folds.csv fixes the split\n"
        "(fold 0 is the validation hold-out, dev == 1 the development subsample). The script prints one\n"
        f"'{contract.SCORE_LABEL}' line; with {contract.FINAL_FLAG} = True it also writes ./final/submission.csv.\n"
        '"""\n'
    )


def render_script(spec: SolutionSpec) -> str:
    parts = [docstring(spec)] + [render_block(name, spec) for name in block_order(spec)]
    return attach_state("\n\n".join(parts), spec_state(spec))


def spec_state(spec: SolutionSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def to_script(spec: SolutionSpec, code: str | None = None, label: str | None = None) -> Script:
    """A Script carrying ``spec`` both in ``info`` and in the code's state comment."""
    state = spec_state(spec)
    body = render_script(spec) if code is None else attach_state(code, state)
    return Script(code=body, label=label or spec.label, info={INFO_KEY: state})
