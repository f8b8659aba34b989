"""End to end in a real browser: start an offline run from the UI, watch it, stop it, resume it, download."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from test_server_support import live_server

from mlestar.server import ServerOptions, create_app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "churn"
# Small loops: the whole pipeline in well under a minute on two cores.
TINY_SETTINGS = """\
num_models: 2
num_tracks: 1
outer_steps: 1
inner_steps: 1
ensemble_rounds: 0
debug_retries: 1
script_timeout_s: 60
workers: 1
threads_per_script: 1
"""


def _not_ready() -> str | None:
    if not EXAMPLE.is_dir():
        return f"{EXAMPLE} is missing"
    try:
        import mlestar.pipeline  # noqa: F401
        from mlestar.brain.expert import ExpertBrain  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - a pipeline being written can fail to import in many ways
        return f"the offline pipeline is not available yet ({type(exc).__name__}: {exc})"
    return None


NOT_READY = _not_ready()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(NOT_READY is not None, reason=NOT_READY or ""),
]


def count(page: Any, selector: str) -> int:
    return int(page.locator(selector).count())


def test_offline_run_watched_stopped_resumed_and_downloaded(open_page: Any, tmp_path: Path) -> None:
    app = create_app(ServerOptions(runs_dir=tmp_path / "runs", poll_interval_s=0.2))
    launcher = app.state.service.launcher
    try:
        with live_server(app) as base:
            page = open_page(base)
            page.goto(base + "/")
            page.locator("#new-competition").fill(str(EXAMPLE))
            page.locator("#new-time-limit").fill("600")
            page.locator("#new-config").fill(TINY_SETTINGS)
            page.locator("#new-submit").click()
            expect(page.locator("#run-status")).to_have_text("running", timeout=60_000)

            # The chart and the tree grow while the run goes on.
            expect(page.locator("#tree .node").first).to_be_visible(timeout=60_000)
            expect(page.locator("#chart svg.score-chart:not([data-points='0'])")).to_be_visible(
                timeout=60_000
            )
            scripts_before = count(page, "#tree .node")
            points_before = int(page.locator("#chart svg").get_attribute("data-points") or 0)
            page.wait_for_function(
                "([n, p]) => document.querySelectorAll('#tree .node').length > n &&"
                " Number(document.querySelector('#chart svg').dataset.points) > p",
                arg=[scripts_before, points_before],
                timeout=90_000,
            )

            page.locator("#btn-stop").click()
            expect(page.locator("#run-status")).to_have_text("stopped", timeout=60_000)
            expect(page.locator("#btn-resume")).to_be_enabled()
            stopped_at = count(page, "#tree .node")

            page.locator("#btn-resume").click()
            expect(page.locator("#run-status")).to_have_text("finished", timeout=180_000)
            assert count(page, "#tree .node") > stopped_at
            expect(page.locator("#events")).to_contain_text("run_resumed")
            expect(page.locator('#phases .phase[data-state="done"]')).to_have_count(4)

            with page.expect_download() as download:
                page.locator("#dl-submission-csv").click()
            rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
            sample = list(csv.reader((EXAMPLE / "sample_submission.csv").open()))
            assert rows[0] == sample[0] and len(rows) == len(sample)
            expect(page.locator("#dl-report-html")).to_be_visible()
            assert page.offsite == [] and page.errors == []
    finally:
        _end_spawned(launcher)


def _end_spawned(launcher: Any) -> None:
    """Stop the pipeline processes this test started (by their own process group ids)."""
    for launch in launcher.all():
        if launch.alive:
            os.killpg(launch.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for launch in launcher.all():
        while launch.alive and time.monotonic() < deadline:
            time.sleep(0.1)
        if launch.alive:
            os.killpg(launch.process.pid, signal.SIGKILL)
