"""The structured state behind a rendered script: which blocks exist and how each is configured.

A script is rendered from a ``SolutionSpec``; every role that changes a script changes the spec of
one block, renders that block again and splices it into the code. The spec travels in
``Script.info["expert"]`` and, for scripts handed back without their info (a resumed run), in a
one-line JSON comment at the end of the code.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mlestar.brain.expert.facts import TaskFacts

INFO_KEY = "expert"
STATE_PREFIX = "# mlestar-expert-state: "
_STATE_RE = re.compile(r"^# mlestar-expert-state: (\{.*\})\s*$", re.MULTILINE)

EncodingMethod = Literal["native", "ordinal", "onehot"]
# the aggregations task/joining.py knows
NumberAggregation = Literal["mean", "min", "max", "std", "sum", "first", "last"]
CategoryAggregation = Literal["nunique", "top", "last"]
EXTRA_ENCODINGS = ("target", "count", "frequency")


class CleaningSpec(BaseModel):
    drop_cols: list[str] = Field(default_factory=list)
    normalize_strings: bool = True  # strip blanks so " Yes" and "Yes" are one level
    lowercase: bool = False
    drop_high_missing: float | None = None  # drop columns missing more than this share


class EncodingSpec(BaseModel):
    method: EncodingMethod = "native"  # how the models see a categorical column itself
    extras: list[str] = Field(default_factory=list)  # added numeric encodings: target / count / frequency
    rare_min_count: int = 5  # levels seen fewer times in the training rows are merged
    max_onehot_levels: int = 12
    smoothing: float = 20.0  # target encoding: weight of the prior


class FeatureSpec(BaseModel):
    groups: list[str] = Field(default_factory=list)  # in the order they were added
    ratio_cols: list[str] = Field(default_factory=list)
    group_pairs: list[list[str]] = Field(default_factory=list)  # [categorical, numeric]
    interaction_cats: list[str] = Field(default_factory=list)
    # text groups (text_oof: stacked text-model predictions; text_svd: n-gram SVD components)
    ngram_vocabulary: int = 100_000
    text_c: float = 2.0
    text_svd_components: int = 32


class ModelSpec(BaseModel):
    key: str  # unique name in the script (function names derive from it)
    card: str
    params: dict[str, Any] = Field(default_factory=dict)
    max_rounds: int = 1000  # boosting rounds / trees / iterations cap
    early_stopping: int = 100
    seeds: int = 1  # seed bagging


class TrainingSpec(BaseModel):
    bagging: Literal["none", "folds"] = "none"
    refit_scale: float = 1.2
    target_transform: Literal["none", "log1p"] = "none"
    class_weight: Literal["none", "balanced"] = "none"
    blend: Literal["greedy", "mean"] = "greedy"
    max_fit_rows: int | None = None  # cap on rows a model trains on (memory relief)
    # which columns the models never see: "degenerate" (all missing or single-valued in the training
    # rows) or "strict" (also near-empty and near-constant ones, which turn single-valued in the row
    # subsets bagging and row caps train on)
    feature_filter: Literal["degenerate", "strict"] = "degenerate"


class JoinLinkSpec(BaseModel):
    """One way a table joins: its key column pairs and the prefix of the columns it adds."""

    prefix: str
    keys: list[list[str]]  # [train column, train part, table column, table part]
    coverage: float  # share of the train rows intake matched on its sample
    test_coverage: float | None = None

    def key_text(self) -> str:
        """The key in words, e.g. ``origin + datehour of time_hour`` or ``dest = faa``."""
        words = []
        for train, train_part, aux, aux_part in self.keys:
            left = train if train_part == "value" else f"{train_part} of {train}"
            right = aux if aux_part == "value" else f"{aux_part} of {aux}"
            words.append(left if left == right else f"{left} = {right}")
        return " + ".join(words)


class JoinSpec(BaseModel):
    """How one auxiliary table is joined (rendered by its own block, ``join.py.j2``)."""

    name: str  # the block's name: join_<table>
    file: str
    relation: Literal["lookup", "many"]  # one row per key, or several rows aggregated per key
    links: list[JoinLinkSpec]
    numbers: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)  # timestamps, brought in as days since 1970
    categories: list[str] = Field(default_factory=list)
    aggregations: list[NumberAggregation] = Field(default_factory=list)  # of numbers and dates ("many")
    category_aggregations: list[CategoryAggregation] = Field(default_factory=list)  # of categories ("many")
    count: bool = True  # relation "many": the number of table rows per key
    order_by: str | None = None  # the table's timestamp that orders "first" and "last"
    match_flag: bool = False  # a 0/1 column: did the row find its key in the table
    rows_per_key: float = 1.0

    def plan(self) -> dict[str, Any]:
        """The plan the script's ``attach_table`` reads (``task/joining.py``)."""
        return self.model_dump(mode="json")


