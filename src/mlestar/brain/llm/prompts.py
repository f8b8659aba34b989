"""Rendering the per-agent prompt templates (``prompts/<role>.md``, Jinja2).

Every request is two messages: a system message that is the same for every role of a run (the
persona, the competition, its data profile, the rules of the script contract, the metric's
reference code: ``system.md`` and ``_shared.md``), and a user message with the role's own request.
The shared part comes first so that providers' prompt caches (OpenAI's automatic prefix cache,
Anthropic's ``cache_control`` block) serve it after the first call; only the final-mode roles
(the submission script and its debugging) see a second variant of it.
"""

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
        self.persona = self.env.get_template("system.md").render().strip()
        self.shared = self.env.get_template("_shared.md")
        self.templates = {role: self.env.get_template(f"{role}.md") for role in ROLES}

    def render(self, role: str, variables: dict[str, Any]) -> list[Message]:
        system = f"{self.persona}\n\n{self.shared.render(**variables).strip()}\n"
        user = self.templates[role].render(role=role, **variables).strip() + "\n"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]
