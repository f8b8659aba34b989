"""How an auxiliary table joins to the train rows: its candidate keys, measured on samples of both.

A key is one or more column pairs (train column, table column), each side read through a part
(``task/joining.py``): columns of the same name, or of different names whose values overlap (a code
looked up in a reference table); numbers stored as text on one side and as integers or floats with
NaN on the other; a timestamp on one side matched at the other side's resolution, or split into the
year / month / day / hour columns the other side has. A composite key is grown greedily from each
candidate pair: a pair joins the key when it makes the table's rows per key fewer without losing
matches, so a same-named column that means something else (a plane's build year against a flight's
year) stays out. Keys are ranked by the share of train rows they match, discounted when they tell
few train rows apart; the best key, and the same table key reached from other train columns (an
airport table joined on origin and on destination), become the table's links.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlestar.core.task import ColumnProfile, JoinLink, KeyPair
from mlestar.task.joining import TIMESTAMP_PARTS, key_column, timestamps

MAX_TRAIN_ROWS = 20_000  # train (and test) rows a coverage is measured on
MIN_PAIR_COVERAGE = 0.01  # a same-named pair matching fewer train rows is no candidate
OTHER_NAME_COVERAGE = 0.5  # differently named columns must match at least this share of train rows
UNIQUE_SHARE = 0.9  # a table column this unique looks like a lookup's code
MAX_LOSS = 0.05  # a column may join a key when the key keeps at least 95% of its matches
MIN_GAIN = 0.95  # ... and its rows per key drop below 95% of what they were
DATE_PART_NAMES = ("year", "month", "day", "hour")
_RESOLUTIONS = ("date", "datehour", "moment")  # coarsest first


@dataclass(frozen=True)
class _Pair:
    train: str
    train_part: str
    aux: str
    aux_part: str

    def as_key_pair(self) -> KeyPair:
        return KeyPair(train=self.train, aux=self.aux, train_part=self.train_part, aux_part=self.aux_part)


@dataclass(frozen=True)
class _Stats:
    coverage: float
    rows_per_key: float
    max_rows_per_key: int
    train_keys: int

    @property
    def useful(self) -> bool:
        """A key matching one train key only would add constant columns."""
        return self.train_keys >= 2 and self.coverage >= MIN_PAIR_COVERAGE

    @property
    def score(self) -> float:
        return self.coverage * (1.0 - 1.0 / max(self.train_keys, 1))


def _name(column: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(column).lower()).strip("_")


def _tokens(column: str) -> set[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(column))
    return {t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t and t not in ("id", "code", "key")}


def _integral(series: pd.Series) -> bool:
    values = series.dropna()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return True
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy(dtype=float)
        return bool(len(arr)) and bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    return False


def _numeric_text(series: pd.Series) -> bool:
    """Text whose values are mostly numbers ("17", "007", "3.0")."""
    values = series.dropna().astype(str).head(500)
    return bool(len(values)) and float(pd.to_numeric(values, errors="coerce").notna().mean()) >= 0.9


def _resolution(series: pd.Series) -> str:
    stamps = timestamps(series.dropna().head(2000)).dropna()
    if stamps.empty:
        return "moment"
    if (stamps == stamps.dt.floor("D")).all():
        return "date"
    if (stamps == stamps.dt.floor("h")).all():
        return "datehour"
    return "moment"


_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier that spreads combined hashes


class _Sides:
    """Key texts of train, table and test columns as 64-bit hashes (0: no key), computed once per
    column and part, so growing composite keys costs array arithmetic rather than text work."""

    def __init__(self, train: pd.DataFrame, aux: pd.DataFrame, test: pd.DataFrame | None) -> None:
        self.frames = {"train": train, "aux": aux, "test": test}
        self._hashes: dict[tuple[str, str, str], np.ndarray] = {}
        self._stamps: dict[tuple[str, str], pd.Series] = {}
        self._measured: dict[frozenset[_Pair], _Stats] = {}
        self.n_unique = {
            side: {c: int(f[c].nunique()) for c in f.columns}
            for side, f in self.frames.items()
            if f is not None
        }

    def column(self, side: str, column: str, part: str) -> pd.Series:
        frame = self.frames[side]
        assert frame is not None
        if part in TIMESTAMP_PARTS:  # parse a timestamp column once for all its parts
            if (side, column) not in self._stamps:
                self._stamps[(side, column)] = timestamps(frame[column])
            return self._stamps[(side, column)]
        return frame[column]

    def hashes(self, side: str, column: str, part: str) -> np.ndarray:
        cached = self._hashes.get((side, column, part))
        if cached is None:
            text = key_column(self.column(side, column, part), part)
            missing = text.isna().to_numpy()
            cached = pd.util.hash_array(text.fillna("").to_numpy(dtype=object))
            cached[missing] = 0
            self._hashes[(side, column, part)] = cached
        return cached

    def combined(self, side: str, pairs: tuple[_Pair, ...]) -> np.ndarray | None:
        frame = self.frames[side]
        if frame is None or (side != "aux" and any(p.train not in frame.columns for p in pairs)):
            return None
        arrays = [
            self.hashes(side, p.aux, p.aux_part)
            if side == "aux"
            else self.hashes(side, p.train, p.train_part)
            for p in pairs
        ]
        key = arrays[0]
        for more in arrays[1:]:
            mixed = key * _MIX + more
            key = np.where((key == 0) | (more == 0), np.uint64(0), np.where(mixed == 0, np.uint64(1), mixed))
        return key

    def measure(self, pairs: tuple[_Pair, ...]) -> _Stats:
        known = self._measured.get(frozenset(pairs))
        if known is None:
            known = self._measured[frozenset(pairs)] = self._measure(pairs)
        return known

    def _measure(self, pairs: tuple[_Pair, ...]) -> _Stats:
        train, aux = self.combined("train", pairs), self.combined("aux", pairs)
        assert train is not None and aux is not None
        keys, counts = np.unique(aux[aux != 0], return_counts=True)
        if not len(keys) or not len(train):
            return _Stats(0.0, 0.0, 0, 0)
        found = (train != 0) & np.isin(train, keys)
        return _Stats(
            coverage=float(found.mean()),
            rows_per_key=float(counts.sum() / len(keys)),
            max_rows_per_key=int(counts.max()),
            train_keys=int(len(np.unique(train[found]))),
        )

    def test_coverage(self, pairs: tuple[_Pair, ...]) -> float | None:
        test, aux = self.combined("test", pairs), self.combined("aux", pairs)
        if test is None or aux is None or not len(test):
            return None
        return float(((test != 0) & np.isin(test, aux[aux != 0])).mean())


def _kinds(profiles: list[ColumnProfile]) -> dict[str, str]:
    return {p.name: p.kind for p in profiles}


def _usable(series: pd.Series, kind: str) -> bool:
    """Columns that can hold a key: not free text, not continuous numbers."""
    if kind in ("text", "constant"):
        return kind == "constant" and series.notna().any()  # a constant year may still be part of a key
    if kind == "datetime" or pd.api.types.is_datetime64_any_dtype(series):
        return True
    if pd.api.types.is_numeric_dtype(series):
        return _integral(series)
    return True


def _coverage(sides: _Sides, pair: _Pair) -> float:
    return sides.measure((pair,)).coverage


def _candidates(sides: _Sides, train_kinds: dict[str, str], aux_kinds: dict[str, str]) -> list[_Pair]:
    """Column pairs that could be (part of) a key, each read the way that matches most train rows."""
    train, aux = sides.frames["train"], sides.frames["aux"]
    assert train is not None and aux is not None
    frames, kinds = {"train": train, "aux": aux}, {"train": train_kinds, "aux": aux_kinds}

    @functools.cache
    def facts(side: str, column: str) -> tuple[bool, bool, bool, bool]:
        """(usable as a key, a timestamp, integral, text) of one column."""
        series = frames[side][column]
        time = kinds[side].get(column) == "datetime" or pd.api.types.is_datetime64_any_dtype(series)
        text = not pd.api.types.is_numeric_dtype(series)
        return _usable(series, kinds[side].get(column, "categorical")), time, _integral(series), text

    @functools.cache
    def resolution(side: str, column: str) -> str:
        return _resolution(frames[side][column])

    @functools.cache
    def numeric_text(side: str, column: str) -> bool:
        return _numeric_text(frames[side][column])

    def variants(t: str, a: str) -> list[tuple[str, str]]:
        """As is first; then case-insensitively, or text read as numbers."""
        t_text, a_text = facts("train", t)[3], facts("aux", a)[3]
        options = [("value", "value")]
        if t_text and a_text:
            options.append(("text", "text"))
        if (t_text and numeric_text("train", t)) or (a_text and numeric_text("aux", a)):
            options.append(("number" if t_text else "value", "number" if a_text else "value"))
        return options

    usable_aux = [str(a) for a in aux.columns if facts("aux", str(a))[0]]
    found: list[_Pair] = []
    for t in (str(c) for c in train.columns):
        if not facts("train", t)[0]:
            continue
        for a in usable_aux:
            same = _name(t) == _name(a)
            t_time, a_time = facts("train", t)[1], facts("aux", a)[1]
            options: list[tuple[str, str]] = []
            if t_time and a_time:
                coarse = min(resolution("train", t), resolution("aux", a), key=_RESOLUTIONS.index)
                options = [(coarse, coarse)]
            elif t_time and _name(a) in DATE_PART_NAMES and facts("aux", a)[2]:
                options, same = [(_name(a), "value")], True
            elif a_time and _name(t) in DATE_PART_NAMES and facts("train", t)[2]:
                options, same = [("value", _name(t))], True
            elif not t_time and not a_time and (same or _plausible(sides, t, a, train_kinds)):
                options = variants(t, a)
            best: tuple[float, _Pair] | None = None
            for train_part, aux_part in options:
                pair = _Pair(t, train_part, a, aux_part)
                share = _coverage(sides, pair)
                if best is None or share > best[0] + 1e-9:
                    best = (share, pair)
                if share >= 0.99:
                    break  # read as is, the pair already matches: no other reading is needed
            if best is not None and best[0] >= (MIN_PAIR_COVERAGE if same else OTHER_NAME_COVERAGE):
                found.append(best[1])
    return found


def _plausible(sides: _Sides, t: str, a: str, train_kinds: dict[str, str]) -> bool:
    """Differently named columns: a code looked up in a unique table column, or names sharing a word."""
    train, aux = sides.frames["train"], sides.frames["aux"]
    assert train is not None and aux is not None
    n_train, n_aux = sides.n_unique["train"][t], sides.n_unique["aux"][a]
    if train_kinds.get(t) == "boolean" or n_train < 2 or n_aux < 2:
        return False
    shared_word = bool(_tokens(t) & _tokens(a))
    both_numbers = pd.api.types.is_numeric_dtype(train[t]) and pd.api.types.is_numeric_dtype(aux[a])
    if both_numbers and not shared_word:
        return False  # small integers overlap by chance
    present = int(aux[a].notna().sum())
    return shared_word or (present > 0 and n_aux / present >= UNIQUE_SHARE)


def _grow(sides: _Sides, start: _Pair, pairs: list[_Pair]) -> tuple[tuple[_Pair, ...], _Stats]:
    key = (start,)
    stats = sides.measure(key)
    while stats.max_rows_per_key > 1:
        used_train = {(p.train, p.train_part) for p in key}
        used_aux = {(p.aux, p.aux_part) for p in key}
        best: tuple[tuple[_Pair, ...], _Stats] | None = None
        for pair in pairs:
            if (pair.train, pair.train_part) in used_train or (pair.aux, pair.aux_part) in used_aux:
                continue
            if sides.measure((pair,)).coverage < stats.coverage * (1.0 - MAX_LOSS):
                continue  # a key is never matched more often than each of its parts
            trial = key + (pair,)
            measured = sides.measure(trial)
            if measured.coverage < stats.coverage * (1.0 - MAX_LOSS):
                continue
            if measured.rows_per_key >= stats.rows_per_key * MIN_GAIN:
                continue
            if best is None or (measured.rows_per_key, -measured.coverage) < (
                best[1].rows_per_key,
                -best[1].coverage,
            ):
                best = (trial, measured)
        if best is None:
            break
        key, stats = best
    return key, stats


_PART_ORDER = ("value", "number", "text", "moment", "datehour", "date", "year", "month", "day", "hour")


def _link(sides: _Sides, key: tuple[_Pair, ...], stats: _Stats) -> JoinLink:
    train = sides.frames["train"]
    assert train is not None
    columns = [str(c) for c in train.columns]
    # in the train table's column order, coarse parts of a timestamp first: how a person writes it
    ordered = sorted(key, key=lambda p: (columns.index(p.train), _PART_ORDER.index(p.train_part)))
    return JoinLink(
        keys=[p.as_key_pair() for p in ordered],
        coverage=round(stats.coverage, 4),
        test_coverage=None if (share := sides.test_coverage(key)) is None else round(share, 4),
        rows_per_key=round(stats.rows_per_key, 3),
        max_rows_per_key=stats.max_rows_per_key,
        train_keys=stats.train_keys,
    )


def find_links(
    aux: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    *,
    targets: list[str],
    train_profiles: list[ColumnProfile],
    aux_profiles: list[ColumnProfile],
    seed: int = 0,
) -> tuple[list[JoinLink], str]:
    """(links best first, a note when there are none) between a table and the train rows."""
    held = [t for t in targets if t in aux.columns]
    if held:
        return [], f"holds the target column(s) {', '.join(held)}: extra training rows, not a table to join"
    if len(train) > MAX_TRAIN_ROWS:
        train = train.sample(MAX_TRAIN_ROWS, random_state=seed)
    if test is not None and len(test) > MAX_TRAIN_ROWS:
        test = test.sample(MAX_TRAIN_ROWS, random_state=seed)
    train = train.drop(columns=[c for c in targets if c in train.columns]).reset_index(drop=True)
    test = None if test is None else test.reset_index(drop=True)
    sides = _Sides(train, aux.reset_index(drop=True), test)
    pairs = _candidates(sides, _kinds(train_profiles), _kinds(aux_profiles))
    if not pairs:
        return [], "no column matches a train column by name or by value"
    keys: dict[frozenset[_Pair], tuple[tuple[_Pair, ...], _Stats]] = {}
    for start in pairs:
        key, stats = _grow(sides, start, pairs)
        keys.setdefault(frozenset(key), (key, stats))
    ranked = sorted(
        (item for item in keys.values() if item[1].useful),
        key=lambda item: (-round(item[1].score, 2), item[1].rows_per_key, len(item[0]), _order(item[0])),
    )
    if not ranked:
        return [], "no key tells the train rows apart (each matches a single key value)"
    best_key, best_stats = ranked[0]
    links = [_link(sides, best_key, best_stats)]
    if len(best_key) == 1:
        (first,) = best_key
        siblings = [
            p for p in pairs if (p.aux, p.aux_part) == (first.aux, first.aux_part) and p.train != first.train
        ]
        for pair in sorted(siblings, key=lambda p: p.train):
            stats = sides.measure((pair,))
            if stats.useful:
                links.append(_link(sides, (pair,), stats))
    usable = [
        link
        for link in links
        if all(k.train in (test.columns if test is not None else train.columns) for k in link.keys)
    ]
    if not usable:
        return [], "its key columns are not in the test table"
    return usable, ""


def _order(key: tuple[_Pair, ...]) -> tuple[str, ...]:
    """A fixed tie-break, so the same data always gives the same key."""
    return tuple(f"{p.train}|{p.train_part}|{p.aux}|{p.aux_part}" for p in key)
