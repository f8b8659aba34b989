"""Parsers that do not trust the model: code from fences, JSON with repair, verbatim blocks.

Every parser either returns something checked (code that ``ast.parse`` accepts, a block that is a
real substring of the script) or raises ``ParseFailure`` with feedback that can be sent back to
the model as the next message.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import textwrap
from typing import Any

from mlestar.core.contract import FINAL_DIR, FOLDS_NAME, SCORE_LABEL, SUBMISSION_NAME, VAL_PREDICTIONS_NAME
from mlestar.core.pyparse import literal_eval, parse_python

_literal_eval = literal_eval


class ParseFailure(ValueError):
    """The answer cannot be used; ``feedback`` tells the model what to do differently."""

    def __init__(self, feedback: str) -> None:
        super().__init__(feedback)
        self.feedback = feedback


# -- code ------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*\n", re.M)
_NON_PYTHON = {
    "json",
    "text",
    "txt",
    "bash",
    "sh",
    "shell",
    "console",
    "output",
    "yaml",
    "csv",
    "markdown",
    "md",
}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block; an unclosed last fence (truncated answer) counts too."""
    blocks = [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(text)]
    last_close = max((m.end() for m in _FENCE.finditer(text)), default=0)
    tail = _OPEN_FENCE.search(text, last_close)
    if tail is not None:
        blocks.append((tail.group(2).lower(), text[tail.end() :]))
    return blocks


def syntax_error(code: str) -> str | None:
    try:
        parse_python(code)
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except ValueError as exc:  # null bytes
        return str(exc)
    return None


_CODE_NODES = (
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.While,
    ast.If,
    ast.With,
    ast.Try,
)


def _looks_like_code(code: str) -> bool:
    """Prose rarely parses, but "ALL_USED" or "Done" do: require at least one real statement."""
    try:
        tree = parse_python(code)
    except (SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, _CODE_NODES) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
        for node in tree.body
    )


def _trim_prose(code: str) -> str:
    """Drop sentences the model wrote inside the fence (before or after the code) when that fixes parsing."""
    if syntax_error(code) is None:
        return code
    lines = code.splitlines()
    for head in range(0, min(5, len(lines))):
        for tail in range(0, min(5, len(lines) - head)):
            candidate = "\n".join(lines[head : len(lines) - tail])
            if candidate.strip() and syntax_error(candidate) is None and _looks_like_code(candidate):
                return candidate
    return code


def extract_code(text: str) -> str | None:
    """The Python code of an answer: the largest python-ish fenced block, or the whole answer if it is code.

    Returns the code even when it does not parse (the caller reports the syntax error back); returns
    None when the answer holds no code at all.
    """
    blocks = [body for lang, body in fenced_blocks(text) if lang not in _NON_PYTHON and body.strip()]
    if blocks:
        cleaned = [_trim_prose(textwrap.dedent(body)).strip("\n") for body in blocks]
        parsing = [code for code in cleaned if syntax_error(code) is None]
        return max(parsing or cleaned, key=len) + "\n"
    stripped = text.strip("\n")
    if _looks_like_code(stripped):
        return stripped + "\n"
    return None


# -- static checks of a script against the contract ------------------------------------------------
def _exit_calls(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("exit", "quit"):
                return True
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("exit", "_exit")
                and isinstance(func.value, ast.Name)
                and func.value.id in ("sys", "os")
            ):
                return True
    return False


