"""A scripted brain and a scripted executor: the real pipeline, engine and store, with scripts that
say what they score instead of training anything, so a whole run takes well under a second.

A scripted script is one JSON comment line, ``# scripted: {"score": 0.8, ...}``, plus a few lines
of real Python doing what the JSON says (print the score line and any ablation lines, fail, copy the
sample submission in final runs), so the real executors can run it too, in a fraction of a second.
``ScriptedExecutor`` reads the JSON instead of starting Python at all and counts every run.

``FakeClock`` stands in for the budget's clock: the executor advances it by each script's declared
``wall`` seconds, so the time-budget logic can be tested on runs that take milliseconds.
"""

from __future__ import annotations

import json
import shutil
import threading
import zlib
from collections import Counter
from concurrent.futures import Future
from typing import Any

from mlestar.brain.protocol import (
    AblationSummary,
    BlockPlan,
    BrainContext,
    DataUsageReport,
    EnsembleAttempt,
    LeakageReport,
    ModelCard,
    PlanAttempt,
    RefinementPlan,
    ScoredScript,
    Script,
)
from mlestar.core import contract
from mlestar.core.records import SearchResult
from mlestar.exec.models import ExecResult, ScriptJob

PREFIX = "# scripted: "


# Fold-0 predictions a script saves: the true target, its opposite, or a constant (tiny binary tasks).
PREDICTIONS = {"truth": "y", "inverted": "1 - y", "constant": "y * 0 + 0.5"}
_SAVE_PREDICTIONS = """import pandas as pd
folds = pd.read_csv({folds!r})
rows = folds.loc[(folds["fold"] == 0) & (folds["dev"] == 1), "row"].to_numpy()
y = pd.read_csv({train!r})["target"].to_numpy()[rows]
pd.DataFrame({{"row": rows, "target": {pred}}}).to_csv({out!r}, index=False)
"""


def save_predictions(how: str, folder: str = "") -> str:
    """Python source saving fold-0 predictions ``how`` (paths relative to ``folder``, else the script's)."""
    return _SAVE_PREDICTIONS.format(
        folds=f"{folder}{contract.INPUT_DIR}/{contract.FOLDS_NAME}",
        train=f"{folder}{contract.INPUT_DIR}/train.csv",
        pred=PREDICTIONS[how],
        out=f"{folder}{contract.FINAL_DIR}/{contract.VAL_PREDICTIONS_NAME}",
    )


def scripted(score: float | None, label: str, **behaviour: Any) -> Script:
    """A script that scores ``score`` (None: prints no score), with extra ``behaviour``: ``fail`` (an
    error message), ``ablation`` (``{component: score}`` result lines), ``predictions`` (saves fold-0
    predictions, one of ``PREDICTIONS``, whatever score it prints), ``times_out`` (the scripted
    executor reports it killed at its time limit)."""
    spec = {"score": score, "label": label, **behaviour}
    lines = [
        f"{PREFIX}{json.dumps(spec, sort_keys=True)}",
        "import os, shutil",
        f"print({label!r}, os.environ.get({contract.SEED_ENV!r}))",
    ]
    if spec.get("fail"):
        lines.append(f"raise RuntimeError({spec['fail']!r})")
    if spec.get("predictions"):
        lines.append(save_predictions(spec["predictions"]).rstrip("\n"))
    for name, value in (spec.get("ablation") or {}).items():
        lines.append(f"print('ABLATION {name}: {value}')")
    sample = f"{contract.INPUT_DIR}/sample_submission.csv"
    final = f"{contract.FINAL_DIR}/{contract.SUBMISSION_NAME}"
    lines.append(f"if os.path.exists({sample!r}):\n    shutil.copyfile({sample!r}, {final!r})")
    if score is not None:
        lines.append(f"print({contract.score_line(score)!r})")
    return Script(code="\n".join(lines) + "\n", label=label)


def spec_of(code: str) -> dict[str, Any]:
    line = next(line for line in code.splitlines() if line.startswith(PREFIX))
    return json.loads(line[len(PREFIX) :])


def score_of(script: Script | ScoredScript) -> float:
    code = script.script.code if isinstance(script, ScoredScript) else script.code
    return float(spec_of(code)["score"])


