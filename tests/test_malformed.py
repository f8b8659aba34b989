"""Suite 3: broken competitions and bad settings end in one clear line and a non-zero exit, never a
traceback, and leave no run folder that could break ``mlestar ls``.

Every case runs in-process through ``mlestar.cli.main`` (fast tier) and through the installed
console script, as a user runs it (slow tier)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from malformed import CASES, cleanup, environment_of

from mlestar.cli import main as cli_main

NAMES = sorted(CASES)
CONSOLE_SCRIPT = Path(sys.executable).with_name("mlestar")


def test_the_suite_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25


def _judge(name: str, root: Path, code: int | None, stderr: str) -> list[str]:
    """What is wrong with a case's outcome (empty: one clear line, non-zero, no run folder)."""
    problems = []
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if code in (0, None):
        problems.append(f"exit status {code}")
    if "Traceback" in stderr:
        problems.append("a traceback")
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"{len(lines)} lines instead of one 'error: ...' line: {lines[:3]}")
    runs = root / "runs"
    left = [p.name for p in runs.iterdir() if not p.name.startswith(".")] if runs.is_dir() else []
    if left:
        problems.append(f"run folders left behind: {left}")
    return [f"{name}: {problem}" for problem in problems]


def _ls_works(root: Path, capsys: pytest.CaptureFixture) -> None:
    cli_main(["ls", "--runs-dir", str(root / "runs")])
    capsys.readouterr()


@pytest.mark.parametrize("name", NAMES)
def test_in_process(name: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    for key, value in environment_of(name).items():
        monkeypatch.setenv(key, value)
    argv = CASES[name](tmp_path)
    if "--runs-dir" not in argv:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    capsys.readouterr()
    try:
        cli_main(argv)
        code: int | None = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    problems = _judge(name, tmp_path, code, capsys.readouterr().err)
    monkeypatch.delenv("MLESTAR_NUM_MODELS", raising=False)
    if (tmp_path / "runs").is_dir():
        _ls_works(tmp_path, capsys)
    cleanup(tmp_path)
    assert not problems, problems


def _through_the_console_script(name: str, root: Path) -> list[str]:
    root.mkdir(parents=True)
    argv = CASES[name](root)
    if "--runs-dir" not in argv:
        argv += ["--runs-dir", str(root / "runs")]
    env = {**os.environ, **environment_of(name)}
    try:
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, timeout=120, env=env
        )
        problems = _judge(name, root, done.returncode, done.stderr)
    except subprocess.TimeoutExpired:
        problems = [f"{name}: still running after 120 s"]
    if (root / "runs").is_dir():
        listed = subprocess.run(
            [str(CONSOLE_SCRIPT), "ls", "--runs-dir", str(root / "runs")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if listed.returncode != 0:
            problems.append(f"{name}: mlestar ls fails afterwards: {listed.stderr.strip()[-300:]}")
    cleanup(root)
    return problems


@pytest.mark.slow
def test_through_the_console_script(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        outcomes = list(pool.map(lambda name: _through_the_console_script(name, tmp_path / name), NAMES))
    problems = [problem for outcome in outcomes for problem in outcome]
    with capsys.disabled():
        print(f"\nmalformed-input suite: {len(NAMES) - len(problems)}/{len(NAMES)} one-line errors")
    assert not problems, "\n".join(problems)
