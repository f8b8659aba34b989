"""The expert's named code blocks and how one is swapped (the markers are the script contract's)."""

from __future__ import annotations

from mlestar.brain.protocol import BlockNotFound, replace_block
from mlestar.core.contract import find_blocks

BLOCK_ORDER = (
    "setup",
    "loading",
    "cleaning",
    "feature_engineering",
    "categorical_encoding",
    "model",
    "validation",
)
# Blocks a refinement may rewrite (setup and loading are the harness).
REFINABLE = ("model", "feature_engineering", "categorical_encoding", "validation", "cleaning")
BLOCK_TITLES = {
    "setup": "setup and metric",
    "loading": "data loading",
    "cleaning": "cleaning",
    "feature_engineering": "feature engineering",
    "categorical_encoding": "categorical encoding",
    "model": "model and hyper-parameters",
    "validation": "training, validation and prediction",
}


def swap_block(code: str, name: str, new_block: str) -> str:
    """Replace block ``name`` of ``code`` by ``new_block`` (raises BlockNotFound when absent)."""
    current = find_blocks(code).get(name)
    if current is None:
        raise BlockNotFound(f"the script has no '{name}' block")
    return replace_block(code, current, new_block)
