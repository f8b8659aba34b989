"""Read competition tables cheaply and describe their columns.

Large files are never read whole: a CSV bigger than ``FULL_READ_BYTES`` is profiled from its first
``SAMPLE_BYTES`` and its row count is extrapolated from the bytes those rows took, so a 1 GB file
profiles in about the time it takes to parse a few megabytes. Parquet row counts come from the
file's metadata and are exact.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.task import ColumnProfile
from mlestar.errors import TaskError
from mlestar.task.sanity import check_header, check_text_file

FULL_READ_BYTES = 24 * 2**20  # read exactly below this size
SAMPLE_BYTES = 8 * 2**20  # head of a larger file used for profiling and the row estimate
MAX_SAMPLE_ROWS = 200_000
SPREAD_CHUNKS = 16  # a spread sample reads this many pieces from across a large file
KIND_SAMPLE = 5_000  # values looked at when telling text from categories or dates

_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".json": "json",
}
_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "t", "f", "y", "n"}
_ID_NAME = re.compile(
    r"^(?:id|ids|idx|index|uuid|guid|key|unnamed: ?0)$|(?:^|[_\-\s.])(?:id|uuid|idx)$", re.I
)
_ID_NAME_CASED = re.compile(r"[a-z0-9](?:Id|ID)$")


def table_format(path: Path) -> str | None:
    """'csv' | 'tsv' | 'parquet' | 'json' | 'jsonl' for a table file (compressed CSVs too), else None."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes = suffixes[:-1]
        if not suffixes or suffixes[-1] not in (".csv", ".tsv", ".jsonl"):
            return None
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def _compressed(path: Path) -> bool:
    return path.suffix.lower() in _COMPRESSIONS


@dataclass
class TableSample:
    """The first rows of a table plus what is known about its size."""

    frame: pd.DataFrame
    rows: int | None
    rows_estimated: bool
    fully_read: bool
    size_bytes: int
    format: str
    spread: bool = False  # pieces from across the file rather than its head


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = text.replace("Error tokenizing data. C error: ", "")
    return text.splitlines()[0][:300]


def _read_error(path: Path, exc: BaseException) -> TaskError:
    if isinstance(exc, pd.errors.EmptyDataError):
        return TaskError(f"{path.name} is empty (no header row)")
    return TaskError(f"cannot parse {path.name}: {first_line(exc)}")


_READ_ERRORS = (ValueError, OSError, UnicodeError, pd.errors.ParserError, pd.errors.EmptyDataError)


def _csv_options(fmt: str) -> dict[str, object]:
    return {"sep": "\t" if fmt == "tsv" else ",", "low_memory": False, "encoding_errors": "replace"}


def read_table(path: Path, *, usecols: list[str] | None = None) -> pd.DataFrame:
    """Read a whole table; any parse failure becomes a one-line TaskError."""
    fmt = table_format(path) or "csv"
    try:
        if fmt == "parquet":
            return pd.read_parquet(path, columns=usecols)
        if fmt in ("json", "jsonl"):
            frame = pd.read_json(path, lines=fmt == "jsonl")
            return frame[usecols] if usecols else frame
        return pd.read_csv(path, usecols=usecols, **_csv_options(fmt))  # type: ignore[arg-type]
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from None
    except Exception as exc:  # pyarrow and friends raise their own types for corrupt files
        raise _read_error(path, exc) from None


def _parse_head(path: Path, head: bytes, fmt: str) -> tuple[pd.DataFrame, int]:
    """Parse the complete lines of ``head``; returns the frame and the bytes it covered."""
    end = head.rfind(b"\n") + 1
    for _ in range(20):
        if end <= 0:
            break
        chunk = io.BytesIO(head[:end])
        try:
            if fmt == "jsonl":
                return pd.read_json(chunk, lines=True), end
            return pd.read_csv(chunk, **_csv_options(fmt)), end  # type: ignore[arg-type]
        except pd.errors.ParserError as exc:
            # the cut fell inside a quoted field that spans lines: back off to an earlier line
            if "EOF inside string" not in str(exc):
                raise _read_error(path, exc) from None
            end = head.rfind(b"\n", 0, end - 1) + 1
        except _READ_ERRORS as exc:
            raise _read_error(path, exc) from None
    raise TaskError(f"cannot parse {path.name}: no complete row in its first {len(head)} bytes")


