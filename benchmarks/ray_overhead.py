"""What Ray costs and what it buys, on this machine: the local pool against a Ray head with as many
CPUs as the machine has, started here on loopback and stopped at the end.

    python benchmarks/ray_overhead.py [--out .bench/ray] [--scripts 40] [--parts overhead,run,bench]

1. **Per-script overhead**: ``--scripts`` trivial scripts (they print a score and exit) through
   the local pool and through Ray, as many at once as there are cores, in 5 alternated rounds; the
   difference of the median wall times per script slot is what Ray adds to every script (a task,
   its worker, the sandbox on it).
2. **One run**: ``mlestar run examples/churn`` with the expert brain, 2 tracks x 4 candidates
   (M=4, L=2, T=1, K=2, R=1, 2 scripts at once, no time limit: both do the same work), on the local
   pool and with ``--executor ray --ray-address ADDR``: wall time, scripts per minute, the ratio.
3. **Two competitions**: ``mlestar bench`` on penguins and titanic (the suite's), one after the
   other on the local pool (2 scripts at once each) against ``--executor ray`` (both at once, one
   script at a time each): wall time and the throughput ratio.

It prints a table and writes ``ray_overhead.json`` to ``--out``. Every figure is a ratio measured
in the same invocation on the same machine; other load on the machine moves them (say what ran).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from builders import build_competition  # noqa: E402

from mlestar.exec import ExecLimits, LocalExecutor, ScriptJob, prepare_script_dir  # noqa: E402
from mlestar.store import RunStore  # noqa: E402

RUN_CONFIG = {
    "num_models": 4,
    "num_tracks": 2,
    "outer_steps": 1,
    "inner_steps": 2,
    "ensemble_rounds": 1,
    "workers": 2,
    "threads_per_script": 1,
    "script_timeout_s": 600,
    "seed": 0,
}
BENCH_CONFIG = {
    "num_models": 2,
    "num_tracks": 1,
    "outer_steps": 1,
    "inner_steps": 1,
    "ensemble_rounds": 0,
    "threads_per_script": 1,
    "script_timeout_s": 600,
}
BENCH_COMPETITIONS = ("penguins", "titanic")
ROUNDS = 5  # batches of trivial scripts per executor; their medians are compared


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def loopback_cluster(work: Path, cpus: int) -> Iterator[str]:
    """A Ray head on 127.0.0.1 with ``cpus`` CPUs; yields its address; stopped by its own pid."""
    os.environ.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every Ray process on loopback
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    port = _free_port()
    log_path = work / "head.log"
    with open(log_path, "w") as log:
        head = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
                f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats",
                f"--temp-dir={work / 'ray'}", f"--dashboard-agent-listen-port={_free_port()}",
                f"--ray-client-server-port={_free_port()}",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while "block forever" not in log_path.read_text():
                if head.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the Ray head did not start:\n" + log_path.read_text()[-2000:])
                time.sleep(0.5)
            yield f"127.0.0.1:{port}"
        finally:
            head.terminate()
            try:
                head.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)


def trivial_scripts(address: str, work: Path, count: int, slots: int) -> dict[str, float]:
    """Wall time of ``count`` trivial scripts, ``slots`` at once, locally and on Ray."""
    import ray

    from mlestar.exec.ray_pool import RayExecutor

    view = work / "view"
    view.mkdir(parents=True, exist_ok=True)
    code = "print('Final Validation Performance: 1')\n"
    limits = ExecLimits(timeout_s=120, memory_mb=1024, threads=1)

    def batch(executor: object, name: str) -> float:
        folders = [prepare_script_dir(work / name / f"{i:03d}", code, view) for i in range(count)]
        started = time.monotonic()
        futures = [executor.submit(ScriptJob(workdir=folder, limits=limits)) for folder in folders]  # type: ignore[attr-defined]
        assert all(future.result().score == 1 for future in futures)
        return time.monotonic() - started

    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    local_runs, ray_runs = [], []
    try:
        with LocalExecutor(slots) as local, RayExecutor(shared_fs=True) as remote:
            batch(local, "warm-local")
            batch(remote, "warm-ray")  # workers started, the sandbox probed on each
            for round_ in range(ROUNDS):  # alternated, so load from elsewhere hits both alike
                local_runs.append(batch(local, f"local{round_}"))
                ray_runs.append(batch(remote, f"ray{round_}"))
    finally:
        ray.shutdown()
    local_s, ray_s = statistics.median(local_runs), statistics.median(ray_runs)
    return {
        "scripts": count,
        "slots": slots,
        "local_s": round(local_s, 2),
        "ray_s": round(ray_s, 2),
        "local_per_script_s": round(local_s * slots / count, 3),
        "ray_per_script_s": round(ray_s * slots / count, 3),
        "overhead_per_script_s": round((ray_s - local_s) * slots / count, 3),
    }


def one_run(label: str, competition: Path, work: Path, extra: list[str]) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    config = work / "run.yaml"
    config.write_text(yaml.safe_dump(RUN_CONFIG))
    runs = work / "runs"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlestar", "run", str(competition), "--config", str(config),
         "--runs-dir", str(runs), "--run-id", label, *extra],
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    with RunStore(runs / label) as store:
        nodes = store.nodes()
        executors = sorted({str(n.info.get("executor")) for n in nodes})
        busy = sum(n.wall_s or 0.0 for n in nodes)
        best = (store.get_meta("best") or {}).get("score")
    return {
        "wall_s": round(wall, 1),
        "scripts": len(nodes),
        "scripts_per_min": round(60 * len(nodes) / wall, 2),
        "script_s_total": round(busy, 1),
        "best": best,
        "executors": executors,
    }


def two_competitions(label: str, suite: Path, work: Path, config: dict, extra: list[str]) -> dict[str, float]:
    path = work / f"{label}.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "mlestar", "bench", str(suite), "--time-limit", "3600", "--config", str(path),
         "--out", str(work / label), *extra],
        capture_output=True, text=True,
    )  # fmt: skip
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    runs = json.loads((work / label / "bench.json").read_text())["runs"]
    scripts = 0
    for run in runs:
        with RunStore(work / label / "runs" / run["run_id"]) as store:
            scripts += len(store.nodes())
    return {
        "wall_s": round(wall, 1),
        "runs": len(runs),
        "valid": sum(bool(r["valid"]) for r in runs),
        "scripts": scripts,
        "scores": {r["competition"]: r["score"] for r in runs},
    }


PARTS = ("overhead", "run", "bench")


def measure(parts: list[str], work: Path, scripts: int, cores: int) -> dict[str, object]:
    report: dict[str, object] = {"cores": cores, "measured_at": time.strftime("%Y-%m-%d %H:%M")}
    churn = ROOT / "examples" / "churn"
    with loopback_cluster(work, cores) as address:
        on_ray = ["--executor", "ray", "--ray-address", address]
        if "overhead" in parts:
            report["overhead"] = trivial_scripts(address, work / "trivial", scripts, cores)
            print("per-script overhead:", report["overhead"], flush=True)
        if "run" in parts:
            local = one_run("local", churn, work / "run-local", [])
            remote = one_run("ray", churn, work / "run-ray", on_ray)
            share = remote["scripts_per_min"] / local["scripts_per_min"]  # Ray's share of the pool's
            report["run"] = {"local": local, "ray": remote, "throughput_ratio": round(share, 3)}
            print("one run:", report["run"], flush=True)
        if "bench" in parts:
            suite = work / "suite"
            for name in BENCH_COMPETITIONS:
                build_competition(name, suite / name)
            after = two_competitions("one-after-the-other", suite, work, {**BENCH_CONFIG, "workers": 2}, [])
            together = two_competitions("ray-together", suite, work, {**BENCH_CONFIG, "workers": 1}, on_ray)
            report["bench"] = {
                "one_after_the_other": after,
                "ray_together": together,
                "throughput_ratio": round(after["wall_s"] / together["wall_s"], 3),
            }
            print("two competitions:", report["bench"], flush=True)
    return report


def print_table(report: dict[str, object], cores: int) -> None:
    print(f"\n| measure | local pool | Ray ({cores} CPUs, loopback head) | ratio |")
    print("|---|---:|---:|---:|")
    if "overhead" in report:
        overhead = report["overhead"]
        trivial = f"{overhead['scripts']} trivial scripts, {cores} at once"
        extra = f"+{overhead['overhead_per_script_s']} s/script"
        print(f"| {trivial} | {overhead['local_s']} s | {overhead['ray_s']} s | {extra} |")
    if "run" in report:
        run = report["run"]
        local, remote = run["local"], run["ray"]
        print(
            f"| one run (churn, M=4 L=2 T=1 K=2 R=1), {local['scripts']} / {remote['scripts']} scripts "
            f"| {local['wall_s']} s, {local['scripts_per_min']}/min "
            f"| {remote['wall_s']} s, {remote['scripts_per_min']}/min | {run['throughput_ratio']} |"
        )
    if "bench" in report:
        bench = report["bench"]
        after, together = bench["one_after_the_other"], bench["ray_together"]
        print(
            f"| two competitions ({', '.join(BENCH_COMPETITIONS)}) | {after['wall_s']} s one after the other "
            f"| {together['wall_s']} s side by side | {bench['throughput_ratio']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "ray")
    parser.add_argument("--scripts", type=int, default=40, help="trivial scripts for the overhead")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"what to measure, of {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--parts takes {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="mlray-bench-", dir="/tmp"))  # short: Ray's socket paths
    try:
        report = measure(parts, work, args.scripts, cores)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (args.out / "ray_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report, cores)
    print(f"\nwritten to {args.out / 'ray_overhead.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
