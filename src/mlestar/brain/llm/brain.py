"""LLMBrain: every agent role of MLE-STAR written by an LLM, with parsers that check each answer.

An unusable answer (no code, prose, a syntax error, a broken contract, a block that is not in the
script, bad JSON) is sent back to the model with what was wrong, at most ``max_reasks`` times.
After that the brain degrades instead of crashing: it returns the best script it has (the executor
and the debugger then see a real failure), or falls back to safe answers (no leak found, all data
used, knowledge-base model cards).

The brain keeps no state between calls apart from its client, so tracks can call it from several
threads at once. ``ctx.seed`` is part of every request's cache key: tracks that should get
different answers to the same question need different seeds.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mlestar.brain.llm.fitting import fit_messages
from mlestar.brain.llm.knowledge import knowledge_base_cards
from mlestar.brain.llm.parsing import (
    ParseFailure,
    contract_issues,
    extract_code,
    fenced_blocks,
    fit_indentation,
    fuzzy_locate,
    locate_block,
    parse_json,
    parse_python,
    syntax_error,
    truthy,
)
from mlestar.brain.llm.prompts import PromptRenderer
from mlestar.brain.llm.trimming import clip, trim_description, trim_output
from mlestar.brain.protocol import (
    AblationSummary,
    BlockNotFound,
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
    replace_block,
)
from mlestar.core.contract import FOLDS_NAME, SCORE_LABEL, VAL_PREDICTIONS_NAME
from mlestar.core.events import EventBus
from mlestar.core.records import LLMLedger, SearchResult
from mlestar.core.task import FileRole, Task, TaskType
from mlestar.llm.client import LLMClient
from mlestar.llm.errors import ContextTooLong
from mlestar.llm.providers import Message
from mlestar.llm.tokens import count_messages
from mlestar.metrics import get_metric
from mlestar.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

_DESCRIPTION_LIMIT = 6000
DEEP_PACKAGES = ("torch", "torchvision", "timm")  # named in media prompts: which of them scripts may import
_DATA_REPORT_LIMIT = 8000
_OUTPUT_LIMIT = 6000
_ERROR_LIMIT = 4000
NO_NEW_PLAN = "NO_NEW_PLAN"
ALL_USED = "ALL_USED"
FIT_ATTEMPTS = 3  # prompts sent again, shorter, after the server said one did not fit

# Most tokens a role's answer needs (code-writing roles get ``llm_max_tokens``); the setting
# ``llm_agent_max_tokens`` overrides any of them. Reasoning models get their thinking on top.
ROLE_MAX_TOKENS = {
    "summarizer": 1024,
    "planner": 1024,
    "ensemble_planner": 1024,
    "leakage_checker": 2048,
    "ablation_summarizer": 2048,
    "extractor": 4096,
    "retriever": 6144,
}


def prediction_columns(task: Task) -> str:
    """What follows ``row`` in val_predictions.csv: the columns the metric scores, in words."""
    metric = get_metric(task.metric)
    targets = task.target_columns
    named = ", ".join(f"`{c}`" for c in targets[:10]) + (" ..." if len(targets) > 10 else "")
    if task.task_type == TaskType.MULTICLASS and metric.needs_proba:
        classes = ", ".join(f"`{c}`" for c in task.classes[:12]) + (" ..." if len(task.classes) > 12 else "")
        return f"one probability column per class, named by the class label ({classes})"
    if task.task_type == TaskType.BINARY and metric.needs_proba:
        positive = task.classes[-1] if task.classes else "1"
        return f"a column `{targets[0]}` holding the predicted probability of the class `{positive}`"
    if task.task_type == TaskType.MULTILABEL:
        kind = "probability" if metric.needs_proba else "0/1 label"
        return f"one column per label ({named}) holding its predicted {kind}"
    if task.task_type == TaskType.REGRESSION:
        return f"the column{'s' if len(targets) > 1 else ''} {named} holding the predicted values"
    return f"a column `{targets[0]}` holding the predicted label"


def _fmt_score(score: float | None) -> str:
    return "failed / not measured" if score is None else f"{score:.6g}"


class LLMBrain:
    """The Brain protocol over ``LLMClient``. Build with ``LLMBrain.from_settings(settings, store)``."""

    def __init__(self, client: LLMClient, *, max_reasks: int | None = None) -> None:
        self.client = client
        self.max_reasks = client.settings.llm_max_reasks if max_reasks is None else max_reasks
        self.prompts = PromptRenderer()
        self.name = client.settings.brain_name

    @classmethod
    def from_settings(
        cls, settings: Settings, ledger: LLMLedger | None = None, bus: EventBus | None = None
    ) -> LLMBrain:
        client = LLMClient(settings, ledger, bus)
        client.preflight()  # a missing key or base URL fails now, not in the middle of phase 1
        return cls(client)

    # -- plumbing ------------------------------------------------------------------------------
    def _vars(self, ctx: BrainContext, mode: str = "dev", **extra: Any) -> dict[str, Any]:
        task = ctx.task
        other_roles = (FileRole.AUXILIARY, FileRole.IMAGE_DIR, FileRole.MEDIA_DIR)
        # folders of test files are hidden from development scripts: not theirs to read
        unseen = set(task.media.test_dirs) if task.media is not None and mode == "dev" else set()
        aux = [f.path for f in task.files if f.role in other_roles and f.path not in unseen]
        values: dict[str, Any] = {
            "mode": mode,
            # what the contract's last rule asks for; block and review prompts override it
            "answer": "script",
            "task_summary": task.summary(),
            "description": trim_description(task.description, _DESCRIPTION_LIMIT),
            "data_report": clip(ctx.data_report.strip(), _DATA_REPORT_LIMIT),
            "train_file": task.train_file,
            "aux_files": aux,
            "test_file": task.test_file or "",
            "sample_submission_file": task.sample_submission_file or "",
            "submission_columns": task.submission_columns,
            "submission_kind": task.submission_kind,
            "metric": task.metric,
            "direction": "lower" if task.lower_is_better else "higher",
            "n_dev_rows": ctx.n_dev_rows,
            "n_train_rows": task.n_train_rows,
            "n_folds": ctx.n_folds,
            "dev_max_rows": ctx.dev_max_rows,
            "timeout_s": int(ctx.script_timeout_s),
            "threads": ctx.threads,
            "gpu": ctx.gpu,
            "hardware": ctx.hardware or f"{ctx.threads} CPU thread(s) per script",
            "packages": ctx.available_packages,
            "metric_code": get_metric(task.metric).code,
            "prediction_columns": prediction_columns(task),
            # how long the scripts in the prompt ran; a role that shows one sets its own
            "code_wall_s": None,
            "base_wall_s": None,
            "addition_wall_s": None,
            "media_kind": task.media.kind if task.media is not None else "",
            "deep_packages": [p for p in DEEP_PACKAGES if p in ctx.available_packages],
        }
        values.update(extra)
        return values

    def _ask(
        self,
        ctx: BrainContext,
        role: str,
        variables: dict[str, Any],
        extra: list[Message] | None = None,
        *,
        use_reserve: bool = False,
    ) -> str:
        """One answer to the role's prompt (and the conversation so far), fitted to the model's window.

        When the server still finds it too long, the prompt is shortened and sent again."""
        extra = extra or []
        answer_tokens = ROLE_MAX_TOKENS.get(role)
        budget = self.client.prompt_budget(role, answer_tokens)
        failure: ContextTooLong | None = None
        for _ in range(FIT_ATTEMPTS):
            messages, variables = fit_messages(
                lambda v: self.prompts.render(role, v), variables, extra, budget
            )
            try:
                return self.client.complete(
                    messages,
                    agent=role,
                    max_tokens=answer_tokens,
                    salt=f"seed={ctx.seed}",
                    use_reserve=use_reserve,
                ).text
            except ContextTooLong as exc:
                failure = exc
                sent = count_messages(messages)
                # The client now knows the window (the server said it); the server may count
                # tokens differently from us, so its count of this prompt scales the budget.
                ratio = min(1.0, sent / exc.prompt_tokens) if exc.prompt_tokens else 1.0
                known = self.client.prompt_budget(role, answer_tokens)
                target = int(known * ratio) if known is not None else int(sent * 0.8)
                if budget is not None and target >= budget:
                    target = int(budget * 0.8)  # the last fit was not enough: cut deeper
                budget = target
                log.warning(
                    "%s: a prompt of about %d tokens did not fit; fitting it to %d", role, sent, budget
                )
        assert failure is not None
        raise failure

    def _converse(
        self, ctx: BrainContext, role: str, variables: dict[str, Any], parse: Callable[[str], T]
    ) -> T:
        """Ask, parse, and on ``ParseFailure`` send the feedback back; raises the last failure."""
        # Final-mode calls (the submission script and its debugging) may use the reserved budget.
        use_reserve = variables.get("mode") == "final"
        failure: ParseFailure | None = None
        extra: list[Message] = []
        for _ in range(self.max_reasks + 1):
            answer = self._ask(ctx, role, variables, extra, use_reserve=use_reserve)
            try:
                return parse(answer)
            except ParseFailure as exc:
                failure = exc
                log.info("%s answer rejected: %s", role, exc.feedback)
                extra = [
                    *extra,
                    {"role": "assistant", "content": answer},
                    {
                        "role": "user",
                        "content": f"Your answer cannot be used: {exc.feedback}. "
                        "Answer again, in the requested format.",
                    },
                ]
        assert failure is not None
        raise failure

    def _script(
        self,
        ctx: BrainContext,
        role: str,
        variables: dict[str, Any],
        *,
        mode: str,
        label: str,
        extra_check: Callable[[str], list[str]] | None = None,
        predictions: bool = True,
    ) -> Script | None:
        """A full script that meets the contract; after the re-asks, the best one seen (or None).

        ``predictions``: whether the script must save its fold-0 predictions."""
        best: tuple[int, str] | None = None

        def parse(answer: str) -> str:
            nonlocal best
            code = extract_code(answer)
            if code is None:
                raise ParseFailure(
                    "it contains no Python code; give the complete script in one ```python block"
                )
            issues = contract_issues(code, mode=mode, test_file=ctx.task.test_file, predictions=predictions)
            if extra_check is not None and not issues:
                issues = extra_check(code)
            rank = len(issues) + (100 if syntax_error(code) else 0)
            if best is None or rank < best[0]:
                best = (rank, code)
            if issues:
                raise ParseFailure("; ".join(issues))
            return code

        try:
            code = self._converse(ctx, role, variables, parse)
        except ParseFailure as exc:
            if best is None:
                return None
            # Hand back the closest script: running it surfaces the problem to the debugger
            # instead of hiding it (e.g. a missing score line becomes a "no score" failure).
            log.warning("%s: using a script that still has problems: %s", role, exc.feedback)
            code = best[1]
        return Script(code=code, label=label, info={"agent": role, "llm": str(self.client.spec_for(role))})

    @staticmethod
    def _failing_script(label: str, why: str) -> Script:
        """A script that fails loudly, for roles that must return one when the model gave no code."""
        code = f"raise RuntimeError({why!r})\nprint('{SCORE_LABEL}: nan')\n"
        return Script(code=code, label=label, info={"no_code": True})

    # -- phase 1 -------------------------------------------------------------------------------
    def summarize_task(self, ctx: BrainContext) -> str:
        answer = self._ask(ctx, "summarizer", self._vars(ctx))
        text = " ".join(body for lang, body in fenced_blocks(answer)) or answer
        text = " ".join(text.split())
        return text[:1500] if text else ctx.task.summary()

    def search_queries(self, ctx: BrainContext, summary: str) -> list[str]:
        # Two deterministic queries: one from the task's facts, one from the summary. An LLM call
        # here would cost money for little gain over the summary itself.
        task = ctx.task
        facts = f"{task.modality.value} {task.task_type.value} {task.metric} kaggle winning solution python"
        first_sentence = summary.split(". ")[0][:200]
        return [facts, f"{first_sentence} best model python example"]

    def retrieve_models(
        self, ctx: BrainContext, summary: str, results: list[SearchResult], n: int
    ) -> list[ModelCard]:
        hints = knowledge_base_cards(ctx, summary, max(n, 4))
        variables = self._vars(ctx, summary=summary, results=results, hints=hints, n=n)
        default_source = "web search" if results else "llm"

        def parse(answer: str) -> list[ModelCard]:
            data = parse_json(answer)
            if isinstance(data, dict):
                data = data.get("models") or data.get("cards") or [data]
            if not isinstance(data, list):
                raise ParseFailure("expected a JSON list of model objects")
            cards, seen = [], set()
            for item in data:
                if not isinstance(item, dict):
                    continue
                name = str(item.get("name", "")).strip()
                code = str(item.get("example_code", "") or item.get("code", "")).strip()
                if not name or not code or name.lower() in seen:
                    continue
                seen.add(name.lower())
                source = str(item.get("source", "") or default_source).strip()
                cards.append(
                    ModelCard(
                        name=name,
                        description=str(item.get("description", "")).strip(),
                        example_code=code,
                        source=source if source.startswith("http") else default_source,
                    )
                )
            if not cards:
                raise ParseFailure("no object has both a name and a non-empty example_code")
            return cards[:n]

        try:
            cards = self._converse(ctx, "retriever", variables, parse)
        except ParseFailure as exc:
            log.warning("retriever answers unusable (%s); using the knowledge base", exc.feedback)
            return hints[:n]
        if len(cards) < n:
            # Fill up with knowledge-base cards so the pipeline gets the M candidates it asked for.
            names = {c.name.lower() for c in cards}
            cards += [h for h in hints if h.name.lower() not in names][: n - len(cards)]
        return cards

    def write_candidate(self, ctx: BrainContext, card: ModelCard) -> Script:
        variables = self._vars(ctx, card=card)
        script = self._script(ctx, "candidate", variables, mode="dev", label=card.name)
        return script or self._failing_script(card.name, f"the model wrote no code for {card.name}")

    def merge(self, ctx: BrainContext, base: ScoredScript, addition: ScoredScript) -> Script:
        label = f"merge {base.script.label or 'base'} + {addition.script.label or 'addition'}"
        variables = self._vars(
            ctx,
            base_label=base.script.label,
            base_code=base.script.code,
            base_score=_fmt_score(base.score),
            base_wall_s=base.script.wall_s,
            addition_label=addition.script.label,
            addition_code=addition.script.code,
            addition_score=_fmt_score(addition.score),
            addition_wall_s=addition.script.wall_s,
        )
        script = self._script(ctx, "merger", variables, mode="dev", label=label)
        return (
            script or base.script
        )  # nothing usable: the pipeline keeps the base, as if merging did not help

    def check_leakage(self, ctx: BrainContext, script: Script) -> LeakageReport:
        def parse(answer: str) -> LeakageReport:
            try:
                verdict = parse_json(answer)
            except ParseFailure:
                verdict = None
            if isinstance(verdict, list) and verdict and isinstance(verdict[0], dict):
                verdict = verdict[0]
            if not isinstance(verdict, dict) or "leak" not in verdict:
                raise ParseFailure('start with a ```json block {"leak": true/false, "reason": "..."}')
            reason = str(verdict.get("reason", "")).strip()
            if not truthy(verdict["leak"]):
                return LeakageReport(leak=False, reason=reason)
            # A leak found is a leak kept: when the quote cannot be placed, the fixer gets the
            # whole script instead of the block.
            return LeakageReport(leak=True, block=self._leaking_block(script.code, answer), reason=reason)

        variables = self._vars(ctx, code=script.code, code_wall_s=script.wall_s)
        try:
            return self._converse(ctx, "leakage_checker", variables, parse)
        except ParseFailure as exc:
            log.warning("leakage checker answers unusable (%s)", exc.feedback)
            return LeakageReport(
                leak=False, reason=f"the leakage check gave no usable answer: {exc.feedback}"
            )

    @staticmethod
    def _leaking_block(code: str, answer: str) -> str | None:
        """The script's own text of the block an answer quotes: exact or up to whitespace, else the
        closest run of lines; None when nothing in the script is like it."""
        quoted = [body for lang, body in fenced_blocks(answer) if lang != "json" and body.strip()]
        for body in sorted(quoted, key=len, reverse=True):
            found = locate_block(code, body) or fuzzy_locate(code, body)
            if found is not None and found.strip():
                return found
        return None

    def _quoted_block(self, code: str, answer: str) -> str:
        """The python block of an answer, located verbatim in ``code``; raises ParseFailure otherwise."""
        quoted = [body for lang, body in fenced_blocks(answer) if lang not in ("json",) and body.strip()]
        if not quoted:
            raise ParseFailure("quote the code block in one ```python block")
        for body in sorted(quoted, key=len, reverse=True):
            found = locate_block(code, body)
            if found is not None:
                return found
        raise ParseFailure(
            "the code block you quoted is not an exact part of the script; copy the lines character for "
            "character from the script (same indentation, no changes, no '...')"
        )

    def fix_leakage(self, ctx: BrainContext, script: Script, report: LeakageReport) -> Script:
        block = locate_block(script.code, report.block) if report.block else None
        label = f"{script.label} (leak fixed)".strip()
        variables = self._vars(
            ctx, code=script.code, block=block or "", reason=report.reason or "see the script"
        )
        if block is None:
            fixed = self._script(
                ctx,
                "leakage_fixer",
                variables,
                mode="dev",
                label=label,
                predictions=_saves_predictions(script.code),
            )
            return fixed or script
        new_code = self._rewrite_block(ctx, "leakage_fixer", variables, script.code, block)
        if new_code is None:
            return script
        return Script(code=new_code, label=label, info={**script.info, "agent": "leakage_fixer"})

    def check_data_usage(self, ctx: BrainContext, script: Script) -> DataUsageReport:
        all_files = [f.path for f in ctx.task.files if f.role not in (FileRole.ANSWERS, FileRole.DESCRIPTION)]
        all_files = [f for f in all_files if f not in (ctx.task.test_file, ctx.task.sample_submission_file)]
        all_files.append(FOLDS_NAME)
        variables = self._vars(
            ctx, code=script.code, code_wall_s=script.wall_s, all_files=all_files or [ctx.task.train_file]
        )

        def parse(answer: str) -> DataUsageReport:
            code = extract_code(answer)
            if code is None:
                if ALL_USED in answer.upper().replace(" ", "_"):
                    return DataUsageReport(all_used=True, reason="the model found nothing left unused")
                raise ParseFailure(f"answer with exactly {ALL_USED} or with the complete new script")
            issues = contract_issues(
                code, mode="dev", test_file=ctx.task.test_file, predictions=_saves_predictions(script.code)
            )
            if issues:
                raise ParseFailure("; ".join(issues))
            label = f"{script.label} (all data)".strip()
            return DataUsageReport(
                all_used=False,
                script=Script(code=code, label=label, info={**script.info, "agent": "data_usage"}),
                reason="the model rewrote the script to use more of the provided data",
            )

        try:
            return self._converse(ctx, "data_usage", variables, parse)
        except ParseFailure as exc:
            return DataUsageReport(all_used=True, reason=f"no usable revision ({exc.feedback})")

    # -- phase 2 -------------------------------------------------------------------------------
    def write_ablation(
        self, ctx: BrainContext, script: ScoredScript, previous: list[AblationSummary]
    ) -> Script:
        variables = self._vars(
            ctx,
            code=script.script.code,
            code_wall_s=script.script.wall_s,
            score=_fmt_score(script.score),
            previous=previous,
        )
        ablation = self._script(
            ctx,
            "ablation",
            variables,
            mode="dev",
            label=f"ablation of {script.script.label}",
            predictions=False,
        )
        return ablation or self._failing_script("ablation", "the model wrote no ablation script")

    def summarize_ablation(self, ctx: BrainContext, ablation: Script, output: str) -> AblationSummary:
        variables = self._vars(ctx, output=trim_output(output, _OUTPUT_LIMIT))

        def parse(answer: str) -> AblationSummary:
            data = parse_json(answer)
            if not isinstance(data, dict) or not str(data.get("summary", "")).strip():
                raise ParseFailure('expected {"summary": ..., "baseline_score": ..., "effects": {...}}')
            effects: dict[str, float] = {}
            for name, value in (data.get("effects") or {}).items():
                try:
                    effects[str(name)] = float(value)
                except (TypeError, ValueError):
                    continue
            baseline = data.get("baseline_score")
            try:
                baseline = None if baseline is None else float(baseline)
            except (TypeError, ValueError):
                baseline = None
            return AblationSummary(
                text=str(data["summary"]).strip(), effects=effects, baseline_score=baseline
            )

        try:
            return self._converse(ctx, "ablation_summarizer", variables, parse)
        except ParseFailure:
            # The raw output still tells the extractor what was measured.
            return AblationSummary(text="Ablation output (not summarised):\n" + trim_output(output, 2000))

    def extract_block(
        self, ctx: BrainContext, script: ScoredScript, summary: AblationSummary, refined_blocks: list[str]
    ) -> BlockPlan:
        code = script.script.code
        variables = self._vars(
            ctx,
            code=code,
            code_wall_s=script.script.wall_s,
            score=_fmt_score(script.score),
            summary=summary.text,
            refined_blocks=refined_blocks,
        )
        last_quote: list[str] = []

        def parse(answer: str) -> BlockPlan:
            try:
                meta = parse_json(answer)
            except ParseFailure:
                meta = None
            if not isinstance(meta, dict) or not str(meta.get("plan", "")).strip():
                raise ParseFailure('start with a ```json block {"name": "...", "plan": "..."}')
            quoted = [b for lang, b in fenced_blocks(answer) if lang != "json" and b.strip()]
            if quoted:
                last_quote[:] = [max(quoted, key=len)]
            block = self._quoted_block(code, answer)
            name = str(meta.get("name", "")).strip()
            plan = RefinementPlan(text=str(meta["plan"]).strip(), data={"block_name": name})
            return BlockPlan(block=block, name=name, plan=plan)

        try:
            return self._converse(ctx, "extractor", variables, parse)
        except ParseFailure as exc:
            feedback = exc.feedback
        # Re-asks did not produce a verbatim block. Never hand back a block that is not really in
        # the script: take the region closest to the last quote, else the model-fitting code.
        region = fuzzy_locate(code, last_quote[0]) if last_quote else None
        fallback = "closest"
        if region is None or not region.strip():
            region, fallback = _training_block(code), "training"
        if region is None:
            raise BlockNotFound(f"the extractor did not quote a block of the script: {feedback}")
        log.warning("extractor gave no verbatim block (%s); using the %s block instead", feedback, fallback)
        plan_text = (
            "Improve this block so that the validation score gets better. "
            f"Ablation findings: {summary.text[:800]}"
        )
        return BlockPlan(
            block=region, name="", plan=RefinementPlan(text=plan_text, data={"fallback": fallback})
        )

    def _rewrite_block(
        self, ctx: BrainContext, role: str, variables: dict[str, Any], code: str, block: str
    ) -> str | None:
        """Ask for a new version of ``block`` and splice it in; the new script must parse."""

        def parse(answer: str) -> str:
            new_block = extract_code(answer)
            if new_block is None:
                raise ParseFailure("it contains no code; give the rewritten block in one ```python block")
            if SCORE_LABEL in new_block and SCORE_LABEL not in block and "folds.csv" in new_block:
                # The model sent the whole script instead of the block: take it as such.
                new_code = new_block
            else:
                new_code = replace_block(code, block, fit_indentation(code, block, new_block))
            error = syntax_error(new_code)
            if error:
                raise ParseFailure(
                    f"with your block in place the script does not parse ({error}); keep the block's "
                    "indentation and make it complete"
                )
            issues = contract_issues(
                new_code, mode="dev", test_file=ctx.task.test_file, predictions=_saves_predictions(code)
            )
            if issues:
                raise ParseFailure(
                    "with your block in place the script breaks the rules: " + "; ".join(issues)
                )
            return new_code

        try:
            return self._converse(ctx, role, variables, parse)
        except ParseFailure as exc:
            log.warning("%s gave no usable block: %s", role, exc.feedback)
            return None

    def implement_plan(self, ctx: BrainContext, script: Script, block: str, plan: RefinementPlan) -> Script:
        located = locate_block(script.code, block)
        if located is None:
            raise BlockNotFound("the block to refine is not a verbatim part of the script")
        variables = self._vars(
            ctx, code=script.code, code_wall_s=script.wall_s, block=located, plan=plan.text
        )
        new_code = self._rewrite_block(ctx, "coder", variables, script.code, located)
        if new_code is None:
            return self._failing_script(script.label, "the model gave no usable rewrite of the block")
        info = {**script.info, "agent": "coder", "plan": plan.text[:500]}
        return Script(code=new_code, label=f"{script.label} (refined)".strip(), info=info)

    def plan_refinement(
        self, ctx: BrainContext, script: Script, block: str, history: list[PlanAttempt]
    ) -> RefinementPlan | None:
        variables = self._vars(ctx, code=script.code, code_wall_s=script.wall_s, block=block, history=history)
        return self._plan_text(self._ask(ctx, "planner", variables))

    @staticmethod
    def _plan_text(answer: str) -> RefinementPlan | None:
        text = answer.strip()
        if not text or NO_NEW_PLAN in text.upper().replace(" ", "_")[:40]:
            return None
        blocks = [b for _, b in fenced_blocks(text)]
        if blocks and len(text) - sum(len(b) for b in blocks) < 40:
            text = "\n".join(blocks)  # the model fenced its plan; the fence is not part of it
        return RefinementPlan(text=text.strip()[:4000])

    # -- phase 3 -------------------------------------------------------------------------------
    def plan_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], history: list[EnsembleAttempt]
    ) -> RefinementPlan | None:
        variables = self._vars(ctx, solutions=solutions, history=history)
        return self._plan_text(self._ask(ctx, "ensemble_planner", variables))

    def implement_ensemble(
        self, ctx: BrainContext, solutions: list[ScoredScript], plan: RefinementPlan
    ) -> Script:
        variables = self._vars(ctx, solutions=solutions, plan=plan.text)
        script = self._script(ctx, "ensembler", variables, mode="dev", label="ensemble")
        return script or self._failing_script("ensemble", "the model wrote no ensemble script")

    # -- any phase -----------------------------------------------------------------------------
    def debug(self, ctx: BrainContext, script: Script, error: str) -> Script | None:
        mode = "final" if "submission.csv" in script.code else "dev"
        variables = self._vars(ctx, mode=mode, code=script.code, error=clip(error.strip(), _ERROR_LIMIT))

        def same_as_before(code: str) -> list[str]:
            if _normalized(code) == _normalized(script.code):
                return ["the script is unchanged; it still fails the same way"]
            return []

        label = script.label or "script"
        fixed = self._script(
            ctx,
            "debugger",
            variables,
            mode=mode,
            label=label,
            extra_check=same_as_before,
            predictions=_saves_predictions(script.code),
        )
        if fixed is None or _normalized(fixed.code) == _normalized(script.code):
            return None
        fixed.info = {**script.info, "agent": "debugger"}
        return fixed

    # -- phase 4 -------------------------------------------------------------------------------
    def write_submission(self, ctx: BrainContext, script: Script) -> Script:
        variables = self._vars(ctx, mode="final", code=script.code, code_wall_s=script.wall_s)
        final = self._script(
            ctx,
            "submission",
            variables,
            mode="final",
            label=f"final: {script.label}",
            predictions=_saves_predictions(script.code),
        )
        return final or self._failing_script("final", "the model wrote no submission script")


def _training_block(code: str) -> str | None:
    """Whole lines of the first top-level statement that fits a model (else the longest one)."""
    try:
        tree = parse_python(code)
    except (SyntaxError, ValueError):
        return None
    lines = code.splitlines()
    segments = [
        "\n".join(lines[node.lineno - 1 : node.end_lineno])
        for node in tree.body
        if not isinstance(node, (ast.Import, ast.ImportFrom)) and node.end_lineno is not None
    ]
    segments = [segment for segment in segments if segment.strip()]
    if not segments:
        return None
    fitting = [segment for segment in segments if ".fit(" in segment]
    return fitting[0] if fitting else max(segments, key=len)


def _saves_predictions(code: str) -> bool:
    return VAL_PREDICTIONS_NAME in code


def _normalized(code: str) -> str:
    try:
        return ast.dump(parse_python(code))
    except (SyntaxError, ValueError):
        return "\n".join(line.rstrip() for line in code.strip().splitlines())
