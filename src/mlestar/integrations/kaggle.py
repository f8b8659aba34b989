"""Kaggle competitions as local folders (``kaggle:NAME``, ``mlestar fetch``) and ``mlestar submit``.

The official ``kaggle`` package (``mlestar[kaggle]``) talks to Kaggle. Credentials come from
``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``KAGGLE_API_TOKEN`` (the environment or a ``.env`` file) or
from ``kaggle.json``; they are handed to the client in memory, never written to a run folder, and
never reach a script (a script's environment is an allow-list and ``~/.kaggle`` is hidden from it).

A download is unpacked (archives inside it too), gets a ``description.md`` with the competition's
overview and evaluation (intake reads the metric from it) and a marker saying it is complete, so
``kaggle:NAME`` is fetched once and afterwards runs from the cache like any local folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mlestar.errors import KaggleError
from mlestar.settings import secret

PREFIX = "kaggle:"
MARKER = ".mlestar-kaggle.json"  # a dotfile: intake does not read it as data
COMPETITIONS_URL = "https://www.kaggle.com/competitions"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")  # the competition's name in its Kaggle URL
_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_NESTING = 3  # archives inside archives are unpacked this deep
POLL_S = 5.0  # how often a submission's status is asked for while waiting for its score
T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    """Who the Kaggle client signs in as, and where that came from (for messages)."""

    source: str
    username: str | None = None
    key: str | None = None
    token: str | None = None

    def client_values(self) -> dict[str, str]:
        """The ``kaggle`` client's configuration keys for these credentials."""
        if self.token:
            return {"token": self.token, **({"username": self.username} if self.username else {})}
        return {"username": self.username or "", "key": self.key or ""}


@dataclass
class Fetched:
    """A competition folder made from a Kaggle download."""

    name: str
    path: Path
    from_cache: bool
    files: list[str] = field(default_factory=list)
    title: str | None = None
    evaluation_metric: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Submitted:
    """A submission and what Kaggle made of it within the wait."""

    competition: str
    ref: int | None
    status: str  # complete | pending | error
    public_score: str | None = None
    error: str | None = None

    @property
    def url(self) -> str:
        return f"{COMPETITIONS_URL}/{self.competition}/submissions"


def is_reference(value: object) -> bool:
    return str(value).startswith(PREFIX)


def competition_name(reference: str) -> str:
    """``titanic`` from ``kaggle:titanic`` (or from ``titanic`` or the competition's URL)."""
    name = reference.removeprefix(PREFIX).strip().rstrip("/").rsplit("/", 1)[-1]
    if not _NAME.fullmatch(name):
        raise KaggleError(
            f"{reference!r} is not a Kaggle competition name: use the name in its URL, as in kaggle:titanic"
        )
    return name


# -- credentials ---------------------------------------------------------------------------------


def _config_dirs() -> list[Path]:
    configured = secret("KAGGLE_CONFIG_DIR")
    if configured:
        return [Path(configured).expanduser()]
    return [Path.home() / ".kaggle", Path.home() / ".config" / "kaggle"]


def find_credentials() -> Credentials | None:
    """Kaggle credentials from the environment, a .env file or kaggle.json, or None."""
    token = secret("KAGGLE_API_TOKEN")
    if token:
        as_file = Path(token).expanduser()
        return Credentials(
            source="KAGGLE_API_TOKEN", token=as_file.read_text().strip() if as_file.is_file() else token
        )
    username, key = secret("KAGGLE_USERNAME"), secret("KAGGLE_KEY")
    if username and key:
        return Credentials(source="KAGGLE_USERNAME and KAGGLE_KEY", username=username, key=key)
    for folder in _config_dirs():
        path = folder / "kaggle.json"
        if path.is_file():
            try:
                values = json.loads(path.read_text())
                return Credentials(source=str(path), username=str(values["username"]), key=str(values["key"]))
            except (ValueError, KeyError, TypeError, OSError):
                raise KaggleError(f"{path} is not a kaggle.json with a username and a key") from None
        token_file = folder / "access_token"
        if token_file.is_file() and token_file.read_text().strip():
            return Credentials(source=str(token_file), token=token_file.read_text().strip())
    return None


def require_credentials() -> Credentials:
    found = find_credentials()
    if found is None:
        raise KaggleError(
            "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save the "
            "kaggle.json of https://www.kaggle.com/settings (API > Create New Token) as ~/.kaggle/kaggle.json"
        )
    return found


def _client(credentials: Credentials) -> Any:
    """The official client, signed in with ``credentials`` (never with anything it finds itself)."""
    try:
        # Importing the package signs its own default client in and prints advice when it finds no
        # credentials of its own; that client is not used, so neither is its advice.
        with contextlib.redirect_stdout(io.StringIO()):
            from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise KaggleError("Kaggle support needs the kaggle package: pip install 'mlestar[kaggle]'") from None
    api = KaggleApi()
    api.config_values = credentials.client_values()
    return api


