"""The expert brain: MLE-STAR's offline default author.

Layout (one responsibility per module):
- ``facts``: what a script needs to know about the task, derived from the context alone;
- ``cards``: the registry of model cards (template, imports, knobs) and their ranking per task;
- ``sizing``: boosting rounds / trees / learning rates sized to the script timeout;
- ``spec``: the structured solution state, carried in ``Script.info["expert"]`` and in a
  ``# mlestar-expert-state:`` comment on the last line of every script;
- ``blocks``: the registry of named code blocks (template, title, state in the spec), in script order;
- ``templating``, ``render``, ``templates/``: the Jinja environment and whole scripts rendered block by block;
- ``solution``: building specs and re-rendering changed blocks into existing code;
- ``merging``: candidates, merges and the switch to final mode;
- ``ablation``, ``moves``, ``refine``: the registry of ablation components (each names the block it
  speaks about), the catalogue of refinement moves, planning;
- ``ensemble``: planned ensembles of whole solutions;
- ``leakage``, ``usage``: the static checkers; ``debug``: recognised failures and their fixes;
- ``summary``: task summary, search queries, retrieval; ``brain``: the ``ExpertBrain`` facade.
"""

from mlestar.brain.expert.brain import ExpertBrain

__all__ = ["ExpertBrain"]
