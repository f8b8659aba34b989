"""Shared fixtures (the helpers live in competitions.py so tests can import them by name)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The dataset builders and baselines are development tooling in benchmarks/, imported by name.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from competitions import TINY_CONFIG, make_competition
from scripted import FakeClock

__all__ = ["TINY_CONFIG", "make_competition"]


@pytest.fixture()
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The run budget's clock, moved only by the scripted executor (pass it to ScriptedExecutor)."""
    from mlestar.pipeline import budget

    clock = FakeClock()
    monkeypatch.setattr(budget, "_now", clock)
    return clock


@pytest.fixture()
def tiny_binary(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "tiny-binary", "binary", n_rows=400)


@pytest.fixture()
def tiny_regression(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "tiny-regression", "regression", n_rows=400)
