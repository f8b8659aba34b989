"""Starting and resuming runs as detached ``python -m mlestar`` processes.

Each run gets its own process group and session, so it survives a server restart and a Ctrl+C in
the server's terminal; the run store, not the server, is the source of truth about it afterwards.
The server keeps what it spawned in memory only to report runs that have not created their run
folder yet (or died before doing so) and to reap finished children: an unreaped child stays a
zombie, and the store would then take a dead pipeline for a live one.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mlestar.server.options import TOKEN_ENV

SERVER_DIR = ".mlestar-server"  # inside the runs folder: launch logs and configs (no run.sqlite)
LOG_TAIL_CHARS = 4000


def new_run_id(competition: Path) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", competition.name.lower()).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"


@dataclass
class Launch:
    run_id: str
    kind: Literal["run", "resume"]
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    started_at: float = field(default_factory=time.time)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self, limit: int = LOG_TAIL_CHARS) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - limit))
                return handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""


class Launcher:
    def __init__(self, runs_dir: Path, python: str) -> None:
        self.runs_dir = runs_dir
        self.python = python
        self._launches: dict[str, Launch] = {}
        self._lock = threading.Lock()

    @property
    def work_dir(self) -> Path:
        return self.runs_dir / SERVER_DIR

    def get(self, run_id: str) -> Launch | None:
        with self._lock:
            return self._launches.get(run_id)

    def alive(self, run_id: str) -> bool:
        launch = self.get(run_id)
        return launch is not None and launch.alive

    def all(self) -> list[Launch]:
        with self._lock:
            return list(self._launches.values())

    def start(
        self,
        competition: Path,
        run_id: str,
        *,
        config: dict[str, Any],
        time_limit_s: float | None,
        llm: str | None,
    ) -> Launch:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        command = [
            self.python,
            "-m",
            "mlestar",
            "run",
            str(competition),
            "--runs-dir",
            str(self.runs_dir),
            "--run-id",
            run_id,
        ]
        if config:
            config_path = self.work_dir / f"{run_id}.yaml"
            config_path.write_text(yaml.safe_dump(config, sort_keys=True))
            command += ["--config", str(config_path)]
        if time_limit_s is not None:
            command += ["--time-limit", repr(float(time_limit_s))]
        if llm:
            command += ["--llm", llm]
        return self._spawn(run_id, "run", command)

    def resume(self, run_id: str) -> Launch:
        command = [self.python, "-m", "mlestar", "resume", run_id, "--runs-dir", str(self.runs_dir)]
        return self._spawn(run_id, "resume", command)

    def _spawn(self, run_id: str, kind: Literal["run", "resume"], command: list[str]) -> Launch:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.work_dir / f"{run_id}.log"
        env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        with log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        launch = Launch(run_id=run_id, kind=kind, command=command, log_path=log_path, process=process)
        with self._lock:
            self._launches[run_id] = launch
        threading.Thread(target=process.wait, name=f"reap-{process.pid}", daemon=True).start()
        return launch
