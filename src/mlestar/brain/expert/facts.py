"""What the expert needs to know about a task, boiled down to plain values a script can embed.

Everything here is derived from ``BrainContext`` alone (no file reads), so the same context always
gives the same facts and therefore the same scripts.
"""

from __future__ import annotations

import importlib.util
import re

from pydantic import BaseModel, Field

from mlestar.brain.protocol import BrainContext
from mlestar.core.task import FileRole, Task, TaskType

# At or below this many development rows a script scores every fold out of fold rather than fold 0
# alone: a fifth of a small table is too few rows to rank solutions, and refinement would chase noise.
SMALL_TABLE_ROWS = 3000
# Larger tables are scored out of fold too while fold 0 holds too little evidence to rank solutions:
# fewer rows outside the majority class (the positives of a binary task) than this, or fewer rows
# for a regression, and while the extra fits are affordable.
MIN_FOLD_EVIDENCE = {"classification": 250, "rows": 1000}
OOF_MAX_ROWS = 100_000  # beyond this the final script's pass over every fold is never worth it
# A reference fit (a boosted model that early-stops after a few hundred rounds) costs about this
# many seconds per million cells per thread and tree, plus a fixed part; scoring every fold pays
# one per fold, out of the share of the script's time its models may train.
REFERENCE_FIT_S_PER_MCELL = 0.5
REFERENCE_FIT_FIXED_S = 0.3
TRAIN_TIME_SHARE = 0.3

# A categorical column with this many levels whose values read like words (names, titles) is also
# read as n-grams by the text features: its levels are too many to learn one by one.
NGRAM_MIN_LEVELS = 200
_WORDY = re.compile(r"[^\W\d_]{2}")

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".csv.gz", ".tsv.gz", ".csv.zip", ".json", ".jsonl")


# Media sets up to this many development rows are scored out of fold, larger ones on fold 0 alone:
# decoding and representing files costs more per row than a table does.
SMALL_MEDIA_ROWS = 1000
MAX_SAMPLE_RATE = 16000  # audio is resampled down to this rate: enough for speech and most sounds
MEDIA_FEATURES_ESTIMATE = 450  # columns a default representation has, for sizing the models


class MediaFacts(BaseModel):
    """How a media script finds and decodes its files (from the task's media profile)."""

    kind: str  # image | audio
    layout: str  # table | class_folders
    train_key: str  # train column whose value fills the pattern
    train_pattern: str
    test_key: str | None = None
    test_pattern: str | None = None
    train_dir: str | None = None
    width: int = 0  # median image size of the sample
    height: int = 0
    channels: int = 3
    sample_rate: int = MAX_SAMPLE_RATE
    duration_s: float = 1.0  # median clip length
    torch: bool = False  # PyTorch can be imported by scripts


class TaskFacts(BaseModel):
    """Static facts rendered into every script of a task."""

    name: str
    task_type: str  # binary | multiclass | regression | multilabel
    targets: list[str]
    id_col: str | None = None
    metric: str
    lower_is_better: bool
    needs_proba: bool
    submit_proba: bool
    train_file: str
    test_file: str | None = None
    sample_file: str | None = None
    aux_files: list[str] = Field(default_factory=list)  # auxiliary tables a script may join
    modality: str = "tabular"
    text_cols: list[str] = Field(default_factory=list)
    ngram_cols: list[str] = Field(default_factory=list)  # read as n-grams: text and word-like categoricals
    cat_cols: list[str] = Field(default_factory=list)
    date_cols: list[str] = Field(default_factory=list)
    numeric_cols: list[str] = Field(default_factory=list)
    feature_cols: list[str] = Field(default_factory=list)
    drop_cols: list[str] = Field(default_factory=list)  # train columns that are not features
    top_numeric: list[str] = Field(default_factory=list)  # most informative-looking numeric columns
    top_cats: list[str] = Field(default_factory=list)  # low/medium cardinality categoricals
    high_card_cats: list[str] = Field(default_factory=list)
    has_missing: bool = False
    n_classes: int = 0
    n_rows: int = 0  # rows a development script trains on (dev subsample)
    n_features: int = 0
    score_folds: list[int] = Field(default_factory=lambda: [0])  # folds a development script scores
    seed: int = 0
    threads: int = 1
    timeout_s: float = 600.0
    gpu: bool = False
    media: MediaFacts | None = None

    @property
    def classification(self) -> bool:
        return self.task_type in ("binary", "multiclass")

    @property
    def n_heads(self) -> int:
        """Separate models per target column (multilabel, multi-output regression)."""
        if self.task_type in ("multilabel", "regression"):
            return max(1, len(self.targets))
        return 1

    @property
    def is_text(self) -> bool:
        return bool(self.text_cols) and self.modality == "text"


