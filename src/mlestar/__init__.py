"""mlestar: the MLE-STAR machine-learning engineering agent.

    import mlestar
    result = mlestar.run("examples/churn", time_limit_s=300)
    print(result.best_score, result.submission_path)

``arun`` is the same for notebooks and servers (runs in a worker thread); ``resume`` continues a
stopped or crashed run without redoing finished scripts.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from pathlib import Path
from typing import Any

__version__ = version("mlestar")  # pyproject.toml holds the one version number

__all__ = ["RunResult", "Settings", "__version__", "arun", "aresume", "load_task", "predict", "resume", "run"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `import mlestar` stays fast and light (no pandas/sklearn until needed).
    if name in ("run", "resume", "RunResult"):
        from mlestar import pipeline

        return getattr(pipeline, name)
    if name == "predict":
        from mlestar.pipeline.predict import predict

        return predict
    if name == "Settings":
        from mlestar.settings import Settings

        return Settings
    if name == "load_task":
        from mlestar.task import load_task

        return load_task
    raise AttributeError(name)


async def arun(competition: Path | str, **kwargs: Any) -> Any:
    """``run`` without blocking the event loop."""
    from mlestar.pipeline import run

    return await asyncio.to_thread(run, competition, **kwargs)


async def aresume(run_id: str, **kwargs: Any) -> Any:
    from mlestar.pipeline import resume

    return await asyncio.to_thread(resume, run_id, **kwargs)
