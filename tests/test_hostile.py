"""Suite 1: scripts that attack the machine, through the real pipeline and sandbox, as root and as an
unprivileged user. Every route must be held, every resource bomb stopped, and the run must finish."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hostile import check_containment, expected_kills, run_suite

from mlestar.exec import isolation_support, sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TESTS = Path(__file__).resolve().parent


def _say(capsys: pytest.CaptureFixture, line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


def _summary_line(summary: dict, verdict) -> str:
    total = verdict.contained
    return (
        f"hostile suite as {summary['user']} ({summary['sandbox']}): {total}/{total} cases contained "
        f"({len(verdict.routes_held)} attack routes held, {len(verdict.killed)} scripts stopped: "
        f"{', '.join(f'{label} for {reason}' for label, reason in sorted(expected_kills().items()))})"
    )


@pytest.mark.parametrize("tool", ["bwrap", "unshare"])
def test_hostile_scripts_are_contained(tool: str, tmp_path: Path, capsys, monkeypatch) -> None:
    support = isolation_support(True, tools=(tool,))
    if support.tool != tool:
        pytest.skip(f"{tool} does not work here: {support.reason}")
    # The fallback without bubblewrap: unshare's namespaces, the launcher confining by hand.
    monkeypatch.setattr(sandbox, "isolation_support", lambda cut: isolation_support(cut, tools=(tool,)))
    summary = run_suite(tmp_path)
    assert summary["sandbox"] == tool
    verdict = check_containment(summary)
    assert set(expected_kills()) <= set(verdict.killed)
    assert len(verdict.routes_held) >= 40  # the dev candidate and the final script each try every route
    _say(capsys, _summary_line(summary, verdict))


def _nobody_python() -> list[str] | None:
    """This checkout's Python as user nobody (root only), or None."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    site = next((p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()), None)
    src = str(TESTS.parent / "src")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"]
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        if not Path(python).exists():
            continue
        command = [*drop, f"PYTHONPATH={src}:{TESTS}:{site}", "HOME=/nonexistent", python]
        probe = subprocess.run(
            [*command, "-c", "import mlestar.pipeline, hostile"], capture_output=True, timeout=60
        )
        if probe.returncode == 0:
            return command
    return None


def test_hostile_scripts_are_contained_for_an_unprivileged_user(capsys: pytest.CaptureFixture) -> None:
    command = _nobody_python()
    if command is None:
        pytest.skip("needs root (to become nobody), setpriv and a Python that nobody can run")
    root = Path(tempfile.mkdtemp(prefix="mlestar-hostile-nobody-"))
    os.chown(root, 65534, 65534)
    try:
        done = subprocess.run(
            [*command, str(TESTS / "hostile.py"), str(root)], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["user"] == "nobody"
        verdict = check_containment(summary)
        assert set(expected_kills()) <= set(verdict.killed)
        _say(capsys, _summary_line(summary, verdict))
    finally:
        shutil.rmtree(root, ignore_errors=True)
