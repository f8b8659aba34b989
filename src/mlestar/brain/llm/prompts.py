"""Rendering the per-agent prompt templates (``prompts/<role>.md``, Jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from mlestar.core import contract
from mlestar.llm.providers import Message

PROMPT_DIR = Path(__file__).parent / "prompts"

ROLES = (
    "summarizer",
    "retriever",
    "candidate",
    "merger",
    "leakage_checker",
    "leakage_fixer",
    "data_usage",
    "ablation",
    "ablation_summarizer",
    "extractor",
    "coder",
    "planner",
    "ensemble_planner",
    "ensembler",
    "debugger",
    "submission",
)


class PromptRenderer:
    """Loads every template once at start, so rendering from many threads never touches the disk."""

    def __init__(self, directory: Path = PROMPT_DIR) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,  # a missing variable is a bug, not an empty string
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )
        self.env.globals.update(contract.template_globals())
        self.system = self.env.get_template("system.md").render().strip()
        self.templates = {role: self.env.get_template(f"{role}.md") for role in ROLES}

    def render(self, role: str, variables: dict[str, Any]) -> list[Message]:
        user = self.templates[role].render(role=role, **variables).strip() + "\n"
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
