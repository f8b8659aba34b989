"""The competition registry: every build is deterministic, well-formed, leak-free and readable by intake."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from builders import (
    ANSWERS_FILE,
    CHECKSUM_FILE,
    Submission,
    build_competition,
    get_spec,
    list_competitions,
    read_checksums,
    verify_checksums,
)

from mlestar.core.task import Modality, TaskType
from mlestar.errors import MlestarError
from mlestar.task.intake import load_task

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SUITE_RECORD = json.loads((REPO / "benchmarks" / "suite_checksums.json").read_text())
PUBLIC = ("train.csv", "test.csv", "sample_submission.csv", "description.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every registered competition, built once for the whole module (about two seconds)."""
    root = tmp_path_factory.mktemp("competitions")
    return {name: build_competition(name, root / name) for name in list_competitions()}


def test_registry_has_the_examples_and_a_varied_suite() -> None:
    assert list_competitions("example") == ["churn", "house-prices", "reviews"]
    suite = [get_spec(name) for name in list_competitions("suite")]
    assert len(suite) >= 8
    types = {spec.task_type for spec in suite}
    assert {TaskType.BINARY, TaskType.MULTICLASS, TaskType.REGRESSION} <= types
    assert {spec.submission for spec in suite} == set(Submission)
    assert len({spec.metric for spec in suite}) >= 6
    with pytest.raises(MlestarError, match="unknown competition"):
        get_spec("no-such-thing")


@pytest.mark.parametrize("name", list_competitions())
def test_bytes_match_the_committed_record(built: dict[str, Path], name: str) -> None:
    """Same bytes as the examples in git and the suite's recorded checksums: stable across machines."""
    folder = built[name]
    assert verify_checksums(folder) == []
    if get_spec(name).group == "example":
        assert read_checksums(folder) == read_checksums(EXAMPLES / name)
    else:
        assert read_checksums(folder) == SUITE_RECORD[name]


@pytest.mark.parametrize("name", list_competitions())
def test_competition_folder_is_well_formed(built: dict[str, Path], name: str) -> None:
    spec, folder = get_spec(name), built[name]
    train = pd.read_csv(folder / "train.csv")
    test = pd.read_csv(folder / "test.csv")
    sample = pd.read_csv(folder / "sample_submission.csv")
    answers = pd.read_csv(folder / ANSWERS_FILE)

    # Fresh ids 0..N-1 across train then test; R's row names are gone.
    assert train["id"].tolist() == list(range(len(train)))
    assert test["id"].tolist() == list(range(len(train), len(train) + len(test)))
    assert "rownames" not in train.columns
    assert train.columns[0] == "id" and train.columns[-1] == spec.target
    assert list(test.columns) == list(train.columns[:-1])
    assert 0.15 < len(test) / (len(train) + len(test)) < 0.25

    # Sample and answers share columns and the test ids, in the test's order.
    assert list(sample.columns) == list(answers.columns)
    assert sample["id"].tolist() == test["id"].tolist() == answers["id"].tolist()
    assert answers.drop(columns="id").notna().all().all()

    # Answers live only under private/; the description names the metric and shows the format.
    public = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert set(public) - {CHECKSUM_FILE, "task.yaml"} == set(PUBLIC)
    description = (folder / "description.md").read_text()
    assert spec.metric_sentence in description
    assert "## Submission format" in description and ",".join(sample.columns) in description


@pytest.mark.parametrize("name", list_competitions())
def test_intake_reads_what_the_builder_meant(built: dict[str, Path], name: str) -> None:
    spec = get_spec(name)
    task = load_task(built[name])
    assert task.metric == spec.metric
    assert task.lower_is_better == spec.lower_is_better
    assert task.target_columns == [spec.target]
    assert task.task_type == spec.task_type
    assert task.id_column == "id"
    assert task.answers_file is not None and task.answers_file.name == "answers.csv"
    probabilities = spec.submission in (Submission.PROBABILITY, Submission.CLASS_PROBABILITIES)
    assert task.submission_kind == ("proba" if probabilities else "label")
    assert task.group_column == spec.group_column and task.time_column == spec.time_column


def test_examples_need_no_task_yaml_and_reviews_is_text() -> None:
    for name in list_competitions("example"):
        assert not (EXAMPLES / name / "task.yaml").exists()
        size = sum(p.stat().st_size for p in (EXAMPLES / name).rglob("*") if p.is_file())
        assert size < 3_000_000
    assert load_task(EXAMPLES / "reviews").modality is Modality.TEXT


def test_checksums_catch_changed_missing_and_extra_files(tmp_path: Path, built: dict[str, Path]) -> None:
    folder = tmp_path / "penguins"
    shutil.copytree(built["penguins"], folder)
    assert verify_checksums(folder) == []
    with open(folder / ANSWERS_FILE, "a") as handle:
        handle.write("999,0,0,1\n")
    (folder / "test.csv").unlink()
    (folder / "notes.txt").write_text("hello")
    assert sorted(verify_checksums(folder)) == ["changed: private/answers.csv", "missing: test.csv", "unlisted: notes.txt"]


def test_rebuild_refreshes_a_tampered_folder(tmp_path: Path, built: dict[str, Path]) -> None:
    folder = tmp_path / "titanic"
    shutil.copytree(built["titanic"], folder)
    (folder / "train.csv").write_text("id,x\n0,1\n")
    (folder / "task.yaml").write_text("metric: accuracy\n")  # stale file of an older build
    build_competition("titanic", folder)
    assert read_checksums(folder) == read_checksums(built["titanic"])
    assert verify_checksums(folder) == []


def test_splits_respect_strata_groups_and_time(built: dict[str, Path]) -> None:
    # Stratified: class shares in test follow train's.
    train = pd.read_csv(built["hpc-jobs"] / "train.csv")
    answers = pd.read_csv(built["hpc-jobs"] / ANSWERS_FILE)
    shares = pd.concat([train["class"].value_counts(normalize=True), answers["class"].value_counts(normalize=True)], axis=1)
    assert (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().max() < 0.01
    # Grouped: no crash has occupants on both sides.
    crash_train = set(pd.read_csv(built["crashes"] / "train.csv")["caseid"])
    crash_test = set(pd.read_csv(built["crashes"] / "test.csv")["caseid"])
    assert not crash_train & crash_test
    # Time: every test day comes after every training day; rows are still shuffled.
    days_train = pd.read_csv(built["ridership"] / "train.csv")["date"]
    days_test = pd.read_csv(built["ridership"] / "test.csv")["date"]
    assert days_train.max() < days_test.min()
    assert not days_train.is_monotonic_increasing


def test_leaky_columns_are_dropped(built: dict[str, Path]) -> None:
    columns = {name: set(pd.read_csv(built[name] / "test.csv", nrows=1).columns) for name in ("rodents", "crashes", "pets")}
    assert not columns["rodents"] & {"species", "species_id", "taxa", "record_id"}
    assert "injSeverity" not in columns["crashes"]
    assert not columns["pets"] & {"primary_breed", "secondary_breed", "license_number", "species"}
