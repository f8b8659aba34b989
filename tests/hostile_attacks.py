"""Attacks a hostile generated script makes on the machine (standard library only).

Not imported by the tests: :mod:`hostile` serves this file's text, followed by a call of ``main`` with
what to attack, as the code of a script that the real pipeline runs in the real sandbox. Every attack
checks its own effect from inside (a write through /dev/null "succeeds" but leaves nothing) and prints
``HELD <route>`` or ``BREACH <route>``; the test then checks the machine from outside, independently.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPORT: list[tuple[str, bool]] = []


def report(route: str, breached: bool) -> None:
    REPORT.append((route, breached))
    print(f"{'BREACH' if breached else 'HELD'} {route}", flush=True)


def attempt(route: str, action, effect) -> None:
    """Run ``action``; the route is breached when ``effect()`` then holds. ``effect=None``: only the
    test can tell, from outside (a file in the host's /tmp looks, from inside, like one in the
    script's private /tmp)."""
    try:
        action()
    except Exception as exc:  # refused: expected
        print(f"  {route}: {type(exc).__name__}: {exc}", flush=True)
    if effect is None:
        print(f"OUTSIDE {route}", flush=True)
        return
    try:
        breached = bool(effect())
    except Exception:
        breached = False
    report(route, breached)


def _append(path: str, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def _contains(path: str, text: str) -> bool:
    with open(path, errors="replace") as handle:
        return text in handle.read()


def _sha(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# -- reading what must stay private -------------------------------------------------------------
def read_answers(cfg: dict) -> None:
    answers, secret_sha = cfg["answers"], cfg["answers_sha"]
    data_dir = os.path.dirname(os.path.realpath("input/train.csv"))
    rel = os.path.relpath(answers, data_dir)
    routes = {
        "read answers directly": answers,
        "read answers through /proc/1/root": "/proc/1/root" + answers,
        "read answers through /proc/self/root": "/proc/self/root" + answers,
        "read answers following an input symlink": os.path.join(data_dir, rel),
        "read answers by '..' from the script folder": os.path.join(
            "..", *[".."] * (len(Path(os.getcwd()).parts) - 2), answers.lstrip("/")
        ),
    }
    for route, path in routes.items():

        def leaked(path: str = path) -> bool:
            return os.path.isfile(path) and _sha(path) == secret_sha

        attempt(route, lambda: None, leaked)
    attempt("list the private folder", lambda: None, lambda: len(os.listdir(os.path.dirname(answers))) > 0)
    attempt("read the canary", lambda: None, lambda: _sha(cfg["canary_file"]) == cfg["canary_sha"])
    for store in glob.glob(os.path.join(cfg["run_dir"], "*.sqlite*")):
        attempt(
            f"read the run store ({os.path.basename(store)})",
            lambda: None,
            lambda store=store: os.path.getsize(store) > 0 and len(open(store, "rb").read(64)) > 0,
        )


# -- writing outside the script's own folder ----------------------------------------------------
def write_outside(cfg: dict) -> None:
    mark = cfg["mark"][::-1]  # the script's text holds the marker reversed only
    train_real = os.path.realpath("input/train.csv")
    comp = cfg["competition"]
    attempt(
        "append to input/train.csv",
        lambda: _append("input/train.csv", mark),
        lambda: _contains(train_real, mark),
    )
    attempt(
        "overwrite the competition's train.csv",
        lambda: open(train_real, "w").write(mark),
        lambda: _contains(train_real, mark),
    )
    attempt(
        "delete the competition's train.csv",
        lambda: os.unlink(train_real),
        lambda: not os.path.exists(train_real),
    )
    attempt(
        "delete an entry of the input view",
        lambda: os.unlink("input/folds.csv"),
        lambda: not os.path.exists("input/folds.csv"),
    )
    attempt(
        "rename the input view's train.csv",
        lambda: os.rename("input/train.csv", "input/moved.csv"),
        lambda: os.path.lexists("input/moved.csv"),
    )
    attempt(
        "chmod the competition's files",
        lambda: os.chmod(train_real, 0),
        lambda: os.stat(train_real).st_mode & 0o777 == 0,
    )
    targets = {
        "create a file in the competition folder": os.path.join(comp, mark),
        "create a file next to the run (tmp folder of the test)": os.path.join(cfg["outside"], mark),
        "create a file in the home folder": os.path.join(cfg["home"], mark),
        "create a file in the Python environment (site-packages)": os.path.join(
            cfg["site_packages"], mark + ".pth"
        ),
        "create a file in the standard library": os.path.join(os.path.dirname(os.__file__), mark + ".py"),
        "create a file in the run folder": os.path.join(cfg["run_dir"], mark),
        "create a file through /proc/1/root": "/proc/1/root" + os.path.join(comp, mark),
        "create a file through /proc/self/root": "/proc/self/root" + os.path.join(comp, mark),
        "create a file in the input view": os.path.join("input", mark),
    }
    for route, path in targets.items():
        attempt(route, lambda path=path: open(path, "w").write(mark), lambda path=path: os.path.exists(path))
    attempt(
        "create a file in the host's /tmp", lambda: open(os.path.join("/tmp", mark), "w").write(mark), None
    )
    for store in glob.glob(os.path.join(cfg["run_dir"], "*.sqlite*")):
        attempt(
            f"corrupt the run store ({os.path.basename(store)})",
            lambda store=store: _append(store, mark),
            lambda store=store: os.path.getsize(store) > 0 and _contains(store, mark),
        )
    siblings = [
        p for p in glob.glob("../*/script.py") if os.path.realpath(p) != os.path.realpath("script.py")
    ]
    for sibling in siblings[:3]:
        attempt(
            f"edit a sibling script ({sibling})",
            lambda s=sibling: _append(s, "\n# " + mark),
            lambda s=sibling: _contains(s, mark),
        )
    attempt(
        "edit its own script.py",
        lambda: _append("script.py", "\n# " + mark),
        lambda: _contains("script.py", mark),
    )
    link = os.path.join("working", "hardlink")
    attempt(
        "hard-link a competition file and write through it",
        lambda: (os.link(train_real, link), _append(link, mark)),
        lambda: _contains(train_real, mark),
    )
    attempt(
        "remount / read-write",
        lambda: subprocess.run(["mount", "-o", "remount,rw", "/"], capture_output=True, timeout=10),
        lambda: os.access("/", os.W_OK) and _writable_probe("/"),
    )
    attempt(
        "unmount the cover of the private folder",
        lambda: subprocess.run(
            ["umount", "-l", os.path.dirname(cfg["answers"])], capture_output=True, timeout=10
        ),
        lambda: os.path.isfile(cfg["answers"]) and _sha(cfg["answers"]) == cfg["answers_sha"],
    )


def _writable_probe(folder: str) -> bool:
    probe = os.path.join(folder, f".probe-{os.getpid()}")
    try:
        open(probe, "w").close()
    except OSError:
        return False
    os.unlink(probe)
    return True


def leak_environment(cfg: dict) -> None:
    """Dump the environment where the run keeps outputs; it holds a key when a value's hash matches."""
    environ = "\n".join(f"{k}={v}" for k, v in os.environ.items())
    with open("working/environ.txt", "w") as out:
        out.write(environ)
    print(environ)
    hashes = {hashlib.sha256(value.encode()).hexdigest() for value in os.environ.values()}
    report("read API keys from the environment", bool(hashes & set(cfg["secret_hashes"])))


def open_sockets(cfg: dict) -> None:
    def connect(address) -> bool:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            try:
                sock.connect(address)
            except OSError as exc:
                print(f"  connect {address}: {exc}")
                return False
            return True

    report("connect to a TCP server on the host's loopback", connect(("127.0.0.1", cfg["tcp_port"])))
    report("connect to the internet", connect(("1.1.1.1", 53)))
    report("connect to a Unix socket of the host", connect(cfg["unix_socket"]))


# -- exhausting resources (the sandbox kills these; they report HELD only if they survive) --------
def fork_bomb(cfg: dict) -> None:
    marker = cfg["process_marker"]
    while True:
        try:
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
        except OSError:
            time.sleep(0.01)


def memory_bomb(cfg: dict) -> None:
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))


def disk_filler(cfg: dict) -> None:
    chunk = os.urandom(1 << 20)
    for index in range(100_000):
        with open(f"working/fill-{index}", "wb") as out:
            for _ in range(8):
                out.write(chunk)


def infinite_loop(cfg: dict) -> None:
    while True:
        pass


def orphans(cfg: dict) -> None:
    """Daemons that leave the script's session and outlive it, then try to write the data."""
    code = (
        "import os, sys, time\n"
        "time.sleep(3)\n"
        f"open({os.path.realpath('input/train.csv')!r}, 'a').write('late')\n"
        "time.sleep(600)\n"
    )
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            if os.fork() == 0:
                os.execv(sys.executable, [sys.executable, "-c", code, cfg["process_marker"]])
            os._exit(0)
    time.sleep(0.5)


def corrupt_own_folder(cfg: dict) -> None:
    """What it can reach is its own: wipe and fill it, then still hand in a result."""
    shutil.rmtree("working", ignore_errors=True)
    for name in os.listdir("working") if os.path.isdir("working") else []:
        os.unlink(os.path.join("working", name))
    os.makedirs("working/junk", exist_ok=True)
    with open("working/junk/data.bin", "wb") as out:
        out.write(os.urandom(1 << 20))
    report("break the run by wrecking its own folder", False)


ATTACKS = {
    "read": read_answers,
    "write": write_outside,
    "environment": leak_environment,
    "sockets": open_sockets,
    "fork_bomb": fork_bomb,
    "memory_bomb": memory_bomb,
    "disk_filler": disk_filler,
    "infinite_loop": infinite_loop,
    "orphans": orphans,
    "corrupt_own_folder": corrupt_own_folder,
}


def main(cfg: dict, attacks: list[str]) -> None:
    """Make the ``attacks``; a final run then hands in the sample submission (the score line follows)."""
    for name in attacks:
        ATTACKS[name](cfg)
    if os.path.exists("input/sample_submission.csv"):
        shutil.copyfile("input/sample_submission.csv", "final/submission.csv")
    print(f"ATTACKS DONE {len(REPORT)} routes")
