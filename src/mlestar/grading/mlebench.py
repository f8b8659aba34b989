"""Grading with the competitions' own graders from a user's checkout of MLE-bench.

A checkout of https://github.com/openai/mle-bench keeps, per competition, a folder
``mlebench/competitions/<id>/`` with ``config.yaml`` (``grader.grade_fn`` names the grading function,
e.g. ``mlebench.competitions.<id>.grade:grade``; ``dataset.answers`` and ``dataset.sample_submission``
are paths inside the data folder that ``mlebench prepare`` fills), ``grade.py`` (which may import
modules of its own folder relatively and MLE-bench's helpers absolutely) and the Kaggle
``leaderboard.csv``. ``experiments/splits/*.txt`` list the competition ids of each split.

Graders are imported the way MLE-bench imports them: as modules of the checkout's ``mlebench``
package, named by ``grade_fn``. Each checkout gets a set of ``mlebench`` modules of its own, put into
``sys.modules`` only while one of its graders is loaded or called, so two checkouts (or an installed
``mlebench``) never mix in one process. Grading follows MLE-bench's ``grade_csv``: the submission
must be a CSV file, any exception of the grader makes it invalid, scores are rounded to 5 decimals,
the leaderboard's order gives the direction. Nothing of MLE-bench ships with mlestar.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import json
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pandas as pd
from pydantic import BaseModel

from mlestar.errors import MlestarError, TaskError
from mlestar.grading.leaderboard import LeaderboardUnavailable, grade_against_leaderboard

PACKAGE = "mlebench"
# MLE-bench's Lite is its Low-complexity split; "all" is the paper's 75 competitions.
NAMED_SPLITS = {"lite": "low.txt", "all": "split75.txt"}
# Import names of what MLE-bench's graders use whose PyPI package is named otherwise.
PYPI_NAMES = {
    "Levenshtein": "levenshtein",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "dotenv": "python-dotenv",
}


class MissingDependency(MlestarError):
    """A grader imports a Python package that is not installed."""


def pypi_name(module: str) -> str:
    """The PyPI package that provides the top-level module ``module``."""
    top = module.split(".")[0]
    return PYPI_NAMES.get(top, top)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------
# One checkout's own set of mlebench modules

_IMPORTS = threading.RLock()


def _is_package_module(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


class _PinnedFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level ``mlebench`` package in one checkout only (its submodules follow its path)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def find_spec(
        self, fullname: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, [self.root])
        if spec is not None and spec.loader is None:
            # A namespace package: a fixed path, so it is never recomputed from sys.path (other checkouts).
            spec.submodule_search_locations = [str(Path(self.root) / PACKAGE)]
        return spec


class _Modules:
    """The ``mlebench`` modules of one checkout, in ``sys.modules`` only while ``active()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, ModuleType] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with _IMPORTS:
            others = {name: module for name, module in sys.modules.items() if _is_package_module(name)}
            for name in others:
                del sys.modules[name]
            sys.modules.update(self.modules)
            finder = _PinnedFinder(self.root)
            sys.meta_path.insert(0, finder)
            # On sys.path too, for child processes a grader may spawn (they import it by name).
            sys.path.insert(0, str(self.root))
            root_logger = logging.getLogger()
            handlers, level = list(root_logger.handlers), root_logger.level
            try:
                yield
            finally:
                # mlebench.utils calls logging.basicConfig on import: keep mlestar's logging as it was.
                root_logger.handlers[:] = handlers
                root_logger.setLevel(level)
                sys.meta_path.remove(finder)
                sys.path.remove(str(self.root))
                self.modules = {n: m for n, m in sys.modules.items() if _is_package_module(n)}
                for name in self.modules:
                    del sys.modules[name]
                sys.modules.update(others)

    def invalid_submission_error(self) -> type[BaseException] | None:
        helpers = self.modules.get(f"{PACKAGE}.grade_helpers")
        error = getattr(helpers, "InvalidSubmissionError", None)
        return error if isinstance(error, type) and issubclass(error, BaseException) else None


