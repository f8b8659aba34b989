"""A run recorded in MLflow as it goes: one parent run per mlestar run, a nested child per script.

The tracker subscribes to the run's event bus only to be woken: a worker thread reads the recorded
events from the run store, in order, and writes them with the MLflow client API and explicit run
ids (tracks publish from several threads, so the fluent API's thread-local active run would mix
them up). The run never waits for MLflow. The parent's id is kept in the run store's meta, so a
resumed run continues the same parent; replaying the stored events from the start on resume logs
the scripts a crash left unrecorded and skips those already there. When MLflow is unreachable or
fails, the tracker publishes one WARNING event and stops trying; the run goes on.

Parent: the run's settings as params; tags with the mlestar run id, brain and model; the best
validation score as it improves, the submission's validation score, the test score when the
competition has private answers, and at the end the submission, solution, report and summary as
artifacts. Child: agent, phase, track, model and parent scripts; validation score, wall time, peak
memory and (with an LLM) the tokens and cost of the calls that wrote, checked or debugged it; the
script and its output as artifacts.
"""

from __future__ import annotations

import importlib.util
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mlestar.core.contract import SCRIPT_NAME, SUBMISSION_NAME
from mlestar.core.events import Event, EventBus, EventType
from mlestar.core.task import Task
from mlestar.errors import ConfigError, MlestarError
from mlestar.settings import Settings
from mlestar.store import NodeRecord, NodeStatus, RunStatus, RunStore

META_KEY = "mlflow"  # {"tracking_uri", "experiment_id", "parent_run_id"} in the run store's meta
RUN_ARTIFACTS = (SUBMISSION_NAME, "solution.py", "report.html", "report.md", "summary.json")
SCRIPT_ARTIFACTS = (SCRIPT_NAME, "stdout.txt", "stderr.txt")
END_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.STOPPED: "KILLED", RunStatus.FAILED: "FAILED"}
_PARAM_LIMIT = 6000  # characters of a param value MLflow accepts
_BATCH = 100  # params per log_batch call
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


class TrackingUnavailable(Exception):
    """MLflow cannot be reached (the tracker stops; the run does not)."""


def safe_uri(uri: str) -> str:
    """The tracking URI as it may be shown: without a user name and password in it."""
    return _USERINFO.sub("", uri)


