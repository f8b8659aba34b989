"""kill -9 at random moments of a run, each followed by ``mlestar resume``: does every run finish,
with no finished script run twice, a valid submission and a sound store?

    python benchmarks/kill9.py --kills 20 --out .bench/kill9          # the expert brain on penguins
    python benchmarks/kill9.py --kills 4 --seed 3 --competition PATH

Each trial starts a fresh run (``mlestar run COMPETITION --run-id kN``), waits for its moment,
SIGKILLs the mlestar process alone (its sandboxed scripts must die with it), then runs
``mlestar resume kN`` until the run has finished. The moments cycle through: each of the four
phases (a random delay after the phase started), the final submission (while its script runs
or the submission is being written) and a write of the store (the instant its write-ahead log
grows), so 20 kills cover every kind several times.

Checked after every trial: the run finished; no script finished before a kill was started again
after it (from the store's own events); no process of the run outlived the kill; the submission
is valid against the sample submission; ``PRAGMA integrity_check`` is ``ok``. Printed: one line
per trial and the totals; OUT/results.json holds the same.

``tests/test_kill9.py`` runs a few kills of the same machinery with a scripted brain.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import psutil

HERE = Path(__file__).resolve().parent
MOMENTS = ("phase1", "phase2", "phase3", "phase4", "submission", "store-write")
TINY_RUN = {
    "num_models": 2,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 1,
    "debug_retries": 1,
    "script_timeout_s": 300,
    "workers": 2,
    "threads_per_script": 1,
}

Command = Callable[[str], list[str]]  # run id -> the command line that runs (or resumes) it


@dataclass
class Trial:
    run_id: str
    moment: str
    killed: bool = False
    killed_at_s: float = 0.0
    killed_in: str = ""  # the phase the run was in when it died
    resumes: int = 0
    finished: bool = False
    reruns: list[int] = field(default_factory=list)  # node ids started again after they had finished
    survivors: int = 0
    submission_valid: bool = False
    integrity: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            self.killed
            and self.finished
            and not self.reruns
            and not self.survivors
            and self.submission_valid
            and self.integrity == "ok"
        )


def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def _events(db: Path, after: int = 0) -> list[tuple[int, str, str | None, int | None, str]]:
    """(seq, type, phase, node_id, data) of the events recorded after ``after``."""
    try:
        with _read_only(db) as conn:
            return conn.execute(
                "SELECT seq, type, phase, node_id, data FROM events WHERE seq > ? ORDER BY seq", (after,)
            ).fetchall()
    except sqlite3.Error:
        return []


def _wait_for_moment(proc: subprocess.Popen, db: Path, moment: str, rng: random.Random) -> bool:
    """Block until ``moment`` of the run has come; False when the run ended first."""
    seen, phase_at, wal = 0, None, Path(f"{db}-wal")
    last_write = None
    delay = rng.uniform(0.0, 2.0)
    while proc.poll() is None:
        if moment == "store-write":
            written = wal.stat().st_mtime_ns if wal.exists() else None
            if last_write is not None and written != last_write and rng.random() < 0.1:
                return True  # the log was just written: SQLite is in the middle of a transaction
            last_write = written
            time.sleep(0.001)
            continue
        for seq, kind, phase, _node, data in _events(db, seen) if db.exists() else []:
            seen = seq
            if moment.startswith("phase") and kind == "phase_started" and phase == moment:
                phase_at = time.monotonic()
            elif phase_at is not None and moment.startswith("phase") and phase == moment and rng.random() < 0.3:
                return True  # at one of the phase's own events: a short phase ends before the delay
            if moment == "submission" and kind == "script_started" and '"final": true' in data:
                phase_at = time.monotonic()
                delay = rng.uniform(0.0, 1.5)
        if phase_at is not None and time.monotonic() - phase_at >= delay:
            return True
        time.sleep(0.02)
    return False


def _run_processes(run_dir: Path) -> list[int]:
    """Processes working inside the run's folder (its scripts), other than zombies."""
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info.get("cwd") or ""
        if cwd.startswith(str(run_dir)) and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def _reruns(db: Path) -> list[int]:
    """Nodes whose script was started again after it had finished."""
    finished: set[int] = set()
    again = []
    for _seq, kind, _phase, node, _data in _events(db):
        if node is None:
            continue
        if kind == "script_finished":
            finished.add(node)
        elif kind == "script_started" and node in finished:
            again.append(node)
    return again


def _phase_now(db: Path) -> str:
    phases = [phase for _s, kind, phase, _n, _d in _events(db) if kind == "phase_started"]
    return phases[-1] if phases else "setup"


def _submission_valid(run_dir: Path, competition: Path) -> bool:
    from mlestar.errors import InvalidSubmission
    from mlestar.grading import validate_submission
    from mlestar.metrics import get_metric
    from mlestar.task import load_task

    submission = run_dir / "submission.csv"
    if not submission.is_file():
        return False
    task = load_task(competition)
    if task.sample_submission_file is None:
        return True
    sample = pd.read_csv(task.data_path(task.sample_submission_file))
    try:
        validate_submission(
            pd.read_csv(submission), sample, id_column=task.id_column, metric=get_metric(task.metric)
        )
    except InvalidSubmission:
        return False
    return True


