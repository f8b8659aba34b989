"""Typed description of a competition, produced by intake and read by every other part."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field


class TaskType(str, Enum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    REGRESSION = "regression"


class Modality(str, Enum):
    TABULAR = "tabular"
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    TIMESERIES = "timeseries"
    OTHER = "other"


class FileRole(str, Enum):
    TRAIN = "train"
    TEST = "test"
    SAMPLE_SUBMISSION = "sample_submission"
    DESCRIPTION = "description"
    AUXILIARY = "auxiliary"  # extra tables or files scripts may use
    IMAGE_DIR = "image_dir"
    MEDIA_DIR = "media_dir"  # a folder of per-sample files other than images (audio, text, arrays)
    ANSWERS = "answers"  # private; never shown to development scripts


class ColumnProfile(BaseModel):
    name: str
    dtype: str  # pandas dtype as a string
    kind: str  # "numeric" | "categorical" | "text" | "datetime" | "boolean" | "id" | "constant"
    missing_share: float
    n_unique: int
    examples: list[str] = Field(default_factory=list)  # a few values, as strings, truncated


# --- auxiliary tables: their columns and how they join to the train rows (issue 18) -------------
class KeyPair(BaseModel):
    """One column pair of a join key. A part says how a side is read (``task/joining.py``): ``value``,
    ``number``, ``text``, a timestamp at ``date`` / ``datehour`` / ``moment`` resolution, or one of its
    ``year`` / ``month`` / ``day`` / ``hour``."""

    train: str
    aux: str
    train_part: str = "value"
    aux_part: str = "value"


class JoinLink(BaseModel):
    """One way to join an auxiliary table to the train rows, measured on samples of both."""

    keys: list[KeyPair]
    coverage: float  # share of the sampled train rows whose key the table holds
    test_coverage: float | None = None  # the same for the test rows, when there is a test table
    rows_per_key: float = 1.0  # table rows per distinct key: 1 for a lookup, more for a one-to-many table
    max_rows_per_key: int = 1
    train_keys: int = 0  # distinct keys among the matched train rows

    @property
    def lookup(self) -> bool:
        return self.max_rows_per_key <= 1

    def describe(self) -> str:
        """The key in words, e.g. ``origin + hour of time_hour -> weather.time_hour``."""
        parts = []
        for k in self.keys:
            left = k.train if k.train_part == "value" else f"{k.train_part} of {k.train}"
            right = k.aux if k.aux_part == "value" else f"{k.aux_part} of {k.aux}"
            parts.append(left if left == right else f"{left} = {right}")
        return " + ".join(parts)


class TableProfile(BaseModel):
    """The columns of an auxiliary table (profiled on a sample) and the links found to the train rows."""

    columns: list[ColumnProfile] = Field(default_factory=list)
    sampled_rows: int = 0
    sample: str = "all"  # "all" | "head" | "spread" (chunks from across a large file)
    links: list[JoinLink] = Field(default_factory=list)  # best first; siblings share the table's key columns
    note: str = ""  # why no link was looked for or found


class DataFile(BaseModel):
    path: str  # relative to Task.data_dir (or an absolute path for answers)
    role: FileRole
    format: str = "csv"  # csv | parquet | dir | other
    rows: int | None = None  # exact where cheap, estimated for large files
    columns: int | None = None
    size_bytes: int = 0
    rows_estimated: bool = False
    table: TableProfile | None = None  # auxiliary tables only


class Spread(BaseModel):
    """Smallest, median and largest of a quantity over the sampled files."""

    min: float
    median: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(min=ordered[0], median=ordered[len(ordered) // 2], max=ordered[-1])

    def text(self, unit: str = "") -> str:
        def fmt(value: float) -> str:
            return f"{value:.3g}" if not float(value).is_integer() else str(int(value))

        if self.min == self.max:
            return f"{fmt(self.min)}{unit}"
        return f"{fmt(self.min)}-{fmt(self.max)}{unit} (median {fmt(self.median)}{unit})"


class MediaProfile(BaseModel):
    """What a modeller needs to know about a competition whose samples are files (one per row).

    Paths are relative to ``Task.data_dir``. ``train_pattern`` / ``test_pattern`` say where a row's
    file lives: ``{id}`` is replaced by the row's value of ``key_column`` (the id, or a column of
    file names or paths); ``"{id}"`` alone means the column already holds the path. A competition
    of class folders (``train/<label>/<file>``, no train table) has ``layout="class_folders"``: its
    rows are the folder's files in sorted order, labelled by their folder. Statistics come from a
    sample of the files (headers only), so profiling 100k files takes seconds.
    """

    kind: str  # image | audio | text | array
    layout: str  # "table" (a train table names the files) | "class_folders"
    key_column: str | None = None  # train/test column naming each row's file
    train_pattern: str | None = None  # e.g. "train/{id}.png"
    test_pattern: str | None = None
    train_dir: str | None = None  # the folder of training files
    test_dirs: list[str] = Field(default_factory=list)  # folders holding only test files
    shared_dirs: list[str] = Field(default_factory=list)  # folders holding train and test files
    n_train_files: int = 0
    n_test_files: int = 0
    sampled: int = 0  # files whose headers were read for the statistics below
    unreadable: int = 0  # sampled files that could not be decoded
    formats: dict[str, int] = Field(default_factory=dict)  # extension -> count in the sample
    class_counts: dict[str, int] = Field(default_factory=dict)  # label -> training rows
    examples: list[str] = Field(default_factory=list)  # a few file paths, as a sample of the tree
    # images
    width: Spread | None = None
    height: Spread | None = None
    modes: dict[str, int] = Field(default_factory=dict)  # Pillow modes: RGB, L, RGBA ... -> count
    # audio
    sample_rates: dict[str, int] = Field(default_factory=dict)  # Hz -> count
    duration_s: Spread | None = None
    audio_channels: dict[str, int] = Field(default_factory=dict)
    # per-sample text and arrays
    chars: Spread | None = None
    shapes: dict[str, int] = Field(default_factory=dict)  # array shape -> count

    def summary(self) -> str:
        """A few lines describing the files, for prompts, reports and ``mlestar profile``."""
        where = self.train_pattern or (f"{self.train_dir}/<label>/<file>" if self.train_dir else "?")
        lines = [
            f"Media: {self.kind} files, {self.n_train_files} train / {self.n_test_files} test; "
            f"train files at {where}" + (f", test files at {self.test_pattern}" if self.test_pattern else "")
        ]
        if self.formats:
            lines.append("Formats (sampled): " + ", ".join(f"{k} {v}" for k, v in self.formats.items()))
        if self.width and self.height:
            modes = ", ".join(f"{k} {v}" for k, v in self.modes.items())
            lines.append(f"Image size: width {self.width.text('px')}, height {self.height.text('px')}; modes: {modes}")
        if self.duration_s:
            rates = ", ".join(f"{k} Hz x{v}" for k, v in self.sample_rates.items())
            channels = ", ".join(f"{k} ch x{v}" for k, v in self.audio_channels.items())
            lines.append(f"Audio: duration {self.duration_s.text('s')}; sample rates {rates}; {channels}")
        if self.chars:
            lines.append(f"Text files: {self.chars.text(' characters')}")
        if self.shapes:
            lines.append("Array shapes: " + ", ".join(f"{k} x{v}" for k, v in list(self.shapes.items())[:5]))
        if self.class_counts:
            shown = sorted(self.class_counts.items(), key=lambda item: -item[1])
            text = ", ".join(f"{k} {v}" for k, v in shown[:15]) + (" ..." if len(shown) > 15 else "")
            lines.append(f"Training rows per class: {text}")
        if self.unreadable:
            lines.append(f"Unreadable files in the sample: {self.unreadable} of {self.sampled}")
        if self.examples:
            lines.append("Sample of the file tree: " + ", ".join(self.examples[:6]))
        return "\n".join(lines)


class Task(BaseModel):
    """Everything the pipeline, the brains and the graders need to know about a competition."""

    name: str
    root: Path  # the folder the user pointed at
    data_dir: Path  # where the public data files live (root, or root/prepared/public, ...)
    description: str = ""
    files: list[DataFile] = Field(default_factory=list)

    train_file: str  # relative to data_dir
    test_file: str | None = None
    sample_submission_file: str | None = None
    answers_file: Path | None = None  # private answers, absolute path, if the folder has them

    id_column: str | None = None
    target_columns: list[str]
    task_type: TaskType
    modality: Modality = Modality.TABULAR
    classes: list[str] = Field(default_factory=list)  # sorted class labels for classification
    submission_columns: list[str] = Field(default_factory=list)
    # "label": one predicted value per target column; "proba": one probability column per class
    # (multiclass, e.g. columns named after classes), or a probability in the target column (binary).
    submission_kind: str = "label"

    metric: str  # key in mlestar.metrics.METRICS
    lower_is_better: bool
    metric_source: str = "default"  # "override" | "description" | "task.yaml" | "default"

    columns: list[ColumnProfile] = Field(default_factory=list)  # train columns
    feature_columns: list[str] = Field(default_factory=list)
    text_columns: list[str] = Field(default_factory=list)
    categorical_columns: list[str] = Field(default_factory=list)
    group_column: str | None = None  # rows sharing it stay on one side of the split
    time_column: str | None = None  # validation is the latest rows when set
    n_train_rows: int = 0
    n_test_rows: int = 0
    media: MediaProfile | None = None  # set when every sample is a file (images, audio, ...)

    @property
    def target(self) -> str:
        return self.target_columns[0]

    def data_path(self, relative: str) -> Path:
        return self.data_dir / relative

    def summary(self) -> str:
        """A compact plain-text view of the task for prompts and reports."""
        lines = [
            f"Competition: {self.name}",
            f"Task type: {self.task_type.value}; modality: {self.modality.value}",
            f"Target column(s): {', '.join(self.target_columns)}",
            f"Metric: {self.metric} ({'lower' if self.lower_is_better else 'higher'} is better)",
            f"Train: {self.train_file} ({self.n_train_rows} rows)",
        ]
        if self.test_file:
            lines.append(f"Test: {self.test_file} ({self.n_test_rows} rows)")
        if self.id_column:
            lines.append(f"Id column: {self.id_column}")
        if self.submission_columns:
            lines.append(f"Submission columns: {', '.join(self.submission_columns)} ({self.submission_kind})")
        if self.classes:
            shown = ", ".join(self.classes[:20]) + (" ..." if len(self.classes) > 20 else "")
            lines.append(f"Classes: {shown}")
        if self.text_columns:
            lines.append(f"Text columns: {_listed(self.text_columns, 200)}")
        if self.categorical_columns:
            # All of them: a model told only some would treat the rest as numbers (and crash on them).
            lines.append(f"Categorical columns: {_listed(self.categorical_columns, 200)}")
        other_roles = (FileRole.AUXILIARY, FileRole.IMAGE_DIR, FileRole.MEDIA_DIR)
        aux = [f.path for f in self.files if f.role in other_roles]
        if aux:
            lines.append(f"Other files: {', '.join(aux[:20])}")
        lines += [line for f in self.files if (line := _join_line(f))]
        if self.media is not None:
            lines.append(self.media.summary())
        return "\n".join(lines)


def _listed(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def _join_line(item: DataFile) -> str:
    """How an auxiliary table joins to the train rows, in one line for prompts and reports."""
    if item.table is None or not item.table.links:
        return ""
    link = item.table.links[0]
    relation = "one row per key" if link.lookup else f"{link.rows_per_key:.1f} rows per key"
    test = "" if link.test_coverage is None else f", {link.test_coverage:.0%} of test rows"
    share = f"{link.coverage:.0%} of train rows{test}"
    return f"Auxiliary table {item.path}: joins on {link.describe()} ({relation}; {share})"
