"""The LLM brain: prompts per agent role, parsers that check every answer, over ``mlestar.llm``."""

from mlestar.brain.llm.brain import LLMBrain
from mlestar.brain.llm.build import build_llm_brain
from mlestar.brain.llm.prompts import ROLES

__all__ = ["ROLES", "LLMBrain", "build_llm_brain"]