_CHECKOUT_MODULES: dict[Path, _Modules] = {}


def _modules_of(root: Path) -> _Modules:
    with _IMPORTS:
        return _CHECKOUT_MODULES.setdefault(root, _Modules(root))


# ---------------------------------------------------------------------------------------------
# Graders


@dataclass
class Grader:
    """One competition's grading function, called inside its checkout's modules."""

    competition_id: str
    function: Callable[..., Any]
    modules: _Modules

    def score(self, submission: pd.DataFrame, answers: Any) -> tuple[float | None, str]:
        """(score rounded to 5 decimals as MLE-bench does, "") or (None, why the submission is invalid)."""
        invalid = None
        # Graders print progress; stdout may be carrying JSON (mlestar grade --json).
        with self.modules.active(), contextlib.redirect_stdout(sys.stderr):
            try:
                value = self.function(submission, answers)
            except Exception as exc:  # MLE-bench counts any grader exception as an invalid submission
                invalid = exc
        if invalid is not None:
            expected = self.modules.invalid_submission_error()
            if (expected is not None and isinstance(invalid, expected)) or (
                type(invalid).__name__ == "InvalidSubmissionError"
            ):
                return None, _one_line(invalid)
            return None, f"the grader raised {type(invalid).__name__}: {_one_line(invalid)}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, f"the grader returned {value!r}, not a number"
        if not math.isfinite(number):
            return None, f"the grader returned {number}"
        return round(number, 5), ""


@dataclass(frozen=True)
class CompetitionConfig:
    """What mlestar reads of a competition's ``config.yaml``."""

    id: str
    name: str
    grader_name: str
    grade_fn: str  # "module:function"
    answers: PurePosixPath  # inside the data folder
    sample_submission: PurePosixPath


