"""The run store: one SQLite database (WAL) per run folder, written before the pipeline moves on.

Layout of a run folder ``runs/<run-id>/``::

    run.sqlite        meta, nodes (scripts), events, llm calls, llm cache, memo
    scripts/<id>-<agent>/script.py, stdout.txt, stderr.txt, input -> ../../data/dev, ...
    data/dev, data/final   read-only views of the competition data (+ folds.csv)
    submission.csv, solution.py, summary.json, report.html, report.md

Every write commits at once with ``synchronous=FULL`` so that a reader (CLI, web UI) and a resumed
run see a consistent state even after ``kill -9``. Several processes may open the same store
(the pipeline writes, the server reads and writes control requests); SQLite's locking handles it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlestar.core.events import Event, EventType
from mlestar.core.records import LLMCallRecord
from mlestar.errors import RunNotFound
from mlestar.store.models import Control, NodeRecord, NodeStatus, RunStatus, RunSummary

SCHEMA_VERSION = 1
DB_NAME = "run.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    step_key       TEXT NOT NULL UNIQUE,
    parent_ids     TEXT NOT NULL DEFAULT '[]',
    track          INTEGER,
    phase          TEXT NOT NULL,
    agent          TEXT NOT NULL,
    label          TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL,
    score          REAL,
    returncode     INTEGER,
    wall_s         REAL,
    peak_memory_mb REAL,
    created_at     REAL NOT NULL,
    finished_at    REAL,
    script_path    TEXT NOT NULL DEFAULT '',
    error          TEXT,
    info           TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      REAL NOT NULL,
    type    TEXT NOT NULL,
    phase   TEXT,
    track   INTEGER,
    node_id INTEGER,
    message TEXT NOT NULL DEFAULT '',
    data    TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS llm_calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    ts                REAL NOT NULL,
    agent             TEXT NOT NULL,
    provider          TEXT NOT NULL,
    model             TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL,
    latency_s         REAL NOT NULL DEFAULT 0,
    cached            INTEGER NOT NULL DEFAULT 0,
    error             TEXT,
    cached_prompt_tokens INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS llm_cache (
    request_hash TEXT PRIMARY KEY,
    model        TEXT NOT NULL,
    response     TEXT NOT NULL,
    usage        TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS memo (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_type ON events(type);
"""

_NODE_COLUMNS = (
    "id, step_key, parent_ids, track, phase, agent, label, status, score, returncode, wall_s, "
    "peak_memory_mb, created_at, finished_at, script_path, error, info"
)


