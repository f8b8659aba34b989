"""Request and response bodies of the REST API (they make up its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from mlestar.core.records import LLMCallRecord
from mlestar.report.data import AblationFinding, CheckFinding, LLMUsage, PhaseState, TreeRow
from mlestar.server.paths import RUN_ID_PATTERN

# The store's statuses, plus two the server alone knows: a spawned run that has not created its
# folder yet, and one whose process died before doing so.
RunState = Literal[
    "starting", "launch_failed", "created", "running", "paused", "stopped", "finished", "failed", "crashed"
]


class RunItem(BaseModel):
    run_id: str
    competition: str = ""
    status: RunState
    control: str | None = None
    phase: str | None = None
    best_score: float | None = None
    metric: str | None = None
    lower_is_better: bool | None = None
    n_scripts: int = 0
    brain: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


class ProcessInfo(BaseModel):
    """The process this server spawned for the run, if any (forgotten on server restart)."""

    pid: int
    kind: Literal["run", "resume"]
    alive: bool
    returncode: int | None
    log_tail: str


class RunDetail(RunItem):
    task: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    budget: dict[str, Any] = Field(default_factory=dict)
    best: dict[str, Any] = Field(default_factory=dict)
    submission: dict[str, Any] = Field(default_factory=dict)
    summary: dict[str, Any] = Field(default_factory=dict)
    data_report: str = ""
    phases: list[PhaseState] = Field(default_factory=list)
    files: dict[str, bool] = Field(default_factory=dict)
    last_seq: int = 0
    started_at: float | None = None
    elapsed_s: float | None = None
    process: ProcessInfo | None = None


class StartRun(BaseModel):
    competition: str = Field(
        min_length=1, max_length=4096, description="path of a competition folder on the server"
    )
    time_limit_s: float | None = Field(None, gt=0, le=30 * 86400)
    brain: str = Field(
        "expert", max_length=200, description='"expert", or an LLM as "provider:model" / "llm:provider:model"'
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="run settings (the keys of the YAML config)"
    )
    config_yaml: str | None = Field(
        None, max_length=100_000, description="run settings as YAML; `config` wins"
    )
    run_id: str | None = Field(None, pattern=RUN_ID_PATTERN)


class StartedRun(BaseModel):
    run_id: str
    pid: int
    status: RunState = "starting"


class ControlResult(BaseModel):
    run_id: str
    action: Literal["requested", "spawned", "none"]
    status: RunState
    control: str | None
    message: str


class NodeList(BaseModel):
    best_node_id: int | None
    nodes: list[TreeRow]


class ScriptDetail(BaseModel):
    node: TreeRow
    code: str | None
    stdout: str | None
    stderr: str | None
    truncated: list[str] = Field(default_factory=list, description="which texts were cut to their tail")
    compared_to: int | None = Field(None, description="the parent the diff is taken against")
    diff: str | None = None
    parent_label: str | None = None


class AblationList(BaseModel):
    ablations: list[AblationFinding]
    checks: list[CheckFinding]


class LLMCalls(BaseModel):
    usage: LLMUsage
    calls: list[LLMCallRecord]


class Problem(BaseModel):
    detail: str
