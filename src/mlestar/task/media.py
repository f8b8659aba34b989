"""Competitions whose samples are files: which folders hold them, how a row finds its file, and what
the files are like (sizes, channels, sample rates, durations, class balance).

Only headers of a sample of the files are read (``SAMPLE_FILES`` spread over the listing), so a
folder of 100k images profiles in seconds. Every function here is pure apart from reading the
competition folder.
"""

from __future__ import annotations

import os
import wave
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.task import MediaProfile, Spread

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".dcm"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a"})
TEXT_EXTENSIONS = frozenset({".txt"})
ARRAY_EXTENSIONS = frozenset({".npy", ".json"})
KIND_EXTENSIONS = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS, "text": TEXT_EXTENSIONS,
                   "array": ARRAY_EXTENSIONS}
MEDIA_SHARE = 0.8  # a folder is a media folder when this share of its files is of one kind
SAMPLE_FILES = 200  # files whose headers are read
KEY_SAMPLE = 30  # rows tried when matching a table column to files
MATCH_SHARE = 0.8  # share of those rows whose file must exist
MAX_CLASS_COUNTS = 200  # labels listed per class at most


def kind_of(name: str) -> str | None:
    suffix = os.path.splitext(name)[1].lower()
    for kind, extensions in KIND_EXTENSIONS.items():
        if suffix in extensions:
            return kind
    return None


@dataclass
class FolderScan:
    """What a walk over (the start of) a folder found."""

    files: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # over the first inspected files
    extensions: Counter[str] = field(default_factory=Counter)
    inspected: int = 0
    class_dirs: list[str] = field(default_factory=list)  # subfolders of the top level

    @property
    def kind(self) -> str | None:
        """The media kind of the folder, when nearly all its files are of one kind."""
        if not self.inspected:
            return None
        kind, count = self.kinds.most_common(1)[0] if self.kinds else (None, 0)
        return kind if count / self.inspected >= MEDIA_SHARE else None

    @property
    def extension(self) -> str:
        return self.extensions.most_common(1)[0][0] if self.extensions else ""


def class_folder_rows(folder: Path) -> pd.DataFrame:
    """The rows of a class-folder training set: ``path`` (relative to the folder's parent) and ``label``.

    Sorted by path, so the run's split, every script and the graders see the same row order.
    """
    rows = []
    for label in sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")):
        for current, dirnames, filenames in os.walk(folder / label):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if not name.startswith(".") and kind_of(name) is not None:
                    rows.append(((Path(current) / name).relative_to(folder.parent).as_posix(), label))
    rows.sort()
    return pd.DataFrame(rows, columns=["path", "label"])


# --- how rows find their files ---------------------------------------------------------------------

