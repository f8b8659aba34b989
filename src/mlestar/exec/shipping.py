"""Moving a script's folder to a worker that does not see the run's filesystem, and its outputs back.

The driver packs a run's input view once (its links resolved: the worker gets the files, not links
into a folder it cannot see) and the worker unpacks it once per node into a read-only cache shared
by every script of that view. After the script, the worker packs what the script left (its
``stdout.txt`` and ``stderr.txt``, ``final/`` and, up to a cap, ``working/``) and the driver
unpacks it into the script's own folder, so the rest of mlestar finds everything where it would
after a local run.

Limits (what a shared filesystem does not have): an input view of at most
:data:`MAX_INPUT_BYTES` can be shipped; at most :data:`MAX_WORKING_BYTES` of ``working/`` comes
back (files beyond it are named in a warning and left behind); logs and ``final/`` always come back.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from mlestar.core.contract import FINAL_DIR, INPUT_DIR, SCRIPT_NAME, WORKING_DIR
from mlestar.errors import MlestarError
from mlestar.exec.workspace import make_writable

MAX_INPUT_BYTES = 1 << 30  # 1 GiB of input data per view; bigger data needs a shared filesystem
MAX_WORKING_BYTES = 256 << 20  # what comes back of working/
LOG_FILES = ("stdout.txt", "stderr.txt")
STALE_INPUT_S = 24 * 3600  # a node's cached input unused this long is removed
_COMPLETE = ".complete"  # marks a cache entry whose unpacking finished


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(path inside ``root``, real file) for every regular file under ``root``, links followed."""
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_file():
                yield path.relative_to(root).as_posix(), path


def input_fingerprint(input_dir: Path) -> tuple[str, int]:
    """A key for an input view (names, sizes and times of its files) and its size in bytes."""
    digest = hashlib.sha256()
    total = 0
    for name, path in _files(input_dir):
        stat = path.stat()
        total += stat.st_size
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24], total


def pack_input(input_dir: Path) -> tuple[str, bytes]:
    """The input view as a tar archive of real files, and its key; refuses views over the cap."""
    key, total = input_fingerprint(input_dir)
    if total > MAX_INPUT_BYTES:
        raise MlestarError(
            f"the scripts' input data ({total / 2**30:.1f} GiB) is too large to ship to Ray workers "
            f"(at most {MAX_INPUT_BYTES / 2**30:.0f} GiB): put the run folder and the competition on "
            "a filesystem every node mounts at the same path (ray_shared_fs)"
        )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", dereference=True) as tar:
        for name, path in _files(input_dir):
            tar.add(path, arcname=name, recursive=False)
    return key, buffer.getvalue()


def _checked_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Regular files and folders with plain relative names: nothing an archive could escape with."""
    members = []
    for member in tar.getmembers():
        parts = PurePosixPath(member.name).parts
        if not parts or member.name.startswith("/") or ".." in parts:
            raise MlestarError(f"refusing an archive entry outside its folder: {member.name!r}")
        if member.isfile() or member.isdir():
            members.append(member)
    return members


def _extract(archive: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        members = _checked_members(tar)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.10.12: the members were checked above
            tar.extractall(dest, members=members)


def node_input(cache: Path, key: str, fetch: Callable[[], bytes]) -> Path:
    """The input view ``key`` in this node's ``cache``: unpacked from ``fetch()`` by the first
    script that needs it, shared read-only by the others."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / key
    if not (target / _COMPLETE).exists():
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        _extract(fetch(), scratch)
        (scratch / _COMPLETE).touch()
        _read_only(scratch)
        try:
            scratch.rename(target)  # atomic: a script on the same node never sees half a view
        except OSError:  # another script unpacked it first
            make_writable(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    os.utime(target)  # its last use, for evicting stale views
    evict_stale_inputs(cache, keep=key)
    return target


def evict_stale_inputs(cache: Path, keep: str, max_age_s: float = STALE_INPUT_S) -> None:
    now = time.time()
    for entry in cache.iterdir():
        if entry.name == keep or not entry.is_dir():
            continue
        try:
            stale = now - entry.stat().st_mtime > max_age_s
        except OSError:
            continue
        if stale:
            make_writable(entry)
            shutil.rmtree(entry, ignore_errors=True)


def _read_only(root: Path) -> None:
    for folder, _dirs, names in os.walk(root, topdown=False):
        for name in names:
            os.chmod(Path(folder) / name, 0o444)
        os.chmod(folder, 0o555)


def lay_out(workdir: Path, code: str, input_dir: Path) -> None:
    """A script folder on the worker: the script, ``input`` -> the cached view, empty outputs."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / SCRIPT_NAME).write_text(code, encoding="utf-8")
    (workdir / INPUT_DIR).symlink_to(input_dir, target_is_directory=True)
    (workdir / WORKING_DIR).mkdir()
    (workdir / FINAL_DIR).mkdir()


def pack_outputs(workdir: Path, max_working_bytes: int = MAX_WORKING_BYTES) -> tuple[bytes, list[str]]:
    """The script's logs, ``final/`` and as much of ``working/`` as the cap allows; and what was
    left behind. Links and special files are never packed (a script could point them anywhere)."""
    buffer = io.BytesIO()
    left: list[str] = []
    room = max_working_bytes
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in LOG_FILES:
            if (workdir / name).is_file() and not (workdir / name).is_symlink():
                tar.add(workdir / name, arcname=name, recursive=False)
        for folder in (FINAL_DIR, WORKING_DIR):
            for path in sorted(_own_files(workdir / folder)):
                name = path.relative_to(workdir).as_posix()
                size = path.stat().st_size
                if folder == WORKING_DIR:
                    if size > room:
                        left.append(name)
                        continue
                    room -= size
                tar.add(path, arcname=name, recursive=False)
    return buffer.getvalue(), left


def _own_files(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` reached without following any link."""
    if not root.is_dir() or root.is_symlink():
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                yield path


def unpack_outputs(archive: bytes, workdir: Path) -> None:
    """Put what a worker brought back into the script's own folder."""
    _extract(archive, workdir)