def _metric_info(task: Task) -> tuple[str, bool, bool]:
    """(metric name, lower is better, needs probabilities), trusting the registry when it knows."""
    try:
        from mlestar.metrics import get_metric

        metric = get_metric(task.metric)
        return metric.name, metric.lower_is_better, metric.needs_proba
    except Exception:  # an unknown name: keep the task's own direction, guess the output type
        guess = task.submission_kind == "proba"
        return task.metric, task.lower_is_better, guess


def is_table(path: str) -> bool:
    return path.lower().endswith(TABLE_SUFFIXES)


def media_facts(ctx: BrainContext) -> MediaFacts | None:
    """What scripts need of the media profile, for the kinds the expert handles (images, audio)."""
    media = ctx.task.media
    if media is None or media.kind not in ("image", "audio"):
        return None
    if media.layout == "class_folders":
        train_key, train_pattern = "path", "{id}"
    elif media.key_column and media.train_pattern:
        train_key, train_pattern = media.key_column, media.train_pattern
    else:
        return None
    grey = bool(media.modes) and all(mode in ("L", "1", "I", "I;16", "F") for mode in media.modes)
    rates = sorted((int(rate) for rate in media.sample_rates), key=lambda r: -media.sample_rates[str(r)])
    return MediaFacts(
        kind=media.kind,
        layout=media.layout,
        train_key=train_key,
        train_pattern=train_pattern,
        test_key=media.key_column,
        test_pattern=media.test_pattern,
        train_dir=media.train_dir,
        width=int(media.width.median) if media.width else 0,
        height=int(media.height.median) if media.height else 0,
        channels=1 if grey else 3,
        sample_rate=min(rates[0], MAX_SAMPLE_RATE) if rates else MAX_SAMPLE_RATE,
        duration_s=round(media.duration_s.median, 3) if media.duration_s else 1.0,
        torch=package_available("torch", ctx.available_packages),
    )


def package_available(package: str, available: list[str]) -> bool:
    """Whether a package can be imported by scripts: the context's list when given, else a lookup."""
    if available:
        return package in available or (package == "sklearn" and "scikit-learn" in available)
    return importlib.util.find_spec(package) is not None


def fold_evidence(ctx: BrainContext, n_rows: int) -> float:
    """What one fold holds to rank solutions by: rows outside the majority class (classification,
    from the context's class counts) or plain rows."""
    folds = max(2, ctx.n_folds)
    counts = list(ctx.class_counts.values())
    if counts and ctx.task.task_type in (TaskType.BINARY, TaskType.MULTICLASS):
        return (sum(counts) - max(counts)) / folds
    return n_rows / folds


def scores_every_fold(
    ctx: BrainContext, n_rows: int, n_features: int, n_outputs: int, *, media: bool = False
) -> bool:
    """Whether development scripts score every fold out of fold instead of fold 0 alone.

    Yes on small tables; on larger ones while fold 0 is too thin to rank solutions (few positives,
    few rows) and the extra fits cost little against the script's time. Never on a time-ordered
    split (earlier folds would be predicted from the future). The final script repeats the scoring
    on every train row, so the cost counts the train file's rows."""
    task = ctx.task
    if task.time_column:
        return False
    rows = max(n_rows, task.n_train_rows or 0)
    if media:  # decoding makes every fit dear: out of fold on small sets only
        return rows <= SMALL_MEDIA_ROWS
    if rows <= SMALL_TABLE_ROWS:
        return True
    if rows > OOF_MAX_ROWS:
        return False
    classification = bool(ctx.class_counts) and task.task_type in (TaskType.BINARY, TaskType.MULTICLASS)
    needed = MIN_FOLD_EVIDENCE["classification" if classification else "rows"]
    if fold_evidence(ctx, n_rows) >= needed:
        return False
    cells = rows * max(1, n_features) / 1e6
    per_thread = REFERENCE_FIT_S_PER_MCELL * cells * max(1, n_outputs) / max(1, ctx.threads)
    fit_s = REFERENCE_FIT_FIXED_S + per_thread
    return max(2, ctx.n_folds) * fit_s <= TRAIN_TIME_SHARE * ctx.script_timeout_s