def run_trial(
    run: Command,
    resume: Command,
    runs_dir: Path,
    competition: Path,
    run_id: str,
    moment: str,
    rng: random.Random,
    *,
    max_resumes: int = 5,
    timeout_s: float = 1800,
) -> Trial:
    trial = Trial(run_id=run_id, moment=moment)
    run_dir = runs_dir / run_id
    db = run_dir / "run.sqlite"
    started = time.monotonic()
    proc = subprocess.Popen(run(run_id), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if _wait_for_moment(proc, db, moment, rng):
            os.kill(proc.pid, signal.SIGKILL)
            trial.killed = True
            trial.killed_at_s = round(time.monotonic() - started, 2)
    finally:
        proc.wait(timeout=60)
    if not trial.killed:
        trial.error = f"the run ended before its moment ({moment}): {(proc.stderr.read() or '')[-300:]}"
        return trial
    trial.killed_in = _phase_now(db)
    deadline = time.monotonic() + 10
    while _run_processes(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    trial.survivors = len(_run_processes(run_dir))
    for _ in range(max_resumes):
        trial.resumes += 1
        done = subprocess.run(resume(run_id), capture_output=True, text=True, timeout=timeout_s)
        if done.returncode == 0:
            break
        trial.error = done.stderr.strip()[-300:]
    from mlestar.store import RunStatus, RunStore

    with RunStore(run_dir) as store:
        trial.finished = store.status == RunStatus.FINISHED
    trial.reruns = _reruns(db)
    trial.submission_valid = _submission_valid(run_dir, competition)
    with sqlite3.connect(db) as conn:
        trial.integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if trial.ok:
        trial.error = ""
    return trial


def run_trials(
    run: Command,
    resume: Command,
    runs_dir: Path,
    competition: Path,
    kills: int,
    seed: int,
    moments: Sequence[str] = MOMENTS,
    report: Callable[[Trial], None] = lambda trial: None,
) -> list[Trial]:
    rng = random.Random(seed)
    trials = []
    for index in range(kills):
        trial = run_trial(
            run, resume, runs_dir, competition, f"k{index:02d}", moments[index % len(moments)], rng
        )
        trials.append(trial)
        report(trial)
    return trials


def totals(trials: list[Trial]) -> dict[str, object]:
    return {
        "kills": len(trials),
        "resumed_and_finished": sum(t.killed and t.finished for t in trials),
        "reruns": sum(len(t.reruns) for t in trials),
        "survivors": sum(t.survivors for t in trials),
        "valid_submissions": sum(t.submission_valid for t in trials),
        "integrity_ok": sum(t.integrity == "ok" for t in trials),
        "killed_in": sorted({t.killed_in for t in trials}),
    }


def _line(trial: Trial) -> str:
    verdict = "ok  " if trial.ok else "FAIL"
    return (
        f"{verdict} {trial.run_id} moment={trial.moment:<11} killed at {trial.killed_at_s:6.1f}s in "
        f"{trial.killed_in:<7} resumes={trial.resumes} reruns={len(trial.reruns)} "
        f"survivors={trial.survivors} submission={'valid' if trial.submission_valid else 'INVALID'} "
        f"integrity={trial.integrity} {trial.error}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--competition", type=Path, help="a competition folder (default: penguins, built)")
    parser.add_argument("--out", type=Path, default=Path(".bench/kill9"))
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    competition = args.competition
    if competition is None:
        sys.path.insert(0, str(HERE))
        from builders import build_competition

        competition = build_competition("penguins", args.out / "penguins")
    config = args.out / "tiny.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in TINY_RUN.items()))
    runs_dir = Path(tempfile.mkdtemp(prefix="runs-", dir=args.out))
    mlestar = str(Path(sys.executable).with_name("mlestar"))

    def run(run_id: str) -> list[str]:
        return [mlestar, "run", str(competition), "--config", str(config), "--runs-dir", str(runs_dir),
                "--run-id", run_id]  # fmt: skip

    def resume(run_id: str) -> list[str]:
        return [mlestar, "resume", run_id, "--runs-dir", str(runs_dir)]

    started = time.monotonic()
    trials = run_trials(run, resume, runs_dir, competition, args.kills, args.seed,
                        report=lambda trial: print(_line(trial), flush=True))  # fmt: skip
    summary = {**totals(trials), "wall_s": round(time.monotonic() - started, 1), "seed": args.seed,
               "cpus": os.cpu_count(), "load_average": os.getloadavg()}  # fmt: skip
    print(
        f"kill -9: {summary['resumed_and_finished']}/{len(trials)} resumed and finished, "
        f"{summary['reruns']} reruns of finished scripts, {summary['survivors']} surviving processes, "
        f"{summary['valid_submissions']}/{len(trials)} valid submissions, "
        f"integrity_check ok {summary['integrity_ok']}/{len(trials)}; killed in {summary['killed_in']}; "
        f"{summary['wall_s']} s"
    )
    (args.out / "results.json").write_text(
        json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}, indent=2)
    )
    return 0 if all(t.ok for t in trials) else 1


if __name__ == "__main__":
    raise SystemExit(main())
