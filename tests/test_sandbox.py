"""The sandbox against hostile scripts, its output handling, and the scrubbed environment."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from mlestar.core.contract import parse_score
from mlestar.exec import sandbox
from mlestar.exec.environment import THREAD_VARIABLES, scrubbed_env
from mlestar.exec.models import ExecLimits, ExecResult
from mlestar.exec.output import trim_output
from mlestar.exec.sandbox import RC_CANCELLED, RC_MEMORY, RC_TIMEOUT, isolation_support, run_script

pytestmark = pytest.mark.timeout(60)

NET_ISOLATION = isolation_support(True).network_namespace
NO_NET_REASON = f"no network namespace on this machine: {isolation_support(True).reason}"
BOTH_MODES = pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "launcher-only"])


def run_code(tmp_path: Path, code: str, **kwargs) -> ExecResult:
    limits = kwargs.pop("limits", ExecLimits(timeout_s=20, memory_mb=1024))
    (tmp_path / "working").mkdir(parents=True, exist_ok=True)
    (tmp_path / "script.py").write_text(textwrap.dedent(code))
    return run_script(tmp_path, limits, **kwargs)


def processes_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


# A child that calls setsid and double-forks, so it leaves the script's process group and is
# re-parented away from the script: what a plain `kill -- -pgid` would miss.
ESCAPER = """
import os, subprocess, sys, time
marker = sys.argv[1] if len(sys.argv) > 1 else {marker!r}
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)", marker])
        with open("working/pids.txt", "a") as out:
            out.write(f"{{os.getpid()}} {{proc.pid}}\\n")
        time.sleep(1000)
    os._exit(0)
deadline = time.time() + 10
while not os.path.exists("working/pids.txt") and time.time() < deadline:
    time.sleep(0.02)
