"""Turn a competition folder into a ``Task``.

Two layouts are understood:
- a plain folder: train / test / sample submission tables, ``description.md`` (or .txt) and/or
  ``task.yaml``; private answers, when present, live in ``private/`` and are never public data;
- an MLE-bench prepared competition: ``<competition>/prepared/public`` (answers in
  ``prepared/private``), or the ``public/`` folder itself (answers in ``../private``).

Everything ``task.yaml`` states wins over detection, and the ``metric`` / ``target`` /
``id_column`` arguments win over both. task.yaml keys, all optional: name, metric, target (a column
or a list), id, task_type, train, test, sample_submission (paths inside the data folder),
group_column, time_column, description (inline text), modality, answers (path from the folder).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlestar.core.task import (
    ColumnProfile,
    DataFile,
    FileRole,
    MediaProfile,
    Modality,
    TableProfile,
    Task,
    TaskType,
)
from mlestar.errors import TaskError
from mlestar.metrics import Metric, default_metric, get_metric
from mlestar.task.description import find_metric
from mlestar.task.keys import find_links
from mlestar.task.media import (
    IMAGE_EXTENSIONS,
    FolderScan,
    kind_of,
    match_column,
    profile_class_folders,
    profile_table_media,
)
from mlestar.task.profile import (
    FULL_READ_BYTES,
    TableSample,
    first_line,
    is_id_name,
    label_key,
    mean_words,
    profile_columns,
    read_spread_sample,
    read_table_sample,
    sort_labels,
    table_format,
)
from mlestar.task.sanity import check_learnable, check_shared_features, check_test_table

CONFIG_NAMES = ("task.yaml", "task.yml")
CONFIG_KEYS = (
    "name",
    "metric",
    "target",
    "id",
    "task_type",
    "train",
    "test",
    "sample_submission",
    "group_column",
    "time_column",
    "description",
    "modality",
    "answers",
)
DESCRIPTION_NAMES = ("description.md", "description.txt", "description.markdown", "readme.md", "readme.txt")
TABLE_LIKE = {"csv", "tsv", "parquet", "json", "jsonl"}
TARGET_NAMES = ("target", "label", "labels", "class", "y", "outcome", "response", "score", "price")
MAX_CLASSES = 20  # integer targets with more distinct values than this are read as regression
MAX_AUX_PROFILED = 25
DIR_SCAN_LIMIT = 200_000
TEXT_MODALITY_WORDS = 8.0  # a feature averaging this many words makes the task a text task


@dataclass
class _Layout:
    root: Path
    data_dir: Path
    private_dir: Path | None
    name: str


@dataclass
class _DirInfo:
    files: int
    image_share: float
    table_share: float
    class_dirs: list[str]
    scan: FolderScan


# --- layout and config ---------------------------------------------------------------------------


def _resolve_layout(path: Path) -> _Layout:
    root = path.expanduser()
    if not root.exists():
        raise TaskError(f"competition folder not found: {path}")
    if not root.is_dir():
        raise TaskError(f"expected a competition folder, got a file: {path}")
    root = root.resolve()
    if (root / "prepared" / "public").is_dir():
        return _Layout(root, root / "prepared" / "public", root / "prepared" / "private", root.name)
    if root.name == "public" and (root.parent / "private").is_dir():
        name = root.parent.parent.name if root.parent.name == "prepared" else root.parent.name
        return _Layout(root, root, root.parent / "private", name)
    if (root / "public").is_dir() and (root / "private").is_dir():
        name = root.parent.name if root.name == "prepared" else root.name
        return _Layout(root, root / "public", root / "private", name)
    if root.name == "public":
        name = root.parent.parent.name if root.parent.name == "prepared" else root.parent.name
        return _Layout(root, root, None, name)
    return _Layout(root, root, root / "private", root.name)


def _read_config(layout: _Layout) -> dict[str, Any]:
    import yaml

    for folder in dict.fromkeys((layout.root, layout.data_dir)):
        for name in CONFIG_NAMES:
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
            except yaml.YAMLError as exc:
                where = getattr(exc, "problem_mark", None)
                at = f" (line {where.line + 1})" if where is not None else ""
                raise TaskError(f"{name} is not valid YAML{at}") from None
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise TaskError(f"{name} must be a mapping of keys to values")
            unknown = sorted(str(key) for key in data if key not in CONFIG_KEYS)
            if unknown:
                raise TaskError(
                    f"{name}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(CONFIG_KEYS)}"
                )
            return data
    return {}


# --- files and roles -----------------------------------------------------------------------------


def _stem(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zip", ".zst"):
        name = name.removesuffix(suffix)
    return name.rsplit(".", 1)[0] if "." in name else name


def _tokens(stem: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", stem)
    return [t for t in re.split(r"[\s_\-.]+", spaced.lower()) if t]


def _dir_info(path: Path) -> _DirInfo:
    files = 0
    images = tables = inspected = 0
    class_dirs: list[str] = []
    scan = FolderScan()
    for current, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if Path(current) == path:
            class_dirs = list(dirnames)
        for filename in filenames:
            if filename.startswith("."):
                continue
            files += 1
            if inspected < 1000:
                inspected += 1
                suffix = Path(filename).suffix.lower()
                images += suffix in IMAGE_EXTENSIONS
                tables += table_format(Path(filename)) in TABLE_LIKE
                kind = kind_of(filename)
                if kind is not None:
                    scan.kinds[kind] += 1
                    scan.extensions[suffix] += 1
        if files >= DIR_SCAN_LIMIT:
            break

    def share(count: int) -> float:
        return count / inspected if inspected else 0.0

    scan.files, scan.inspected, scan.class_dirs = files, inspected, class_dirs
    return _DirInfo(files, share(images), share(tables), class_dirs, scan)


def _config_path(layout: _Layout, config: dict[str, Any], key: str) -> Path | None:
    value = config.get(key)
    if value is None:
        return None
    path = (layout.data_dir / str(value)).resolve()
    if not path.is_relative_to(layout.data_dir):
        raise TaskError(f"task.yaml {key} '{value}' must be a path inside {layout.data_dir}")
    if not path.exists():
        raise TaskError(f"task.yaml names {key} '{value}', which does not exist in {layout.data_dir}")
    return path


def _pick(candidates: list[tuple[int, Path]]) -> Path | None:
    if not candidates:
        return None
    # best name first; among equals the biggest file is the main table
    candidates.sort(key=lambda item: (-item[0], -item[1].stat().st_size, item[1].name))
    return candidates[0][1]


def _role_score(path: Path, word: str, alternatives: tuple[str, ...]) -> int:
    stem = _stem(path)
    tokens = _tokens(path.name.rsplit(".", 1)[0] if "." in path.name else path.name)
    if stem == word:
        return 100
    if not any(t in alternatives for t in tokens):
        return 0
    if len(tokens) == 2 and any(t in ("labels", "label", "data", "set", "df", "final") for t in tokens):
        return 80
    return 50 - len(tokens)


def _is_sample_name(path: Path) -> int:
    stem = _stem(path)
    tokens = _tokens(path.name.split(".")[0])
    if "submission" not in stem:
        return 0
    return 10 if ("sample" in tokens or stem.startswith("sample")) else 5


# --- columns, target, task type ------------------------------------------------------------------


def _detect_id(
    train: pd.DataFrame | None,
    test_cols: list[str] | None,
    sample: pd.DataFrame | None,
    kinds: dict[str, str],
) -> str | None:
    train_cols = [str(c) for c in train.columns] if train is not None else []
    if sample is not None and len(sample.columns) >= 2:
        first = str(sample.columns[0])
        if (test_cols and first in test_cols) or first in train_cols or is_id_name(first):
            return first
    if train is not None:
        shared = [c for c in train_cols if test_cols is None or c in test_cols]
        named = [c for c in shared if is_id_name(c) and train[c].is_unique]
        if named:
            return named[0]
        unique = [c for c in shared if kinds.get(c) == "id"]
        if unique:
            return unique[0]
    test_only = [c for c in test_cols or [] if c not in train_cols and is_id_name(c)]
    return test_only[0] if test_only else None


def _class_column(train: pd.DataFrame, columns: list[str], skip: set[str]) -> str | None:
    """The train column whose values are the sample submission's class columns, if any."""
    wanted = {label_key(c) for c in columns}
    best: tuple[int, str] | None = None
    for name in train.columns:
        if name in skip:
            continue
        series = train[name].dropna()
        n_unique = series.nunique()
        if n_unique < 2 or n_unique > len(wanted):
            continue
        keys = {label_key(v) for v in series.unique()}
        if keys <= wanted and len(keys) * 2 >= len(wanted) and (best is None or len(keys) > best[0]):
            best = (len(keys), str(name))
    return None if best is None else best[1]


