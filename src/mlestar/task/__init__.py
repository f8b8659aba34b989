"""Competition intake: the ``Task`` model and ``load_task``.

``load_task`` is imported lazily so that code needing only the models does not pay for pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlestar.core.task import ColumnProfile, DataFile, FileRole, Modality, Task, TaskType

if TYPE_CHECKING:
    from mlestar.task.intake import load_task

__all__ = ["ColumnProfile", "DataFile", "FileRole", "Modality", "Task", "TaskType", "load_task"]


def __getattr__(name: str) -> Any:
    if name == "load_task":
        from mlestar.task.intake import load_task

        return load_task
    raise AttributeError(f"module 'mlestar.task' has no attribute {name!r}")
