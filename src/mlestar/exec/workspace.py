"""The folders a script sees: its read-only ``input/`` and its own working folder (what goes into
``input/`` is the task's business: ``mlestar.task.views``).

See docs/script-contract.md for the layout these functions produce.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from mlestar.core.contract import FOLDS_NAME, SCRIPT_NAME
from mlestar.errors import TaskError

log = logging.getLogger(__name__)

_READ_ONLY_DIR = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


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


def build_input_dir(dest: Path, links: list[tuple[Path, Path]], *, folds_csv: Path) -> Path:
    """Create ``dest`` as a read-only folder of symlinks (``source -> path inside dest``) plus a copy
    of the run's ``folds.csv``. Calling it again rebuilds the folder from scratch.
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

    for source, inner in links:
        link = dest / inner
        if link.name == FOLDS_NAME and link.parent == dest:
            log.warning("the competition's own %s is shadowed by the run's split", inner)
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


def unsafe_output(path: Path) -> str | None:
    """Why a file a script handed back must not be read (a symbolic link could lead to any file of
    the machine, a FIFO would block, a device never ends), or None for a plain file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return f"{path.name} is a symbolic link, not a file"
    if not stat.S_ISREG(mode):
        return f"{path.name} is not a regular file"
    return None
