"""Broken competitions and bad settings, each a case of the malformed-input suite: what a user may
hand mlestar by mistake. Every case must end in one clear line and a non-zero exit, never in a
traceback, and must leave no run folder behind (``mlestar ls`` keeps working).

A case builds its input under a folder and returns the command-line arguments after ``mlestar``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from competitions import make_competition

Case = Callable[[Path], list[str]]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__] = function
    return function


def _base(root: Path) -> Path:
    """A good tiny competition to break."""
    return make_competition(root / "comp", "binary", n_rows=120)


def _run(folder: Path, *extra: str) -> list[str]:
    return ["run", str(folder), *extra]


def _rewrite(path: Path, edit: Callable[[str], str]) -> None:
    path.write_text(edit(path.read_text()))


# -- the folder itself --------------------------------------------------------------------------
@case
def missing_folder(root: Path) -> list[str]:
    return _run(root / "no-such-competition")


@case
def a_file_instead_of_a_folder(root: Path) -> list[str]:
    (root / "train.csv").write_text("a,b\n1,2\n")
    return _run(root / "train.csv")


@case
def empty_folder(root: Path) -> list[str]:
    (root / "empty").mkdir()
    return _run(root / "empty")


@case
def no_train_file(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").unlink()
    return _run(comp)


# -- the train table ----------------------------------------------------------------------------
@case
def empty_train_file(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").write_bytes(b"")
    return _run(comp)


@case
def header_only_train(root: Path) -> list[str]:
    comp = _base(root)
    _rewrite(comp / "train.csv", lambda text: text.splitlines()[0] + "\n")
    return _run(comp)


@case
def duplicate_header(root: Path) -> list[str]:
    comp = _base(root)
    _rewrite(comp / "train.csv", lambda text: text.replace("id,x1,x2", "id,x1,x1", 1))
    return _run(comp)


@case
def utf16_train(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").write_bytes((comp / "train.csv").read_text().encode("utf-16"))
    return _run(comp)


@case
def binary_garbage_train(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").write_bytes(bytes(range(256)) * 400)
    return _run(comp)


@case
def two_gigabyte_train(root: Path) -> list[str]:
    comp = _base(root)
    with open(comp / "train.csv", "r+b") as handle:  # sparse: 2 GB of zero bytes after the header
        handle.truncate(2 * 1024**3)
    return _run(comp)


@case
def ragged_rows(root: Path) -> list[str]:
    comp = _base(root)
    _rewrite(comp / "train.csv", lambda text: text + "1,2,3,4,5,6,7,8,9,10,11\n" * 3)
    return _run(comp)


@case
def single_row_train(root: Path) -> list[str]:
    comp = _base(root)
    _rewrite(comp / "train.csv", lambda text: "\n".join(text.splitlines()[:2]) + "\n")
    return _run(comp)


@case
def unreadable_train(root: Path) -> list[str]:
    comp = _base(root)
    os.chmod(comp / "train.csv", 0)  # the suite runs this case as an unprivileged user when root
    return _run(comp)


@case
def symlink_loop(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").unlink()
    (comp / "train.csv").symlink_to(comp / "loop.csv")
    (comp / "loop.csv").symlink_to(comp / "train.csv")
    return _run(comp)


@case
def train_is_a_fifo(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "train.csv").unlink()
    os.mkfifo(comp / "train.csv")
    return _run(comp)


# -- the target ---------------------------------------------------------------------------------
@case
def target_with_one_class(root: Path) -> list[str]:
    comp = _base(root)
    import pandas as pd

    frame = pd.read_csv(comp / "train.csv")
    frame["target"] = 1
    frame.to_csv(comp / "train.csv", index=False)
    return _run(comp)


@case
def all_targets_missing(root: Path) -> list[str]:
    comp = _base(root)
    import pandas as pd

    frame = pd.read_csv(comp / "train.csv")
    frame["target"] = float("nan")
    frame.to_csv(comp / "train.csv", index=False)
    return _run(comp)


@case
def target_not_a_column(root: Path) -> list[str]:
    return _run(_base(root), "--target", "no_such_column")


# -- ids, test and sample submission ------------------------------------------------------------
@case
def ids_not_unique(root: Path) -> list[str]:
    comp = _base(root)
    import pandas as pd

    for name in ("test.csv", "sample_submission.csv"):
        frame = pd.read_csv(comp / name)
        frame["id"] = 7
        frame.to_csv(comp / name, index=False)
    return _run(comp)


@case
def sample_ids_differ_from_test(root: Path) -> list[str]:
    comp = _base(root)
    import pandas as pd

    frame = pd.read_csv(comp / "sample_submission.csv")
    frame["id"] = frame["id"] + 100_000
    frame.to_csv(comp / "sample_submission.csv", index=False)
    return _run(comp)


@case
def sample_rows_differ_from_test(root: Path) -> list[str]:
    comp = _base(root)
    _rewrite(comp / "sample_submission.csv", lambda text: "\n".join(text.splitlines()[:5]) + "\n")
    return _run(comp)


@case
def zero_row_test(root: Path) -> list[str]:
    comp = _base(root)
    for name in ("test.csv", "sample_submission.csv"):
        _rewrite(comp / name, lambda text: text.splitlines()[0] + "\n")
    return _run(comp)


@case
def test_lacks_the_features(root: Path) -> list[str]:
    comp = _base(root)
    import pandas as pd

    pd.read_csv(comp / "test.csv")[["id"]].assign(other=1).to_csv(comp / "test.csv", index=False)
    return _run(comp)


@case
def id_column_not_a_column(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "task.yaml").write_text("id: no_such_id\n")
    return _run(comp)


# -- metric, task.yaml and settings -------------------------------------------------------------
@case
def unknown_metric(root: Path) -> list[str]:
    return _run(_base(root), "--metric", "accuracy_of_vibes")


@case
def task_yaml_not_yaml(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "task.yaml").write_text("target: [unclosed\n  metric: : :\n")
    return _run(comp)


@case
def task_yaml_unknown_key(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "task.yaml").write_text("target: target\ncolour: blue\n")
    return _run(comp)


@case
def task_yaml_bad_task_type(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "task.yaml").write_text("task_type: telepathy\n")
    return _run(comp)


@case
def task_yaml_missing_train(root: Path) -> list[str]:
    comp = _base(root)
    (comp / "task.yaml").write_text("train: elsewhere/train.csv\n")
    return _run(comp)


@case
def config_not_yaml(root: Path) -> list[str]:
    (root / "config.yaml").write_text("num_models: [1, 2\n")
    return _run(_base(root), "--config", str(root / "config.yaml"))


@case
def config_bad_value(root: Path) -> list[str]:
    (root / "config.yaml").write_text("num_models: -3\n")
    return _run(_base(root), "--config", str(root / "config.yaml"))


@case
def config_unknown_setting(root: Path) -> list[str]:
    (root / "config.yaml").write_text("num_modles: 3\n")
    return _run(_base(root), "--config", str(root / "config.yaml"))


@case
def config_is_a_list(root: Path) -> list[str]:
    (root / "config.yaml").write_text("- 1\n- 2\n")
    return _run(_base(root), "--config", str(root / "config.yaml"))


@case
def runs_dir_is_a_file(root: Path) -> list[str]:
    (root / "runs-file").write_text("not a folder")
    return _run(_base(root), "--runs-dir", str(root / "runs-file"))


@case
def run_id_with_a_slash(root: Path) -> list[str]:
    return _run(_base(root), "--run-id", "../escape")


def environment_of(name: str) -> dict[str, str]:
    """Extra environment a case needs (bad values given through MLESTAR_* variables)."""
    return {"bad_environment_value": {"MLESTAR_NUM_MODELS": "many"}}.get(name, {})


@case
def bad_environment_value(root: Path) -> list[str]:
    return _run(_base(root))


def cleanup(root: Path) -> None:
    """Make a case's folder removable again (an unreadable file, a FIFO)."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o644)
    shutil.rmtree(root, ignore_errors=True)