time.sleep(0.3)
print("Final Validation Performance: 1")
"""


# ---------------------------------------------------------------- score and output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Validation Performance: 0.8123", 0.8123),
        ("Final Validation Performance: 3", 3.0),
        ("Final Validation Performance: -1.5e-3", -0.0015),
        ("Final Validation Performance: 2E+2", 200.0),
        ("Final Validation Performance: .5", 0.5),
        ("[fold 0] Final Validation Performance: 0.7 (rmse)", 0.7),
        ("Final Validation Performance:0.25", 0.25),
        ("Final Validation Performance: np.float64(0.91)", 0.91),
        ("Final Validation Performance: 0.1\nother\nFinal Validation Performance: 0.9\n", 0.9),
        ("Final Validation Performance: 0.9\nFinal Validation Performance: nan\n", None),
        ("Final Validation Performance: inf", None),
        ("Final Validation Performance: -Infinity", None),
        ("Final Validation Performance: ", None),
        ("no score here", None),
        ("", None),
    ],
)
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text) == (pytest.approx(expected) if expected is not None else None)


def test_trim_output_keeps_both_ends_and_says_how_much_went() -> None:
    text = "H" * 100 + "M" * 1000 + "T" * 50
    trimmed = trim_output(text, head=100, tail=50)
    assert trimmed.startswith("H" * 100) and trimmed.endswith("T" * 50)
    assert "M" not in trimmed
    assert "1000 characters omitted" in trimmed
    assert trim_output("short", head=2, tail=3) == "short"
    assert trim_output("x" * 20000) != "x" * 20000 and len(trim_output("x" * 20000)) < 10100


def test_result_output_files_score_and_return_code(tmp_path: Path) -> None:
    result = run_code(
        tmp_path,
        """
        import sys
        print("training...")
        print("Final Validation Performance: 0.75")
        print("a warning", file=sys.stderr)
        raise SystemExit(3)
        """,
    )
    assert result.returncode == 3
    assert result.score == 0.75
    assert "training..." in result.stdout and "a warning" in result.stderr
    assert "Final Validation Performance: 0.75" in (tmp_path / "stdout.txt").read_text()
    assert (tmp_path / "stderr.txt").read_text() == "a warning\n"
    assert result.wall_s > 0 and result.peak_memory_mb > 1
    assert not result.ok  # nonzero exit


def test_missing_score_line(tmp_path: Path) -> None:
    result = run_code(tmp_path, "print('done, but forgot the score')")
    assert result.returncode == 0 and result.score is None and not result.ok
    assert "Final Validation Performance" in result.error_text()


def test_traceback_reaches_stderr(tmp_path: Path) -> None:
    result = run_code(tmp_path, "import pandas\nraise ValueError('bad column xyz')")
    assert result.returncode == 1
    assert "ValueError: bad column xyz" in result.error_text()


def test_signal_death_is_negative(tmp_path: Path) -> None:
    result = run_code(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert result.returncode == -9
    assert not result.timed_out and not result.memory_exceeded


def test_stdin_is_closed(tmp_path: Path) -> None:
    result = run_code(tmp_path, "input()", limits=ExecLimits(timeout_s=5))
    assert not result.timed_out
    assert "EOFError" in result.stderr


def test_huge_output_is_capped_on_disk_but_score_still_found(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "OUTPUT_FILE_CAP", 1_000_000)
    result = run_code(
        tmp_path,
        """
        print("first line")
        for i in range(60000):
            print("noise line %06d ........................................" % i)
        print("Final Validation Performance: 0.625")
        print("last line")
        """,
    )
    assert result.score == 0.625
    assert (tmp_path / "stdout.txt").stat().st_size < 1_001_000
    assert "output cut at 1000000 bytes" in (tmp_path / "stdout.txt").read_text()
    assert result.stdout.startswith("first line") and result.stdout.rstrip().endswith("last line")
    assert "characters omitted" in result.stdout and len(result.stdout) < 12_000


def test_missing_script_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_script(tmp_path, ExecLimits())


# ---------------------------------------------------------------- time limit and process cleanup


@BOTH_MODES
def test_infinite_loop_is_killed_at_the_timeout(tmp_path: Path, namespaces: bool) -> None:
    started = time.monotonic()
    result = run_code(
        tmp_path,
        "print('spinning', flush=True)\nwhile True:\n    pass\n",
        limits=ExecLimits(timeout_s=2, memory_mb=1024),
        namespaces=namespaces,
    )
    elapsed = time.monotonic() - started
    assert result.timed_out and result.returncode == RC_TIMEOUT
    assert 1.9 <= elapsed < 5
    assert "spinning" in result.stdout  # output before the kill is kept
    assert "time limit" in result.error_text()


@BOTH_MODES
def test_escaped_children_die_with_the_script(tmp_path: Path, namespaces: bool) -> None:
    marker = f"mlestar-test-{uuid.uuid4()}"
    result = run_code(tmp_path, ESCAPER.format(marker=marker), namespaces=namespaces)
    assert result.returncode == 0, result.stderr
    assert result.score == 1
    pids = (tmp_path / "working" / "pids.txt").read_text().split()
    assert len(pids) == 2  # the setsid'd grandchild and its `sleep` child really started
    assert processes_with(marker) == []
    if not namespaces:  # without a PID namespace the pids are real: check them one by one
        for pid in map(int, pids):
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@BOTH_MODES
def test_timeout_kills_escaped_children_too(tmp_path: Path, namespaces: bool) -> None:
    marker = f"mlestar-test-{uuid.uuid4()}"
    code = ESCAPER.format(marker=marker) + "\nwhile True:\n    time.sleep(0.1)\n"
    result = run_code(tmp_path, code, limits=ExecLimits(timeout_s=2), namespaces=namespaces)
    assert result.timed_out
    assert (tmp_path / "working" / "pids.txt").exists()
    assert processes_with(marker) == []


def test_cancel_event_kills_the_script(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result = run_code(tmp_path, "import time\ntime.sleep(100)", cancel=stop)
    assert result.cancelled and result.returncode == RC_CANCELLED
    assert time.monotonic() - started < 3
    assert "cancelled" in result.error_text()


# ---------------------------------------------------------------- memory


def test_fifty_gigabytes_are_refused(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_code(
        tmp_path,
        """
        import numpy as np
        block = np.ones(50 * 1024**3 // 8)
        print("Final Validation Performance:", block.sum())
        """,
        limits=ExecLimits(timeout_s=20, memory_mb=512),
    )
    assert result.returncode != 0 and result.score is None
    assert result.memory_exceeded or "MemoryError" in result.stderr
    assert time.monotonic() - started < 15
    assert psutil.Process().memory_info().rss < 4 * 1024**3  # and this process is fine


def test_tree_over_the_memory_limit_is_killed(tmp_path: Path) -> None:
    # Three processes, each under the per-process rlimit, together over the budget: only the
    # tree watcher can catch this.
    result = run_code(
        tmp_path,
        """
        import subprocess, sys, time
        hog = "import time; block = b'x' * (150 * 1024 * 1024); time.sleep(60)"
        children = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(3)]
        time.sleep(60)
        """,
        limits=ExecLimits(timeout_s=30, memory_mb=300),
    )
    assert result.memory_exceeded and result.returncode == RC_MEMORY
    assert result.peak_memory_mb > 300
    assert result.wall_s < 20
    assert "memory limit" in result.error_text()


def test_memory_shared_by_forked_workers_counts_once(tmp_path: Path) -> None:
    # Three processes map the same 200 MB (copy-on-write after fork): RSS adds up to ~600 MB,
    # the memory really used is ~200 MB, under the 400 MB budget.
    result = run_code(
        tmp_path,
        """
        import os, time
        block = b"x" * (200 * 1024 * 1024)
        children = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                time.sleep(1.2)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
        print("Final Validation Performance: 1")
        """,
        limits=ExecLimits(timeout_s=20, memory_mb=400),
    )
    assert not result.memory_exceeded, result
    assert result.score == 1


def test_data_limit_has_headroom_above_the_budget() -> None:
    assert sandbox.data_limit_bytes(1000) >= 1000 * 1024 * 1024 + 256 * 1024 * 1024
    assert sandbox.data_limit_bytes(0) == 0


# ---------------------------------------------------------------- environment


SECRETS = {
    "OPENAI_API_KEY": "sk-test-openai-1234",
    "ANTHROPIC_API_KEY": "sk-ant-test-5678",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-9999",
    "AWS_ACCESS_KEY_ID": "AKIATEST",
    "GITHUB_TOKEN": "ghp_test_token",
    "KAGGLE_USERNAME": "kaggle-user-test",
    "KAGGLE_KEY": "kaggle-key-test",
    "MLESTAR_TOKEN": "mlestar-token-test",
    "DATABASE_PASSWORD": "hunter2-test",
    "SOME_SERVICE_SECRET": "service-secret-test",
    "HTTPS_PROXY": "http://user:pass@proxy.example:8080",
}


def test_script_sees_no_secrets(tmp_path: Path, monkeypatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = run_code(
        tmp_path,
        "import json, os\nprint(json.dumps(dict(os.environ)))",
        limits=ExecLimits(timeout_s=20, threads=3),
    )
    env = json.loads(result.stdout)
    for name, value in SECRETS.items():
        assert name not in env
        assert value not in result.stdout
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        assert env[name] == "3"
    assert env["HOME"] == str(tmp_path.resolve() / "working")
    assert env["MPLBACKEND"] == "Agg" and env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONHASHSEED"] == "0"


def test_scrubbed_env_is_an_allow_list() -> None:
    base = {
        "PATH": "/usr/bin",
        "LANG": "en_US.UTF-8",
        "LC_ALL": "C.UTF-8",
        "VIRTUAL_ENV": "/venv",
        "CUDA_VISIBLE_DEVICES": "0",
        "SOMETHING_UNKNOWN": "x",
        "MY_NEW_PROVIDER_APIKEY": "k",
        "PYTHONSTARTUP": "/home/u/.pythonrc",
        "LC_SECRET_TOKEN": "nope",
        "HOME": "/home/u",
        **SECRETS,
    }
    env = scrubbed_env(2, {"EXTRA": "1"}, home="/w/working", base=base)
    assert env["PATH"] == "/usr/bin" and env["LC_ALL"] == "C.UTF-8" and env["VIRTUAL_ENV"] == "/venv"
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["EXTRA"] == "1"
    for name in ("SOMETHING_UNKNOWN", "MY_NEW_PROVIDER_APIKEY", "PYTHONSTARTUP", "LC_SECRET_TOKEN", *SECRETS):
        assert name not in env
    assert env["HOME"] == "/w/working"
    assert all(env[name] == "2" for name in THREAD_VARIABLES)


READ_FILES = """
import sys
for path in sys.argv[1:] if len(sys.argv) > 1 else {paths!r}:
    try:
        with open(path) as handle:
            print(path, "READ", handle.read())
    except OSError as exc:
        print(path, "DENIED", type(exc).__name__)
