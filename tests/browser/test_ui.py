"""The web UI in a real headless Chromium, over synthetic run stores written while the page watches."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from recording import publish
from test_server_support import (
    RUN_ID,
    FakeRun,
    build_finished_run,
    live_server,
    recorded_calls,
    write_fake_python,
)

from mlestar.core.events import EventType
from mlestar.server import ServerOptions
from mlestar.store import Control, RunStatus, RunStore

pytestmark = pytest.mark.browser


def settings(runs_dir: Path, **extra: Any) -> ServerOptions:
    return ServerOptions(runs_dir=runs_dir, poll_interval_s=0.1, **extra)


def test_finished_run_can_be_inspected(open_page: Any, tmp_path: Path) -> None:
    build_finished_run(tmp_path / "runs")
    with live_server(settings(tmp_path / "runs")) as base:
        page = open_page(base)
        page.goto(base + "/")
        row = page.locator(f'tr[data-run="{RUN_ID}"]')
        expect(row).to_contain_text("finished")
        row.get_by_role("link").click()

        expect(page.locator("#run-status")).to_have_text("finished")
        expect(page.locator("#best-score")).to_have_text("0.88")
        expect(page.locator("#tree .node")).to_have_count(10)
        expect(page.locator("#tree .node.failed")).to_have_count(2)
        expect(page.locator("#tree .node.best")).to_have_attribute("data-node", "9")
        expect(page.locator("#chart svg")).to_have_attribute("data-points", "7")
        expect(page.locator("#phases .phase.done")).to_have_count(4)
        for button in ("#btn-pause", "#btn-resume", "#btn-stop"):
            expect(page.locator(button)).to_be_disabled()

        page.locator('#tree .node[data-node="6"]').click()
        expect(page).to_have_url(re.compile(r"#/runs/.+/scripts/6$"))
        expect(page.locator("#viewer-code")).to_contain_text("bins = 10")
        expect(page.locator("#viewer")).to_contain_text("Use finer tenure bins")
        expect(page.locator("#viewer")).to_contain_text("ray node 5c0ffee00000 (10.0.0.5)")
        page.locator("#tab-diff").click()
        expect(page.locator("#tab-diff")).to_have_text("diff vs #4")
        expect(page.locator("#viewer-diff .add")).to_contain_text(
            ["+bins = 10", "+model = LogisticRegression(C=0.5)"]
        )
        expect(page.locator("#viewer-diff .del")).to_contain_text(["-model = LogisticRegression(C=4.0)"])
        page.locator("#tab-stdout").click()
        expect(page.locator("#viewer-stdout")).to_contain_text("Final Validation Performance: 0.87")
        page.locator('#tree .node[data-node="7"]').click()
        page.locator("#tab-stderr").click()
        expect(page.locator("#viewer-stderr")).to_contain_text("ValueError: bad shape")

        expect(page.locator("#ablations")).to_contain_text("Removing the tenure bins costs the most")
        expect(page.locator("#ablations")).to_contain_text("target not used")
        expect(page.locator("#llm-total")).to_contain_text("2 calls")
        expect(page.locator("#events li")).to_have_count(len(RunStore(tmp_path / "runs" / RUN_ID).events()))

        with page.expect_download() as download:
            page.locator("#dl-submission-csv").click()
        assert Path(download.value.path()).read_text().startswith("customer_id,churned")

        # A reload lands on the same script (the address holds it) and the same history.
        page.reload()
        expect(page.locator("#viewer-code")).to_contain_text("C=7.0")
        assert page.offsite == [] and page.errors == []


def test_live_run_updates_and_is_steered(
    open_page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_ARGV", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("FAKE_SLEEP", "3")
    runs = tmp_path / "runs"
    run = FakeRun(runs, "live").start()
    run.phase("phase1")
    run.script("candidate", "logistic regression", phase="phase1", score=0.8)
    with live_server(settings(runs, python=str(write_fake_python(tmp_path)))) as base:
        page = open_page(base)
        page.goto(base + "/#/runs/live")
        expect(page.locator("#run-status")).to_have_text("running")
        expect(page.locator("#tree .node")).to_have_count(1)
        expect(page.locator("#chart svg")).to_have_attribute("data-points", "1")
        expect(page.locator('#phases .phase[data-phase="phase1"]')).to_have_attribute("data-state", "active")

        # The pipeline writes; the page follows without a reload.
        run.script("candidate", "lightgbm", phase="phase1", score=0.9)
        expect(page.locator("#tree .node")).to_have_count(2)
        expect(page.locator("#chart svg")).to_have_attribute("data-points", "2")
        expect(page.locator("#best-score")).to_have_text("0.9")
        expect(page.locator("#events li.ev-best_updated")).to_have_count(2)

        page.locator("#btn-pause").click()
        wait_until(lambda: run.store.control() == Control.PAUSE)
        run.store.set_status(RunStatus.PAUSED)  # what the pipeline does at its next checkpoint
        publish(run.store, EventType.RUN_PAUSED, "paused")
        expect(page.locator("#run-status")).to_have_text("paused")
        page.locator("#btn-resume").click()
        wait_until(lambda: run.store.control() == Control.RUN)
        run.store.set_status(RunStatus.RUNNING)
        publish(run.store, EventType.RUN_RESUMED, "resumed after pause")
        expect(page.locator("#run-status")).to_have_text("running")

        page.locator("#btn-stop").click()
        wait_until(lambda: run.store.control() == Control.STOP)
        expect(page.locator("#run-note")).to_contain_text("stopping")
        expect(page.locator("#btn-stop")).to_be_disabled()
        run.finish(RunStatus.STOPPED)
        expect(page.locator("#run-status")).to_have_text("stopped")
        expect(page.locator('#phases .phase[data-phase="phase1"]')).to_have_attribute("data-state", "halted")

        # Resume of a stopped run starts `mlestar resume` (here a stand-in that records its call).
        page.locator("#btn-resume").click()
        wait_until(lambda: len(recorded_calls(tmp_path / "argv.jsonl")) == 1)
        assert recorded_calls(tmp_path / "argv.jsonl")[0]["argv"][2:4] == ["resume", "live"]
        expect(page.locator("#run-status")).to_have_text("starting")
        # ...and the resumed pipeline's events reach the page through a new stream.
        run.store.set_status(RunStatus.RUNNING)
        publish(run.store, EventType.RUN_RESUMED, "resumed live")
        run.script("merger", "lightgbm + logreg", phase="phase1", parents=(2, 1), score=0.95)
        expect(page.locator("#tree .node")).to_have_count(3)
        expect(page.locator("#best-score")).to_have_text("0.95")

        (run.dir / "submission.csv").write_text("id,target\n1,0.5\n")
        run.finish()
        expect(page.locator("#run-status")).to_have_text("finished")
        with page.expect_download() as download:
            page.locator("#dl-submission-csv").click()
        assert Path(download.value.path()).read_text() == "id,target\n1,0.5\n"
        assert page.offsite == [] and page.errors == []


def test_token_is_asked_for_and_kept_out_of_the_address(open_page: Any, tmp_path: Path) -> None:
    build_finished_run(tmp_path / "runs")
    token = "browser-test-token"
    with live_server(settings(tmp_path / "runs", token=token)) as base:
        page = open_page(base)
        page.goto(base + "/")
        page.locator("#token-input").fill("wrong-token")
        page.locator("#token-input").press("Enter")
        expect(page.locator("#token-form")).to_be_visible()
        page.locator("#token-input").fill(token)
        page.locator("#token-input").press("Enter")
        expect(page.locator(f'tr[data-run="{RUN_ID}"]')).to_be_visible()

        fresh = open_page(base)
        fresh.goto(f"{base}/?token={token}#/runs/{RUN_ID}")
        expect(fresh.locator("#run-status")).to_have_text("finished")
        expect(fresh.locator("#events li")).not_to_have_count(0)  # the stream got the token too
        assert "token" not in fresh.url
        with fresh.expect_download() as download:
            fresh.locator("#dl-submission-csv").click()
        assert Path(download.value.path()).read_text().startswith("customer_id")


def test_new_run_form(open_page: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_ARGV", str(tmp_path / "argv.jsonl"))
    monkeypatch.setenv("FAKE_SLEEP", "1")
    monkeypatch.setenv("FAKE_RC", "2")
    competition = tmp_path / "comp"
    competition.mkdir()
    with live_server(settings(tmp_path / "runs", python=str(write_fake_python(tmp_path)))) as base:
        page = open_page(base)
        page.goto(base + "/")
        expect(page.locator("#runs-body")).to_contain_text("No runs yet")
        page.locator("#new-competition").fill(str(tmp_path / "missing"))
        page.locator("#new-submit").click()
        expect(page.locator("#message")).to_contain_text("competition folder not found")

        page.locator("#new-competition").fill(str(competition))
        page.locator("#new-time-limit").fill("120")
        page.locator("#new-config").fill("num_models: 2\nouter_steps: 1")
        page.locator("#new-submit").click()
        expect(page).to_have_url(re.compile(r"#/runs/\d{8}-\d{6}-comp-[0-9a-f]{4}$"))
        expect(page.locator("#run-status")).to_have_text("starting")
        expect(page.locator("#run-status")).to_have_text("launch failed")
        expect(page.locator("#process-log")).to_contain_text("something the user should read")
        argv = recorded_calls(tmp_path / "argv.jsonl")[0]["argv"]
        assert argv[argv.index("--time-limit") + 1] == "120.0"
        assert page.errors == []


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