def _call(
    action: str, name: str, credentials: Credentials, call: Callable[..., T], *args: Any, **kw: Any
) -> T:
    """``call(...)`` with Kaggle's refusals and network failures turned into one clear line."""
    import requests

    try:
        return call(*args, **kw)
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        said = str(exc).strip()
        detail = "" if not said or "Client Error" in said or "Server Error" in said else f" (Kaggle: {said})"
        if status == 401:
            raise KaggleError(
                f"Kaggle rejected the credentials from {credentials.source}; create a new API token at "
                "https://www.kaggle.com/settings"
            ) from None
        if status == 403:
            raise KaggleError(
                f"Kaggle refused to {action}{detail}: accept the rules of {name} at "
                f"{COMPETITIONS_URL}/{name}/rules with the account of your credentials, then try again"
            ) from None
        if status == 404:
            raise KaggleError(
                f"Kaggle has no competition named {name!r}{detail} (see {COMPETITIONS_URL})"
            ) from None
        raise KaggleError(f"Kaggle answered {status} when asked to {action}{detail or ': ' + said}") from None
    except requests.RequestException as exc:
        raise KaggleError(
            f"cannot reach Kaggle to {action} ({type(exc).__name__}); check the network"
        ) from None
    except ValueError as exc:  # the client's own checks (a truncated download, a missing file)
        raise KaggleError(f"Kaggle could not {action}: {exc}") from None


# -- downloading -----------------------------------------------------------------------------------


