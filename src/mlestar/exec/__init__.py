"""Running generated scripts: the sandbox, their working folders, their output, executors."""

from __future__ import annotations

from typing import Any

from mlestar.core.contract import parse_score
from mlestar.exec.environment import credential_paths, scrubbed_env
from mlestar.exec.isolation import Isolation, isolation_support
from mlestar.exec.models import ExecLimits, ExecResult, ScriptJob
from mlestar.exec.output import trim_output
from mlestar.exec.pool import Executor, LocalExecutor
from mlestar.exec.sandbox import RC_CANCELLED, RC_DISK, RC_MEMORY, RC_PROCESSES, RC_TIMEOUT, run_script
from mlestar.exec.workspace import build_input_dir, make_writable, prepare_script_dir

__all__ = [
    "RC_CANCELLED",
    "RC_DISK",
    "RC_MEMORY",
    "RC_PROCESSES",
    "RC_TIMEOUT",
    "ExecLimits",
    "ExecResult",
    "Executor",
    "Isolation",
    "LocalExecutor",
    "RayExecutor",
    "ScriptJob",
    "build_input_dir",
    "credential_paths",
    "isolation_support",
    "make_writable",
    "parse_score",
    "prepare_script_dir",
    "run_script",
    "scrubbed_env",
    "trim_output",
]


def __getattr__(name: str) -> Any:
    # Ray is an optional extra: importing it only when asked keeps `import mlestar.exec` light.
    if name == "RayExecutor":
        from mlestar.exec.ray_pool import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
