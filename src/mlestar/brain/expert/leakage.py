"""Static leakage analysis of a script (AST plus a light taint analysis), and its repair.

Three kinds of leak are recognised:
1. the target (or something computed from it) written into a feature column, or listed as a
   feature;
2. a transformer, encoder or model fitted on validation rows (fold 0), on test rows, or on the
   whole training table before it is split (train and validation together);
3. the row id left among the features (it is never removed before training).
Code under ``if FINAL_MODE:`` is exempt from (2): the final refit on every row happens after fold 0
has been scored, as the script contract allows.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from mlestar.brain.expert.facts import TaskFacts, task_facts
from mlestar.brain.expert.render import render_block
from mlestar.brain.expert.solution import spec_of, to_script
from mlestar.brain.protocol import BrainContext, LeakageReport, Script, replace_block
from mlestar.core.contract import find_blocks
from mlestar.core.pyparse import parse_python

FIT_METHODS = {"fit", "fit_transform", "fit_resample", "partial_fit", "fit_predict"}
# Functions of the expert's own templates that learn from their first argument.
TEMPLATE_FITTERS = {"prepare", "encode", "add_features", "target_encode"}
READERS = {"read_csv", "read_table", "read_parquet", "read_json", "read_feather"}
VAL_NAME = re.compile(r"(?:^|_)(?:va|val|valid|validation|holdout|hold|test|te|tst|oof)(?:_|$|\d)", re.IGNORECASE)
TRAIN_SELECTOR = re.compile(r"fit|train|trn|(?:^|[\W_])tr(?:_|\W|$)|fold\S*\s*(?:!=\s*0|>\s*0|>=\s*1)", re.IGNORECASE)
VAL_SELECTOR = re.compile(r"val|valid|hold|test|fold\S*\s*==\s*0", re.IGNORECASE)
DATA_METHODS = {"transform", "predict", "predict_proba", "decision_function", "score", "inverse_transform"}
EVAL_KEYWORDS = {"eval_set", "valid_sets", "evals", "X_val", "y_val", "validation_data", "eval_X", "eval_y"}
FINAL_FLAG = re.compile(r"final", re.IGNORECASE)

FULL, VAL = "full", "val"


@dataclass
class Finding:
    kind: str  # target | fit | id
    node: ast.AST | None
    reason: str


@dataclass
class _Analysis:
    code: str
    facts: TaskFacts
    target_aliases: set[str] = field(default_factory=set)
    id_aliases: set[str] = field(default_factory=set)
    taint: dict[str, str] = field(default_factory=dict)
    fitters: dict[str, int] = field(default_factory=dict)  # user function -> index of the fitted argument
    findings: list[Finding] = field(default_factory=list)


def _string_values(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _aliases(tree: ast.Module, values: set[str]) -> set[str]:
    """Module-level names bound to one of ``values`` (``TARGET = "y"``, ``TARGETS = ["y"]``)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            strings = _string_values(node.value)
            if strings and set(strings) <= values and isinstance(node.value, (ast.Constant, ast.List, ast.Tuple)):
                found.add(node.targets[0].id)
    return found


def _refers_to(node: ast.AST, literals: set[str], aliases: set[str]) -> bool:
    return bool(set(_string_values(node)) & literals) or bool(_names(node) & aliases)