class RunStore:
    """Typed access to one run's SQLite database. Thread-safe within a process."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.db_path = self.run_dir / DB_NAME
        if not self.db_path.exists():
            raise RunNotFound(f"no run found at {self.run_dir} (missing {DB_NAME})")
        self._lock = threading.RLock()
        self._conn = self._connect(self.db_path)
        self._migrate()

    # -- opening ---------------------------------------------------------------------------
    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @classmethod
    def create(cls, run_dir: Path | str, *, meta: dict[str, Any] | None = None) -> RunStore:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        conn = cls._connect(run_dir / DB_NAME)
        conn.executescript(_SCHEMA)
        now = time.time()
        initial = {
            "schema_version": SCHEMA_VERSION,
            "run_id": run_dir.name,
            "status": RunStatus.CREATED.value,
            "control": Control.RUN.value,
            "created_at": now,
            "updated_at": now,
        }
        initial.update(meta or {})
        with conn:
            for key, value in initial.items():
                conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value))
                )
        conn.close()
        return cls(run_dir)

    def _migrate(self) -> None:
        with self._lock:
            self._conn.executescript(_SCHEMA)
            columns = {row["name"] for row in self._conn.execute("PRAGMA table_info(llm_calls)")}
            if "cached_prompt_tokens" not in columns:  # runs stored before prompt caching was counted
                self._conn.execute(
                    "ALTER TABLE llm_calls ADD COLUMN cached_prompt_tokens INTEGER NOT NULL DEFAULT 0"
                )
            version = self.get_meta("schema_version", 0)
            if version > SCHEMA_VERSION:
                raise RunNotFound(
                    f"run {self.run_dir.name} was written by a newer mlestar (schema {version}); upgrade mlestar"
                )
            if version < SCHEMA_VERSION:
                self.set_meta("schema_version", SCHEMA_VERSION)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @property
    def run_id(self) -> str:
        return str(self.get_meta("run_id", self.run_dir.name))

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))
            conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('updated_at', ?)", (json.dumps(time.time()),)
            )

    def all_meta(self) -> dict[str, Any]:
        with self._lock:
            rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        return {row["key"]: json.loads(row["value"]) for row in rows}

    @property
    def status(self) -> RunStatus:
        status = RunStatus(self.get_meta("status", RunStatus.CREATED.value))
        if status in (RunStatus.RUNNING, RunStatus.PAUSED) and not self._owner_alive():
            return RunStatus.CRASHED
        return status

    def set_status(self, status: RunStatus) -> None:
        self.set_meta("status", status.value)

    def claim(self) -> None:
        """Mark this process as the run's owner (for crash detection)."""
        self.set_meta("owner", {"pid": os.getpid(), "host": os.uname().nodename, "since": time.time()})

    def _owner_alive(self) -> bool:
        owner = self.get_meta("owner")
        if not owner or owner.get("host") != os.uname().nodename:
            return True  # cannot tell for another host; trust the recorded status
        try:
            import psutil

            process = psutil.Process(int(owner["pid"]))
            # A killed process that its parent has not reaped yet is a zombie: dead all the same.
            return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= owner.get("since", 1e18)
        except psutil.NoSuchProcess:
            return False
        except psutil.Error:
            return True

    # -- control (pause / stop requests from other processes) -------------------------------
    def request(self, control: Control) -> None:
        self.set_meta("control", control.value)

    def control(self) -> Control:
        return Control(self.get_meta("control", Control.RUN.value))

    # -- nodes -----------------------------------------------------------------------------
    def add_node(self, node: NodeRecord) -> NodeRecord:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO nodes(step_key, parent_ids, track, phase, agent, label, status, score, returncode,"
                " wall_s, peak_memory_mb, created_at, finished_at, script_path, error, info)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    node.step_key,
                    json.dumps(node.parent_ids),
                    node.track,
                    node.phase,
                    node.agent,
                    node.label,
                    node.status.value,
                    node.score,
                    node.returncode,
                    node.wall_s,
                    node.peak_memory_mb,
                    node.created_at,
                    node.finished_at,
                    node.script_path,
                    node.error,
                    json.dumps(node.info),
                ),
            )
            node_id = int(cur.lastrowid or 0)
        return node.model_copy(update={"id": node_id})

    def update_node(self, node_id: int, **fields: Any) -> NodeRecord:
        allowed = set(NodeRecord.model_fields) - {"id", "step_key"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown node fields: {sorted(unknown)}")
        encoded: dict[str, Any] = {}
        for key, value in fields.items():
            if key in ("parent_ids", "info"):
                value = json.dumps(value)
            elif key == "status":
                value = NodeStatus(value).value
            encoded[key] = value
        if encoded:
            assignments = ", ".join(f"{key} = ?" for key in encoded)
            with self._tx() as conn:
                conn.execute(f"UPDATE nodes SET {assignments} WHERE id = ?", (*encoded.values(), node_id))
        node = self.get_node(node_id)
        if node is None:
            raise KeyError(node_id)
        return node

    @staticmethod
    def _node_from_row(row: sqlite3.Row) -> NodeRecord:
        data = dict(row)
        data["parent_ids"] = json.loads(data["parent_ids"])
        data["info"] = json.loads(data["info"])
        return NodeRecord.model_validate(data)

    def get_node(self, node_id: int) -> NodeRecord | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_NODE_COLUMNS} FROM nodes WHERE id = ?", (node_id,)).fetchone()
        return None if row is None else self._node_from_row(row)

    def node_by_key(self, step_key: str) -> NodeRecord | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE step_key = ?", (step_key,)
            ).fetchone()
        return None if row is None else self._node_from_row(row)

    def nodes(self, *, phase: str | None = None, status: NodeStatus | None = None) -> list[NodeRecord]:
        query, args = f"SELECT {_NODE_COLUMNS} FROM nodes WHERE 1=1", []
        if phase is not None:
            query += " AND phase = ?"
            args.append(phase)
        if status is not None:
            query += " AND status = ?"
            args.append(status.value)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [self._node_from_row(row) for row in rows]

    # -- events ----------------------------------------------------------------------------
    def append_event(self, event: Event) -> Event:
        """Persist one event and return it numbered: the recorder of the run's event bus.

        Producers publish on the bus (``mlestar.core.events.EventBus``), never here directly."""
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO events(ts, type, phase, track, node_id, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.ts,
                    event.type.value,
                    event.phase,
                    event.track,
                    event.node_id,
                    event.message,
                    json.dumps(event.data, default=str),
                ),
            )
            seq = int(cur.lastrowid or 0)
        return event.model_copy(update={"seq": seq})

    def events(
        self, *, after: int = 0, limit: int | None = None, types: list[EventType] | None = None
    ) -> list[Event]:
        query, args = "SELECT * FROM events WHERE seq > ?", [after]
        if types:
            query += f" AND type IN ({','.join('?' * len(types))})"
            args.extend(t.value for t in types)
        query += " ORDER BY seq"
        if limit is not None:
            query += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._conn.execute(query, args).fetchall()
        return [
            Event(
                seq=row["seq"],
                ts=row["ts"],
                type=EventType(row["type"]),
                phase=row["phase"],
                track=row["track"],
                node_id=row["node_id"],
                message=row["message"],
                data=json.loads(row["data"]),
            )
            for row in rows
        ]

    # -- LLM calls and cache ---------------------------------------------------------------
    def record_llm_call(self, call: LLMCallRecord) -> LLMCallRecord:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO llm_calls(ts, agent, provider, model, request_hash, prompt_tokens, completion_tokens,"
                " cost_usd, latency_s, cached, error, cached_prompt_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    call.ts,
                    call.agent,
                    call.provider,
                    call.model,
                    call.request_hash,
                    call.prompt_tokens,
                    call.completion_tokens,
                    call.cost_usd,
                    call.latency_s,
                    int(call.cached),
                    call.error,
                    call.cached_prompt_tokens,
                ),
            )
            call_id = int(cur.lastrowid or 0)
        return call.model_copy(update={"id": call_id})

    def llm_calls(self) -> list[LLMCallRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()
        return [LLMCallRecord.model_validate({**dict(row), "cached": bool(row["cached"])}) for row in rows]

    def cache_get(self, request_hash: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT response, usage FROM llm_cache WHERE request_hash = ?", (request_hash,)
            ).fetchone()
        return None if row is None else (row["response"], json.loads(row["usage"]))

    def cache_put(self, request_hash: str, model: str, response: str, usage: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO llm_cache(request_hash, model, response, usage, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (request_hash, model, response, json.dumps(usage), time.time()),
            )

    # -- memo: results of finished pipeline steps, so a resumed run does not redo them --------
    def memo_get(self, key: str) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM memo WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def memo_has(self, key: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM memo WHERE key = ?", (key,)).fetchone() is not None

    def memo_put(self, key: str, value: Any) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO memo(key, value, created_at) VALUES (?, ?, ?)",
                (key, json.dumps(value, default=str), time.time()),
            )

    # -- summaries -------------------------------------------------------------------------
    def summary(self) -> RunSummary:
        meta = self.all_meta()
        task = meta.get("task") or {}
        best = meta.get("best") or {}
        with self._lock:
            n_scripts = self._conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0]
        return RunSummary(
            run_id=str(meta.get("run_id", self.run_dir.name)),
            run_dir=str(self.run_dir),
            competition=str(task.get("name", "")),
            status=self.status,
            best_score=best.get("score"),
            lower_is_better=task.get("lower_is_better"),
            metric=task.get("metric"),
            created_at=float(meta.get("created_at", 0.0)),
            updated_at=float(meta.get("updated_at", 0.0)),
            n_scripts=int(n_scripts),
            brain=str(meta.get("brain", "")),
        )


def list_runs(runs_dir: Path | str) -> list[RunSummary]:
    """Summaries of every run under ``runs_dir``, newest first; unreadable folders are skipped."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    summaries = []
    for db in runs_dir.glob(f"*/{DB_NAME}"):
        if db.parent.name.startswith("."):  # a run still being created (or whose creation died)
            continue
        try:
            with RunStore(db.parent) as store:
                summaries.append(store.summary())
        except (sqlite3.DatabaseError, RunNotFound, ValueError):
            continue
    return sorted(summaries, key=lambda s: s.created_at, reverse=True)


def open_run(runs_dir: Path | str, run_id: str) -> RunStore:
    """Open a run by id (or by a unique id prefix) with a one-line error when it is unknown."""
    runs_dir = Path(runs_dir)
    if "/" in run_id or "\\" in run_id or run_id in ("", ".", ".."):
        candidate = Path(run_id)
        if (candidate / DB_NAME).exists():
            return RunStore(candidate)
        raise RunNotFound(f"no run found at {run_id}")
    exact = runs_dir / run_id
    if (exact / DB_NAME).exists():
        return RunStore(exact)
    matches = [p.parent for p in runs_dir.glob(f"{run_id}*/{DB_NAME}")] if runs_dir.is_dir() else []
    if len(matches) == 1:
        return RunStore(matches[0])
    if len(matches) > 1:
        raise RunNotFound(f"run id prefix {run_id!r} is ambiguous ({len(matches)} runs match)")
    raise RunNotFound(f"no run {run_id!r} in {runs_dir}")
