"""The Jinja environment the expert's templates render in, and Python literals as a person writes them.

Its own module so that the block and card registries can render templates without importing the
script renderer that reads them.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jinja2

from mlestar.core import contract

TEMPLATE_DIR = Path(__file__).parent / "templates"


def py_literal(value: Any, width: int = 100) -> str:
    """Python source for a JSON-like value, with double-quoted strings as a person would write.

    A dict too long for one line is written one key per line.
    """
    flat = _flat_literal(value)
    if isinstance(value, dict) and len(flat) > width and value:
        items = "".join(f"    {_flat_literal(k)}: {_flat_literal(v)},\n" for k, v in value.items())
        return "{\n" + items + "}"
    if isinstance(value, list) and len(flat) > width and value:
        lines, line = [], ""
        for item in (_flat_literal(v) + "," for v in value):
            if line and len(line) + len(item) + 1 > width - 4:
                lines.append(line)
                line = item
            else:
                line = f"{line} {item}" if line else item
        lines.append(line)
        return "[\n" + "".join(f"    {text}\n" for text in lines) + "]"
    return flat


def _flat_literal(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple):
        inner = ", ".join(_flat_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_flat_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat_literal(k)}: {_flat_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as a Python literal")


_env_lock = threading.Lock()
_env: jinja2.Environment | None = None


def environment() -> jinja2.Environment:
    global _env
    with _env_lock:
        if _env is None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
                autoescape=False,
            )
            env.filters["py"] = py_literal
            env.globals.update(contract.template_globals())
            _env = env
        return _env


def render_template(template: str, **values: Any) -> str:
    """``template`` (a path under ``templates/``) rendered with ``values``."""
    return environment().get_template(template).render(**values)