def _count_lines_compressed(path: Path) -> int:
    import bz2
    import gzip
    import lzma
    import zipfile

    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if len(names) != 1:
                raise TaskError(f"{path.name} must hold exactly one file, found {len(names)}")
            with archive.open(names[0]) as handle:
                return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
    if opener is None:
        raise TaskError(f"cannot count the rows of {path.name}: unsupported compression")
    with opener(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def read_table_sample(path: Path) -> TableSample:
    """Read a table, or for a large one its head, and say how many rows it has."""
    fmt = table_format(path)
    if fmt is None:
        raise TaskError(f"{path.name} is not a table mlestar can read (csv, tsv, parquet, json, jsonl)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TaskError(f"cannot read {path}: {first_line(exc)}") from None

    if fmt in ("csv", "tsv", "jsonl") and not _compressed(path):
        check_text_file(path)
        if fmt != "jsonl":
            check_header(path, "\t" if fmt == "tsv" else ",")

    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            rows = parquet.metadata.num_rows
            if rows <= MAX_SAMPLE_ROWS:
                frame = parquet.read().to_pandas()
            else:
                batch = next(parquet.iter_batches(batch_size=MAX_SAMPLE_ROWS))
                frame = batch.to_pandas()
        except Exception as exc:  # corrupt parquet raises pyarrow's own error types
            raise _read_error(path, exc) from None
        return TableSample(frame, rows, False, len(frame) == rows, size, fmt)

    if size <= FULL_READ_BYTES or fmt == "json":
        frame = read_table(path)
        return TableSample(frame, len(frame), False, True, size, fmt)

    if _compressed(path):
        try:
            frame = pd.read_csv(path, nrows=MAX_SAMPLE_ROWS, **_csv_options(fmt))  # type: ignore[arg-type]
        except _READ_ERRORS as exc:
            raise _read_error(path, exc) from None
        if len(frame) < MAX_SAMPLE_ROWS:
            return TableSample(frame, len(frame), False, True, size, fmt)
        # newlines inside quoted fields would be counted as rows, hence "estimated"
        return TableSample(frame, max(_count_lines_compressed(path) - 1, len(frame)), True, False, size, fmt)

    with open(path, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    frame, covered = _parse_head(path, head, fmt)
    header_bytes = 0 if fmt == "jsonl" else head.find(b"\n") + 1
    body_bytes = max(covered - header_bytes, 1)
    estimate = round(len(frame) * (size - header_bytes) / body_bytes)
    return TableSample(frame, max(estimate, len(frame)), True, False, size, fmt)


def read_spread_sample(path: Path) -> TableSample:
    """Like ``read_table_sample``, but a large plain CSV is sampled in pieces from across the whole
    file rather than from its head, so a table sorted by its key shows all of its keys (what join
    coverage is measured on). Other files, and any file the pieces fail to parse, get the head."""
    head = read_table_sample(path)
    fmt = table_format(path)
    if head.fully_read or fmt not in ("csv", "tsv") or _compressed(path):
        return head
    piece = SAMPLE_BYTES // SPREAD_CHUNKS
    frames = []
    with open(path, "rb") as handle:
        header = handle.readline()
        for i in range(SPREAD_CHUNKS):
            span = head.size_bytes - len(header) - piece
            handle.seek(len(header) + span * i // max(SPREAD_CHUNKS - 1, 1))
            block = handle.read(piece)
            start = 0 if i == 0 else block.find(b"\n") + 1
            end = block.rfind(b"\n") + 1
            if end <= start:
                continue
            try:
                piece_text = io.BytesIO(header + block[start:end])
                frames.append(pd.read_csv(piece_text, **_csv_options(fmt)))  # type: ignore[arg-type]
            except _READ_ERRORS:
                return head  # a cut inside a quoted field spanning lines: the head is safer
    if not frames:
        return head
    frame = pd.concat(frames, ignore_index=True)
    if list(frame.columns) != list(head.frame.columns):
        return head
    return TableSample(frame, head.rows, head.rows_estimated, False, head.size_bytes, head.format,
                       spread=True)


# --- column profiles -----------------------------------------------------------------------------


def is_id_name(name: str) -> bool:
    """Names like id, Id, PassengerId, customer_id, row_id, uuid."""
    return bool(_ID_NAME.search(name.strip()) or _ID_NAME_CASED.search(name.strip()))


def _looks_datetime(values: pd.Series) -> bool:
    sample = values.head(200).astype(str)
    lengths = sample.str.len()
    if lengths.min() < 6 or lengths.max() > 35:
        return False
    if (
        not sample.str.contains(r"\d", regex=True).all()
        or not sample.str.contains(r"[-/:]", regex=True).all()
    ):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            return False
    return bool(parsed.notna().mean() >= 0.9)


def _is_integral(values: pd.Series) -> bool:
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    if pd.api.types.is_float_dtype(values):
        arr = values.to_numpy(dtype=float)
        return bool(np.all(np.isfinite(arr)) and np.all(np.mod(arr, 1) == 0))
    return False


def column_kind(series: pd.Series, name: str | None = None) -> str:
    """'numeric' | 'categorical' | 'text' | 'datetime' | 'boolean' | 'id' | 'constant'."""
    name = str(series.name if name is None else name)
    values = series.dropna()
    if values.empty:
        return "constant"
    n_unique = int(values.nunique())
    if n_unique <= 1:
        return "constant"
    if pd.api.types.is_bool_dtype(values):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(values):
        return "datetime"
    all_unique = n_unique == len(values)
    if pd.api.types.is_numeric_dtype(values):
        if n_unique == 2 and set(values.unique().tolist()) <= {0, 1}:
            return "boolean"
        if all_unique and _is_integral(values):
            if is_id_name(name):
                return "id"
            steps = np.diff(values.to_numpy(dtype=float))
            if len(values) >= 20 and np.all(steps == 1):  # a running row number
                return "id"
        return "numeric"

    text = values.astype(str)
    if n_unique == 2 and {v.strip().lower() for v in text.unique()} <= _BOOLEAN_WORDS:
        return "boolean"
    head = text.head(KIND_SAMPLE)
    if _looks_datetime(head):
        return "datetime"
    mean_chars = float(head.str.len().mean())
    mean_words = float(head.str.split().str.len().mean())
    unique_share = n_unique / len(values)
    if (unique_share >= 0.5 and mean_words >= 3 and mean_chars >= 20) or (
        mean_chars >= 50 and mean_words >= 6
    ):
        return "text"
    if all_unique and (is_id_name(name) or (len(values) >= 20 and not head.str.contains(r"\s").any())):
        return "id"
    return "categorical"


def _examples(values: pd.Series, limit: int = 5) -> list[str]:
    shown: list[str] = []
    for value in values.dropna().head(200).unique()[:limit]:
        text = str(value)
        shown.append(text if len(text) <= 60 else text[:57] + "...")
    return shown


def profile_columns(frame: pd.DataFrame) -> list[ColumnProfile]:
    """One profile per column, computed on the rows given (a sample for large tables)."""
    profiles = []
    rows = max(len(frame), 1)
    for name in frame.columns:
        series = frame[name]
        profiles.append(
            ColumnProfile(
                name=str(name),
                dtype=str(series.dtype),
                kind=column_kind(series, str(name)),
                missing_share=round(float(series.isna().sum()) / rows, 6),
                n_unique=int(series.nunique(dropna=True)),
                examples=_examples(series),
            )
        )
    return profiles


def mean_words(series: pd.Series) -> float:
    """Average number of words per non-missing value (0 for an empty column)."""
    head = series.dropna().astype(str).head(KIND_SAMPLE)
    return float(head.str.split().str.len().mean()) if len(head) else 0.0


def label_key(value: object) -> str:
    """A class label as text, with 1.0 and 1 (and True) read as the same label."""
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def sort_labels(keys: set[str] | list[str]) -> list[str]:
    """Labels in natural order: numerically when every label is a number, else alphabetically."""
    unique = list(dict.fromkeys(keys))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return sorted(unique)