class _Walker(ast.NodeVisitor):
    """Visits statements in order, tracking taint and skipping the final-mode refit."""

    def __init__(self, analysis: _Analysis) -> None:
        self.a = analysis
        self.targets = set(analysis.facts.targets)

    # -- taint -------------------------------------------------------------------------------
    def expr_taint(self, node: ast.AST | None) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            if node.id in self.a.taint:
                return self.a.taint[node.id]
            return VAL if VAL_NAME.search(node.id) else None
        if isinstance(node, ast.Subscript):
            selector = ast.get_source_segment(self.a.code, node.slice) or ""
            if isinstance(node.slice, ast.Constant) or (isinstance(node.slice, ast.List) and _string_values(node.slice)):
                return self.expr_taint(node.value)  # a column selection keeps the rows
            negated = selector.strip().startswith(("~", "not ", "np.logical_not"))
            if VAL_SELECTOR.search(selector):
                return None if negated else (VAL if self.expr_taint(node.value) else None)
            if TRAIN_SELECTOR.search(selector):
                return (VAL if self.expr_taint(node.value) else None) if negated else None
            return self.expr_taint(node.value)
        if isinstance(node, ast.Attribute):
            if node.attr in ("iloc", "loc", "values", "T"):
                return self.expr_taint(node.value)
            return self.expr_taint(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and (func.id in TEMPLATE_FITTERS or func.id in self.a.fitters):
                return None  # outputs of a fitting step are judged where the fit happens
            if isinstance(func, ast.Attribute) and func.attr in READERS:
                return FULL if "train" in " ".join(_string_values(node)).lower() or _names(node) & {"TRAIN_FILE"} else None
            if isinstance(func, ast.Name) and func.id in READERS:
                return FULL if "train" in " ".join(_string_values(node)).lower() or _names(node) & {"TRAIN_FILE"} else None
            if isinstance(func, ast.Attribute) and func.attr in FIT_METHODS:
                return None  # a fitted object: the fit itself is where a leak is reported
            parts = list(node.args) + [k.value for k in node.keywords]
            if isinstance(func, ast.Attribute) and func.attr not in DATA_METHODS:
                parts.append(func.value)  # df.copy(), df.fillna(0): the rows of df
            return self._union(parts)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return self._union(node.elts)
        if isinstance(node, ast.BinOp):
            return self._union([node.left, node.right])
        if isinstance(node, ast.Starred):
            return self.expr_taint(node.value)
        return None

    def _union(self, nodes: list[ast.AST]) -> str | None:
        kinds = {self.expr_taint(n) for n in nodes} - {None}
        if VAL in kinds:
            return VAL
        return FULL if FULL in kinds else None

    def assign(self, target: ast.AST, value: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) and len(
            target.elts
        ) == len(value.elts):
            for t, v in zip(target.elts, value.elts, strict=True):
                self.assign(t, v)
            return
        kind = self.expr_taint(value)
        for name in _names(target) if isinstance(target, (ast.Tuple, ast.List)) else (
            [target.id] if isinstance(target, ast.Name) else []
        ):
            if kind is None:
                self.a.taint.pop(name, None)
            else:
                self.a.taint[name] = kind

    # -- statements --------------------------------------------------------------------------
    def visit_If(self, node: ast.If) -> None:
        test = ast.get_source_segment(self.a.code, node.test) or ""
        if FINAL_FLAG.search(test) and not test.strip().startswith("not"):
            for stmt in node.orelse:
                self.visit(stmt)
            return  # the final refit on every row comes after fold 0 was scored
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # Function bodies see their parameters clean; taint inside does not escape.
        saved = dict(self.a.taint)
        for arg in node.args.args:
            self.a.taint.pop(arg.arg, None)
        for stmt in node.body:
            self.visit(stmt)
        self.a.taint = saved

    def visit_Assign(self, node: ast.Assign) -> None:
        self.check_target_feature(node, node.targets, node.value)
        self.visit(node.value)
        for target in node.targets:
            self.assign(target, node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.check_target_feature(node, [node.target], node.value)
            self.visit(node.value)
            self.assign(node.target, node.value)

    def visit_Call(self, node: ast.Call) -> None:
        self.check_fit(node)
        self.check_assign_call(node)
        self.generic_visit(node)

    # -- rules -------------------------------------------------------------------------------
    def check_target_feature(self, stmt: ast.AST, targets: list[ast.AST], value: ast.AST) -> None:
        """df["x"] = <something computed from the target>."""
        for target in targets:
            if not isinstance(target, ast.Subscript):
                continue
            written = set(_string_values(target.slice))
            if written & self.targets:
                continue  # writing the target column itself (e.g. a label fix) is not a feature
            if _refers_to(value, self.targets, self.a.target_aliases):
                self.a.findings.append(Finding("target", stmt, "a feature column is computed from the target"))

    def check_assign_call(self, node: ast.Call) -> None:
        """df.assign(x=<target-derived>) / df.insert(i, "x", <target-derived>)."""
        if not isinstance(node.func, ast.Attribute):
            return
        if node.func.attr == "assign":
            for kw in node.keywords:
                if kw.arg and kw.arg not in self.targets and _refers_to(kw.value, self.targets, self.a.target_aliases):
                    self.a.findings.append(Finding("target", node, "a feature column is assigned from the target"))
        if node.func.attr == "insert" and len(node.args) >= 3:
            if _refers_to(node.args[2], self.targets, self.a.target_aliases):
                self.a.findings.append(Finding("target", node, "a feature column is inserted from the target"))

    def fitted_argument(self, node: ast.Call) -> ast.AST | None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in FIT_METHODS:
            if node.args:
                return node.args[0]
            return next((k.value for k in node.keywords if k.arg in ("X", "x", "raw_documents")), None)
        if isinstance(func, ast.Name):
            if func.id in TEMPLATE_FITTERS and node.args:
                return node.args[0]
            index = self.a.fitters.get(func.id)
            if index is not None and len(node.args) > index:
                return node.args[index]
        return None

    def check_fit(self, node: ast.Call) -> None:
        arg = self.fitted_argument(node)
        if arg is None:
            return
        kind = self.expr_taint(arg)
        text = ast.get_source_segment(self.a.code, arg) or "?"
        if kind == VAL:
            self.a.findings.append(Finding("fit", node, f"fitted on validation or test rows ({text})"))
        elif kind == FULL:
            self.a.findings.append(
                Finding("fit", node, f"fitted on the whole training table before the fold-0 split ({text})")
            )


def _user_fitters(tree: ast.Module) -> dict[str, int]:
    """User functions that call .fit / .fit_transform on one of their own parameters."""
    fitters: dict[str, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef) or node.name in TEMPLATE_FITTERS:
            continue
        params = [a.arg for a in node.args.args]
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in FIT_METHODS:
                if call.args and isinstance(call.args[0], ast.Name) and call.args[0].id in params:
                    fitters[node.name] = params.index(call.args[0].id)
    return fitters


_OUTPUT_CODE = re.compile(r"submission|sample|write|save|output|predict", re.IGNORECASE)


def _feature_side_nodes(tree: ast.AST) -> list[ast.AST]:
    """Nodes outside the code that writes outputs (a submission's "id" handling is no exclusion)."""
    nodes: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef) and _OUTPUT_CODE.search(node.name):
            return
        if isinstance(node, ast.comprehension) and _OUTPUT_CODE.search(ast.dump(node.iter)):
            return
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return nodes


def _excluded(tree: ast.Module, literals: set[str], aliases: set[str]) -> bool:
    """Whether the code removes these columns somewhere: drop / pop / del / a 'not in' filter.

    In the expert's own scripts the features are separated from the raw table in ``clean`` (one
    per pipeline), so only exclusions there count.
    """
    cleans = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "clean"]
    if cleans:
        return all(_excluded_in(c, literals, aliases) for c in cleans)
    return _excluded_in(tree, literals, aliases)