def _detect_targets(
    train: pd.DataFrame, test_cols: list[str] | None, sample: pd.DataFrame | None, id_col: str | None
) -> tuple[list[str], list[str] | None]:
    """(target columns, class columns of a probability submission or None)."""
    train_cols = [str(c) for c in train.columns]
    if sample is not None:
        wanted = [str(c) for c in sample.columns if c != id_col]
        present = [c for c in wanted if c in train_cols]
        if wanted and present:
            return present, None
        if len(wanted) >= 2:
            cls = _class_column(train, wanted, {id_col} if id_col else set())
            if cls is not None:
                return [cls], wanted
    only_train = [c for c in train_cols if test_cols is not None and c not in test_cols and c != id_col]
    if len(only_train) == 1:
        return only_train, None
    pool = only_train or [c for c in train_cols if c != id_col]
    named = [c for c in pool if c.lower() in TARGET_NAMES]
    if named:
        return [named[0]], None
    if only_train:
        return [only_train[-1]], None
    if test_cols is None and pool:
        return [pool[-1]], None  # the usual convention: the target is the last column
    raise TaskError("cannot tell which train column is the target; pass --target or set target in task.yaml")


def _is_binary(series: pd.Series) -> bool:
    values = series.dropna()
    return values.nunique() <= 2 and (
        pd.api.types.is_bool_dtype(values) or {label_key(v) for v in values.unique()} <= {"0", "1"}
    )


