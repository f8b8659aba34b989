"""Thread-safe parsing of Python source.

CPython before 3.11.8 can corrupt the parser's recursion counter when several threads parse at once
("AST constructor recursion depth mismatch", gh-106905), and the pipeline's tracks run in threads.
Every part of mlestar that parses generated code goes through these.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_AST_LOCK = threading.Lock()


def parse_python(code: str) -> ast.Module:
    with _AST_LOCK:
        return ast.parse(code)


def literal_eval(text: str) -> Any:
    with _AST_LOCK:
        return ast.literal_eval(text)
