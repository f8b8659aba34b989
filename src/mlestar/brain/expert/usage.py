"""Data-usage check: does the script use every provided file and every useful column?

What is looked for, on the solution's spec and its code:
- auxiliary tables never read (their file name is absent from the code): joined on the key intake
  measured for them, one block per table (``joins.py``); a table whose key matches almost nothing
  is named in the reason and left out;
- feature columns the cleaning block drops although the profile calls them features;
- date columns without calendar features, text columns no model reads.
"""

from __future__ import annotations

import os

from mlestar.brain.expert.cards import CARDS
from mlestar.brain.expert.facts import task_facts
from mlestar.brain.expert.joins import describe, join_columns, plan_joins
from mlestar.brain.expert.solution import revise, spec_of
from mlestar.brain.expert.spec import strip_state
from mlestar.brain.protocol import BrainContext, DataUsageReport, Script


def check(ctx: BrainContext, script: Script) -> DataUsageReport:
    spec = spec_of(script)
    facts = spec.facts if spec is not None else task_facts(ctx)
    code = strip_state(script.code)
    unread = [name for name in facts.aux_files if os.path.basename(name) not in code]
    if spec is None:
        if unread:
            return DataUsageReport(
                all_used=False, script=None,
                reason=f"auxiliary files never read: {', '.join(unread)} (the script has no structure to extend)",
            )
        return DataUsageReport(all_used=True, reason="every provided table is read")

    new = spec.copy_deep()
    reasons = []
    joins, skipped = plan_joins(ctx.task, unread, spec)
    if joins:
        new.joins = new.joins + joins
        # the models' time estimates (sizing.py) grow with the columns the joins bring
        new.facts.n_features += sum(len(names) for j in joins for names in join_columns(j).values())
        reasons.append("join the unused auxiliary table(s) " + "; ".join(describe(j) for j in joins))
    dropped = [c for c in new.cleaning.drop_cols if c in facts.feature_cols]
    if dropped:
        new.cleaning.drop_cols = [c for c in new.cleaning.drop_cols if c not in dropped]
        reasons.append(f"stop dropping the feature column(s) {', '.join(dropped)}")
    if facts.date_cols and "datetime_parts" not in new.features.groups:
        new.features.groups.append("datetime_parts")
        reasons.append(f"add calendar features of {', '.join(facts.date_cols)}")
    text_read = any(CARDS[m.card].family in ("text_linear", "text_gbdt") for m in new.models)
    if facts.text_cols and not text_read and "text_stats" not in new.features.groups:
        new.features.groups.append("text_stats")
        reasons.append(f"add features of the text column(s) {', '.join(facts.text_cols)}, which no model reads")
    not_joined = f" (not joined: {'; '.join(skipped)})" if skipped else ""
    if not reasons:
        reason = f"every provided table and useful column is used{not_joined}"
        return DataUsageReport(all_used=True, reason=reason)
    new.history.append("data usage: " + "; ".join(reasons))
    revised = revise(script, spec, new, label=f"{script.label or spec.label} [+data]")
    return DataUsageReport(all_used=False, script=revised, reason="; ".join(reasons) + not_joined)