def _is_integral(series: pd.Series) -> bool:
    values = series.dropna()
    if pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values):
        return True
    return bool(pd.api.types.is_float_dtype(values) and (values % 1 == 0).all())


def _infer_task_type(
    train: pd.DataFrame,
    targets: list[str],
    proba_classes: list[str] | None,
    metric: Metric | None,
    label: str,
) -> TaskType:
    if proba_classes:
        return TaskType.BINARY if len(proba_classes) == 2 else TaskType.MULTICLASS
    if len(targets) > 1:
        if all(_is_binary(train[c]) for c in targets):
            return TaskType.MULTILABEL
        if all(pd.api.types.is_numeric_dtype(train[c]) for c in targets):
            return TaskType.REGRESSION
        return TaskType.MULTICLASS
    series = train[targets[0]].dropna()
    if series.empty:
        raise TaskError(f"target column '{targets[0]}' of {label} has no values")
    types = set(metric.task_types) if metric else set()
    regression_metric = types == {TaskType.REGRESSION}
    classification_metric = bool(types) and TaskType.REGRESSION not in types
    n_unique = series.nunique()
    if pd.api.types.is_bool_dtype(series):
        return TaskType.BINARY
    if pd.api.types.is_numeric_dtype(series):
        if not _is_integral(series) or regression_metric:
            return TaskType.REGRESSION
        if n_unique <= 2:
            return TaskType.BINARY
        if classification_metric or n_unique <= MAX_CLASSES:
            return TaskType.MULTICLASS
        return TaskType.REGRESSION
    return TaskType.BINARY if n_unique <= 2 else TaskType.MULTICLASS


def _sample_kind(sample: pd.DataFrame | None, columns: list[str]) -> str | None:
    """'proba' when the sample submission holds fractional numbers, 'label' otherwise."""
    if sample is None:
        return None
    present = [c for c in columns if c in sample.columns]
    if not present:
        return None
    for name in present:
        values = sample[name].dropna()
        if pd.api.types.is_numeric_dtype(values) and len(values) and not _is_integral(values):
            return "proba"
    return "label"


# --- the entry point -----------------------------------------------------------------------------


def _description_text(layout: _Layout, config: dict[str, Any]) -> tuple[str, Path | None]:
    if config.get("description"):
        return str(config["description"]), None
    for folder in dict.fromkeys((layout.data_dir, layout.root)):
        by_name = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        for name in DESCRIPTION_NAMES:
            if name in by_name:
                return by_name[name].read_text(encoding="utf-8", errors="replace"), by_name[name]
    return "", None


def _answers_file(layout: _Layout, config: dict[str, Any]) -> Path | None:
    if config.get("answers"):
        path = (layout.root / str(config["answers"])).resolve()
        if not path.is_file():
            raise TaskError(f"task.yaml names answers '{config['answers']}', which does not exist")
        return path
    folder = layout.private_dir
    if folder is None or not folder.is_dir():
        return None
    tables = sorted(p for p in folder.iterdir() if p.is_file() and table_format(p) in TABLE_LIKE)
    for preferred in ("answers", "test", "solution", "test_answers", "gold_submission"):
        for path in tables:
            if _stem(path) == preferred:
                return path.resolve()
    for path in tables:
        if "answer" in _stem(path) or "solution" in _stem(path):
            return path.resolve()
    return tables[0].resolve() if len(tables) == 1 else None


