"""Reading runs for the API: lists, details, the solution tree, scripts, scores, files, stream ends.

Every read opens the run's store for the duration of one call; the pipeline process owns the run.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import HTTPException, UploadFile, status

from mlestar.core.events import Event
from mlestar.errors import RunNotFound
from mlestar.report.data import (
    ENDING,
    LLMUsage,
    Progress,
    ablation_findings,
    check_findings,
    last_lifecycle,
    llm_usage,
    phase_states,
    run_started_at,
    score_progress,
    solution_tree,
)
from mlestar.server.launcher import Launch, Launcher
from mlestar.server.options import ServerOptions
from mlestar.server.paths import DOWNLOADS, inside, run_folder, valid_run_id
from mlestar.server.schemas import (
    AblationList,
    LLMCalls,
    NodeList,
    ProcessInfo,
    RunDetail,
    RunItem,
    RunState,
    ScriptDetail,
)
from mlestar.store import DB_NAME, RunStatus, RunStore

CODE_LIMIT = 512_000  # characters of a script shown in full
OUTPUT_LIMIT = 200_000  # tail of stdout / stderr shown
LIVE = frozenset({RunStatus.CREATED, RunStatus.RUNNING, RunStatus.PAUSED})
UPLOAD_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")  # an upload named otherwise is read as CSV


def not_found(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail)


def conflict(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail)


def bad_request(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail)


def _read_text(path: Path | None, limit: int) -> tuple[str | None, bool]:
    """A file's text, cut to its last ``limit`` characters; (None, False) when absent."""
    if path is None or not path.is_file():
        return None, False
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - limit * 4)  # enough bytes for ``limit`` characters of any UTF-8
        handle.seek(start)
        text = handle.read().decode("utf-8", errors="replace")
    return text[-limit:], start > 0 or len(text) > limit


