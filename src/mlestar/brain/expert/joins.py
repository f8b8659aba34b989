"""Join planning: which auxiliary tables a solution joins, on which key, and what it brings in.

Intake measured each table's candidate keys on samples (``task/keys.py``, stored on the table's
``TableProfile``); here the best of them becomes a ``JoinSpec`` or a reason not to join: a key that
matches almost none of the train rows (or of the test rows) is skipped. A lookup (one table row per
key) brings its columns as they are; a one-to-many table is aggregated per key (row count, mean,
min, max and, when the table has a timestamp, the latest value). Free text, ids and labels that
merely rename the key stay out. The names of the columns a join adds are fixed here, so an ablation
can take one table's columns out again by name.
"""

from __future__ import annotations

import re

from mlestar.brain.expert.blocks import JOIN_PREFIX
from mlestar.brain.expert.spec import (
    CategoryAggregation,
    JoinLinkSpec,
    JoinSpec,
    NumberAggregation,
    SolutionSpec,
)
from mlestar.core.task import ColumnProfile, DataFile, FileRole, JoinLink, Task
from mlestar.task.joining import joined_names

MIN_COVERAGE = 0.1  # a join matching a smaller share of the train or test rows is not worth its columns
LOOKUP_ROWS_PER_KEY = 1.05  # up to this many rows per key a table is a lookup (stray duplicates: first kept)
MAX_MANY_CATEGORY_LEVELS = 1000  # categorical columns of a one-to-many table with more levels stay out
DEFAULT_AGGREGATIONS: list[NumberAggregation] = ["mean", "min", "max"]
DEFAULT_CATEGORY_AGGREGATIONS: list[CategoryAggregation] = ["nunique", "top"]


def slug(text: str) -> str:
    name = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_") or "table"
    return name if name[0].isalpha() else f"t_{name}"


def table_stem(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".")[0] or base


def _link_spec(link: JoinLink, prefix: str) -> JoinLinkSpec:
    return JoinLinkSpec(
        prefix=prefix,
        keys=[[k.train, k.train_part, k.aux, k.aux_part] for k in link.keys],
        coverage=link.coverage,
        test_coverage=link.test_coverage,
    )


LABEL_SHARE = 0.9  # a lookup's categorical column with this many levels per row only renames the key
_NUMERIC_DTYPES = ("int", "uint", "float", "bool", "Int", "UInt", "Float", "boolean")


def _columns(columns: list[ColumnProfile], keys: set[str], rows: int, lookup: bool) -> tuple[list[str], ...]:
    """(numbers, timestamps, categories) of a table worth bringing in."""
    numbers, dates, categories = [], [], []
    for col in columns:
        if col.name in keys or col.kind in ("id", "text", "constant"):
            continue
        if col.kind == "numeric" or (col.kind == "boolean" and col.dtype.startswith(_NUMERIC_DTYPES)):
            numbers.append(col.name)
        elif col.kind == "datetime":
            dates.append(col.name)
        elif col.kind in ("categorical", "boolean"):
            present = max(1, round(rows * (1.0 - col.missing_share)))
            if lookup and col.n_unique >= LABEL_SHARE * present and col.n_unique > 2:
                continue
            if not lookup and col.n_unique > MAX_MANY_CATEGORY_LEVELS:
                continue
            categories.append(col.name)
    return numbers, dates, categories


def plan_join(item: DataFile, task: Task, taken: set[str]) -> JoinSpec | str:
    """The join of one auxiliary table, or why it is not joined."""
    profile = item.table
    if profile is None:
        return f"{item.path}: not profiled at intake, so no key is known"
    if not profile.links:
        return f"{item.path}: {profile.note or 'no key found'}"
    best = profile.links[0]
    if best.coverage < MIN_COVERAGE:
        share = f"{best.coverage:.1%}"
        return f"{item.path}: its best key ({best.describe()}) matches only {share} of the train rows"
    if best.test_coverage is not None and best.test_coverage < MIN_COVERAGE:
        return (
            f"{item.path}: its best key ({best.describe()}) matches {best.coverage:.1%} of the train rows "
            f"but only {best.test_coverage:.1%} of the test rows"
        )
    links = [best] + [
        link
        for link in profile.links[1:]
        if link.coverage >= MIN_COVERAGE
        and (link.test_coverage is None or link.test_coverage >= MIN_COVERAGE)
    ]
    lookup = best.rows_per_key <= LOOKUP_ROWS_PER_KEY
    keys = {k.aux for link in links for k in link.keys}
    numbers, dates, categories = _columns(profile.columns, keys, profile.sampled_rows, lookup)
    if not numbers + dates + categories and lookup:
        return f"{item.path}: besides its key it has no column a model could use"
    stem = slug(table_stem(item.path))
    name = f"{JOIN_PREFIX}{stem}"
    n = 2
    while name in taken:
        name, n = f"{JOIN_PREFIX}{stem}_{n}", n + 1
    train_columns = {c.name for c in task.columns}
    prefixes = [stem if len(links) == 1 else f"{stem}_{slug(link.keys[0].train)}" for link in links]
    order_by = next((c for c in dates if c not in keys), None)
    join = JoinSpec(
        name=name,
        file=item.path,
        relation="lookup" if lookup else "many",
        links=[_link_spec(link, prefix) for link, prefix in zip(links, prefixes, strict=True)],
        numbers=numbers,
        dates=dates,
        categories=categories,
        aggregations=[] if lookup else DEFAULT_AGGREGATIONS + (["last"] if order_by else []),
        category_aggregations=[] if lookup else list(DEFAULT_CATEGORY_AGGREGATIONS),
        count=not lookup,
        order_by=None if lookup else order_by,
        rows_per_key=best.rows_per_key,
    )
    # a joined name the train table already has would be skipped at run time: prefix further instead
    while any(set(added) & train_columns for added in join_columns(join).values()):
        for link in join.links:
            link.prefix = f"{link.prefix}_aux"
    return join


def plan_joins(task: Task, files: list[str], spec: SolutionSpec) -> tuple[list[JoinSpec], list[str]]:
    """(joins, reasons for the tables not joined) for the auxiliary tables ``files``."""
    by_path = {f.path: f for f in task.files if f.role is FileRole.AUXILIARY}
    taken = {j.name for j in spec.joins}
    joins, skipped = [], []
    for path in files:
        item = by_path.get(path)
        planned = plan_join(item, task, taken) if item is not None else f"{path}: not among the task's files"
        if isinstance(planned, str):
            skipped.append(planned)
            continue
        taken.add(planned.name)
        joins.append(planned)
    return joins, skipped


def join_columns(join: JoinSpec) -> dict[str, list[str]]:
    """The columns each link of a join adds, by prefix (before any is dropped as degenerate)."""
    plan = join.plan()
    return {link["prefix"]: joined_names(plan, link) for link in plan["links"]}


def keys_text(join: JoinSpec) -> str:
    return "; ".join(link.key_text() for link in join.links)


def describe(join: JoinSpec) -> str:
    """The join in a few words, for check reasons and ablation texts."""
    keys = []
    for link in join.links:
        share = f"{link.coverage:.0%} of train rows"
        if link.test_coverage is not None:
            share += f", {link.test_coverage:.0%} of test rows"
        keys.append(f"{link.key_text()} ({share} matched)")
    kind = "a lookup" if join.relation == "lookup" else f"{join.rows_per_key:.3g} rows per key, aggregated"
    return f"{join.file} on {'; '.join(keys)}: {kind}"