def _check_sample_against_test(
    sample: TableSample,
    sample_path: Path,
    test: TableSample | None,
    test_path: Path | None,
    id_col: str | None,
) -> None:
    if test is None or test_path is None:
        return
    both_exact = not sample.rows_estimated and not test.rows_estimated
    shared_id = id_col is not None and id_col in sample.frame.columns and id_col in test.frame.columns
    if shared_id and both_exact:
        if sample.rows != test.rows:
            raise TaskError(f"{sample_path.name} has {sample.rows} rows but {test_path.name} has {test.rows}")
        if sample.fully_read and test.fully_read:
            sample_ids = set(sample.frame[id_col].astype(str))
            test_ids = set(test.frame[id_col].astype(str))
            stray = sorted(sample_ids - test_ids)
            if stray:
                raise TaskError(
                    f"the {id_col} values of {sample_path.name} do not match {test_path.name}: "
                    f"{len(stray)} are not in the test file (e.g. '{stray[0]}')"
                )
    elif both_exact and sample.rows and test.rows and sample.rows % test.rows != 0:
        # a long-format submission has a whole number of rows per test row; anything else is broken
        raise TaskError(f"{sample_path.name} has {sample.rows} rows but {test_path.name} has {test.rows}")


def _table_file(path: Path, data_dir: Path, role: FileRole, sampled: TableSample | None) -> DataFile:
    fmt = table_format(path) or "other"
    return DataFile(
        path=path.relative_to(data_dir).as_posix(),
        role=role,
        format=fmt,
        rows=sampled.rows if sampled else None,
        columns=len(sampled.frame.columns) if sampled else None,
        size_bytes=path.stat().st_size,
        rows_estimated=sampled.rows_estimated if sampled else False,
    )