class FakeClock:
    """A monotonic clock that only moves when told to (the scripted executor moves it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class ScriptedExecutor:
    """An Executor that interprets scripted scripts at once and remembers every run.

    With a ``clock``, every script takes ``wall_s`` seconds on it (``final_wall_s`` for final runs;
    ``walls`` maps a label prefix to the development run's seconds of the scripts it names, whose
    final runs take ``final_wall_s / wall_s`` times as long); with ``seed_noise``, a run with the
    evaluation seed set scores up to that much off its score."""

    name = "scripted"

    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        wall_s: float = 0.01,
        final_wall_s: float | None = None,
        seed_noise: float = 0.0,
        walls: dict[str, float] | None = None,
    ) -> None:
        self.runs: Counter[str] = Counter()  # label -> how often it ran (without an evaluation seed)
        self.seeded: Counter[str] = Counter()  # label -> how often it ran with an evaluation seed
        self.jobs: list[ScriptJob] = []
        self.clock = clock
        self.wall_s = wall_s
        self.final_wall_s = final_wall_s if final_wall_s is not None else wall_s
        self.seed_noise = seed_noise
        self.walls = walls or {}
        self._lock = threading.Lock()

    def submit(self, job: ScriptJob) -> Future[ExecResult]:
        spec = spec_of((job.workdir / contract.SCRIPT_NAME).read_text())
        with self._lock:
            (self.seeded if contract.SEED_ENV in job.extra_env else self.runs)[spec["label"]] += 1
            self.jobs.append(job)
        final = (job.workdir / contract.INPUT_DIR / "sample_submission.csv").exists()
        wall = self.final_wall_s if final else self.wall_s
        label = spec["label"].removeprefix("final ")
        own = next((w for prefix, w in self.walls.items() if label.startswith(prefix)), None)
        if own is not None:
            wall = own * (self.final_wall_s / self.wall_s if final else 1.0)
        if self.clock is not None:
            self.clock.advance(wall)
        future: Future[ExecResult] = Future()
        future.set_result(self._run(job, spec, wall))
        return future

    def _run(self, job: ScriptJob, spec: dict[str, Any], wall: float) -> ExecResult:
        if spec.get("times_out"):
            return ExecResult(returncode=-9, wall_s=wall, timed_out=True, executor="scripted")
        if spec.get("fail"):
            return ExecResult(
                returncode=1,
                stderr=f"Traceback (most recent call last):\n{spec['fail']}\n",
                wall_s=wall,
                executor="scripted",
            )
        if spec.get("predictions"):
            exec(save_predictions(spec["predictions"], f"{job.workdir}/"), {})  # noqa: S102 - our own code
        sample = job.workdir / contract.INPUT_DIR / "sample_submission.csv"
        if sample.exists():  # a final run sees the sample submission: hand in a copy of it
            shutil.copyfile(sample, job.workdir / contract.FINAL_DIR / contract.SUBMISSION_NAME)
        score = spec.get("score")
        seed = job.extra_env.get(contract.SEED_ENV)
        if score is not None and seed is not None and self.seed_noise:
            # A deterministic wobble in [-noise, noise] per (script, seed).
            unit = zlib.crc32(f"{spec['label']}/{seed}".encode()) / 0xFFFFFFFF
            score = round(score + self.seed_noise * (2 * unit - 1), 6)
        stdout = f"{contract.score_line(score)}\n" if score is not None else "done\n"
        for name, value in (spec.get("ablation") or {}).items():
            stdout += f"ABLATION {name}: {value}\n"
        (job.workdir / "stdout.txt").write_text(stdout)
        return ExecResult(returncode=0, stdout=stdout, score=score, wall_s=wall, executor="scripted")

    def cancel_all(self) -> int:
        return 0

    def shutdown(self, wait: bool = True) -> None:
        pass


class ScriptedBrain:
    """Every role of the Brain protocol, answering with scripted scripts (higher scores are better
    unless the task's metric says otherwise; the defaults below assume higher is better).

    Candidates score ``candidate_scores``; a merge scores the base plus ``merge_gain``; refinement
    plans add ``refine_gains`` one after the other; an ensemble scores the best member plus
    ``ensemble_gain``. ``leaky`` labels are reported by the leakage check, their fix scores
    ``leak_fix_score``; ``usage_score`` (when set) is what the data-usage revision scores.
    """

    name = "scripted"

    def __init__(
        self,
        *,
        candidate_scores: tuple[float, ...] = (0.70, 0.75, 0.72, 0.60),
        merge_gain: float = 0.01,
        refine_gains: tuple[float, ...] = (0.02, -0.01, 0.005, 0.0),
        ensemble_gain: float = 0.003,
        leaky: tuple[str, ...] = (),
        leak_fix_score: float | None = None,
        usage_score: float | None = None,
        failing: tuple[str, ...] = (),
    ) -> None:
        self.candidate_scores = candidate_scores
        self.merge_gain = merge_gain
        self.refine_gains = refine_gains
        self.ensemble_gain = ensemble_gain
        self.leaky = leaky
        self.leak_fix_score = leak_fix_score
        self.usage_score = usage_score
        self.failing = failing  # labels whose first version fails (the debugger fixes them)
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _called(self, role: str) -> None:
        with self._lock:
            self.calls[role] += 1

    # phase 1
    def summarize_task(self, ctx: BrainContext) -> str:
        self._called("summarize_task")
        return f"{ctx.task.task_type.value} task scored by {ctx.task.metric}"

    def search_queries(self, ctx: BrainContext, summary: str) -> list[str]:
        self._called("search_queries")
        return [summary]

    def retrieve_models(
        self, ctx: BrainContext, summary: str, results: list[SearchResult], n: int
    ) -> list[ModelCard]:
        self._called("retrieve_models")
        return [ModelCard(name=f"m{i}") for i in range(min(n, len(self.candidate_scores)))]

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        self._called("write_candidate")
        index = int(card.name[1:])
        fail = "RuntimeError: first draft broken" if card.name in self.failing else None
        return scripted(self.candidate_scores[index], card.name, fail=fail)

    def merge(self, ctx: BrainContext, base: ScoredScript, addition: ScoredScript) -> Script:
        self._called("merge")
        label = f"{base.script.label}+{addition.script.label}@t{ctx.track}"
        return scripted(round(score_of(base) + self.merge_gain, 6), label)

    def check_leakage(self, ctx: BrainContext, script: Script) -> LeakageReport:
        self._called("check_leakage")
        if any(name in script.label for name in self.leaky) and "fixed" not in script.label:
            return LeakageReport(
                leak=True, block=script.code.splitlines()[0], reason="target used as a feature"
            )
        return LeakageReport(leak=False, reason="clean")

    def fix_leakage(self, ctx: BrainContext, script: Script, report: LeakageReport) -> Script:
        self._called("fix_leakage")
        score = self.leak_fix_score if self.leak_fix_score is not None else score_of(script)
        return scripted(score, f"{script.label} fixed")

    def check_data_usage(self, ctx: BrainContext, script: Script) -> DataUsageReport:
        self._called("check_data_usage")
        if self.usage_score is None:
            return DataUsageReport(all_used=True, reason="all used")
        return DataUsageReport(
            all_used=False,
            script=scripted(self.usage_score, f"{script.label} all-data"),
            reason="joined the unused table",
        )

    # phase 2
    def write_ablation(
        self, ctx: BrainContext, script: ScoredScript, previous: list[AblationSummary]
    ) -> Script:
        self._called("write_ablation")
        base = score_of(script)
        return scripted(
            base,
            f"ablation of {script.script.label} #{len(previous)}",
            ablation={"model": round(base - 0.05, 6), "features": round(base - 0.01, 6)},
        )

    def summarize_ablation(self, ctx: BrainContext, ablation: Script, output: str) -> AblationSummary:
        self._called("summarize_ablation")
        values = contract.ablation_results(output)
        baseline = contract.parse_score(output)
        effects = {name: round(value - (baseline or 0.0), 6) for name, value in values.items()}
        return AblationSummary(
            text=f"ablation output: {output.strip()[:200]}", effects=effects, baseline_score=baseline
        )

    def extract_block(
        self, ctx: BrainContext, script: ScoredScript, summary: AblationSummary, refined_blocks: list[str]
    ) -> BlockPlan:
        self._called("extract_block")
        block = script.script.code.splitlines()[0]
        return BlockPlan(block=block, name="model", plan=RefinementPlan(text="plan 0", data={"n": 0}))

    def implement_plan(self, ctx: BrainContext, script: Script, block: str, plan: RefinementPlan) -> Script:
        self._called("implement_plan")
        n = int(plan.data["n"])
        return scripted(
            round(score_of(script) + self.refine_gains[n % len(self.refine_gains)], 6), f"{script.label} r{n}"
        )

    def plan_refinement(
        self, ctx: BrainContext, script: Script, block: str, history: list[PlanAttempt]
    ) -> RefinementPlan | None:
        self._called("plan_refinement")
        n = len(history)
        return RefinementPlan(text=f"plan {n}", data={"n": n}) if n < len(self.refine_gains) else None

    # phase 3
    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], history: list[EnsembleAttempt]
    ) -> RefinementPlan | None:
        self._called("plan_ensemble")
        return RefinementPlan(text=f"ensemble {len(history)}", data={"round": len(history)})

    def implement_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], plan: RefinementPlan
    ) -> Script:
        self._called("implement_ensemble")
        best = max(score_of(s) for s in solutions)
        return scripted(round(best + self.ensemble_gain, 6), f"ensemble {plan.data['round']}")

    # any phase
    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None:
        self._called("debug")
        spec = spec_of(script.code)
        if not spec.get("fail"):
            return None
        return scripted(spec["score"], f"{spec['label']} debugged")

    # phase 4
    def write_submission(self, ctx: BrainContext, script: Script) -> Script:
        self._called("write_submission")
        return scripted(score_of(script), f"final {script.label}")