def is_complete(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds a finished download of competition ``name``."""
    marker = folder / MARKER
    try:
        return marker.is_file() and json.loads(marker.read_text()).get("competition") == name
    except (ValueError, OSError):
        return False


def cache_folder(name: str, cache_dir: Path) -> Path:
    return Path(cache_dir).expanduser() / competition_name(name)


def cached_folder(reference: str, cache_dir: Path) -> Fetched:
    """The local folder of ``kaggle:NAME``: the cached download, fetched first when there is none."""
    return fetch(competition_name(reference), cache_folder(reference, cache_dir))


def fetch(name: str, dest: Path, *, force: bool = False) -> Fetched:
    """Download competition ``name`` into ``dest``, unpacked and described (kept when already there)."""
    name = competition_name(name)
    dest = Path(dest).expanduser().resolve()
    if is_complete(dest, name) and not force:
        marker = json.loads((dest / MARKER).read_text())
        return Fetched(
            name=name,
            path=dest,
            from_cache=True,
            files=marker.get("files", []),
            title=marker.get("title"),
            evaluation_metric=marker.get("evaluation_metric"),
        )
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not is_complete(dest, name))):
        raise KaggleError(f"{dest} exists and is not an earlier download of {name}: give an empty folder")
    credentials = require_credentials()
    api = _client(credentials)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.parent / f".{dest.name}.partial-{secrets.token_hex(3)}"
    staging.mkdir()
    try:
        _call(
            "download its data",
            name,
            credentials,
            api.competition_download_files,
            name,
            str(staging),
            True,
            True,
        )
        unpack_all(staging)
        fetched = Fetched(name=name, path=dest, from_cache=False)
        details = _details(api, name, credentials, fetched.notes)
        fetched.title, fetched.evaluation_metric = details.get("title"), details.get("evaluation_metric")
        if not any((staging / n).exists() for n in ("description.md", "description.txt")):
            (staging / "description.md").write_text(description_text(name, details), encoding="utf-8")
        fetched.files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        marker = {
            "competition": name,
            "fetched_at": time.time(),
            "files": fetched.files,
            "title": fetched.title,
            "evaluation_metric": fetched.evaluation_metric,
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2))
        if dest.exists():
            shutil.rmtree(dest)  # empty, or an earlier download of ours being refreshed
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return fetched


def _details(api: Any, name: str, credentials: Credentials, notes: list[str]) -> dict[str, str]:
    """Title, summary, evaluation metric and pages of the competition, as far as the API gives them.

    The data matters, these do not: a failure here is a note, never a failed download."""
    details: dict[str, str] = {}
    try:
        listing = _call("describe it", name, credentials, api.competitions_list, search=name)
        for item in getattr(listing, "competitions", listing) or []:
            if str(getattr(item, "ref", "")).rstrip("/").rsplit("/", 1)[-1] == name:
                for key in ("title", "description", "evaluation_metric"):
                    if getattr(item, key, None):
                        details[key] = str(getattr(item, key))
        if hasattr(api, "competition_list_pages"):  # kaggle >= 2.0
            for page in _call("read its pages", name, credentials, api.competition_list_pages, name) or []:
                if getattr(page, "content", None):
                    details[f"page:{str(page.name).lower()}"] = str(page.content)
    except KaggleError as exc:
        notes.append(f"the competition's description could not be read: {exc}")
    return details


def description_text(name: str, details: dict[str, str]) -> str:
    """A description.md from what Kaggle says of the competition; its evaluation section names the
    metric first (Kaggle's own name for it), which is what intake looks for."""
    pages = {key.removeprefix("page:"): text for key, text in details.items() if key.startswith("page:")}
    overview = [text for page, text in pages.items() if "evaluation" not in page and "data" not in page]
    parts = [f"# {details.get('title', name)}", f"{COMPETITIONS_URL}/{name}"]
    if details.get("description"):
        parts.append(details["description"])
    parts += overview
    evaluation = (
        [f"Submissions are scored by {details['evaluation_metric']}."]
        if details.get("evaluation_metric")
        else []
    )
    evaluation += [text for page, text in pages.items() if "evaluation" in page]
    if evaluation:
        parts.append("## Evaluation\n\n" + "\n\n".join(evaluation))
    data = [text for page, text in pages.items() if "data" in page]
    if data:
        parts.append("## Data\n\n" + "\n\n".join(data))
    return "\n\n".join(parts) + "\n"


def unpack_all(folder: Path) -> None:
    """Extract every archive under ``folder`` (archives inside archives too) and remove it.

    Kaggle serves a competition as one zip; inside, large files often come zipped again
    (``train.csv.zip``). An archive holding one file or one folder is extracted next to itself, one
    holding several entries into a folder named after it, except the outermost download."""
    for depth in range(_NESTING):
        archives = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(_ARCHIVES))
        if not archives:
            return
        for archive in archives:
            _extract(archive, outermost=depth == 0 and archive.parent == folder)
            archive.unlink()


def _stem(archive: Path) -> str:
    lower = archive.name.lower()
    suffix = next(s for s in sorted(_ARCHIVES, key=len, reverse=True) if lower.endswith(s))
    return archive.name[: -len(suffix)]


def _extract(archive: Path, *, outermost: bool) -> None:
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as bundle:  # extractall drops absolute paths and '..' parts
            tops = {name.split("/", 1)[0] for name in bundle.namelist() if name.strip("/")}
            target = archive.parent if outermost or len(tops) <= 1 else archive.parent / _stem(archive)
            bundle.extractall(target)
        return
    if not hasattr(tarfile, "data_filter"):
        raise KaggleError(f"this Python cannot unpack {archive.name} safely; use Python 3.10.12 or newer")
    with tarfile.open(archive) as bundle:
        tops = {member.name.split("/", 1)[0] for member in bundle.getmembers() if member.name.strip("/.")}
        target = archive.parent if outermost or len(tops) <= 1 else archive.parent / _stem(archive)
        bundle.extractall(target, filter="data")


# -- submitting ------------------------------------------------------------------------------------


def submit(name: str, file: Path, message: str, *, wait_s: float = 60.0) -> Submitted:
    """Upload ``file`` as a submission to ``name`` and wait up to ``wait_s`` for its public score."""
    name = competition_name(name)
    if not Path(file).is_file():
        raise KaggleError(f"no submission file at {file}")
    credentials = require_credentials()
    api = _client(credentials)
    response = _call(
        "accept the submission", name, credentials, api.competition_submit, str(file), message, name, True
    )
    if getattr(response, "message", "") == getattr(api, "COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE", None):
        raise KaggleError(f"the upload of {Path(file).name} to Kaggle failed; try again")
    ref = int(getattr(response, "ref", 0) or 0) or None
    deadline = time.monotonic() + wait_s
    while True:
        found = _submission(api, name, credentials, ref)
        status = str(getattr(getattr(found, "status", None), "name", getattr(found, "status", ""))).upper()
        if found is not None and status.endswith("COMPLETE"):
            score = getattr(found, "public_score", None)
            return Submitted(
                name, ref, "complete", public_score=str(score) if score not in (None, "") else None
            )
        if found is not None and status.endswith("ERROR"):
            error = (getattr(found, "error_description", "") or "").strip() or "no reason given"
            return Submitted(name, ref, "error", error=error)
        if time.monotonic() >= deadline:
            return Submitted(name, ref, "pending")
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))


def _submission(api: Any, name: str, credentials: Credentials, ref: int | None) -> Any:
    """Our submission among the competition's latest (the newest one when Kaggle gave no ref)."""
    listed = _call("list the submissions", name, credentials, api.competition_submissions, name) or []
    for item in listed:
        if item is not None and (ref is None or int(getattr(item, "ref", 0) or 0) == ref):
            return item
    return None
