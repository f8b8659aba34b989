"""The folders a script sees: its read-only ``input/`` and its own working folder.

See docs/script-contract.md for the layout these functions produce.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from mlestar.core.task import FileRole, Task
from mlestar.errors import TaskError

log = logging.getLogger(__name__)

SCRIPT_NAME = "script.py"
FOLDS_NAME = "folds.csv"
_PUBLIC_ROLES = frozenset(
    {
        FileRole.TRAIN,
        FileRole.TEST,
        FileRole.SAMPLE_SUBMISSION,
        FileRole.DESCRIPTION,
        FileRole.AUXILIARY,
        FileRole.IMAGE_DIR,
    }
)
# What a development script must not see: scores are only honest when the test set is unseen.
_FINAL_ONLY_ROLES = frozenset({FileRole.TEST, FileRole.SAMPLE_SUBMISSION})
_READ_ONLY_DIR = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def _public_files(task: Task, *, final: bool) -> list[str]:
    """Paths (relative to data_dir) the script may see, in a stable order, without duplicates."""
    hidden = {task.test_file, task.sample_submission_file} if not final else set()
    wanted: list[str] = [task.train_file]
    if final:
        wanted += [p for p in (task.test_file, task.sample_submission_file) if p]
    for data_file in task.files:
        if data_file.role not in _PUBLIC_ROLES:
            continue
        if not final and data_file.role in _FINAL_ONLY_ROLES:
            continue
        wanted.append(data_file.path)
    seen: set[str] = set()
    result = []
    for relative in wanted:
        key = os.path.normpath(relative)
        if key in seen or relative in hidden:
            continue
        seen.add(key)
        result.append(relative)
    return result


def _locate(task: Task, relative: str) -> tuple[Path, Path] | None:
    """(source, path inside the input folder) for a public file, or None when it must not be linked.

    Containment is checked on the lexical path, not the resolved one, so a data folder whose files
    are themselves symlinks to a big disk still works; only ``..`` tricks and absolute paths that
    leave the data folder are refused.
    """
    data_dir = Path(os.path.abspath(task.data_dir))
    source = Path(os.path.normpath(data_dir / relative))
    try:
        inner = source.relative_to(data_dir)
    except ValueError:
        log.warning("not linking %s into the script input: it lies outside %s", relative, data_dir)
        return None
    if inner == Path("."):
        log.warning("not linking the whole data folder %s into the script input", data_dir)
        return None
    if task.answers_file is not None:
        answers = Path(task.answers_file).resolve()
        real = source.resolve()
        if real == answers or real in answers.parents:
            log.warning("not linking %s into the script input: it holds the private answers", relative)
            return None
    if not source.exists():
        log.warning("not linking %s into the script input: it does not exist", relative)
        return None
    return source, inner


def private_paths(task: Task, *, final: bool) -> list[Path]:
    """What a script must not read although a symlink of its input leads next to it.

    For ``run_script(hide=...)``: the private answers and, in development, the test file and
    sample submission (reachable from ``input/train.csv`` by following the link to data_dir).
    """
    paths = [Path(task.answers_file)] if task.answers_file is not None else []
    paths += [f.path if Path(f.path).is_absolute() else task.data_path(f.path)
              for f in task.files if f.role == FileRole.ANSWERS]  # fmt: skip
    if not final:
        paths += [task.data_path(p) for p in (task.test_file, task.sample_submission_file) if p]
        paths += [task.data_path(f.path) for f in task.files if f.role in _FINAL_ONLY_ROLES]
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.abspath(path), Path(os.path.abspath(path)))
    return list(unique.values())


def make_writable(path: Path) -> None:
    """Undo the read-only protection of an input folder (before deleting or rebuilding it).

    Walks without following symlinks, so the competition's own files are never touched.
    """
    if not path.exists() or path.is_symlink():
        return
    for root, dirs, _files in os.walk(path):
        os.chmod(root, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        for name in dirs:
            child = Path(root) / name
            if not child.is_symlink():
                os.chmod(child, stat.S_IRWXU)


def _empty_dir(path: Path) -> None:
    make_writable(path)
    for child in path.iterdir():
        if child.is_symlink() or not child.is_dir():
            child.unlink()
        else:
            shutil.rmtree(child)


def _protect(path: Path) -> None:
    """Read-only folders, so a script cannot add, remove or replace what the others read."""
    for root, _dirs, files in os.walk(path, topdown=False):
        for name in files:
            file_path = Path(root) / name
            if not file_path.is_symlink():
                os.chmod(file_path, _READ_ONLY_FILE)
        os.chmod(root, _READ_ONLY_DIR)


def build_input_dir(task: Task, dest: Path, *, final: bool, folds_csv: Path) -> Path:
    """Create ``dest`` as a read-only folder of symlinks to the task's public data plus ``folds.csv``.

    Development folders (``final=False``) leave the test file and the sample submission out;
    private answers are never linked. Calling it again rebuilds the folder from scratch.
    """
    folds_csv = Path(folds_csv)
    if not folds_csv.is_file():
        raise TaskError(f"The validation split file {folds_csv} does not exist.")
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise TaskError(f"Cannot build the script input at {dest}: something else is in the way.")
    if dest.exists():
        _empty_dir(dest)
    dest.mkdir(parents=True, exist_ok=True)

    for relative in _public_files(task, final=final):
        located = _locate(task, relative)
        if located is None:
            continue
        source, inner = located
        link = dest / inner
        if link.name == FOLDS_NAME and link.parent == dest:
            log.warning("the competition's own %s is shadowed by the run's split", relative)
            continue
        # A file inside a folder that is already linked is already visible; creating its link
        # "through" the folder link would write into the competition's own data folder.
        if any(parent.is_symlink() for parent in link.parents if dest in parent.parents):
            continue
        if link.is_symlink() or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(source, target_is_directory=source.is_dir())

    shutil.copyfile(folds_csv, dest / FOLDS_NAME)
    _protect(dest)
    return dest


def prepare_script_dir(script_dir: Path, code: str, input_dir: Path) -> Path:
    """Lay out a script's folder: ``script.py``, ``input`` -> ``input_dir``, ``working/``, ``final/``.

    Safe to call again on the same folder (a resumed run does): the script and the link are
    rewritten, and outputs of an earlier attempt (``final/*``, ``stdout.txt``, ``stderr.txt``)
    are removed so that nothing stale is mistaken for this attempt's result. ``working/`` is kept.
    """
    script_dir = Path(script_dir)
    script_dir.mkdir(parents=True, exist_ok=True)
    (script_dir / SCRIPT_NAME).write_text(code, encoding="utf-8")

    link = script_dir / "input"
    target = Path(input_dir).resolve()
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target, target_is_directory=True)

    (script_dir / "working").mkdir(exist_ok=True)
    final_dir = script_dir / "final"
    if final_dir.is_dir() and not final_dir.is_symlink():
        _empty_dir(final_dir)
    else:
        if final_dir.is_symlink() or final_dir.exists():
            final_dir.unlink()
        final_dir.mkdir()
    for name in ("stdout.txt", "stderr.txt"):
        (script_dir / name).unlink(missing_ok=True)
    return script_dir
