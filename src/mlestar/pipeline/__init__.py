"""The MLE-STAR pipeline: the four phases over the brain, the executor and the run store."""

from mlestar.pipeline.run import create_run, execute, resume, run
from mlestar.pipeline.summary import RunResult

__all__ = ["RunResult", "create_run", "execute", "resume", "run"]