class MediaSpec(BaseModel):
    """How a media solution decodes, augments and represents its files (images or audio)."""

    resolution: int = 32  # images are decoded at resolution x resolution pixels
    clip_s: float = 1.0  # audio: seconds of each clip decoded (cropped or padded)
    augment: float = 0.5  # strength of train-time augmentation of neural models, 0 (none) to 1
    features: list[str] = Field(default_factory=list)  # representation groups, in the order added
    pixels_side: int = 8  # images: side of the thumbnail whose pixels are features
    n_mels: int = 40  # audio: mel bands of the spectrogram
    orientations: int = 9  # images: gradient-orientation bins


class SolutionSpec(BaseModel):
    version: int = 1
    kind: Literal["solution"] = "solution"
    facts: TaskFacts
    cleaning: CleaningSpec = Field(default_factory=CleaningSpec)
    features: FeatureSpec = Field(default_factory=FeatureSpec)
    encoding: EncodingSpec = Field(default_factory=EncodingSpec)
    models: list[ModelSpec]
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    joins: list[JoinSpec] = Field(default_factory=list)  # auxiliary tables joined, one block each
    media: MediaSpec | None = None  # set for image and audio solutions
    budget_scale: float = 1.0  # < 1 when several pipelines share one script's time
    history: list[str] = Field(default_factory=list)  # moves and fixes applied, for humans and for the debugger

    def copy_deep(self) -> SolutionSpec:
        return SolutionSpec.model_validate(self.model_dump(mode="json"))

    @property
    def label(self) -> str:
        return "+".join(m.key for m in self.models)


def dump_state(state: dict[str, Any]) -> str:
    return STATE_PREFIX + json.dumps(state, sort_keys=True, separators=(",", ":"))


def strip_state(code: str) -> str:
    """The code without its state comment."""
    return _STATE_RE.sub("", code).rstrip("\n") + "\n"


def attach_state(code: str, state: dict[str, Any]) -> str:
    """The code with its state comment as the very last line (replacing an older one)."""
    return strip_state(code).rstrip("\n") + "\n\n\n" + dump_state(state) + "\n"


def read_state(code: str, info: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The brain state of a script: from ``info`` when present, else from the code's comment."""
    if info and isinstance(info.get(INFO_KEY), dict):
        return info[INFO_KEY]
    matches = _STATE_RE.findall(code)
    if not matches:
        return None
    try:
        state = json.loads(matches[-1])
    except json.JSONDecodeError:
        return None
    return state if isinstance(state, dict) else None


def load_spec(code: str, info: dict[str, Any] | None = None) -> SolutionSpec | None:
    """The solution spec of a script written by this brain, or None for anything else."""
    state = read_state(code, info)
    if not state or state.get("kind", "solution") != "solution":
        return None
    try:
        return SolutionSpec.model_validate(state)
    except ValidationError:
        return None


def state_kind(code: str, info: dict[str, Any] | None = None) -> str | None:
    state = read_state(code, info)
    return str(state.get("kind", "solution")) if state else None
