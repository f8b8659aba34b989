"""The sandbox's launcher: its pure helpers, and the file run as ``python -I -S -c <text>``."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlestar.exec import launcher

pytestmark = pytest.mark.timeout(60)

LAUNCHER_PATH = Path(launcher.__file__)
LAUNCHER_TEXT = LAUNCHER_PATH.read_text(encoding="utf-8")
LINUX = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")


# ---------------------------------------------------------------- pure helpers


def test_parse_args() -> None:
    config = '{"data_limit": 1048576, "file_limit": 4096, "loopback": true, "hidden": ["/a/b", "/c"]}'
    args = launcher.parse_args(["7", "9", config, "--", "/usr/bin/python3", "script.py"])
    assert (args.status_fd, args.lifeline_fd, args.data_limit, args.loopback) == (7, 9, 1048576, True)
    assert args.file_limit == 4096 and args.process_limit == 0
    assert args.hidden == ["/a/b", "/c"] and args.confine is None and not args.drop_privileges
    assert args.command == ["/usr/bin/python3", "script.py"]


def test_parse_args_defaults_to_no_limits() -> None:
    args = launcher.parse_args(["3", "4", "{}", "--", "python", "script.py", "--flag"])
    assert args.loopback is False and args.hidden == [] and args.data_limit == 0
    assert args.command == ["python", "script.py", "--flag"]


def test_parse_args_rejects_a_bad_command_line() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        launcher.parse_args(["3", "four", "{}", "--", "python", "script.py"])
    with pytest.raises(ValueError, match="usage"):
        launcher.parse_args(["3", "4", "{}", "python", "script.py"])
    with pytest.raises(ValueError, match="JSON object"):
        launcher.parse_args(["3", "4", "[1]", "--", "python"])


def test_in_user_namespace_reads_the_uid_map(tmp_path: Path) -> None:
    identity, mapped = tmp_path / "identity", tmp_path / "mapped"
    identity.write_text("         0          0 4294967295\n")
    mapped.write_text("         0       1000          1\n")
    assert not launcher.in_user_namespace(str(identity))
    assert launcher.in_user_namespace(str(mapped))
    assert not launcher.in_user_namespace(str(tmp_path / "missing"))


def test_parent_of_reads_past_parentheses_in_the_command_name() -> None:
    assert launcher.parent_of(b"42 (python3) S 7 42 42 0 -1 4194560") == 7
    assert launcher.parent_of(b"43 (a) b (c)) R 1234 43 43 0") == 1234


def _fake_proc(root: Path, stats: dict[str, bytes]) -> Path:
    for name, stat in stats.items():
        (root / name).mkdir()
        (root / name / "stat").write_bytes(stat)
    (root / "99").mkdir()  # a process that ended between listdir and open: no stat
    return root


def test_children_by_parent_skips_what_it_cannot_read(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        {
            "1": b"1 (init) S 0 1 1",
            "10": b"10 (a b) S 1 10 10",
            "11": b"11 ((x)) S 10 11 11",
            "20": b"20 (y) S 1 20 20",
            "30": b"garbage",
            "self": b"1 (not a pid) S 0",
        },
    )
    children = {parent: sorted(pids) for parent, pids in launcher.children_by_parent(str(proc)).items()}
    assert children == {0: [1], 1: [10, 20], 10: [11]}


def test_descendants_of_walks_the_whole_subtree() -> None:
    children = {1: [10, 20], 10: [11, 12], 12: [13], 20: [], 50: [51]}
    assert sorted(launcher.descendants_of(1, children)) == [10, 11, 12, 13, 20]
    assert sorted(launcher.descendants_of(10, children)) == [11, 12, 13]
    assert launcher.descendants_of(13, children) == []
    assert launcher.descendants_of(999, children) == []


@LINUX
def test_descendants_finds_a_real_grandchild() -> None:
    code = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        found = launcher.descendants()
        assert child.pid in found and grandchild in found
        assert os.getpid() not in found
    finally:
        for pid in (grandchild, child.pid):
            os.kill(pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()


def test_status_line() -> None:
    assert launcher.status_line(0, 5120) == "exit 0 5120\n"
    assert launcher.status_line(3 << 8, 7) == "exit 3 7\n"  # a wait status: the exit code sits in bits 8-15
    assert launcher.status_line(signal.SIGKILL, 1) == "signal 9 1\n"
    assert launcher.status_line(None, 0) == "lost 0 0\n"


# ---------------------------------------------------------------- the file itself


def test_importing_runs_nothing_and_needs_only_the_standard_library() -> None:
    # Under -I -S nothing but the standard library can be imported; had the module run main(),
    # parsing the empty argv would fail instead of printing.
    probe = textwrap.dedent(
        f"""
        import importlib.util, sys, threading
        spec = importlib.util.spec_from_file_location("launcher_under_test", {str(LAUNCHER_PATH)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names = set(sys.modules) - {{"__main__"}}
        foreign = sorted(n for n in names if n.split(".")[0] not in sys.stdlib_module_names)
        print(callable(module.main), threading.active_count(), foreign)
        """
    )
    command = [sys.executable, "-I", "-S", "-c", probe]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "True 1 []"


def test_every_import_is_from_the_standard_library() -> None:
    roots = set()
    for node in ast.walk(ast.parse(LAUNCHER_TEXT)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    assert roots, "the walk found no imports at all"
    assert roots <= set(sys.stdlib_module_names) | {"__future__"}, roots - set(sys.stdlib_module_names)


class Launched:
    """One run of the launcher, as the sandbox starts it but without namespaces."""

    def __init__(self, folder: Path, command: list[str], data_limit: int = 0, start: bool = True) -> None:
        self.status_r, status_w = os.pipe()
        lifeline_r, self.lifeline_w = os.pipe()
        fields = [str(status_w), str(lifeline_r), json.dumps({"data_limit": data_limit}), "--"]
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER_TEXT, *fields, *command],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(status_w, lifeline_r),
        )
        os.close(status_w)
        os.close(lifeline_r)
        if start:
            os.write(self.lifeline_w, b"g")

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        """(the launcher's exit code, the status line, stderr)."""
        try:
            _, stderr = self.proc.communicate(timeout=timeout)
        finally:
            self.close_lifeline()
        with os.fdopen(self.status_r, "rb") as status:
            return self.proc.returncode, status.read().decode(), stderr

    def close_lifeline(self) -> None:
        if self.lifeline_w >= 0:
            os.close(self.lifeline_w)
            self.lifeline_w = -1


def launch(folder: Path, code: str, data_limit: int = 0) -> Launched:
    (folder / "script.py").write_text(textwrap.dedent(code))
    return Launched(folder, [sys.executable, "script.py"], data_limit)


@LINUX
def test_reports_the_exit_code_and_peak_memory(tmp_path: Path) -> None:
    run = launch(tmp_path, 'block = b"x" * (64 << 20)\nraise SystemExit(3)\n')
    returncode, status, _ = run.finish()
    assert returncode == 0
    kind, code, peak_kb = status.split()
    assert (kind, code) == ("exit", "3")
    assert int(peak_kb) >= 64 * 1024


@LINUX
def test_reports_the_signal_that_ended_the_script(tmp_path: Path) -> None:
    run = launch(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    returncode, status, _ = run.finish()
    assert returncode == 0 and status.split()[:2] == ["signal", str(int(signal.SIGTERM))]


@LINUX
def test_missing_script_is_python_s_own_error(tmp_path: Path) -> None:
    run = Launched(tmp_path, [sys.executable, "no_such_script.py"])
    returncode, status, stderr = run.finish()
    assert returncode == 0 and status.split()[:2] == ["exit", "2"]
    assert "no_such_script.py" in stderr


@LINUX
def test_missing_interpreter_cannot_start(tmp_path: Path) -> None:
    run = Launched(tmp_path, [str(tmp_path / "no-python"), "script.py"])
    returncode, status, stderr = run.finish()
    assert returncode == 0 and status.split()[:2] == ["exit", str(launcher.RC_CANNOT_START)]
    assert f"mlestar launcher: cannot start {tmp_path / 'no-python'}" in stderr


@LINUX
def test_data_limit_turns_a_huge_allocation_into_memory_error(tmp_path: Path) -> None:
    run = launch(tmp_path, "block = bytearray(2 << 30)\n", data_limit=256 << 20)
    _, status, stderr = run.finish()
    assert status.split()[:2] == ["exit", "1"] and "MemoryError" in stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@LINUX
def test_orphans_of_the_script_are_killed_when_it_ends(tmp_path: Path) -> None:
    run = launch(
        tmp_path,
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open("orphan.pid", "w") as out:
                    out.write(str(os.getpid()))
                time.sleep(60)
            os._exit(0)
        while not os.path.exists("orphan.pid"):
            time.sleep(0.01)
        time.sleep(0.1)
        """,
    )
    _, status, _ = run.finish()
    assert status.split()[:2] == ["exit", "0"]
    assert not _alive(int((tmp_path / "orphan.pid").read_text()))


@LINUX
def test_closing_the_lifeline_kills_the_script(tmp_path: Path) -> None:
    run = launch(
        tmp_path,
        """
        import os, pathlib, time
        pathlib.Path("script.pid").write_text(str(os.getpid()))
        time.sleep(60)
        """,
    )
    pid_file = tmp_path / "script.pid"
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    run.close_lifeline()
    returncode, status, _ = run.finish(timeout=10)
    assert time.monotonic() - started < 10
    assert not _alive(int(pid_file.read_text()))
    # Whichever thread is first: the one waiting for the script reports its SIGKILL, or the
    # lifeline's exits at once with no report.
    assert (returncode, status.split()[:2]) in ((0, ["signal", "9"]), (launcher.RC_KILLED, []))


@LINUX
def test_the_script_waits_for_the_go_byte_and_never_starts_without_it(tmp_path: Path) -> None:
    (tmp_path / "script.py").write_text("open('started', 'w').close()\n")
    run = Launched(tmp_path, [sys.executable, "script.py"], start=False)
    time.sleep(0.3)
    assert not (tmp_path / "started").exists()
    run.close_lifeline()  # the sandbox gave up before the start: the launcher leaves at once
    returncode, status, _ = run.finish(timeout=10)
    assert returncode == launcher.RC_KILLED and status == ""
    assert not (tmp_path / "started").exists()
