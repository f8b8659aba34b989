"""Where a pipeline step sits in the loops, and the key that names its result in the store.

A step's key is its place in the loops *and* a fingerprint of its inputs
(``p2/t1/o0/ablation/code#3f2a...``). A resumed run replays the loops from the top and looks every
step up by key: a step whose inputs are the same as before gets its stored result back; one whose
inputs changed (another base script, another error to debug) has a new key and runs afresh, so a
result is never handed to a step it was not computed for.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel


class Phase(str, Enum):
    SEARCH = "phase1"  # search and initial solution
    REFINE = "phase2"  # ablation-guided targeted refinement
    ENSEMBLE = "phase3"  # planned ensembling
    SUBMIT = "phase4"  # final submission

    @property
    def short(self) -> str:
        return "p" + self.value[-1]


class Agent(str, Enum):
    """Who wrote a script (the agent recorded on its node)."""

    CANDIDATE = "candidate"
    MERGER = "merger"
    LEAKAGE = "leakage"
    DATA_USAGE = "data_usage"
    ABLATION = "ablation"
    REFINE = "refine"
    ENSEMBLE = "ensemble"
    DEBUG = "debug"
    SUBMISSION = "submission"
    EVALUATION = "evaluation"  # a solution validated again with another model seed


def _canonical(value: Any) -> Any:
    """A JSON-ready view of ``value`` holding only what decides a step's result."""
    own = getattr(value, "__fingerprint__", None)
    if callable(own):
        return _canonical(own())
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump(mode="json"))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def fingerprint(value: Any) -> str:
    """A short stable hash of ``value`` (models, scripts, lists, plain data)."""
    text = json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """A place in the loops: a phase, an optional track, and the positions inside it."""

    phase: Phase
    track: int | None = None
    place: tuple[str, ...] = ()

    def at(self, *parts: str | int) -> Step:
        return Step(self.phase, self.track, (*self.place, *(str(p) for p in parts)))

    @property
    def path(self) -> str:
        track = () if self.track is None else (f"t{self.track}",)
        return "/".join((self.phase.short, *track, *self.place))

    def key(self, kind: str, inputs: Any = None) -> str:
        """The store key of this step's ``kind`` of result (``code``, ``run``, ``check``, ...)."""
        return f"{self.path}/{kind}#{fingerprint(inputs)}"

    def decision_key(self, name: str) -> str:
        """The store key of a decision taken at this place (decisions are replayed, not re-taken)."""
        return f"{self.path}/decide:{name}"
