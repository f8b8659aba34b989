"""The folders a script sees: read-only public input, its own working folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlestar.core.task import DataFile, FileRole, Task, TaskType
from mlestar.errors import TaskError
from mlestar.exec import (
    ExecLimits,
    build_input_dir,
    isolation_support,
    make_writable,
    prepare_script_dir,
    run_script,
)
from mlestar.task.views import input_view, private_paths


@pytest.fixture
def task(tmp_path: Path) -> Task:
    root = tmp_path / "comp"
    public = root / "public"
    (public / "images" / "train").mkdir(parents=True)
    (public / "extra").mkdir()
    (root / "private").mkdir()
    for name, text in {
        "train.csv": "id,x,y\n1,2,0\n",
        "test.csv": "id,x\n9,3\n",
        "sample_submission.csv": "id,y\n9,0\n",
        "description.md": "# comp\n",
        "extra/meta.csv": "k,v\n",
        "images/train/a.png": "png",
        "answers_here.csv": "id,y\n9,1\n",
    }.items():
        (public / name).write_text(text)
    (root / "private" / "answers.csv").write_text("id,y\n9,1\n")
    files = [
        DataFile(path="train.csv", role=FileRole.TRAIN),
        DataFile(path="test.csv", role=FileRole.TEST),
        DataFile(path="sample_submission.csv", role=FileRole.SAMPLE_SUBMISSION),
        DataFile(path="description.md", role=FileRole.DESCRIPTION),
        DataFile(path="extra/meta.csv", role=FileRole.AUXILIARY),
        DataFile(path="images", role=FileRole.IMAGE_DIR, format="dir"),
        DataFile(path="images/train/a.png", role=FileRole.AUXILIARY),  # already inside "images"
        DataFile(path="answers_here.csv", role=FileRole.ANSWERS),
        DataFile(path="../private/answers.csv", role=FileRole.AUXILIARY),  # escapes data_dir
        DataFile(path="missing.csv", role=FileRole.AUXILIARY),
    ]
    return Task(
        name="comp",
        root=root,
        data_dir=public,
        files=files,
        train_file="train.csv",
        test_file="test.csv",
        sample_submission_file="sample_submission.csv",
        answers_file=root / "private" / "answers.csv",
        target_columns=["y"],
        task_type=TaskType.BINARY,
        metric="auc",
        lower_is_better=False,
    )


@pytest.fixture
def folds(tmp_path: Path) -> Path:
    path = tmp_path / "folds.csv"
    path.write_text("row,fold,dev\n0,0,1\n")
    return path


def listing(folder: Path) -> set[str]:
    found = set()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            found.add(str((Path(root) / name).relative_to(folder)))
    return found


def test_development_input_hides_test_and_answers(tmp_path: Path, task: Task, folds: Path) -> None:
    dest = build_input_dir(tmp_path / "input_dev", input_view(task, final=False).links, folds_csv=folds)
    assert listing(dest) == {"train.csv", "description.md", "extra", "extra/meta.csv", "images", "folds.csv"}
    assert (dest / "train.csv").is_symlink()
    assert (dest / "train.csv").read_text() == "id,x,y\n1,2,0\n"
    assert (dest / "images").is_symlink() and (dest / "images" / "train" / "a.png").exists()
    assert not (dest / "folds.csv").is_symlink() and (dest / "folds.csv").read_text() == folds.read_text()


def test_final_input_adds_test_and_sample_submission(tmp_path: Path, task: Task, folds: Path) -> None:
    dest = build_input_dir(tmp_path / "input_final", input_view(task, final=True).links, folds_csv=folds)
    names = listing(dest)
    assert {"test.csv", "sample_submission.csv", "train.csv", "folds.csv"} <= names
    assert not any("answers" in name for name in names)
    # Nothing was written into the competition's own folders.
    assert sorted(p.name for p in (task.data_dir / "images" / "train").iterdir()) == ["a.png"]


def test_input_is_read_only_and_rebuildable(tmp_path: Path, task: Task, folds: Path) -> None:
    dest = build_input_dir(tmp_path / "input", input_view(task, final=False).links, folds_csv=folds)
    for folder in (dest, dest / "extra"):
        assert not folder.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not (dest / "folds.csv").stat().st_mode & stat.S_IWUSR
    if os.geteuid() != 0:  # root ignores permission bits
        with pytest.raises(PermissionError):
            (dest / "new.csv").write_text("x")

    again = build_input_dir(dest, input_view(task, final=True).links, folds_csv=folds)
    assert "test.csv" in listing(again)
    assert (task.data_dir / "train.csv").read_text() == "id,x,y\n1,2,0\n"  # originals untouched
    make_writable(dest)
    assert dest.stat().st_mode & stat.S_IWUSR


def test_input_originals_keep_their_permissions(tmp_path: Path, task: Task, folds: Path) -> None:
    before = (task.data_dir / "train.csv").stat().st_mode
    build_input_dir(tmp_path / "input", input_view(task, final=False).links, folds_csv=folds)
    assert (task.data_dir / "train.csv").stat().st_mode == before


def test_missing_folds_is_a_task_error(tmp_path: Path, task: Task) -> None:
    with pytest.raises(TaskError):
        build_input_dir(tmp_path / "input", input_view(task, final=False).links, folds_csv=tmp_path / "nope.csv")


def test_prepare_script_dir_is_idempotent(tmp_path: Path, task: Task, folds: Path) -> None:
    inputs = build_input_dir(tmp_path / "input", input_view(task, final=False).links, folds_csv=folds)
    folder = tmp_path / "scripts" / "n1"
    prepare_script_dir(folder, "print('v1')\n", inputs)
    (folder / "final" / "submission.csv").write_text("stale")
    (folder / "working" / "cache.bin").write_text("scratch")
    (folder / "stdout.txt").write_text("old output")

    other_inputs = build_input_dir(tmp_path / "input2", input_view(task, final=True).links, folds_csv=folds)
    assert prepare_script_dir(folder, "print('v2')\n", other_inputs) == folder
    assert (folder / "script.py").read_text() == "print('v2')\n"
    assert (folder / "input").is_symlink() and (folder / "input").resolve() == other_inputs.resolve()
    assert list((folder / "final").iterdir()) == []
    assert not (folder / "stdout.txt").exists()
    assert (folder / "working" / "cache.bin").exists()


def test_private_paths(task: Task) -> None:
    dev = {p.name for p in private_paths(task, final=False)}
    assert dev == {"private", "answers.csv", "answers_here.csv", "test.csv", "sample_submission.csv"}
    final = {p.name for p in private_paths(task, final=True)}
    assert final == {"private", "answers.csv", "answers_here.csv"}


def test_the_answers_folder_is_covered_only_when_it_holds_nothing_public(task: Task) -> None:
    folder = Path(task.answers_file).parent
    assert folder in private_paths(task, final=True)
    at_the_root = task.model_copy(update={"answers_file": task.data_dir / "answers_here.csv"})
    assert task.data_dir not in private_paths(at_the_root, final=True)


def test_script_reads_its_input_through_the_sandbox(tmp_path: Path, task: Task, folds: Path) -> None:
    inputs = build_input_dir(tmp_path / "input", input_view(task, final=False).links, folds_csv=folds)
    code = (
        "import os, pandas as pd\n"
        "train = pd.read_csv('input/train.csv'); folds = pd.read_csv('input/folds.csv')\n"
        "assert not os.path.exists('input/test.csv')\n"
        "open('final/out.txt', 'w').write('ok')\n"
        "# Following the symlink back to the data folder must not reveal the test set.\n"
        "data_dir = os.path.dirname(os.path.realpath('input/train.csv'))\n"
        "for name in ('test.csv', 'answers_here.csv', '../private/answers.csv'):\n"
        "    try:\n"
        "        print('PEEK', name, open(os.path.join(data_dir, name)).read().replace(chr(10), ' '))\n"
        "    except OSError as exc:\n"
        "        print('PEEK', name, 'denied', exc)\n"
        "print('Final Validation Performance:', len(train) + len(folds))\n"
    )
    folder = prepare_script_dir(tmp_path / "scripts" / "n1", code, inputs)
    result = run_script(folder, ExecLimits(timeout_s=30), hide=private_paths(task, final=False))
    assert result.ok, result.stderr
    assert result.score == 2
    assert (folder / "final" / "out.txt").read_text() == "ok"
    assert result.stdout.count("PEEK") == 3
    if isolation_support(True).mount_namespace:
        assert "id,x" not in result.stdout and "id,y" not in result.stdout, result.stdout
    else:
        assert result.warnings
