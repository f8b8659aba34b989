"""Starting and steering runs: spawning `mlestar run/resume`, and pause / resume / stop requests.

The server never drives a run itself: it writes the run's ``control`` request, which the pipeline
reads between steps, or starts a pipeline process when none is running.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Literal

import yaml

from mlestar.server.launcher import new_run_id
from mlestar.server.runs import RunService, bad_request, conflict, owner_alive
from mlestar.server.schemas import ControlResult, StartedRun, StartRun
from mlestar.store import Control, RunStatus, RunStore

LLM_SPEC = re.compile(r"^[A-Za-z0-9_.-]+:[A-Za-z0-9_.:/@+-]+$")
STARTUP_GRACE_S = 120.0  # a run created this recently without an owner may still be starting


class RunControl:
    def __init__(self, runs: RunService) -> None:
        self.runs = runs
        self.launcher = runs.launcher
        self.runs_dir = runs.runs_dir
        # Checking "is a process already on it?" and spawning one happen under one lock, so two
        # clicks never start two pipelines on the same run.
        self._spawn_lock = threading.Lock()

    def start(self, request: StartRun) -> StartedRun:
        try:
            competition = Path(request.competition).expanduser().resolve()
            found = competition.is_dir()
        except (OSError, RuntimeError, ValueError):  # a name too long, a symlink loop, a NUL byte
            found = False
        if not found:
            raise bad_request(f"competition folder not found: {request.competition[:300]}")
        llm = self._llm_spec(request.brain)
        config = self._config(request)
        run_id = request.run_id or new_run_id(competition)
        with self._spawn_lock:
            if (self.runs_dir / run_id).exists() or self.launcher.get(run_id) is not None:
                raise conflict(f"run {run_id} already exists")
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            launch = self.launcher.start(
                competition, run_id, config=config, time_limit_s=request.time_limit_s, llm=llm
            )
        return StartedRun(run_id=run_id, pid=launch.process.pid)

    @staticmethod
    def _llm_spec(brain: str) -> str | None:
        spec = brain.strip()
        if spec.lower() in ("", "expert"):
            return None
        spec = spec.removeprefix("llm:")
        if not LLM_SPEC.fullmatch(spec):
            raise bad_request(f'brain must be "expert" or "provider:model", got {brain!r}')
        return spec

    @staticmethod
    def _config(request: StartRun) -> dict[str, Any]:
        config: dict[str, Any] = {}
        if request.config_yaml and request.config_yaml.strip():
            try:
                loaded = yaml.safe_load(request.config_yaml)
            except yaml.YAMLError:
                raise bad_request("config_yaml is not valid YAML") from None
            if not isinstance(loaded, dict):
                raise bad_request("config_yaml must hold a mapping of settings")
            config.update(loaded)
        config.update(request.config)
        if not config:
            return config
        from pydantic import ValidationError

        from mlestar.settings import Settings, fields_of

        # A run's own settings only: where runs live and how the server is bound are not the page's.
        unknown = sorted(set(map(str, config)) - fields_of(scope="run"))
        if unknown:
            raise bad_request(f"unknown setting(s): {', '.join(unknown)}")
        try:
            # Only the user's values: the server's own environment and .env are not theirs to judge.
            Settings.model_validate(config)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise bad_request(f"bad value for {where}: {first.get('msg')}") from None
        return config

    def _activity(self, store: RunStore) -> Literal["active", "starting", "idle"]:
        """Whether a pipeline process runs the run, is about to, or none does."""
        current = store.status  # running/paused only while the owning process lives
        if current in (RunStatus.RUNNING, RunStatus.PAUSED):
            return "active"
        if self.launcher.alive(store.run_dir.name):
            return "starting"
        if current == RunStatus.CREATED:
            # Created by `mlestar run` (maybe from a terminal) that has not claimed it yet.
            owner = store.get_meta("owner")
            young = time.time() - float(store.get_meta("created_at", 0.0)) < STARTUP_GRACE_S
            if (owner is None and young) or (owner is not None and owner_alive(owner)):
                return "starting"
        return "idle"

    def pause(self, run_id: str) -> ControlResult:
        with self.runs.open(run_id) as store:
            activity, current = self._activity(store), store.status
            if current == RunStatus.PAUSED:
                return self._result(store, "none", "already paused")
            if activity == "starting":
                # The pipeline resets control requests when it starts: ask again once it runs.
                raise conflict(f"run {run_id} is starting; pause it once it runs")
            if activity == "idle":
                raise conflict(f"run {run_id} is not running (status {current.value})")
            if store.control() == Control.STOP:
                raise conflict(f"run {run_id} is stopping")
            store.request(Control.PAUSE)
            return self._result(store, "requested", "pause requested: the run pauses after its current step")

    def resume(self, run_id: str) -> ControlResult:
        with self._spawn_lock, self.runs.open(run_id) as store:
            activity, current = self._activity(store), store.status
            if current == RunStatus.FINISHED:
                raise conflict(f"run {run_id} has already finished")
            if activity == "starting":
                return self._result(store, "none", "the run is starting")
            if activity == "active":
                if store.control() == Control.STOP:
                    # The pipeline acts on a stop within a second; it cannot be taken back.
                    raise conflict(f"run {run_id} is stopping; resume it once it has stopped")
                store.request(Control.RUN)
                message = "resumed" if current == RunStatus.PAUSED else "the run is already going"
                return self._result(store, "requested", message)
            store.request(Control.RUN)
            launch = self.launcher.resume(run_id)
            return self._result(store, "spawned", f"resuming in a new process (pid {launch.process.pid})")

    def stop(self, run_id: str) -> ControlResult:
        with self.runs.open(run_id) as store:
            activity, current = self._activity(store), store.status
            if activity == "starting":
                raise conflict(f"run {run_id} is starting; stop it once it runs")
            if activity == "idle":
                if current == RunStatus.STOPPED:
                    return self._result(store, "none", "already stopped")
                raise conflict(f"run {run_id} is not running (status {current.value})")
            if store.control() == Control.STOP:
                return self._result(store, "none", "already stopping")
            store.request(Control.STOP)
            return self._result(store, "requested", "stop requested: running scripts are cancelled")

    def _result(self, store: RunStore, action: str, message: str) -> ControlResult:
        return ControlResult(
            run_id=store.run_id,
            action=action,  # type: ignore[arg-type]
            status=self.runs.state(store),
            control=store.control().value,
            message=message,
        )