def _swallowing_handlers(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            body_is_silent = all(isinstance(stmt, (ast.Pass, ast.Continue)) for stmt in node.body)
            if body_is_silent or node.type is None:
                return True
    return False


def _string_constants(tree: ast.AST) -> list[str]:
    """The string literals a script computes with: not its docstrings or bare string statements
    (those are comments), but f-string parts count."""
    docs = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def _uses_dev_rows(tree: ast.AST) -> bool:
    """Whether the script reads the split's ``dev`` column in any spelling: ``folds["dev"]``,
    ``folds.dev``, ``query("dev == 1")``, ``split.loc[split.dev.eq(1)]``."""
    if any(re.search(r"\bdev\b", text) for text in _string_constants(tree)):
        return True
    return any(isinstance(node, ast.Attribute) and node.attr == "dev" for node in ast.walk(tree))


def _names_file(tree: ast.AST, name: str) -> bool:
    """Whether a string the script computes with is (or ends in) the file ``name``."""
    for text in _string_constants(tree):
        text = text.strip()
        if text == name or text.endswith(("/" + name, "\\" + name)):
            return True
    return False


def contract_issues(
    code: str, *, mode: str, test_file: str | None = None, predictions: bool = False
) -> list[str]:
    """What a script does against docs/script-contract.md; ``mode`` is "dev" or "final".

    The checks look at what the code does (its statements and the strings it computes with),
    not at how it is spelled: a comment naming the test file is no reason to reject a script.
    ``predictions``: the script must save its fold-0 predictions."""
    error = syntax_error(code)
    if error:
        return [f"the script does not parse ({error})"]
    tree = parse_python(code)
    issues = []
    if SCORE_LABEL not in code:
        issues.append(f"it never prints the line '{SCORE_LABEL}: <score>' with the fold-0 validation score")
    if _exit_calls(tree):
        issues.append("it calls exit()/sys.exit()/quit(); the script must run to its end")
    if _swallowing_handlers(tree):
        issues.append("it has a try/except that silently swallows errors (bare except or except: pass)")
    if not _names_file(tree, FOLDS_NAME) and FOLDS_NAME not in code:
        issues.append(
            f"it does not read ./input/{FOLDS_NAME}; use that split (fold 0 = validation), "
            "never make your own"
        )
    if predictions and VAL_PREDICTIONS_NAME not in code:
        issues.append(
            f"it does not save its fold-0 predictions as ./{FINAL_DIR}/{VAL_PREDICTIONS_NAME} "
            "(row + prediction columns)"
        )
    if mode == "dev":
        if not _uses_dev_rows(tree):
            issues.append("it does not keep only the development rows (dev == 1 in folds.csv)")
        if test_file and _names_file(tree, test_file.rsplit("/", 1)[-1]):
            issues.append(f"it reads the test file {test_file}, which development scripts must not touch")
    elif SUBMISSION_NAME not in code:
        issues.append(f"it does not write ./{FINAL_DIR}/{SUBMISSION_NAME}")
    return issues


_TRUE_WORDS = {"true", "yes", "y", "1", "leak", "leaky", "leaking"}


def truthy(value: Any) -> bool:
    """A yes/no value as models write it: ``true``, ``"True"``, ``"yes"``, ``1``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().strip(".").lower() in _TRUE_WORDS


# -- JSON ------------------------------------------------------------------------------------------
def _balanced_spans(text: str) -> list[str]:
    """Top-level {...} and [...] spans, scanning with awareness of quoted strings."""
    spans, stack, start, quote, escaped = [], [], -1, "", False
    pairs = {"{": "}", "[": "]"}
    for i, ch in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and stack:
            quote = ch
        elif ch in pairs:
            if not stack:
                start = i
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                spans.append(text[start : i + 1])
    return spans


def _strip_trailing_commas(text: str) -> str:
    return re.sub(r",(\s*[}\]])", r"\1", text)


def _as_python_literal(text: str) -> Any:
    replaced = re.sub(r"\btrue\b", "True", text)
    replaced = re.sub(r"\bfalse\b", "False", replaced)
    replaced = re.sub(r"\bnull\b", "None", replaced)
    return _literal_eval(replaced)


def _loads_with_repair(candidate: str) -> Any:
    attempts = (
        lambda s: json.loads(s),
        lambda s: json.loads(s, strict=False),  # raw newlines inside strings (code!) are common
        lambda s: json.loads(_strip_trailing_commas(s), strict=False),
        lambda s: _as_python_literal(s),  # single quotes, trailing commas, True/None
    )
    last: Exception | None = None
    for attempt in attempts:
        try:
            return attempt(candidate)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            last = exc
    raise ParseFailure(f"the JSON does not parse ({' '.join(str(last).split())[:200]})")


def parse_json(text: str) -> Any:
    """The JSON value of an answer, repairing fences, trailing commas, single quotes and Python literals."""
    candidates = [body for lang, body in fenced_blocks(text) if lang in ("json", "", "javascript", "js")]
    candidates += sorted(_balanced_spans(text), key=len, reverse=True)
    candidates.append(text.strip())
    failure: ParseFailure | None = None
    for candidate in candidates:
        candidate = candidate.strip()
        if not candidate or candidate[0] not in "{[":
            continue
        try:
            return _loads_with_repair(candidate)
        except ParseFailure as exc:
            failure = exc
    raise failure or ParseFailure("the answer holds no JSON object")


# -- blocks ----------------------------------------------------------------------------------------
def _squash(line: str) -> str:
    return re.sub(r"\s+", "", line)


def locate_block(code: str, block: str) -> str | None:
    """The exact substring of ``code`` that ``block`` quotes: verbatim, or equal up to whitespace."""
    if block.strip() and block in code:
        return block
    trimmed = block.strip("\n")
    if trimmed.strip() and trimmed in code:
        return trimmed
    wanted = [_squash(line) for line in block.splitlines() if line.strip()]
    if not wanted:
        return None
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for start, line in enumerate(lines):
        if _squash(line) != wanted[0]:
            continue
        matched, index = 1, start + 1
        end = start
        while matched < len(wanted) and index < len(lines):
            if not lines[index].strip():
                index += 1
                continue
            if _squash(lines[index]) != wanted[matched]:
                break
            end = index
            matched += 1
            index += 1
        if matched == len(wanted):
            return code[offsets[start] : offsets[end] + len(lines[end].rstrip("\r\n"))]
    return None


def fuzzy_locate(code: str, block: str, threshold: float = 0.75) -> str | None:
    """The run of whole lines of ``code`` most similar to ``block``, if similar enough.

    Last resort after re-asks: a paraphrased block still names the region the model meant.
    """
    wanted = "\n".join(line.strip() for line in block.strip("\n").splitlines())
    n = len(block.strip("\n").splitlines())
    lines = code.splitlines()
    if not n or not lines:
        return None
    best, best_ratio = None, threshold
    for size in {max(1, n - 1), n, n + 1}:
        for start in range(0, max(1, len(lines) - size + 1)):
            window = lines[start : start + size]
            ratio = difflib.SequenceMatcher(None, wanted, "\n".join(w.strip() for w in window)).ratio()
            if ratio > best_ratio:
                best, best_ratio = "\n".join(window), ratio
    return best


def fit_indentation(code: str, block: str, new_block: str) -> str:
    """Indent ``new_block`` like ``block`` sits in ``code``, so splicing into a function body stays valid."""
    index = code.find(block)
    if index < 0:
        return new_block
    line_start = code.rfind("\n", 0, index) + 1
    prefix = code[line_start:index]  # whitespace before the block on its first line, if it starts mid-line
    if prefix.strip():
        return new_block  # the block starts after code on its line; leave the answer as it is
    first_line = block.lstrip("\n").splitlines()[0] if block.strip() else ""
    indent = prefix + first_line[: len(first_line) - len(first_line.lstrip())]
    body = textwrap.dedent(new_block).strip("\n")
    if not indent:
        return body + ("\n" if block.endswith("\n") else "")
    lines = textwrap.indent(body, indent).splitlines()
    if lines and prefix:
        # The first line's leading whitespace is already in the script before the block.
        lines[0] = lines[0][len(prefix) :]
    return "\n".join(lines) + ("\n" if block.endswith("\n") else "")