class Checkout:
    """A checkout of MLE-bench: its competitions, their configs, graders, leaderboards and splits."""

    def __init__(self, path: str | Path) -> None:
        root = Path(path).expanduser()
        if not (root / PACKAGE / "competitions").is_dir():
            raise MlestarError(f"{path} is not an MLE-bench checkout (no {PACKAGE}/competitions folder)")
        self.root = root.resolve()
        self.competitions_dir = self.root / PACKAGE / "competitions"
        self._modules = _modules_of(self.root)

    def competition_ids(self) -> list[str]:
        """Every competition of the checkout (a folder with a config.yaml), sorted."""
        return sorted(p.name for p in self.competitions_dir.iterdir() if (p / "config.yaml").is_file())

    def folder(self, competition_id: str) -> Path:
        folder = self.competitions_dir / competition_id
        if not (folder / "config.yaml").is_file():
            raise MlestarError(f"the MLE-bench checkout at {self.root} has no competition '{competition_id}'")
        return folder

    def leaderboard(self, competition_id: str) -> Path:
        return self.folder(competition_id) / "leaderboard.csv"

    def config(self, competition_id: str) -> CompetitionConfig:
        import yaml

        path = self.folder(competition_id) / "config.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise MlestarError(f"{path} cannot be read: {_one_line(exc)}") from None
        data = data if isinstance(data, dict) else {}
        grader = data.get("grader") if isinstance(data.get("grader"), dict) else {}
        dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
        for section, key, table in (
            ("grader", "grade_fn", grader),
            ("dataset", "answers", dataset),
            ("dataset", "sample_submission", dataset),
        ):
            if not table.get(key):
                raise MlestarError(f"{path} has no {section}.{key}")
        if ":" not in str(grader["grade_fn"]):
            raise MlestarError(f"{path}: grader.grade_fn '{grader['grade_fn']}' is not 'module:function'")
        return CompetitionConfig(
            id=str(data.get("id") or competition_id),
            name=str(data.get("name") or competition_id),
            grader_name=str(grader.get("name") or ""),
            grade_fn=str(grader["grade_fn"]),
            answers=PurePosixPath(str(dataset["answers"])),
            sample_submission=PurePosixPath(str(dataset["sample_submission"])),
        )

    def grader(self, competition_id: str) -> Grader:
        """Import the competition's grading function as MLE-bench does; one-line errors."""
        config = self.config(competition_id)
        module_name, _, function_name = config.grade_fn.partition(":")
        where = f"the grader of '{competition_id}' ({module_name})"
        with self._modules.active():
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                missing = exc.name or ""
                if _is_package_module(missing):
                    raise MlestarError(
                        f"{where} imports {missing}, which the checkout at {self.root} does not have"
                    ) from None
                if not missing:
                    raise MlestarError(f"{where} failed to load: {_one_line(exc)}") from None
                package = pypi_name(missing)
                raise MissingDependency(
                    f"{where} needs the Python package '{package}' (import {missing.split('.')[0]}), "
                    f"which is not installed: pip install {package}, or pip install 'mlestar[mlebench]' "
                    "for what MLE-bench's graders import"
                ) from None
            except Exception as exc:  # a syntax error or any failure while the module runs
                hint = " (MLE-bench needs Python 3.11 or newer)" if sys.version_info < (3, 11) else ""
                detail = f"{type(exc).__name__}: {_one_line(exc)}{hint}"
                raise MlestarError(f"{where} failed to load: {detail}") from None
        function = getattr(module, function_name, None)
        if not callable(function):
            raise MlestarError(f"{where} defines no function '{function_name}'")
        return Grader(competition_id, function, self._modules)

    def split_file(self, split: str) -> Path | None:
        """The file listing a split's ids: the file ``split`` names, or one of experiments/splits (lite is
        low.txt, all is split75.txt); None for "all" in a checkout without split75.txt (every competition)."""
        given = Path(split).expanduser()
        if given.is_file():
            return given.resolve()
        name = NAMED_SPLITS.get(split, split if split.endswith(".txt") else f"{split}.txt")
        path = self.root / "experiments" / "splits" / name
        if path.is_file():
            return path
        if split == "all":
            return None
        raise MlestarError(
            f"unknown split '{split}': not a file, and the checkout has no experiments/splits/{name} "
            "(use lite, all, low, medium, high, or a file of competition ids)"
        )

    def split(self, split: str) -> list[str]:
        """Competition ids of a split (see ``split_file``), in the file's order."""
        path = self.split_file(split)
        if path is None:
            return self.competition_ids()
        lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
        ids = list(dict.fromkeys(line for line in lines if line))
        if not ids:
            raise MlestarError(f"split file {path} lists no competitions")
        unknown = [i for i in ids if not (self.competitions_dir / i / "config.yaml").is_file()]
        if unknown:
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise MlestarError(f"split {path} names competitions the checkout at {self.root} lacks: {shown}")
        return ids


# ---------------------------------------------------------------------------------------------
# Prepared data (what `mlebench prepare` writes into its data folder)


def prepared_root(competition: Path) -> Path:
    """The folder holding ``prepared/`` for a competition folder given as itself, prepared/ or public/."""
    folder = Path(competition).expanduser().resolve()
    if folder.name in ("public", "private") and folder.parent.name == "prepared":
        return folder.parent.parent
    if folder.name == "prepared":
        return folder.parent
    return folder


def data_file(root: Path, inside_data: PurePosixPath) -> Path:
    """A config.yaml data path (``<id>/prepared/...``) for the competition whose folder is ``root``.

    The data folder is the competition folder's parent; a folder renamed from its id still works."""
    direct = root.parent / inside_data
    if direct.exists() or len(inside_data.parts) < 2:
        return direct
    return root.joinpath(*inside_data.parts[1:])