def _key_text(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _patterns(data_dir: Path, folder: Path, extension: str) -> list[str]:
    relative = folder.relative_to(data_dir).as_posix()
    return ["{id}", f"{relative}/{{id}}", f"{relative}/{{id}}{extension}"]


def match_column(
    data_dir: Path, frame: pd.DataFrame, columns: list[str], folders: dict[Path, FolderScan]
) -> tuple[str, str] | None:
    """(column, pattern) such that ``pattern.format(id=value)`` names an existing file for most rows."""
    for column in columns:
        if column not in frame.columns:
            continue
        values = [_key_text(v) for v in frame[column].dropna().head(KEY_SAMPLE)]
        if not values or any(len(v) > 500 for v in values):
            continue
        for folder, scan in folders.items():
            for pattern in _patterns(data_dir, folder, scan.extension):
                hits = sum((data_dir / pattern.format(id=v)).is_file() for v in values)
                if hits >= MATCH_SHARE * len(values):
                    return column, pattern
    return None


def _folder_of(pattern: str, value: str) -> str:
    """The top-level folder a pattern's files live in."""
    return pattern.format(id=value).split("/", 1)[0]


# --- reading headers -------------------------------------------------------------------------------

@dataclass
class _Stats:
    widths: list[float] = field(default_factory=list)
    heights: list[float] = field(default_factory=list)
    modes: Counter[str] = field(default_factory=Counter)
    rates: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    channels: Counter[str] = field(default_factory=Counter)
    chars: list[float] = field(default_factory=list)
    shapes: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    unreadable: int = 0


def _image_header(path: Path, stats: _Stats) -> None:
    from PIL import Image

    with Image.open(path) as image:  # reads the header only
        stats.widths.append(float(image.width))
        stats.heights.append(float(image.height))
        stats.modes[image.mode] += 1


def _audio_header(path: Path, stats: _Stats) -> None:
    if path.suffix.lower() == ".wav":
        try:
            with wave.open(str(path), "rb") as handle:
                rate, frames, channels = handle.getframerate(), handle.getnframes(), handle.getnchannels()
        except wave.Error:  # floating-point or other non-PCM wav: scipy reads its header too
            from scipy.io import wavfile

            rate, data = wavfile.read(path, mmap=True)
            frames, channels = data.shape[0], (data.shape[1] if data.ndim > 1 else 1)
    else:
        import soundfile  # optional: flac / ogg / mp3 headers need libsndfile

        info = soundfile.info(str(path))
        rate, frames, channels = info.samplerate, info.frames, info.channels
    stats.rates[str(rate)] += 1
    stats.durations.append(frames / rate if rate else 0.0)
    stats.channels[str(channels)] += 1


def _text_header(path: Path, stats: _Stats) -> None:
    stats.chars.append(float(path.stat().st_size))  # bytes: close enough to characters for sizing


def _array_header(path: Path, stats: _Stats) -> None:
    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        stats.shapes[f"{tuple(array.shape)} {array.dtype}"] += 1
    else:
        import json

        value = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        shape = np.shape(value) if isinstance(value, list) else (f"object with {len(value)} keys",)
        stats.shapes[str(tuple(shape))] += 1


_HEADERS = {"image": _image_header, "audio": _audio_header, "text": _text_header, "array": _array_header}


def _read_headers(paths: list[Path], kind: str) -> _Stats:
    stats = _Stats()
    reader = _HEADERS[kind]
    for path in paths:
        stats.formats[path.suffix.lower().lstrip(".")] += 1
        try:
            reader(path, stats)
        except ImportError:
            continue  # the format is counted; its details need a package that is not installed
        except Exception:  # a corrupt file is a fact about the data, not a reason to stop intake
            stats.unreadable += 1
    return stats


def _spread_sample(items: list[str], limit: int) -> list[str]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


# --- the profile -----------------------------------------------------------------------------------

def _class_counts(labels: pd.Series | None) -> dict[str, int]:
    if labels is None:
        return {}
    counts = labels.dropna().map(_key_text).value_counts()
    if len(counts) > MAX_CLASS_COUNTS or (len(counts) > 20 and len(counts) > 0.5 * len(labels)):
        return {}  # a continuous target or free text: no classes to count
    return {str(k): int(v) for k, v in counts.items()}


def _profile(kind: str, data_dir: Path, train_files: list[str], **known: object) -> MediaProfile:
    sample = _spread_sample(train_files, SAMPLE_FILES)
    stats = _read_headers([data_dir / p for p in sample], kind)
    return MediaProfile(
        kind=kind,
        sampled=len(sample),
        unreadable=stats.unreadable,
        formats=dict(stats.formats.most_common()),
        examples=_spread_sample(train_files, 6),
        width=Spread.of(stats.widths),
        height=Spread.of(stats.heights),
        modes=dict(stats.modes.most_common()),
        sample_rates=dict(stats.rates.most_common()),
        duration_s=Spread.of(stats.durations),
        audio_channels=dict(stats.channels.most_common()),
        chars=Spread.of(stats.chars),
        shapes=dict(stats.shapes.most_common()),
        **known,  # type: ignore[arg-type]
    )


def profile_class_folders(data_dir: Path, train_dir: Path, scan: FolderScan, test: tuple[str, str] | None,
                          n_test: int) -> MediaProfile:
    """A training set of ``train_dir/<label>/<file>`` folders (``test``: key column and pattern)."""
    rows = class_folder_rows(train_dir)
    prefix = train_dir.parent.relative_to(data_dir).as_posix()
    paths = [p if prefix == "." else f"{prefix}/{p}" for p in rows["path"]]
    test_dirs = [test[1].split("/", 1)[0]] if test and "/" in test[1] else []
    return _profile(
        scan.kind or "image", data_dir, paths,
        layout="class_folders", key_column=test[0] if test else None, test_pattern=test[1] if test else None,
        train_dir=train_dir.relative_to(data_dir).as_posix(), test_dirs=test_dirs,
        n_train_files=len(rows), n_test_files=n_test, class_counts=_class_counts(rows["label"]),
    )


def profile_table_media(
    data_dir: Path,
    folders: dict[Path, FolderScan],
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    key_columns: list[str],
    target: str | None,
    n_train: int,
    n_test: int,
) -> MediaProfile | None:
    """The media profile of a competition whose train table names one file per row, or None."""
    media = {path: scan for path, scan in folders.items() if scan.kind is not None}
    if not media:
        return None
    found = match_column(data_dir, train, key_columns, media)
    if found is None:
        return None
    column, train_pattern = found
    test_pattern = None
    if test is not None:
        test_columns = [column] + [c for c in key_columns if c != column]
        matched = match_column(data_dir, test, test_columns, media)
        if matched is not None and matched[0] == column:
            test_pattern = matched[1]
    values = [_key_text(v) for v in train[column].dropna()]
    train_folders = {_folder_of(train_pattern, v) for v in values[:KEY_SAMPLE]}
    test_folders: set[str] = set()
    if test_pattern is not None and test is not None and column in test.columns:
        keys = test[column].dropna().head(KEY_SAMPLE)
        test_folders = {_folder_of(test_pattern, _key_text(v)) for v in keys}
    kind = next((scan.kind for path, scan in media.items()
                 if path.relative_to(data_dir).as_posix() in train_folders), None)
    paths = [train_pattern.format(id=v) for v in values]
    train_dir = sorted(train_folders)[0] if len(train_folders) == 1 else None
    return _profile(
        kind or kind_of(paths[0]) or "image", data_dir, paths,
        layout="table", key_column=column, train_pattern=train_pattern, test_pattern=test_pattern,
        train_dir=train_dir, test_dirs=sorted(test_folders - train_folders),
        shared_dirs=sorted(test_folders & train_folders),
        n_train_files=n_train, n_test_files=n_test,
        class_counts=_class_counts(train[target] if target and target in train.columns else None),
    )
