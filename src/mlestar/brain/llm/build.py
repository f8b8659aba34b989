"""Building the LLM brain for a run: the client over the run's ledger and event bus."""

from __future__ import annotations

from mlestar.brain.llm.brain import LLMBrain
from mlestar.core.events import EventBus
from mlestar.core.records import LLMLedger
from mlestar.settings import Settings


def build_llm_brain(settings: Settings, ledger: LLMLedger | None = None, bus: EventBus | None = None) -> LLMBrain:
    """The brain for ``mlestar run --llm SPEC``: keys and endpoints are checked now (one-line errors)."""
    return LLMBrain.from_settings(settings, ledger, bus)