@dataclass
class _Call:
    place: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ScriptUsage:
    """Which LLM calls a script is charged with.

    A call's place is its step key without the last part (``p2/t0/o1/k2`` of
    ``p2/t0/o1/k2/code#...``). It is charged to the first script to finish whose place is the call's
    place or lies above it: the calls that wrote a script, checked it for leakage and debugged it.
    Calls of steps that write no script (summaries, plans) stay with the run's totals only.
    """

    def __init__(self) -> None:
        self._pending: list[_Call] = []

    def add(self, step_key: str, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        self._pending.append(_Call(step_key.rsplit("/", 1)[0], prompt_tokens, completion_tokens, cost_usd))

    def take(self, place: str) -> dict[str, float]:
        mine = [c for c in self._pending if c.place == place or c.place.startswith(place + "/")]
        self._pending = [c for c in self._pending if c not in mine]
        if not mine:
            return {}
        return {
            "llm_calls": len(mine),
            "llm_prompt_tokens": sum(c.prompt_tokens for c in mine),
            "llm_completion_tokens": sum(c.completion_tokens for c in mine),
            "llm_cost_usd": round(sum(c.cost_usd for c in mine), 6),
        }


def make_tracker(store: RunStore, bus: EventBus, task: Task, settings: Settings) -> MlflowTracker | None:
    """The run's MLflow tracker when ``mlflow_tracking_uri`` is set (not started yet), else None."""
    if not settings.mlflow_tracking_uri:
        return None
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("recording in MLflow needs the mlflow package: pip install 'mlestar[mlflow]'")
    return MlflowTracker(store, bus, task, settings)


class MlflowTracker:
    def __init__(self, store: RunStore, bus: EventBus, task: Task, settings: Settings) -> None:
        self.store = store
        self.bus = bus
        self.task = task
        self.settings = settings
        self.uri = str(settings.mlflow_tracking_uri)
        self.experiment_name = settings.mlflow_experiment or task.name
        self.client: Any = None  # an MlflowClient, made in the worker (importing mlflow takes seconds)
        self.parent_id: str | None = None
        self.experiment_id: str | None = None
        self._cursor = 0  # seq of the last event written
        self._scripts = 0  # scripts finished so far: the step of the run's metrics
        self._logged: set[int] = set()  # node ids that have their child run
        self._usage = ScriptUsage()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._status = RunStatus.FAILED
        self._unsubscribe = lambda: None
        self._thread = threading.Thread(target=self._work, name="mlestar-mlflow", daemon=True)

    # -- lifecycle (called by the pipeline) --------------------------------------------------
    def start(self) -> None:
        self._unsubscribe = self.bus.subscribe(self)
        self._thread.start()

    def __call__(self, event: Event) -> None:
        self._wake.set()  # the worker reads the event from the store, where it is recorded already

    def close(self, status: RunStatus, timeout_s: float = 60.0) -> None:
        """Write what is left, the run's results and its end; wait at most ``timeout_s`` for it."""
        self._status = status
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._unsubscribe()
        if self._thread.is_alive():
            self.bus.publish(
                EventType.WARNING,
                f"MLflow at {safe_uri(self.uri)} is still busy after {timeout_s:.0f}s; the rest of the run "
                "is not recorded there",
            )

    # -- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._connect()
            while True:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                closing = self._closing.is_set()
                self._sync()
                if closing:
                    self._finish()
                    return
        except Exception as exc:  # MLflow down or failing: say so once, then leave the run alone
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            try:
                self.bus.publish(
                    EventType.WARNING,
                    f"MLflow tracking at {safe_uri(self.uri)} stopped ({reason}); the run goes on without it",
                    data={"integration": "mlflow"},
                )
            except Exception:  # the run has ended and its store is closed: nothing left to tell
                pass

    def _connect(self) -> None:
        problem = _probe(self.uri)
        if problem:
            raise TrackingUnavailable(f"unreachable: {problem}")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        known = self.store.get_meta(META_KEY) or {}
        if known.get("parent_run_id") and known.get("tracking_uri") == self.uri and self._continue(known):
            return
        self.experiment_id = self._experiment()
        created = self.store.get_meta("created_at", time.time())
        parent = self.client.create_run(
            self.experiment_id, start_time=_ms(created), tags=self._parent_tags(), run_name=self.store.run_id
        )
        self.parent_id = parent.info.run_id
        self.store.set_meta(
            META_KEY,
            {"tracking_uri": self.uri, "experiment_id": self.experiment_id, "parent_run_id": self.parent_id},
        )
        self._log_params(self.parent_id, self._parent_params())

    def _continue(self, known: dict[str, Any]) -> bool:
        """Take up the parent run of an earlier session of this run; False when it is gone."""
        from mlflow.exceptions import MlflowException

        try:
            parent = self.client.get_run(known["parent_run_id"])
        except MlflowException:
            return False
        if parent.info.lifecycle_stage == "deleted":
            return False
        self.parent_id, self.experiment_id = parent.info.run_id, parent.info.experiment_id
        if parent.info.status != "RUNNING":
            self.client.update_run(self.parent_id, status="RUNNING")
        # Params cannot change; a session cut short before logging them, or a setting new since
        # (a resume with more time keeps the first value), adds only what is missing.
        logged = parent.data.params
        self._log_params(self.parent_id, {k: v for k, v in self._parent_params().items() if k not in logged})
        self._logged = self._children()
        return True

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is None:
            try:
                return str(self.client.create_experiment(self.experiment_name))
            except MlflowException:  # another run created it a moment ago
                found = self.client.get_experiment_by_name(self.experiment_name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _children(self) -> set[int]:
        """Node ids of the scripts that have a complete child run under the parent already.

        A child is ended last, after its metrics and artifacts; one still running was cut short by
        a crash, so it is deleted and written again."""
        nodes: set[int] = set()
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
                max_results=1000,
                page_token=token,
            )
            for run in page:
                value = run.data.tags.get("mlestar.node_id", "")
                if run.info.status == "RUNNING":
                    self.client.delete_run(run.info.run_id)
                elif value.isdigit():
                    nodes.add(int(value))
            token = page.token
            if not token:
                return nodes

    def _sync(self) -> None:
        while True:
            events = self.store.events(after=self._cursor, limit=500)
            if not events:
                return
            for event in events:
                self._handle(event)
                self._cursor = event.seq

    def _handle(self, event: Event) -> None:
        data = event.data
        if event.type == EventType.LLM_CALL and not data.get("cached") and data.get("step"):
            self._usage.add(
                str(data["step"]),
                int(data.get("prompt_tokens") or 0),
                int(data.get("completion_tokens") or 0),
                float(data.get("cost_usd") or 0.0),
            )
        elif event.type == EventType.SCRIPT_FINISHED and event.node_id is not None:
            self._scripts += 1
            node = self.store.get_node(event.node_id)
            if node is not None and node.id not in self._logged:
                self._log_script(node)
        elif event.type == EventType.BEST_UPDATED and data.get("score") is not None:
            self._metric("best_validation_score", data["score"], event.ts, self._scripts)
        elif event.type == EventType.SUBMISSION_WRITTEN:
            if data.get("score") is not None:
                self._metric("submission_validation_score", data["score"], event.ts, self._scripts)
            self._artifacts(self.parent_id, [SUBMISSION_NAME], self.store.run_dir)
        elif event.type == EventType.PHASE_STARTED and event.phase:
            self.client.set_tag(self.parent_id, "mlestar.phase", event.phase)

    def _finish(self) -> None:
        summary = self.store.get_meta("summary") or {}
        llm = summary.get("llm") or {}
        now = time.time()
        for key, value in (
            ("scripts_run", summary.get("scripts_run")),
            ("scripts_failed", summary.get("scripts_failed")),
            ("time_spent_s", summary.get("time_spent_s")),
            ("llm_calls", llm.get("calls") or None),
            ("llm_tokens", (llm.get("prompt_tokens", 0) + llm.get("completion_tokens", 0)) or None),
            ("llm_cost_usd", llm.get("cost_usd") or None),
            ("test_score", self._test_score()),
        ):
            if value is not None:
                self._metric(key, value, now, self._scripts)
        self._artifacts(self.parent_id, RUN_ARTIFACTS, self.store.run_dir)
        self.client.set_terminated(
            self.parent_id, status=END_STATUS.get(self._status, "FAILED"), end_time=_ms(now)
        )

    # -- what is written ---------------------------------------------------------------------
    def _parent_tags(self) -> dict[str, str]:
        brain = str(self.store.get_meta("brain") or self.settings.brain_name)
        return {
            "mlestar.run_id": self.store.run_id,
            "mlestar.brain": brain,
            "mlestar.model": self.settings.llm or brain,
            "mlestar.competition": self.task.name,
            "mlestar.metric": self.task.metric,
            "mlestar.run_dir": str(self.store.run_dir),
        }

    def _parent_params(self) -> dict[str, Any]:
        config = self.store.get_meta("config") or self.settings.run_values()
        return {
            **config,
            "competition": self.task.name,
            "metric": self.task.metric,
            "lower_is_better": self.task.lower_is_better,
        }

    def _log_script(self, node: NodeRecord) -> None:
        from mlflow.entities import Metric

        tags = {
            "mlflow.parentRunId": str(self.parent_id),
            "mlestar.run_id": self.store.run_id,
            "mlestar.node_id": str(node.id),
            "mlestar.agent": node.agent,
            "mlestar.phase": node.phase,
        }
        if node.error:
            tags["mlestar.error"] = node.error[-2000:]
        run = self.client.create_run(
            self.experiment_id,
            start_time=_ms(node.created_at),
            tags=tags,
            run_name=f"#{node.id} {node.agent}: {node.label}"[:240],
        )
        child = run.info.run_id
        params = {
            "agent": node.agent,
            "phase": node.phase,
            "track": node.track,
            "model": node.info.get("model"),
            "parent_node_ids": ",".join(str(p) for p in node.parent_ids) or None,
            "label": node.label,
            "final": node.info.get("final"),
            "step_key": node.step_key,
        }
        values = {
            "validation_score": node.score,
            "wall_s": node.wall_s,
            "peak_memory_mb": node.peak_memory_mb,
            **self._usage.take(node.step_key.rsplit("/", 1)[0]),
        }
        stamp = _ms(node.finished_at or time.time())
        metrics = [Metric(key, float(value), stamp, 0) for key, value in values.items() if value is not None]
        self.client.log_batch(child, metrics=metrics, params=_params(params))
        if node.script_path:
            self._artifacts(child, SCRIPT_ARTIFACTS, (self.store.run_dir / node.script_path).parent)
        status = "FINISHED" if node.status == NodeStatus.DONE else "FAILED"
        self.client.set_terminated(child, status=status, end_time=stamp)
        self._logged.add(node.id)

    def _log_params(self, run_id: str, values: dict[str, Any]) -> None:
        params = _params(values)
        for start in range(0, len(params), _BATCH):
            self.client.log_batch(run_id, params=params[start : start + _BATCH])

    def _metric(self, key: str, value: float, ts: float, step: int) -> None:
        self.client.log_metric(self.parent_id, key, float(value), timestamp=_ms(ts), step=step)

    def _artifacts(self, run_id: str | None, names: Iterable[str], folder: Any) -> None:
        for name in names:
            path = folder / name
            if path.is_file() and path.stat().st_size > 0:
                self.client.log_artifact(run_id, str(path))

    def _test_score(self) -> float | None:
        """The submission's score on the private answers, when the competition has them."""
        task = self.task
        submission = self.store.run_dir / SUBMISSION_NAME
        if task.answers_file is None or not submission.is_file():
            return None
        from mlestar.grading import grade_submission

        sample = task.data_path(task.sample_submission_file) if task.sample_submission_file else None
        try:
            graded = grade_submission(
                submission,
                task.answers_file,
                metric=task.metric,
                sample_path=sample,
                id_column=task.id_column,
            )
        except MlestarError:
            return None
        return graded.score if graded.valid else None


def _params(values: dict[str, Any]) -> list[Any]:
    """MLflow params for the values that are set (MLflow keeps a param's first 6000 characters)."""
    from mlflow.entities import Param

    return [Param(str(key), str(value)[:_PARAM_LIMIT]) for key, value in values.items() if value is not None]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _probe(uri: str) -> str | None:
    """Why an HTTP tracking server cannot be reached within a few seconds, or None.

    The MLflow client retries a dead server for minutes; a quick look first turns "MLflow is down"
    into one warning at the start rather than a stalled tracker."""
    if not uri.startswith(("http://", "https://")):
        return None
    import httpx

    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=5.0)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None