class RunService:
    def __init__(self, settings: ServerOptions) -> None:
        self.settings = settings
        self.runs_dir = settings.runs_dir
        self.launcher = Launcher(settings.runs_dir, settings.python)
        # One prediction at a time: each runs a final script on the machine's threads, and queued
        # ones would hold the server's worker threads until every other request waits too.
        self._predicting = threading.Lock()

    # -- opening ---------------------------------------------------------------------------
    def folder(self, run_id: str) -> Path | None:
        return run_folder(self.runs_dir, run_id)

    @contextmanager
    def open(self, run_id: str) -> Iterator[RunStore]:
        folder = self.folder(run_id)
        if folder is None:
            raise not_found(f"no run {run_id!r}")
        with RunStore(folder) as store:
            yield store

    def state(self, store: RunStore) -> RunState:
        """The store's status, except that a run we are (re)starting reads as 'starting'."""
        current = store.status
        if current not in (RunStatus.RUNNING, RunStatus.PAUSED) and self.launcher.alive(store.run_dir.name):
            return "starting"
        return current.value  # type: ignore[return-value]

    def _process(self, run_id: str) -> ProcessInfo | None:
        launch = self.launcher.get(run_id)
        if launch is None:
            return None
        return ProcessInfo(
            pid=launch.process.pid,
            kind=launch.kind,
            alive=launch.alive,
            returncode=launch.returncode,
            log_tail=launch.log_tail(),
        )

    def _pending_launch(self, run_id: str) -> Launch | None:
        """A run this server spawned that has no run folder (yet, or ever)."""
        launch = self.launcher.get(run_id)
        return launch if launch is not None and self.folder(run_id) is None else None

    # -- listing and detail ----------------------------------------------------------------
    def list(self) -> list[RunItem]:
        items = []
        for db in sorted(self.runs_dir.glob(f"*/{DB_NAME}")) if self.runs_dir.is_dir() else []:
            if not valid_run_id(db.parent.name):
                continue  # a folder name the API could not address anyway
            try:
                items.append(self.item(db.parent.name))
            except (sqlite3.DatabaseError, RunNotFound, HTTPException, ValueError):
                continue  # unreadable or vanished: list the others
        items += [
            self._pending_item(launch) for launch in self.launcher.all() if self.folder(launch.run_id) is None
        ]
        return sorted(items, key=lambda i: i.created_at, reverse=True)

    def _pending_item(self, launch: Launch) -> RunItem:
        return RunItem(
            run_id=launch.run_id,
            status="starting" if launch.alive else "launch_failed",
            created_at=launch.started_at,
            updated_at=launch.started_at,
        )

    def item(self, run_id: str) -> RunItem:
        with self.open(run_id) as store:
            return self._item(run_id, store)

    def _item(self, run_id: str, store: RunStore) -> RunItem:
        summary = store.summary()
        return RunItem(
            run_id=run_id,
            competition=summary.competition,
            status=self.state(store),
            control=store.get_meta("control"),
            phase=store.get_meta("phase"),
            best_score=summary.best_score,
            metric=summary.metric,
            lower_is_better=summary.lower_is_better,
            n_scripts=summary.n_scripts,
            brain=summary.brain,
            created_at=summary.created_at,
            updated_at=summary.updated_at,
        )

    def detail(self, run_id: str) -> RunDetail:
        launch = self._pending_launch(run_id)
        if launch is not None:
            return RunDetail(**self._pending_item(launch).model_dump(), process=self._process(run_id))
        with self.open(run_id) as store:
            meta = store.all_meta()
            events = store.events()
            started = run_started_at(store, events) if events else None
            live = store.status in LIVE
            return RunDetail(
                **self._item(run_id, store).model_dump(),
                task=meta.get("task") or {},
                config=meta.get("config") or {},
                budget=meta.get("budget") or {},
                best=meta.get("best") or {},
                submission=meta.get("submission") or {},
                summary=meta.get("summary") or {},
                data_report=str(meta.get("data_report", "")),
                phases=phase_states(events, current=meta.get("phase"), status=store.status),
                files={name: (store.run_dir / name).is_file() for name in DOWNLOADS},
                last_seq=events[-1].seq if events else 0,
                started_at=started,
                elapsed_s=_active_seconds(meta, live, started, events[-1].ts if events else None),
                process=self._process(run_id),
            )

    # -- contents --------------------------------------------------------------------------
    def nodes(self, run_id: str) -> NodeList:
        with self.open(run_id) as store:
            return self._tree(store)

    @staticmethod
    def _tree(store: RunStore) -> NodeList:
        best = (store.get_meta("best") or {}).get("node_id")
        submission = store.get_meta("submission") or {}
        submitted = [i for i in (submission.get("source_node_id"), submission.get("final_node_id")) if i]
        rows = solution_tree(store.nodes(), best_id=best, submission_ids=submitted)
        return NodeList(best_node_id=best, nodes=rows)

    def script(self, run_id: str, node_id: int, against: int | None = None) -> ScriptDetail:
        with self.open(run_id) as store:
            rows = {row.id: row for row in self._tree(store).nodes}
            if node_id not in rows:
                raise not_found(f"no script #{node_id} in run {run_id!r}")
            if against is not None and against not in rows:
                raise not_found(f"no script #{against} in run {run_id!r} to compare with")
            row = rows[node_id]
            paths = {n.id: self._script_file(store.run_dir, n.script_path) for n in store.nodes()}
        script_path = paths[node_id]
        folder = script_path.parent if script_path is not None else None
        code, code_cut = _read_text(script_path, CODE_LIMIT)
        stdout, out_cut = _read_text(folder / "stdout.txt" if folder else None, OUTPUT_LIMIT)
        stderr, err_cut = _read_text(folder / "stderr.txt" if folder else None, OUTPUT_LIMIT)
        parent = against if against is not None else next(iter(row.parent_ids), None)
        parent_code = _read_text(paths.get(parent), CODE_LIMIT)[0] if parent is not None else None
        diff = None
        if parent_code is not None and code is not None:
            lines = difflib.unified_diff(
                parent_code.splitlines(keepends=True),
                code.splitlines(keepends=True),
                fromfile=f"#{parent}/script.py",
                tofile=f"#{node_id}/script.py",
            )
            diff = "".join(lines)
        parent_row = rows.get(parent) if parent is not None else None
        cuts = (("code", code_cut), ("stdout", out_cut), ("stderr", err_cut))
        return ScriptDetail(
            node=row,
            code=code,
            stdout=stdout,
            stderr=stderr,
            truncated=[name for name, cut in cuts if cut],
            compared_to=parent if diff is not None else None,
            diff=diff,
            parent_label=f"{parent_row.agent} {parent_row.label}".strip() if parent_row else None,
        )

    @staticmethod
    def _script_file(run_dir: Path, script_path: str) -> Path | None:
        # The path comes from the database: trust it only inside the run folder.
        return inside(run_dir, script_path) if script_path else None

    def events(self, run_id: str, after: int, limit: int) -> list[Event]:
        with self.open(run_id) as store:
            return store.events(after=after, limit=limit)

    def progress(self, run_id: str) -> Progress:
        with self.open(run_id) as store:
            task = store.get_meta("task") or {}
            events = store.events()
            live = store.status in LIVE
            return score_progress(
                events,
                started_at=run_started_at(store, events),
                metric=task.get("metric"),
                lower_is_better=task.get("lower_is_better"),
                now=time.time() if live else None,
            )

    def ablations(self, run_id: str) -> AblationList:
        with self.open(run_id) as store:
            events = store.events()
            return AblationList(ablations=ablation_findings(events), checks=check_findings(events))

    def llm_calls(self, run_id: str) -> LLMCalls:
        with self.open(run_id) as store:
            calls = store.llm_calls()
            usage: LLMUsage = llm_usage(calls)
            return LLMCalls(usage=usage, calls=calls)

    def download(self, run_id: str, name: str) -> Path:
        if name not in DOWNLOADS:
            raise not_found(f"no downloadable file {name!r}; choose one of {', '.join(DOWNLOADS)}")
        folder = self.folder(run_id)
        if folder is None:
            raise not_found(f"no run {run_id!r}")
        path = inside(folder, name)
        if path is None or not path.is_file():
            raise not_found(f"run {run_id} has no {name} yet")
        return path

    def predict(self, run_id: str, upload: UploadFile) -> tuple[bytes, bool]:
        """Predictions for the uploaded rows (CSV bytes) and whether the final run's models were loaded."""
        folder = self.folder(run_id)
        if folder is None:
            raise not_found(f"no run {run_id!r}")
        name = Path(upload.filename or "rows.csv").name
        if not self._predicting.acquire(blocking=False):
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "another prediction is running; try again in a moment",
                headers={"Retry-After": "10"},
            )
        try:
            return self._predict(folder, name, upload)
        finally:
            self._predicting.release()

    def _predict(self, folder: Path, name: str, upload: UploadFile) -> tuple[bytes, bool]:
        from mlestar.errors import MlestarError
        from mlestar.pipeline.predict import predict_with

        with tempfile.TemporaryDirectory(prefix="mlestar-predict-") as scratch:
            rows = Path(scratch) / (name if Path(name).suffix.lower() in UPLOAD_SUFFIXES else "rows.csv")
            with rows.open("wb") as handle:
                shutil.copyfileobj(upload.file, handle)
            output = Path(scratch) / "predictions.csv"
            with RunStore(folder) as store:
                try:
                    result = predict_with(store, rows, output)
                except (MlestarError, ValueError, OSError) as exc:  # ValueError: an unreadable table
                    raise bad_request(
                        str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
                    ) from None
            return output.read_bytes(), result.loaded_models

    def write_report(self, run_id: str) -> tuple[Path, Path]:
        from mlestar.report import write_report

        folder = self.folder(run_id)
        if folder is None:
            raise not_found(f"no run {run_id!r}")
        return write_report(folder)

    # -- live stream -----------------------------------------------------------------------
    def stream_ended(self, store: RunStore) -> bool:
        """True once nothing more will be written: the run ended and its owner is gone or done."""
        if self.launcher.alive(store.run_dir.name):
            return False
        current = store.status
        if current == RunStatus.CRASHED:
            return True
        alive = owner_alive(store.get_meta("owner"))
        if current == RunStatus.CREATED:
            # Created by a process that died before starting it: nothing will come until a resume.
            return not alive and store.get_meta("owner") is not None
        if current in LIVE:
            return False
        last = last_lifecycle(store)
        # Status is set a moment before the closing event (or after it): wait for both, unless the
        # owning process is gone and nothing more can come.
        return last is None or last.type in ENDING or not alive


def _active_seconds(
    meta: dict[str, Any], live: bool, started: float | None, last_ts: float | None
) -> float | None:
    """Time the run has spent working, across sessions (what its time limit counts)."""
    budget = meta.get("budget") or {}
    if live and isinstance(budget.get("started_at"), (int, float)):
        return float(budget.get("spent_before_s") or 0.0) + max(0.0, time.time() - budget["started_at"])
    if not live and isinstance(meta.get("active_s"), (int, float)) and meta["active_s"] > 0:
        return float(meta["active_s"])
    if started is None:
        return None
    return (time.time() if live else (last_ts or started)) - started


def owner_alive(owner: dict[str, Any] | None) -> bool:
    """Whether the process recorded as the run's owner lives (False when it ran on another host)."""
    if not owner or owner.get("host") != os.uname().nodename:
        return False
    try:
        os.kill(int(owner["pid"]), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True
