"""Which tasks the offline expert can solve, and why not when it cannot.

Checked before a run is created, so a task it cannot do fails at once with one line naming the
reason and the way out (an LLM), rather than after four failed candidate scripts.
"""

from __future__ import annotations

from mlestar.core.task import Modality, Task, TaskType

# A classification target with more distinct labels than this, or mostly unique ones, is free text.
MAX_EXPERT_CLASSES = 500


def unsupported_reason(task: Task) -> str | None:
    """Why the expert cannot solve ``task``, or None when it can."""
    media = task.media
    if media is not None and media.kind not in ("image", "audio"):
        return f"its samples are per-row {media.kind} files, which the offline expert does not read"
    if media is not None and media.test_pattern is None:
        return (f"none of the {media.kind} files matches the test table or sample submission "
                "(expected its id or path column to name one file each)")
    media_modality = task.modality in (Modality.IMAGE, Modality.AUDIO, Modality.OTHER)
    if media is None and media_modality and not task.feature_columns:
        return (f"its samples are {task.modality.value} files that no train table column names "
                "(expected a column of file names or ids, or train/<label>/ class folders)")
    profiles = {c.name: c for c in task.columns}
    for target in task.target_columns:
        profile = profiles.get(target)
        if profile is None:
            continue
        mostly_unique = profile.n_unique > 50 and profile.n_unique > 0.5 * max(1, task.n_train_rows)
        free_text = profile.kind == "text" or (
            task.task_type is TaskType.MULTICLASS and (len(task.classes) > MAX_EXPERT_CLASSES or mostly_unique)
        )
        if free_text:
            return (f"its target '{target}' is free text ({profile.n_unique} distinct values in the sample): "
                    "a sequence-to-sequence task, not classification or regression")
    return None
