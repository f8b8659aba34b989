"""What a step hands on when its LLM call failed: the run goes on as if the step had failed.

A script becomes a marked script the engine records as failed without running it; a check becomes
"not checked"; a plan becomes no plan (its loop ends); a summary says there is none. Steps that
get such a marked script as input are skipped too, without calling the brain. Nothing of this is
stored as a step's result, so a resumed run asks again.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from mlestar.brain.protocol import (
    AblationSummary,
    BlockPlan,
    DataUsageReport,
    LeakageReport,
    RefinementPlan,
    ScoredScript,
    Script,
)

SKIPPED = "llm_step_failed"  # key in Script.info: why the script stands for a failed step


class NotSkippable(Exception):
    """The run cannot go on without this step's result (e.g. no models were retrieved)."""


def skipped_value(returns: Any, reason: str) -> Any:
    """The stand-in for a result of type ``returns`` when its step failed with ``reason``."""
    if typing.get_origin(returns) in (typing.Union, types.UnionType) and type(None) in typing.get_args(
        returns
    ):
        return None
    if returns is Script:
        code = (
            f"raise RuntimeError({f'the LLM step that should have written this script failed: {reason}'!r})\n"
        )
        return Script(code=code, label="failed LLM step", info={SKIPPED: reason})
    if returns is LeakageReport:
        return LeakageReport(leak=False, reason=f"not checked: {reason}")
    if returns is DataUsageReport:
        return DataUsageReport(all_used=True, reason=f"not checked: {reason}")
    if returns is AblationSummary:
        return AblationSummary(text=f"(no ablation summary: {reason})")
    if returns is BlockPlan:
        return BlockPlan(block="", plan=RefinementPlan(text=""))
    if returns is str:
        return ""
    if returns == list[str]:
        return []
    raise NotSkippable(reason)


def is_skipped(value: Any) -> bool:
    """Whether ``value`` is (or holds) what a failed LLM step handed on."""
    if isinstance(value, Script):
        return SKIPPED in value.info
    if isinstance(value, ScoredScript):
        return SKIPPED in value.script.info
    if isinstance(value, (list, tuple)):
        return any(is_skipped(item) for item in value)
    return False