def _excluded_in(tree: ast.AST, literals: set[str], aliases: set[str]) -> bool:
    for node in _feature_side_nodes(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("drop", "pop"):
            if _refers_to(node, literals, aliases):
                return True
        if isinstance(node, ast.Delete) and _refers_to(node, literals, aliases):
            return True
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.NotIn, ast.NotEq)) for op in node.ops):
            if _refers_to(node, literals, aliases):
                return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "difference":
            if _refers_to(node, literals, aliases):
                return True
    return False


def _feature_lists(tree: ast.Module, literals: set[str]) -> list[ast.AST]:
    """Assignments of explicit feature lists that name a forbidden column."""
    hits = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id.lower()
            if "feat" in name and isinstance(node.value, (ast.List, ast.Tuple)):
                if set(_string_values(node.value)) & literals:
                    hits.append(node)
    return hits


def analyse(code: str, facts: TaskFacts) -> list[Finding]:
    try:
        tree = parse_python(code)
    except SyntaxError:
        return []
    targets = set(facts.targets)
    analysis = _Analysis(code=code, facts=facts)
    analysis.target_aliases = _aliases(tree, targets)
    id_values = {facts.id_col} if facts.id_col else set()
    analysis.id_aliases = _aliases(tree, id_values) if id_values else set()
    analysis.fitters = _user_fitters(tree)
    _Walker(analysis).visit(tree)
    for node in _feature_lists(tree, targets | id_values):
        analysis.findings.append(Finding("target", node, "the target or the id is listed as a feature"))
    # A media solution's features come from the decoded files alone (``represent``): no table column,
    # target or id included, can become one.
    reads_train = "train" in code.lower() and facts.media is None
    if reads_train and not _excluded(tree, targets, analysis.target_aliases):
        analysis.findings.append(Finding("target", _feature_statement(tree), "the target column is never removed from the features"))
    if id_values and reads_train and not _excluded(tree, id_values, analysis.id_aliases):
        analysis.findings.append(Finding("id", _feature_statement(tree), f"the id column '{facts.id_col}' is used as a feature"))
    return analysis.findings