def missing_data(checkout: Checkout, competition_id: str, root: Path) -> str:
    """Why the prepared data of a competition is not usable ("" when it is)."""
    config = checkout.config(competition_id)
    prepare = f"mlebench prepare -c {competition_id} --data-dir {root.parent}"
    if not (root / "prepared" / "public").is_dir():
        return f"no prepared data at {root / 'prepared' / 'public'} (run: {prepare})"
    for label, inside in (("answers", config.answers), ("sample submission", config.sample_submission)):
        path = data_file(root, inside)
        if not path.is_file():
            return f"the {label} file {path} is missing (run: {prepare})"
    return ""


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV read as MLE-bench reads it: floats parsed exactly (pandas 3 does so by default)."""
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, **exact)


def load_answers(path: Path) -> Any:
    """The answers as MLE-bench hands them to a grader: a frame for CSV, a list of records for JSONL."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"answers file not found: {path}")
    if path.suffix == ".csv":
        return _read_csv(path)
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    raise TaskError(f"answers file {path}: MLE-bench reads .csv and .jsonl answers only")


# ---------------------------------------------------------------------------------------------
# The report


class MlebenchReport(BaseModel):
    """MLE-bench's competition report (its field names and order), plus three fields of mlestar's.

    Medal fields and thresholds are None when the leaderboard is unavailable (``medals_unknown``
    says why); MLE-bench itself would stop there."""

    competition_id: str
    score: float | None
    gold_threshold: float | None = None
    silver_threshold: float | None = None
    bronze_threshold: float | None = None
    median_threshold: float | None = None
    any_medal: bool | None = None
    gold_medal: bool | None = None
    silver_medal: bool | None = None
    bronze_medal: bool | None = None
    above_median: bool | None = None
    submission_exists: bool
    valid_submission: bool
    is_lower_better: bool | None = None
    created_at: str
    submission_path: str
    grader: str = ""  # the grader's name in config.yaml
    reason: str = ""  # why the submission is invalid
    medals_unknown: str = ""  # why there are no medals (a pointer leaderboard)


def _read_submission(path: Path) -> tuple[pd.DataFrame | None, str]:
    try:
        return _read_csv(path), ""
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), ""  # as MLE-bench: the grader decides (and rejects it)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        return None, f"{path.name} is not a readable CSV: {_one_line(exc)}"


def grade(
    checkout: Checkout,
    competition_id: str,
    submission: Path,
    answers: Path,
    *,
    leaderboard: Path | None = None,
) -> MlebenchReport:
    """Grade one submission file with the competition's grader and place it on its leaderboard.

    Grader-side problems (a missing dependency, no answers) raise a one-line ``MlestarError``; an
    invalid submission is a report with ``valid_submission`` false and a ``reason``."""
    config = checkout.config(competition_id)
    grader = checkout.grader(competition_id)
    truth = load_answers(answers)
    submission = Path(submission)
    exists = submission.is_file() and submission.suffix.lower() == ".csv"
    score, reason = None, ""
    if not submission.is_file():
        reason = f"no submission file at {submission}"
    elif not exists:
        reason = f"{submission.name} is not a .csv file (MLE-bench grades CSV submissions only)"
    else:
        frame, reason = _read_submission(submission)
        if frame is not None:
            score, reason = grader.score(frame, truth)
    report: dict[str, Any] = {
        "competition_id": competition_id,
        "score": score,
        "submission_exists": exists,
        "valid_submission": score is not None,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "submission_path": str(submission),
        "grader": config.grader_name,
        "reason": reason,
    }
    board = leaderboard or checkout.leaderboard(competition_id)
    if not board.is_file():
        report["medals_unknown"] = f"medals unknown: there is no leaderboard at {board}"
        return MlebenchReport(**report)
    try:
        medals = grade_against_leaderboard(score, board, valid=score is not None)
    except LeaderboardUnavailable as exc:
        report["medals_unknown"] = str(exc)
        return MlebenchReport(**report)
    placed = medals.model_dump(exclude={"score", "valid_submission"})
    return MlebenchReport(**report, **placed)
