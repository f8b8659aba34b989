"""The hostile-script suite: a brain whose every script attacks the machine, run through the real
pipeline, store and sandbox (``LocalExecutor``), and the checks made from outside afterwards.

:func:`run_suite` runs one pipeline (it may run as another user: it returns plain JSON) and
:func:`check_containment` judges it: the competition byte-identical, nothing new outside the
scripts' own folders, no secret in anything the scripts wrote, no process left, the run finished
with a valid submission and a sound store. The attacks themselves are in ``hostile_attacks.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import socket
import sqlite3
import sys
import sysconfig
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from competitions import make_competition
from scripted import PREFIX, ScriptedBrain, scripted

from mlestar.brain.protocol import BrainContext, ModelCard, Script
from mlestar.core import contract
from mlestar.exec import sandbox
from mlestar.exec.pool import LocalExecutor
from mlestar.pipeline.run import create_run, execute
from mlestar.settings import Settings
from mlestar.store import NodeStatus, RunStatus, RunStore

ATTACKS_TEXT = (Path(__file__).with_name("hostile_attacks.py")).read_text(encoding="utf-8")

# One script per line: the attacks it makes, and whether the sandbox must kill it.
CANDIDATES: list[tuple[list[str], str | None]] = [
    (["read", "write", "environment", "sockets"], None),
    (["fork_bomb"], "processes"),
    (["memory_bomb"], "memory"),
    (["disk_filler"], "disk"),
    (["infinite_loop"], "timeout"),
    (["orphans"], None),
    (["corrupt_own_folder"], None),
]
FINAL_ATTACKS = ["read", "write", "environment", "sockets", "orphans"]
SUITE_CONFIG = {
    "num_models": len(CANDIDATES) + 1,
    "num_tracks": 1,
    "outer_steps": 0,
    "inner_steps": 0,
    "ensemble_rounds": 0,
    "debug_retries": 0,
    "leakage_check": "off",
    "data_usage_check": False,
    "script_timeout_s": 6,
    "workers": 2,
    "threads_per_script": 1,
    "memory_mb": 512,
    "max_processes": 64,
    "disk_mb": 48,
}


def _code(label: str, score: float, cfg: dict, attacks: list[str]) -> str:
    head = f"{PREFIX}{json.dumps({'score': score, 'label': label}, sort_keys=True)}\n"
    call = f"\nmain({cfg!r}, {attacks!r})\nprint({contract.score_line(score)!r})\n"
    return head + ATTACKS_TEXT + call


class HostileBrain(ScriptedBrain):
    """Candidates that attack (plus one honest one, so the run has something to submit); the final
    script attacks too, in final mode, before it hands in the sample submission."""

    def __init__(self, cfg: dict) -> None:
        super().__init__(candidate_scores=(0.5,) * len(CANDIDATES) + (0.9,))
        self.cfg = cfg

    def retrieve_models(self, ctx: BrainContext, summary: str, results: list, n: int) -> list[ModelCard]:
        return [ModelCard(name=f"m{i}") for i in range(len(CANDIDATES) + 1)]

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        index = int(card.name[1:])
        if index == len(CANDIDATES):
            return scripted(0.9, "honest")
        attacks, _ = CANDIDATES[index]
        return Script(code=_code(f"hostile-{'+'.join(attacks)}", 0.5, self.cfg, attacks), label=card.name)

    def write_submission(self, ctx: BrainContext, script: Script) -> Script:
        return Script(code=_code("final hostile", 0.9, self.cfg, FINAL_ATTACKS), label="final hostile")


@dataclass
class Targets:
    """What the attacks aim at, and the secrets they must not get."""

    competition: Path
    runs_dir: Path
    run_id: str
    mark: str = field(default_factory=lambda: f"pwned-{uuid.uuid4().hex[:12]}")
    process_marker: str = field(default_factory=lambda: f"mlestar-hostile-{uuid.uuid4().hex[:12]}")
    canary: str = field(default_factory=lambda: f"canary-{uuid.uuid4().hex}")
    secrets: dict[str, str] = field(
        default_factory=lambda: {
            "OPENAI_API_KEY": f"sk-hostile-{uuid.uuid4().hex}",
            "MLESTAR_TOKEN": f"tok-{uuid.uuid4().hex}",
            "DATABASE_PASSWORD": f"pw-{uuid.uuid4().hex}",
        }
    )

    @property
    def run_dir(self) -> Path:
        return self.runs_dir / self.run_id


def prepare(root: Path) -> Targets:
    """A competition with a canary among its private files, and where the run will live."""
    targets = Targets(competition=root / "competition", runs_dir=root / "runs", run_id="hostile")
    make_competition(targets.competition, "binary", n_rows=200)
    (targets.competition / "private" / "canary.txt").write_text(targets.canary)
    return targets


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _attack_config(targets: Targets, tcp_port: int, unix_socket: str) -> dict[str, Any]:
    answers = targets.competition / "private" / "answers.csv"
    return {
        "mark": targets.mark[::-1],
        "process_marker": targets.process_marker,
        "competition": str(targets.competition),
        "answers": str(answers),
        "answers_sha": hashlib.sha256(answers.read_bytes()).hexdigest(),
        "canary_sha": _sha(targets.canary),
        "canary_file": str(targets.competition / "private" / "canary.txt"),
        "run_dir": str(targets.run_dir),
        "outside": str(targets.runs_dir.parent),
        "home": pwd.getpwuid(os.geteuid()).pw_dir,
        "site_packages": sysconfig.get_paths()["purelib"],
        "secret_hashes": [_sha(value) for value in targets.secrets.values()],
        "tcp_port": tcp_port,
        "unix_socket": unix_socket,
    }


class _Listeners:
    """A TCP server on the host's loopback and a Unix socket outside /tmp, both accepting."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(16)
        self.unix_path = f"/var/tmp/mlestar-hostile-{uuid.uuid4().hex[:8]}.sock"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(16)
        self.accepted = 0
        self._threads = [
            threading.Thread(target=self._accept, args=(s,), daemon=True) for s in (self.tcp, self.unix)
        ]
        for thread in self._threads:
            thread.start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        for server in (self.tcp, self.unix):
            server.close()
        Path(self.unix_path).unlink(missing_ok=True)


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 (or the link target, or 'dir') of everything under ``folder``."""
    result = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_symlink():
            result[key] = "-> " + os.readlink(path)
        elif path.is_dir():
            result[key] = "dir"
        else:
            result[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return result


def run_suite(root: Path) -> dict[str, Any]:
    """Prepare, run the pipeline with the hostile brain, and return what the checks need (JSON)."""
    targets = prepare(root)
    before = snapshot(targets.competition)
    listeners = _Listeners()
    os.environ.update(targets.secrets)
    try:
        settings = Settings.load(**{**SUITE_CONFIG, "runs_dir": targets.runs_dir})
        store = create_run(targets.competition, settings, run_id=targets.run_id)
        brain = HostileBrain(_attack_config(targets, listeners.tcp.getsockname()[1], listeners.unix_path))
        with store, LocalExecutor(2) as executor:
            execute(store, brain=brain, executor=executor)
    finally:
        for name in targets.secrets:
            os.environ.pop(name, None)
        listeners.close()
    return {
        "targets": {k: str(v) if isinstance(v, Path) else v for k, v in targets.__dict__.items()},
        "before": before,
        "accepted_connections": listeners.accepted,
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "sandbox": sandbox.isolation_support(True).tool,
    }


@dataclass
class Verdict:
    routes_held: list[str]
    breaches: list[str]
    killed: dict[str, str]  # label -> what it was killed for

    @property
    def contained(self) -> int:
        return len(self.routes_held) + len(self.killed)


def _marked(folder: Path, mark: str, *, contents: bool, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    if not folder.exists():
        return found
    paths = folder.rglob("*") if contents else folder.iterdir()
    for path in paths:
        relative = path.relative_to(folder).as_posix()
        if any(part in relative for part in skip):
            continue
        if mark in path.name:
            found.append(str(path))
        elif contents and path.is_file() and not path.is_symlink() and mark.encode() in path.read_bytes():
            found.append(str(path))
    return found


def check_containment(summary: dict[str, Any]) -> Verdict:
    """Judge a finished suite from outside; raises AssertionError on any breach."""
    t = summary["targets"]
    competition, run_dir, mark = Path(t["competition"]), Path(t["runs_dir"]) / t["run_id"], t["mark"]
    problems: list[str] = []

    # 1. The competition is byte-identical, no file added or removed.
    after = snapshot(competition)
    if after != summary["before"]:
        changed = sorted(set(after.items()) ^ set(summary["before"].items()))
        problems.append(f"the competition folder changed: {changed[:5]}")

    # 2. Nothing with the marker outside the scripts' own folders.
    scripts_dir = run_dir / "scripts"
    # What each script may write (its own working/ and final/), and its output as we captured it.
    own = ("working", "final", "stdout.txt", "stderr.txt")
    skip = tuple(f"scripts/{d.name}/{part}" for d in scripts_dir.iterdir() for part in own)
    places = [
        (run_dir, True),
        (Path(t["runs_dir"]).parent, False),
        (Path("/tmp"), False),
        (Path("/var/tmp"), False),
        (Path(pwd.getpwnam(summary["user"]).pw_dir), False),
        (Path(sysconfig.get_paths()["purelib"]), False),
        (Path(os.__file__).parent, False),
    ]
    for folder, contents in places:
        found = _marked(folder, mark, contents=contents, skip=skip if folder == run_dir else ())
        problems += [f"written outside the script's folder: {path}" for path in found]

    # 3. No secret and no private data in anything a script printed or wrote.
    secrets = [t["canary"], *t["secrets"].values()]
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".sqlite":
            data = path.read_bytes()
            for secret in secrets:
                if secret.encode() in data:
                    problems.append(f"a secret reached {path}")
    if summary["accepted_connections"]:
        problems.append(f"{summary['accepted_connections']} connections reached the host's listeners")

    # 4. No process left behind.
    survivors = [
        p.pid for p in psutil.process_iter(["cmdline"]) if t["process_marker"] in (p.info["cmdline"] or [])
    ]
    if survivors:
        problems.append(f"processes survived the run: {survivors}")

    # 5. The run finished, with a valid submission, and its store is sound.
    store = RunStore(run_dir)
    if store.status != RunStatus.FINISHED:
        problems.append(f"the run did not finish: {store.status}")
    if not (run_dir / contract.SUBMISSION_NAME).is_file():
        problems.append("no submission")
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    if integrity != "ok":
        problems.append(f"store integrity: {integrity}")

    # What each script said about its own attacks, and what the sandbox killed.
    held, breaches, killed = [], [], {}
    for node in store.nodes():
        folder = (run_dir / node.script_path).parent if node.script_path else None
        stdout = (
            (folder / "stdout.txt").read_text(errors="replace")
            if folder and (folder / "stdout.txt").exists()
            else ""
        )
        held += [line[5:] for line in stdout.splitlines() if line.startswith("HELD ")]
        # Judged from outside above: reaching this point means they held.
        held += [line[8:] for line in stdout.splitlines() if line.startswith("OUTSIDE ")]
        breaches += [line[7:] for line in stdout.splitlines() if line.startswith("BREACH ")]
        if node.status == NodeStatus.FAILED and node.error:
            # The whole text: why it was stopped comes first, what it printed last after that.
            killed[node.label] = node.error.strip()
    problems += [f"breach: {route}" for route in breaches]
    for label, reason in expected_kills().items():
        error = killed.get(label, "")
        if not any(sign in error for sign in KILL_SIGNS[reason]):
            problems.append(f"{label} should have been stopped for {reason}: {error or 'it was not'}")
    assert not problems, "\n".join(problems)
    return Verdict(routes_held=held, breaches=breaches, killed=killed)


# How a stopped script's error reads, per limit (a memory bomb may meet RLIMIT_DATA before the watcher).
KILL_SIGNS = {
    "processes": ("processes and threads",),
    "memory": ("memory limit", "MemoryError"),
    "disk": ("writing more to disk", "File too large"),
    "timeout": ("time limit",),
}


def expected_kills() -> dict[str, str]:
    """Candidate label -> the limit it must have been killed for."""
    return {f"m{i}": reason for i, (_, reason) in enumerate(CANDIDATES) if reason}


if __name__ == "__main__":  # the unprivileged run: python hostile.py ROOT, as another user
    print(json.dumps(run_suite(Path(sys.argv[1]))))
