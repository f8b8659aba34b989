"""Run store: SQLite (WAL) + run folder."""

from mlestar.store.db import DB_NAME, SCHEMA_VERSION, RunStore, list_runs, open_run
from mlestar.store.models import Control, NodeRecord, NodeStatus, RunStatus, RunSummary

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "Control",
    "NodeRecord",
    "NodeStatus",
    "RunStatus",
    "RunStore",
    "RunSummary",
    "list_runs",
    "open_run",
]
