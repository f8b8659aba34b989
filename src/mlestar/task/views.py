"""What of a competition a script may see: the public files it gets linked into ``./input``, and the
paths it must not read even by following those links back to the data folder.

Development scripts never see the test file or the sample submission (scores are only honest when
the test set is unseen); no script ever sees the private answers. For media competitions the folders
holding only test files are hidden from development scripts like the test table; a folder holding
train and test files together is linked file by file in development, the training files only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from mlestar.core.task import FileRole, Task
from mlestar.task.profile import read_table

log = logging.getLogger(__name__)

_PUBLIC_ROLES = frozenset(
    {
        FileRole.TRAIN,
        FileRole.TEST,
        FileRole.SAMPLE_SUBMISSION,
        FileRole.DESCRIPTION,
        FileRole.AUXILIARY,
        FileRole.IMAGE_DIR,
        FileRole.MEDIA_DIR,
    }
)
# What a development script must not see: scores are only honest when the test set is unseen.
_FINAL_ONLY_ROLES = frozenset({FileRole.TEST, FileRole.SAMPLE_SUBMISSION})


class InputView(BaseModel):
    """The links of a script's input folder (source -> path inside it) and what stays hidden."""

    links: list[tuple[Path, Path]]
    hidden: list[Path]


def input_view(task: Task, *, final: bool) -> InputView:
    links = [located for relative in _public_files(task, final=final) if (located := _locate(task, relative))]
    return InputView(links=links, hidden=private_paths(task, final=final))


def _public_files(task: Task, *, final: bool) -> list[str]:
    """Paths (relative to data_dir) the script may see, in a stable order, without duplicates."""
    hidden = {task.test_file, task.sample_submission_file} if not final else set()
    if not final:
        hidden |= set(_test_media_dirs(task))
    shared = set(task.media.shared_dirs) if task.media is not None and not final else set()
    wanted: list[str] = [task.train_file]
    if final:
        wanted += [p for p in (task.test_file, task.sample_submission_file) if p]
    for data_file in task.files:
        if data_file.role not in _PUBLIC_ROLES:
            continue
        if not final and data_file.role in _FINAL_ONLY_ROLES:
            continue
        if data_file.path in shared:
            wanted += [p for p in train_media_files(task) if p.split("/", 1)[0] == data_file.path]
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


def _test_media_dirs(task: Task) -> list[str]:
    return list(task.media.test_dirs) if task.media is not None else []


def train_media_files(task: Task) -> list[str]:
    """The files (relative to data_dir) the rows of the train table name, in row order."""
    media = task.media
    if media is None or media.layout != "table" or not media.key_column or not media.train_pattern:
        return []
    frame = read_table(task.data_path(task.train_file), usecols=[media.key_column])
    values = frame[media.key_column].dropna()
    keys = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values]
    return list(pd.unique(pd.Series([media.train_pattern.format(id=k) for k in keys])))


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
    folder = _answers_folder(task)
    if folder is not None:  # covered as a whole, so that not even its file names can be listed
        paths.append(folder)
    paths += [f.path if Path(f.path).is_absolute() else task.data_path(f.path)
              for f in task.files if f.role == FileRole.ANSWERS]  # fmt: skip
    if not final:
        paths += [task.data_path(p) for p in (task.test_file, task.sample_submission_file) if p]
        paths += [task.data_path(p) for p in _test_media_dirs(task)]
        paths += [task.data_path(f.path) for f in task.files if f.role in _FINAL_ONLY_ROLES]
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.abspath(path), Path(os.path.abspath(path)))
    return list(unique.values())


def _answers_folder(task: Task) -> Path | None:
    """The folder of the private answers, when it holds nothing a script may see (``private/``)."""
    if task.answers_file is None:
        return None
    folder = Path(os.path.abspath(task.answers_file)).parent
    data_dir = Path(os.path.abspath(task.data_dir))
    if folder == data_dir or folder in data_dir.parents:
        return None
    for data_file in task.files:
        # Only files inside the data folder are ever linked (see _locate).
        public = Path(os.path.normpath(data_dir / data_file.path))
        linked = data_file.role in _PUBLIC_ROLES and data_dir in public.parents
        if linked and folder in (public, *public.parents):
            return None
    return folder