def _feature_statement(tree: ast.Module) -> ast.AST | None:
    """Where features are separated from the raw table: the first drop(...) call, or the first read."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "clean":
            return node
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "drop":
            return node
    return None


def _statement_of(tree: ast.Module, node: ast.AST) -> ast.stmt | None:
    """The innermost statement containing ``node``."""
    best = None
    for candidate in ast.walk(tree):
        if isinstance(candidate, ast.stmt) and not isinstance(candidate, (ast.FunctionDef, ast.If, ast.For, ast.While,
                                                                         ast.With, ast.Try, ast.Module)):
            if (candidate.lineno, candidate.col_offset) <= (node.lineno, node.col_offset) and (
                (candidate.end_lineno or 0, candidate.end_col_offset or 0) >= (node.end_lineno or 0, node.end_col_offset or 0)
            ):
                if best is None or candidate.lineno >= best.lineno:
                    best = candidate
    if best is None and isinstance(node, ast.stmt):
        return node
    return best


def _lines(code: str, node: ast.AST) -> str:
    lines = code.split("\n")
    return "\n".join(lines[node.lineno - 1 : (node.end_lineno or node.lineno)])


def _offending_block(code: str, finding: Finding) -> str | None:
    """The marked block holding the finding (verbatim), else the whole statement's lines."""
    if finding.node is None or not hasattr(finding.node, "lineno"):
        return find_blocks(code).get("cleaning")
    start = sum(len(line) + 1 for line in code.split("\n")[: finding.node.lineno - 1])
    for text in find_blocks(code).values():
        begin = code.find(text)
        if begin <= start < begin + len(text):
            return text
    tree = parse_python(code)
    statement = _statement_of(tree, finding.node) if not isinstance(finding.node, ast.FunctionDef) else finding.node
    return _lines(code, statement or finding.node)


def check(ctx: BrainContext, script: Script) -> LeakageReport:
    spec = spec_of(script)
    facts = spec.facts if spec is not None else task_facts(ctx)
    findings = analyse(script.code, facts)
    if not findings:
        return LeakageReport(leak=False, reason="no target-derived features, no fitting on validation rows, id excluded")
    first = findings[0]
    block = _offending_block(script.code, first)
    reasons = "; ".join(dict.fromkeys(f.reason for f in findings))
    return LeakageReport(leak=True, block=block, reason=reasons)


def fix(ctx: BrainContext, script: Script, report: LeakageReport) -> Script:
    """Re-render the leaking block from the clean template when possible, else repair statements."""
    spec = spec_of(script)
    code = script.code
    if spec is not None:
        for name, text in find_blocks(code).items():
            if report.block and (report.block == text or report.block in text):
                fresh = render_block(name, spec)
                if fresh != text:
                    return to_script(spec, code=replace_block(code, text, fresh), label=script.label)
    facts = spec.facts if spec is not None else task_facts(ctx)
    repaired = _repair_statements(code, facts)
    if repaired == code:
        return script
    if spec is not None:
        return to_script(spec, code=repaired, label=script.label)
    return Script(code=repaired, label=script.label, info=dict(script.info))


def _repair_statements(code: str, facts: TaskFacts) -> str:
    """Comment out target-derived assignments; point fits at the training part instead."""
    skipped: set[int] = set()
    for _ in range(20):
        findings = [
            f for f in analyse(code, facts)
            if f.node is not None and f.kind in ("target", "fit") and getattr(f.node, "lineno", 0) not in skipped
        ]
        if not findings:
            return code
        finding = findings[0]
        tree = parse_python(code)
        statement = _statement_of(tree, finding.node)
        if statement is None or isinstance(statement, ast.FunctionDef):
            skipped.add(getattr(finding.node, "lineno", 0))
            continue
        lines = code.split("\n")
        first, last = statement.lineno - 1, (statement.end_lineno or statement.lineno) - 1
        indent = re.match(r"\s*", lines[first]).group(0)
        if finding.kind == "fit":
            replacement = _refit_on_train(_lines(code, statement))
            if replacement is None:  # no safe rewrite: leave it for the debugger / reviewer to see
                skipped.add(getattr(finding.node, "lineno", 0))
                continue
        else:
            replacement = f"{indent}pass  # removed by the leakage check: {finding.reason}"
        code = "\n".join(lines[:first] + replacement.split("\n") + lines[last + 1 :])
    return code


def _refit_on_train(text: str) -> str | None:
    """`enc.fit(pd.concat([X_tr, X_va]))` -> `enc.fit(X_tr)`; `enc.fit(X_val)` -> `enc.fit(X_train)`."""
    concat = re.search(r"pd\.concat\(\s*\[\s*([A-Za-z_][\w\.\[\]]*)\s*,[^\]]*\]\s*(?:,[^)]*)?\)", text)
    if concat:
        return text.replace(concat.group(0), concat.group(1))
    swapped = re.sub(r"\b(X|x|df|data)_(?:val|valid|va|test|te)\b", r"\1_train", text)
    return swapped if swapped != text else None