def task_facts(ctx: BrainContext) -> TaskFacts:
    task = ctx.task
    metric, lower, needs_proba = _metric_info(task)
    profiles = {c.name: c for c in task.columns}
    targets = list(task.target_columns)
    id_col = task.id_column if (task.id_column and (not profiles or task.id_column in profiles)) else None
    excluded = set(targets) | ({task.id_column} if task.id_column else set())

    features = [c for c in task.feature_columns if c not in excluded]
    if not features and profiles:
        features = [n for n, p in profiles.items() if n not in excluded and p.kind not in ("id", "constant")]
    drop = [n for n in profiles if n not in excluded and features and n not in features]

    kinds = {n: profiles[n].kind for n in features if n in profiles}
    text = [c for c in task.text_columns if c in features] or [c for c, k in kinds.items() if k == "text"]
    dates = [c for c, k in kinds.items() if k == "datetime"]
    cats = [c for c in task.categorical_columns if c in features and c not in text]
    if not cats:
        cats = [c for c, k in kinds.items() if k == "categorical"]
    numeric = [c for c, k in kinds.items() if k in ("numeric", "boolean") and c not in cats]

    # Informative-looking numeric columns first: many distinct values, few missing ones.
    def numeric_rank(name: str) -> tuple[float, str]:
        p = profiles[name]
        return (-(min(p.n_unique, 1000) * (1.0 - p.missing_share)), name)

    wordy = [
        c
        for c in cats
        if c in profiles
        and profiles[c].n_unique >= NGRAM_MIN_LEVELS
        and sum(bool(_WORDY.search(e)) for e in profiles[c].examples) * 2 > len(profiles[c].examples)
    ]
    top_numeric = sorted((c for c in numeric if profiles[c].n_unique > 10), key=numeric_rank)[:4]
    by_card = sorted(cats, key=lambda c: (profiles[c].n_unique if c in profiles else 0, c))
    top_cats = [c for c in by_card if c in profiles and 2 <= profiles[c].n_unique <= 200][:3]
    high_card = [c for c in cats if c in profiles and profiles[c].n_unique > 50]

    task_type = task.task_type.value
    aux = sorted(
        f.path
        for f in task.files
        if f.role is FileRole.AUXILIARY and f.format != "dir" and is_table(f.path)
    )
    n_rows = ctx.n_dev_rows or min(task.n_train_rows or ctx.dev_max_rows, ctx.dev_max_rows)
    media = media_facts(ctx)
    n_classes = len(task.classes) if task.task_type is TaskType.MULTICLASS else 1
    outputs = max(n_classes, len(targets))
    every_fold = scores_every_fold(ctx, n_rows, len(features), outputs, media=media is not None)
    score_folds = list(range(max(2, ctx.n_folds))) if every_fold else [0]
    if media is not None:  # the files are the features: the train table's columns name them
        features, text, cats, dates, numeric, drop = [], [], [], [], [], []
        top_numeric, top_cats, high_card = [], [], []
    return TaskFacts(
        name=task.name,
        task_type=task_type,
        targets=targets,
        id_col=id_col,
        metric=metric,
        lower_is_better=lower,
        needs_proba=needs_proba,
        submit_proba=task.submission_kind == "proba",
        train_file=task.train_file,
        test_file=task.test_file,
        sample_file=task.sample_submission_file,
        aux_files=aux,
        modality=task.modality.value,
        text_cols=text,
        ngram_cols=text + wordy,
        cat_cols=cats,
        date_cols=dates,
        numeric_cols=numeric,
        feature_cols=features,
        drop_cols=drop,
        top_numeric=top_numeric,
        top_cats=top_cats,
        high_card_cats=high_card,
        has_missing=any(profiles[c].missing_share > 0 for c in features if c in profiles),
        n_classes=len(task.classes) if task.task_type is TaskType.MULTICLASS else (2 if task_type == "binary" else 0),
        n_rows=max(1, n_rows),
        n_features=MEDIA_FEATURES_ESTIMATE if media is not None else max(1, len(features)),
        score_folds=score_folds,
        seed=ctx.seed,
        threads=max(1, ctx.threads),
        timeout_s=ctx.script_timeout_s,
        gpu=ctx.gpu,
        media=media,
    )
