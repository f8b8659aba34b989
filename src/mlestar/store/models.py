"""Rows of the run store as typed records."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class RunStatus(str, Enum):
    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"  # stopped by the user; resumable
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"  # derived: status says running but the owning process is gone


class Control(str, Enum):
    """What a controller (CLI signal, web UI) asks the running pipeline to do next."""

    RUN = "run"
    PAUSE = "pause"
    STOP = "stop"


class NodeStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # ran to completion (it may still have no score)
    FAILED = "failed"  # crashed, timed out, or printed no score after debugging


class NodeRecord(BaseModel):
    """One script of the solution tree."""

    id: int = 0
    step_key: str  # deterministic key of the pipeline step that made it; resume looks it up
    parent_ids: list[int] = Field(default_factory=list)
    track: int | None = None
    phase: str
    agent: str  # candidate, merger, leakage, data_usage, ablation, refine, ensemble, debug, submission
    label: str = ""
    status: NodeStatus = NodeStatus.PENDING
    score: float | None = None
    returncode: int | None = None
    wall_s: float | None = None
    peak_memory_mb: float | None = None
    created_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    script_path: str = ""  # relative to the run folder
    error: str | None = None  # trimmed, for the debugger and the UI
    info: dict[str, Any] = Field(default_factory=dict)


class RunSummary(BaseModel):
    run_id: str
    run_dir: str
    competition: str
    status: RunStatus
    best_score: float | None
    lower_is_better: bool | None
    metric: str | None
    created_at: float
    updated_at: float
    n_scripts: int
    brain: str = ""