"""


def _secret_files(tmp_path: Path) -> tuple[Path, list[Path], list[Path]]:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text('{"key": "kaggle-secret-value"}')
    (home / ".netrc").write_text("machine example.com password netrc-secret-value")
    private = tmp_path / "private"
    private.mkdir()
    (private / "answers.csv").write_text("id,y\n1,answer-secret-value\n")
    credentials = [home / ".kaggle" / "kaggle.json", home / ".netrc"]
    return home, credentials, [private / "answers.csv"]


@pytest.mark.skipif(not isolation_support(True).mount_namespace, reason="no private mount namespace here")
def test_private_and_credential_files_are_hidden(tmp_path: Path, monkeypatch) -> None:
    home, credentials, private = _secret_files(tmp_path)
    monkeypatch.setenv("HOME", str(home))  # where credential_paths() looks
    paths = [str(p) for p in credentials + private]
    result = run_code(tmp_path / "job", READ_FILES.format(paths=paths), hide=private)
    assert result.returncode == 0, result.stderr
    assert "secret-value" not in result.stdout
    assert all(path in result.stdout for path in paths)  # the script did try each of them
    assert not result.warnings
    # Covered for the script only: the machine still sees its files.
    assert "kaggle-secret-value" in (home / ".kaggle" / "kaggle.json").read_text()
    assert "answer-secret-value" in private[0].read_text()


def test_without_namespaces_hiding_is_reported(tmp_path: Path, monkeypatch) -> None:
    home, credentials, private = _secret_files(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    result = run_code(tmp_path / "job", READ_FILES.format(paths=[str(private[0])]), hide=private, namespaces=False)
    assert any("could not be hidden" in w and str(private[0]) in w for w in result.warnings)


# ---------------------------------------------------------------- network


@pytest.fixture
def listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


CONNECT = """
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
"""


@pytest.mark.skipif(not NET_ISOLATION, reason=NO_NET_REASON)
def test_isolated_script_cannot_reach_the_host(tmp_path: Path, listener: int) -> None:
    result = run_code(tmp_path, CONNECT.format(port=listener), limits=ExecLimits(timeout_s=20))
    assert result.network_isolated and not result.warnings
    assert "BLOCKED" in result.stdout, result.stdout


def test_network_allowed_script_reaches_the_host(tmp_path: Path, listener: int) -> None:
    result = run_code(tmp_path, CONNECT.format(port=listener), limits=ExecLimits(timeout_s=20, network=True))
    assert not result.network_isolated and not result.warnings
    assert "CONNECTED" in result.stdout, result.stdout


def test_without_isolation_the_result_warns(tmp_path: Path, listener: int) -> None:
    result = run_code(tmp_path, CONNECT.format(port=listener), namespaces=False)
    assert not result.network_isolated
    assert any("network access could not be cut" in w for w in result.warnings)
    assert "CONNECTED" in result.stdout


# ---------------------------------------------------------------- unprivileged


def test_user_namespace_path(tmp_path: Path, listener: int, monkeypatch) -> None:
    """What an unprivileged user gets (unshare --user --map-root-user ...), forced while root."""
    support = isolation_support(True, privileged=False)
    if not support.network_namespace:
        pytest.skip(f"no unprivileged user namespaces here: {support.reason}")
    assert support.user_namespace
    monkeypatch.setattr(sandbox, "isolation_support", lambda cut: isolation_support(cut, privileged=False))
    marker = f"mlestar-test-{uuid.uuid4()}"
    _home, _credentials, private = _secret_files(tmp_path)
    code = (
        ESCAPER.format(marker=marker)
        + CONNECT.format(port=listener)
        + READ_FILES.format(paths=[str(private[0])])
        + "raise SystemExit(5)\n"
    )
    result = run_code(tmp_path / "job", code, hide=private)
    assert result.returncode == 5 and result.score == 1 and result.network_isolated
    assert "BLOCKED" in result.stdout
    assert str(private[0]) in result.stdout and "secret-value" not in result.stdout
    assert processes_with(marker) == []


def _python_for_nobody() -> list[str] | None:
    """A command line that runs this checkout's mlestar as user nobody, or None."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    site = next((p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()), None)
    src = str(Path(sandbox.__file__).resolve().parents[2])
    drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}")
    for python in candidates:
        if not Path(python).exists():
            continue
        command = [*drop, f"PYTHONPATH={src}:{site}", "HOME=/tmp", python]
        probe = subprocess.run(
            [*command, "-c", f"import sys, mlestar.exec; assert sys.version.startswith('{version}')"],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return command
    return None


def test_really_unprivileged_user(listener: int) -> None:
    command = _python_for_nobody()
    if command is None:
        pytest.skip("needs root (to become nobody), setpriv and a Python that nobody can run")
    folder = Path(tempfile.mkdtemp(prefix="mlestar-nobody-"))
    try:
        (folder / "working").mkdir()
        (folder / "script.py").write_text(CONNECT.format(port=listener) + "print('Final Validation Performance: 2')")
        for path in (folder, folder / "working", folder / "script.py"):
            os.chown(path, 65534, 65534)
        driver = (
            "import json, sys; from mlestar.exec import ExecLimits, run_script;"
            f"r = run_script({str(folder)!r}, ExecLimits(timeout_s=20)); print(r.model_dump_json())"
        )
        done = subprocess.run([*command, "-c", driver], capture_output=True, text=True, timeout=50)
        assert done.returncode == 0, done.stderr
        result = ExecResult.model_validate_json(done.stdout.strip().splitlines()[-1])
        assert result.returncode == 0 and result.score == 2
        if result.network_isolated:
            assert "BLOCKED" in result.stdout
        else:  # e.g. Ubuntu's AppArmor denies unprivileged user namespaces
            assert result.warnings
    finally:
        shutil.rmtree(folder, ignore_errors=True)