def _targets_from_option(value: str | list[str] | Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


@dataclass
class _Located:
    """Which file plays which role."""

    entries: list[Path]
    train: Path
    test: Path | None
    sample: Path | None
    description: str
    description_path: Path | None
    dir_infos: dict[Path, _DirInfo]
    image_dirs: list[Path]
    media_dirs: list[Path]  # folders of audio, per-sample text or arrays


@dataclass
class _Tables:
    train: TableSample | None  # None when the training data is a folder of images
    test: TableSample | None
    sample: TableSample | None

    @property
    def test_columns(self) -> list[str] | None:
        return [str(c) for c in self.test.frame.columns] if self.test is not None else None


# Files that describe the folder rather than the competition: checksums of the download and the
# leaderboard mlestar bench grades against. Scripts must not take them for data.
_BOOKKEEPING_NAMES = ("checksums.sha256", "sha256sums", "md5sums", "leaderboard.csv")
_BOOKKEEPING_SUFFIXES = (".sha256", ".sha1", ".md5")


def _is_bookkeeping(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and (name in _BOOKKEEPING_NAMES or name.endswith(_BOOKKEEPING_SUFFIXES))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python < 3.13 reports a symlink loop so
        raise TaskError(f"{path.name} is a loop of symbolic links") from None


def _locate(layout: _Layout, config: dict[str, Any]) -> _Located:
    private = layout.private_dir.resolve() if layout.private_dir else None
    entries = sorted(
        p
        for p in layout.data_dir.iterdir()
        if not p.name.startswith(".")
        and p.name.lower() not in CONFIG_NAMES
        and not _is_bookkeeping(p)
        and (private is None or _resolved(p) != private)
        and p.name != "prepared"
    )
    tables = [p for p in entries if p.is_file() and table_format(p)]
    sample = _config_path(layout, config, "sample_submission") or _pick(
        [(s, p) for p in tables if (s := _is_sample_name(p))]
    )
    tables = [p for p in tables if p != sample]
    train = _config_path(layout, config, "train") or _pick(
        [(s, p) for p in tables if (s := _role_score(p, "train", ("train", "training")))]
    )
    test = _config_path(layout, config, "test") or _pick(
        [(s, p) for p in tables if p != train and (s := _role_score(p, "test", ("test", "testing")))]
    )
    dir_infos = {p: _dir_info(p) for p in entries if p.is_dir()}
    image_dirs = [p for p, info in dir_infos.items() if info.files and info.image_share >= 0.8]
    media_dirs = [p for p, info in dir_infos.items() if p not in image_dirs and info.scan.kind is not None]
    if train is None:
        # media competitions may ship their training data only as a folder of files (class folders)
        train_dirs = [p for p in image_dirs + media_dirs if {"train", "training"} & set(_tokens(p.name))]
        if not train_dirs:
            raise TaskError(
                f"no train file in {layout.data_dir} "
                "(expected train.csv, train.parquet or a table named *train*)"
            )
        train = train_dirs[0]
    description, description_path = _description_text(layout, config)
    return _Located(
        entries, train, test, sample, description, description_path, dir_infos, image_dirs, media_dirs
    )


def _read_tables(found: _Located) -> _Tables:
    train = None if found.train.is_dir() else read_table_sample(found.train)
    if train is not None and (train.rows == 0 or train.frame.empty):
        raise TaskError(f"{found.train.name} has no rows")
    test = read_table_sample(found.test) if found.test is not None and found.test.is_file() else None
    sample = read_table_sample(found.sample) if found.sample is not None else None
    for table, path in ((test, found.test), (sample, found.sample)):
        if table is not None and path is not None and len(table.frame.columns) == 0:
            raise TaskError(f"{path.name} has no columns")
    return _Tables(train, test, sample)


def _choose_id(tables: _Tables, requested: Any, kinds: dict[str, str]) -> str | None:
    train = tables.train.frame if tables.train is not None else None
    sample = tables.sample.frame if tables.sample is not None else None
    if requested is None:
        return _detect_id(train, tables.test_columns, sample, kinds)
    known = {str(c) for frame in (train, sample) if frame is not None for c in frame.columns}
    known |= set(tables.test_columns or [])
    if str(requested) not in known:
        raise TaskError(f"id column '{requested}' is not in the train, test or sample submission files")
    return str(requested)


def _named_metric(metric: str | None, config: dict[str, Any], description: str) -> tuple[Metric | None, str]:
    """The metric the user, task.yaml or the description names, and where it came from."""
    if metric:
        return get_metric(metric), "override"
    if config.get("metric"):
        return get_metric(str(config["metric"])), "task.yaml"
    mention = find_metric(description)
    if mention is not None:
        return get_metric(mention.metric), "description"
    return None, "default"


def _task_type_from_config(config: dict[str, Any]) -> TaskType | None:
    if not config.get("task_type"):
        return None
    try:
        return TaskType(str(config["task_type"]).lower())
    except ValueError:
        raise TaskError(
            f"task.yaml task_type '{config['task_type']}' is not one of "
            f"{', '.join(t.value for t in TaskType)}"
        ) from None


def _table_targets(
    train: pd.DataFrame, label: str, tables: _Tables, id_col: str | None, requested: Any
) -> tuple[list[str], list[str] | None]:
    if not requested:
        sample = tables.sample.frame if tables.sample is not None else None
        return _detect_targets(train, tables.test_columns, sample, id_col)
    targets = _targets_from_option(requested)
    missing = [c for c in targets if c not in train.columns]
    if missing:
        shown = ", ".join(map(str, list(train.columns)[:30]))
        raise TaskError(f"target column '{missing[0]}' is not in {label} (columns: {shown})")
    return targets, None


def _submission_format(
    task_type: TaskType, metric: Metric | None, sample: pd.DataFrame | None, targets: list[str], proba: bool
) -> tuple[str, Metric]:
    """(submission kind, metric): a named metric decides the kind; otherwise the sample's values do."""
    if proba:
        return "proba", metric or get_metric(default_metric(task_type, submission_kind="proba"))
    hint = _sample_kind(sample, targets)
    metric = metric or get_metric(default_metric(task_type, submission_kind=hint))
    if task_type is TaskType.REGRESSION:
        return "label", metric
    if metric.needs_proba:
        return "proba", metric
    return hint or "label", metric


def _feature_lists(
    columns: list[ColumnProfile],
    train: pd.DataFrame | None,
    excluded: set[str],
    test_columns: list[str] | None,
) -> tuple[list[str], list[str], list[str]]:
    """(features, text columns, categorical columns): columns a model can use at test time."""
    kinds = {c.name: c.kind for c in columns}
    features = [
        c.name
        for c in columns
        if c.name not in excluded
        and c.kind not in ("id", "constant")
        and (test_columns is None or c.name in test_columns)
    ]
    text = [c for c in features if kinds[c] == "text"]
    # string-valued yes/no columns need encoding like any other category
    categorical = [
        c
        for c in features
        if kinds[c] == "categorical"
        or (kinds[c] == "boolean" and train is not None and not pd.api.types.is_numeric_dtype(train[c]))
    ]
    return features, text, categorical


def load_task(
    path: str | Path,
    *,
    metric: str | None = None,
    target: str | list[str] | None = None,
    id_column: str | None = None,
) -> Task:
    """Read and profile a competition folder.

    ``metric``, ``target`` (a column, a list, or comma-separated columns) and ``id_column`` override
    what task.yaml says and what is detected. Raises ``TaskError`` / ``MetricError`` for input that
    cannot be understood.
    """
    layout = _resolve_layout(Path(path))
    config = _read_config(layout)
    found = _locate(layout, config)
    tables = _read_tables(found)
    train = tables.train.frame if tables.train is not None else None
    sample = tables.sample.frame if tables.sample is not None else None

    columns = profile_columns(train) if train is not None else []
    id_col = _choose_id(tables, id_column or config.get("id"), {c.name: c.kind for c in columns})
    if sample is not None and found.sample is not None and all(str(c) == id_col for c in sample.columns):
        raise TaskError(f"{found.sample.name} has no prediction column besides the id column '{id_col}'")
    named_metric, metric_source = _named_metric(metric, config, found.description)
    requested_target = target or config.get("target")
    if train is None:
        targets, proba_classes, task_type, classes = _image_dir_targets(
            found.train, found.dir_infos[found.train], sample, id_col, named_metric, requested_target
        )
    else:
        targets, proba_classes = _table_targets(train, found.train.name, tables, id_col, requested_target)
        task_type = _task_type_from_config(config) or _infer_task_type(
            train, targets, proba_classes, named_metric, found.train.name
        )
        classes = _classes(train, targets, proba_classes, task_type)
        if len(targets) == 1:
            check_learnable(train, targets, found.train.name)
    submission_kind, chosen_metric = _submission_format(
        task_type, named_metric, sample, targets, bool(proba_classes)
    )
    if sample is not None:
        submission_columns = [str(c) for c in sample.columns]
    else:
        submission_columns = ([id_col] if id_col else []) + targets
    if tables.sample is not None and found.sample is not None:
        _check_sample_against_test(tables.sample, found.sample, tables.test, found.test, id_col)

    for key in ("group_column", "time_column"):
        if config.get(key) and (train is None or config[key] not in train.columns):
            raise TaskError(f"task.yaml {key} '{config[key]}' is not a column of {found.train.name}")
    excluded = set(targets) | ({id_col} if id_col else set())
    features, text_columns, categorical_columns = _feature_lists(
        columns, train, excluded, tables.test_columns
    )
    if tables.test is not None and found.test is not None:
        check_test_table(tables.test.frame, tables.test.rows, found.test.name, id_col)
        check_shared_features(_feature_lists(columns, train, excluded, None)[0], tables.test_columns or [],
                              found.test.name)  # fmt: skip

    media = _media_profile(layout.data_dir, found, tables, id_col, targets, n_test=_test_rows(tables))
    files = _files(layout, found, tables, _JoinContext(tables, targets, columns))
    answers = _answers_file(layout, config)
    if answers is not None:
        files.append(
            DataFile(
                path=str(answers),
                role=FileRole.ANSWERS,
                format=table_format(answers) or "other",
                size_bytes=answers.stat().st_size,
            )
        )
    n_test_rows = _test_rows(tables)
    n_train_rows = (
        (tables.train.rows or 0) if tables.train is not None else found.dir_infos[found.train].files
    )
    if media is not None and media.layout == "class_folders":
        n_train_rows = media.n_train_files

    data_dir = layout.data_dir
    return Task(
        name=str(config.get("name") or layout.name),
        root=layout.root,
        data_dir=data_dir,
        description=found.description,
        files=files,
        train_file=found.train.relative_to(data_dir).as_posix(),
        test_file=found.test.relative_to(data_dir).as_posix() if found.test is not None else None,
        sample_submission_file=found.sample.relative_to(data_dir).as_posix() if found.sample else None,
        answers_file=answers,
        id_column=id_col,
        target_columns=targets,
        task_type=task_type,
        modality=_modality(config, found, train, text_columns, features, media),
        classes=classes,
        submission_columns=submission_columns,
        submission_kind=submission_kind,
        metric=chosen_metric.name,
        lower_is_better=chosen_metric.lower_is_better,
        metric_source=metric_source,
        columns=columns,
        feature_columns=features,
        text_columns=text_columns,
        categorical_columns=categorical_columns,
        group_column=str(config["group_column"]) if config.get("group_column") else None,
        time_column=str(config["time_column"]) if config.get("time_column") else None,
        n_train_rows=n_train_rows,
        n_test_rows=n_test_rows,
        media=media,
    )


def _test_rows(tables: _Tables) -> int:
    # without a test table (media), the sample submission has one row per test item
    test_rows = tables.test or tables.sample
    return (test_rows.rows or 0) if test_rows is not None else 0


def _media_profile(
    data_dir: Path, found: _Located, tables: _Tables, id_col: str | None, targets: list[str], n_test: int
) -> MediaProfile | None:
    """Where each row's file is and what the files are like, when the samples are files."""
    scans = {path: found.dir_infos[path].scan for path in found.image_dirs + found.media_dirs}
    test_frame = tables.test.frame if tables.test is not None else (
        tables.sample.frame if tables.sample is not None else None
    )
    if tables.train is None:
        info = found.dir_infos.get(found.train)
        if info is None or len(info.class_dirs) < 2:
            return None
        test = None
        if test_frame is not None:
            others = {p: s for p, s in scans.items() if p != found.train}
            test = _match_test(data_dir, test_frame, id_col, others)
        return profile_class_folders(data_dir, found.train, info.scan, test, n_test)
    train = tables.train.frame
    keys = ([id_col] if id_col else []) + [
        str(c) for c in train.columns
        if str(c) != id_col and str(c) not in targets and not pd.api.types.is_numeric_dtype(train[c])
    ]
    return profile_table_media(
        data_dir, scans, train, test_frame, keys, targets[0] if targets else None,
        n_train=tables.train.rows or 0, n_test=n_test,
    )


def _match_test(
    data_dir: Path, frame: pd.DataFrame, id_col: str | None, scans: dict[Path, FolderScan]
) -> tuple[str, str] | None:
    columns = ([id_col] if id_col else []) + [str(c) for c in frame.columns if str(c) != id_col]
    return match_column(data_dir, frame, columns, scans)


def _classes(
    train: pd.DataFrame, targets: list[str], proba_classes: list[str] | None, task_type: TaskType
) -> list[str]:
    if task_type is TaskType.REGRESSION:
        return []
    if task_type is TaskType.MULTILABEL:
        return list(targets)
    keys = {label_key(v) for v in train[targets[0]].dropna().unique()}
    if proba_classes:
        keys |= {label_key(c) for c in proba_classes}
    return sort_labels(keys)


def _image_dir_targets(
    train_dir: Path,
    info: _DirInfo,
    sample: pd.DataFrame | None,
    id_col: str | None,
    metric: Metric | None,
    target_value: Any,
) -> tuple[list[str], list[str] | None, TaskType, list[str]]:
    """Targets of a competition whose training data is a folder of images."""
    if sample is None:
        raise TaskError(f"{train_dir.name}/ holds images but there is no train table or sample submission")
    wanted = [str(c) for c in sample.columns if c != id_col]
    if target_value:
        wanted = _targets_from_option(target_value)
    if not wanted:
        raise TaskError("the sample submission has no prediction column")
    if len(wanted) > 1:
        return wanted, wanted, TaskType.MULTICLASS, sort_labels(wanted)
    types = set(metric.task_types) if metric else set()
    if types == {TaskType.REGRESSION}:
        return wanted, None, TaskType.REGRESSION, []
    classes = sort_labels(info.class_dirs) if len(info.class_dirs) >= 2 else []
    task_type = TaskType.MULTICLASS if len(classes) > 2 else TaskType.BINARY
    return wanted, None, task_type, classes


@dataclass
class _JoinContext:
    """What profiling an auxiliary table measures its join keys against."""

    tables: _Tables
    targets: list[str]
    columns: list[ColumnProfile]

    def profile(self, sampled: TableSample) -> TableProfile:
        frame = sampled.frame
        columns = profile_columns(frame)
        sample = "all" if sampled.fully_read else ("spread" if sampled.spread else "head")
        train = self.tables.train
        if train is None:
            return TableProfile(columns=columns, sampled_rows=len(frame), sample=sample,
                                note="the training data is not a table")
        test = self.tables.test.frame if self.tables.test is not None else None
        try:
            links, note = find_links(frame, train.frame, test, targets=self.targets,
                                     train_profiles=self.columns, aux_profiles=columns)
        except Exception as exc:  # odd values in an extra table must not stop intake: listed, not linked
            links, note = [], f"the key search failed: {first_line(exc)}"
        return TableProfile(columns=columns, sampled_rows=len(frame), sample=sample, links=links, note=note)


def _aux_table(entry: Path, data_dir: Path, profile: bool, joins: _JoinContext) -> DataFile:
    sampled = None
    # a whole-document JSON cannot be read in part, so a big one is listed without a row count
    if profile and not (table_format(entry) == "json" and entry.stat().st_size > FULL_READ_BYTES):
        try:
            sampled = read_spread_sample(entry)
        except TaskError:
            sampled = None  # a broken extra table must not stop intake; scripts will meet it themselves
    listed = _table_file(entry, data_dir, FileRole.AUXILIARY, sampled)
    if sampled is not None and len(sampled.frame.columns):
        listed.table = joins.profile(sampled)
    return listed


def _files(layout: _Layout, found: _Located, tables: _Tables, joins: _JoinContext) -> list[DataFile]:
    data_dir = layout.data_dir
    roles = (
        (found.train, FileRole.TRAIN, tables.train),
        (found.test, FileRole.TEST, tables.test),
        (found.sample, FileRole.SAMPLE_SUBMISSION, tables.sample),
    )
    tabled = {
        path: (role, sampled) for path, role, sampled in roles if path is not None and sampled is not None
    }
    files: list[DataFile] = []
    profiled = 0
    for entry in found.entries:
        if entry in tabled:
            files.append(_table_file(entry, data_dir, *tabled[entry]))
        elif entry == found.description_path:
            files.append(
                DataFile(
                    path=entry.name,
                    role=FileRole.DESCRIPTION,
                    format="other",
                    size_bytes=entry.stat().st_size,
                )
            )
        elif entry.is_dir():
            role = FileRole.IMAGE_DIR if entry in found.image_dirs else FileRole.AUXILIARY
            if entry in found.media_dirs:
                role = FileRole.MEDIA_DIR
            if entry == found.train:
                role = FileRole.TRAIN
            elif entry == found.test:
                role = FileRole.TEST
            files.append(
                DataFile(path=entry.name, role=role, format="dir", rows=found.dir_infos[entry].files)
            )
        elif table_format(entry) in TABLE_LIKE:
            files.append(_aux_table(entry, data_dir, profiled < MAX_AUX_PROFILED, joins))
            profiled += 1
        else:
            files.append(
                DataFile(
                    path=entry.name, role=FileRole.AUXILIARY, format="other", size_bytes=entry.stat().st_size
                )
            )
    # task.yaml may point at tables inside subfolders, which the top-level listing does not show
    files.extend(
        _table_file(path, data_dir, role, sampled)
        for path, (role, sampled) in tabled.items()
        if path not in found.entries
    )
    return files


def _modality(
    config: dict[str, Any],
    found: _Located,
    train: pd.DataFrame | None,
    text_columns: list[str],
    features: list[str],
    media: MediaProfile | None = None,
) -> Modality:
    if config.get("modality"):
        try:
            return Modality(str(config["modality"]).lower())
        except ValueError:
            raise TaskError(
                f"task.yaml modality '{config['modality']}' is not one of "
                f"{', '.join(m.value for m in Modality)}"
            ) from None
    if media is not None:
        return {"image": Modality.IMAGE, "audio": Modality.AUDIO, "text": Modality.TEXT}.get(
            media.kind, Modality.OTHER
        )
    if found.image_dirs:
        return Modality.IMAGE
    if train is not None:
        for name in train.columns:
            values = train[name].dropna()
            if len(values) and not pd.api.types.is_numeric_dtype(values):
                # a column of image file names points at pictures stored elsewhere
                head = values.astype(str).head(50).str.lower()
                if head.str.endswith(tuple(IMAGE_EXTENSIONS)).mean() >= 0.8:
                    return Modality.IMAGE
        if any(mean_words(train[c]) >= TEXT_MODALITY_WORDS for c in text_columns):
            return Modality.TEXT
    # folders of audio, geometry or other non-table files with nothing tabular to learn from
    other_dirs = [info for info in found.dir_infos.values() if info.files >= 10 and info.table_share < 0.5]
    if other_dirs and (train is None or not features):
        return Modality.OTHER
    return Modality.TABULAR


# --- grading without the training data (issue 17) -----------------------------------------------


@dataclass(frozen=True)
class GradingFiles:
    """What grading a competition needs, found without reading (or having) its training data."""

    name: str
    answers: Path | None
    sample: Path | None
    metric: str | None  # None when neither the caller, task.yaml nor the description names one
    id_column: str | None


def grading_files(
    path: str | Path, *, metric: str | None = None, id_column: str | None = None
) -> GradingFiles:
    """The private answers, the sample submission, the named metric and the id column of a folder."""
    layout = _resolve_layout(Path(path))
    config = _read_config(layout)
    tables = [
        p for p in layout.data_dir.iterdir() if p.is_file() and not p.name.startswith(".") and table_format(p)
    ]
    sample = _config_path(layout, config, "sample_submission") or _pick(
        [(s, p) for p in tables if (s := _is_sample_name(p))]
    )
    description, _ = _description_text(layout, config)
    named, _ = _named_metric(metric, config, description)
    chosen_id = id_column or config.get("id")
    if chosen_id is None and sample is not None:
        chosen_id = _detect_id(None, None, read_table_sample(sample).frame, {})
    return GradingFiles(
        name=str(config.get("name") or layout.name),
        answers=_answers_file(layout, config),
        sample=sample,
        metric=named.name if named is not None else None,
        id_column=str(chosen_id) if chosen_id is not None else None,
    )
