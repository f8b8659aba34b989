"""Checks that turn a broken competition into one clear error at intake, before any run folder exists:
files that are not UTF-8 text, duplicate column names, a target with nothing to learn, a test table
that cannot be predicted, files a sandboxed script could not read.

Large files are looked at by their head and tail only.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import stat
from pathlib import Path

import pandas as pd

from mlestar.errors import TaskError

_PEEK_BYTES = 1 << 20  # head and tail of a text file checked for binary data and its encoding
_BOMS = {codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16", codecs.BOM_UTF32_LE: "UTF-32"}


def _peek(path: Path) -> tuple[bytes, bytes]:
    """(head, tail) of a file, at most ``_PEEK_BYTES`` each (the tail is empty for a small file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK_BYTES)
            size = os.fstat(handle.fileno()).st_size
            tail = b""
            if size > 2 * _PEEK_BYTES:
                handle.seek(size - _PEEK_BYTES)
                tail = handle.read(_PEEK_BYTES)
    except OSError as exc:
        raise TaskError(f"cannot read {path.name}: {exc.strerror or exc}") from None
    return head, tail


def _undecodable_at(data: bytes, *, cut_start: bool) -> int | None:
    """Offset of the first byte that is not UTF-8 in ``data`` (a slice of a file), or None."""
    start = 0
    if cut_start:  # a tail may begin inside a multi-byte character: skip continuation bytes
        while start < min(len(data), 4) and data[start] & 0xC0 == 0x80:
            start += 1
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data[start:], final=False)  # a character cut at the end is not an error
    except UnicodeDecodeError as exc:
        return start + exc.start
    return None


def check_text_file(path: Path) -> None:
    """A CSV, TSV or JSON-lines file must be UTF-8 text, not binary data or another encoding."""
    head, tail = _peek(path)
    for bom, name in _BOMS.items():
        if head.startswith(bom):
            raise TaskError(f"{path.name} is {name} text; save it as UTF-8 (e.g. iconv -f {name} -t UTF-8)")
    for part, is_tail in ((head, False), (tail, True)):
        if b"\x00" in part:
            where = "at its end" if is_tail else "near its start"
            raise TaskError(f"{path.name} holds binary data (NUL bytes {where}), not a text table")
        offset = _undecodable_at(part, cut_start=is_tail)
        if offset is not None:
            byte = part[offset]
            raise TaskError(
                f"{path.name} is not UTF-8 text (byte 0x{byte:02x} {'near the end' if is_tail else 'at'} "
                f"offset {offset}); convert it, e.g. iconv -f latin1 -t UTF-8"
            )


def check_header(path: Path, separator: str) -> None:
    """Column names must be unique: pandas would silently rename the second ``x`` to ``x.1``."""
    head, _ = _peek(path)
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r")
    try:
        names = next(csv.reader(io.StringIO(first), delimiter=separator), [])
    except csv.Error:
        return  # the table reader reports malformed CSV itself
    seen: set[str] = set()
    repeated = [name for name in names if name in seen or seen.add(name)]  # type: ignore[func-returns-value]
    if repeated:
        raise TaskError(f"{path.name} has duplicate column names: {', '.join(dict.fromkeys(repeated))}")


def _shown(value: object) -> str:
    """A value as a user wrote it: numpy scalars as plain numbers, strings quoted."""
    plain = value.item() if hasattr(value, "item") else value
    return repr(plain)


def check_learnable(train: pd.DataFrame, targets: list[str], label: str) -> None:
    """Each target needs at least two different values: with one there is nothing to learn."""
    for target in targets:
        values = train[target].dropna()
        if len(values) and values.nunique() < 2:
            raise TaskError(
                f"target column '{target}' of {label} has a single value ({_shown(values.iloc[0])}): "
                "there is nothing to learn"
            )


def check_test_table(test: pd.DataFrame, rows: int | None, label: str, id_column: str | None) -> None:
    """The test table must have rows, and one per id."""
    if rows == 0 or test.empty:
        raise TaskError(f"{label} has no rows: there is nothing to predict")
    if id_column is not None and id_column in test.columns:
        repeated = test[id_column][test[id_column].duplicated()]
        if len(repeated):
            raise TaskError(
                f"id column '{id_column}' of {label} is not unique ({len(repeated)} repeated values, "
                f"e.g. {_shown(repeated.iloc[0])})"
            )


def check_shared_features(train_features: list[str], test_columns: list[str], label: str) -> None:
    """A test table that shares no feature column with the train table cannot be predicted."""
    if train_features and not set(train_features) & set(test_columns):
        shown = ", ".join(train_features[:8])
        raise TaskError(f"{label} has none of the train table's feature columns ({shown})")


def readable_by_scripts(path: Path) -> bool:
    """Whether a sandboxed script (the same user, without root's privileges) may read ``path``."""
    try:
        info = path.stat()
    except OSError:
        return False
    if info.st_uid == os.geteuid():
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid in {os.getegid(), *os.getgroups()}:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)
