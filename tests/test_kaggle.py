"""Kaggle: ``kaggle:NAME`` and ``mlestar fetch`` download through the official client, ``mlestar submit``
uploads, all against a local server answering the calls the client makes (no network)."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from competitions import TINY_CONFIG, make_competition
from console import run_cli as _cli
from fakes.kaggle_server import FakeKaggle, make_kaggle_app, point_client_at
from fakes.server import serve
from scripted import ScriptedBrain, ScriptedExecutor

import mlestar
from mlestar.exec.environment import scrubbed_env
from mlestar.integrations import kaggle
from mlestar.pipeline import create_run
from mlestar.settings import Settings
from mlestar.task import load_task

NAME = "churn-tiny"
KEY = "alice-secret-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKaggle]:
    competition = make_competition(tmp_path_factory.mktemp("kaggle") / NAME, "binary", n_rows=200)
    state = FakeKaggle(competitions={NAME: competition, "closed-one": competition})
    with serve(make_kaggle_app(state)) as running:
        state.base_url = running.url
        yield state


@pytest.fixture()
def fake(server: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKaggle:
    """The fake, reset, with the client pointed at it, no credentials anywhere and a private cache."""
    server.rules_accepted = {NAME}
    server.calls.clear()
    server.submissions.clear()
    server.pending_polls = 1
    point_client_at(monkeypatch, server.base_url)
    for name in [n for n in os.environ if n.startswith("KAGGLE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLESTAR_KAGGLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kaggle, "POLL_S", 0.05)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    return server


def _sign_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", KEY)


def test_fetch_downloads_unpacks_and_describes(fake, tmp_path, monkeypatch, capsys) -> None:
    _sign_in(monkeypatch)
    code, out, err = _cli(["fetch", f"kaggle:{NAME}", str(tmp_path / "data")], capsys)
    assert code == 0, err
    data = tmp_path / "data"
    # The download and the train.csv.zip inside it are unpacked, the archives gone.
    assert {p.name for p in data.iterdir()} >= {
        "train.csv",
        "test.csv",
        "sample_submission.csv",
        "description.md",
    }
    assert not list(data.rglob("*.zip"))
    description = (data / "description.md").read_text()
    assert (
        "## Evaluation" in description and "Area Under Receiver Operating Characteristic Curve" in description
    )
    task = load_task(data)
    assert (task.metric, task.metric_source, task.target_columns) == ("roc_auc", "description", ["target"])
    assert "metric roc_auc (from description)" in out

    # Fetched once: the second time is answered from the folder, without a call to Kaggle.
    calls = len(fake.calls)
    code, out, _ = _cli(["fetch", f"kaggle:{NAME}", str(data)], capsys)
    assert code == 0 and "already holds" in out and len(fake.calls) == calls
    code, out, _ = _cli(["fetch", f"kaggle:{NAME}", str(data), "--force"], capsys)
    assert code == 0 and "downloaded" in out and fake.calls.count("DownloadDataFiles") == 2


def test_run_of_a_kaggle_competition_uses_the_cache_and_keeps_credentials_out(
    fake, tmp_path, monkeypatch
) -> None:
    home = tmp_path / "home" / ".kaggle"
    home.mkdir(parents=True)
    (home / "kaggle.json").write_text(json.dumps({"username": "alice", "key": KEY}))
    runs = tmp_path / "runs"
    first = mlestar.run(
        f"kaggle:{NAME}",
        brain=ScriptedBrain(),
        executor=ScriptedExecutor(),
        runs_dir=runs,
        run_id="k1",
        **TINY_CONFIG,
    )
    assert first.status.value == "finished" and first.submission_path is not None
    cached = tmp_path / "cache" / NAME
    assert kaggle.is_complete(cached, NAME)
    assert Path(first.run_dir).joinpath("data", "dev", "train.csv").resolve().parent == cached
    # Credentials gone: the next run is served from the cache alone.
    (home / "kaggle.json").unlink()
    calls = len(fake.calls)
    again = kaggle.cached_folder(f"kaggle:{NAME}", tmp_path / "cache")
    assert again.from_cache and again.path == cached and len(fake.calls) == calls
    for path in runs.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    monkeypatch.setenv("KAGGLE_KEY", KEY)  # and a key in the environment never reaches a script
    assert KEY not in scrubbed_env(threads=1).values()


def test_credentials_from_a_dotenv_file_stay_out_of_the_environment(fake, tmp_path) -> None:
    (tmp_path / ".env").write_text(f"KAGGLE_USERNAME=alice\nKAGGLE_KEY={KEY}\n")
    fetched = kaggle.fetch(NAME, tmp_path / "data")
    assert (fetched.path / "train.csv").is_file()
    assert "KAGGLE_KEY" not in os.environ


def test_without_credentials_a_kaggle_run_is_one_line(fake, tmp_path, capsys) -> None:
    code, out, err = _cli(["run", f"kaggle:{NAME}", "--runs-dir", str(tmp_path / "runs")], capsys)
    assert code != 0 and "Traceback" not in err + out
    assert err.strip().count("\n") == 0
    assert "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY" in err
    assert fake.calls == [] and not (tmp_path / "runs").exists()


def test_refusals_are_one_line_that_says_what_to_do(fake, tmp_path, monkeypatch, capsys) -> None:
    _sign_in(monkeypatch)
    code, _, err = _cli(["fetch", "kaggle:closed-one", str(tmp_path / "a")], capsys)
    assert code != 0 and err.strip().count("\n") == 0
    assert "accept the rules of closed-one at https://www.kaggle.com/competitions/closed-one/rules" in err
    code, _, err = _cli(["fetch", "kaggle:no-such-thing", str(tmp_path / "b")], capsys)
    assert code != 0 and "Kaggle has no competition named 'no-such-thing'" in err
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    code, _, err = _cli(["fetch", f"kaggle:{NAME}", str(tmp_path / "c")], capsys)
    assert code != 0 and "Kaggle rejected the credentials from KAGGLE_USERNAME and KAGGLE_KEY" in err
    code, _, err = _cli(["fetch", "kaggle:Not A Name", str(tmp_path / "d")], capsys)
    assert code != 0 and "not a Kaggle competition name" in err
    for folder in "abcd":
        assert not (tmp_path / folder).exists()  # nothing half-downloaded is left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, _, err = _cli(["fetch", f"kaggle:{NAME}", str(tmp_path / "mine")], capsys)
    assert code != 0 and "not an earlier download" in err and (tmp_path / "mine" / "notes.txt").exists()


def test_submit_uploads_and_prints_the_public_score(fake, tmp_path, monkeypatch, capsys) -> None:
    _sign_in(monkeypatch)
    runs = tmp_path / "runs"
    folder = kaggle.cached_folder(f"kaggle:{NAME}", tmp_path / "cache").path
    with create_run(folder, Settings.load(runs_dir=runs), run_id="s") as store:  # a run of that download
        shutil.copyfile(folder / "sample_submission.csv", store.run_dir / "submission.csv")
    code, out, err = _cli(["submit", "s", "-m", "first try", "--runs-dir", str(runs)], capsys)
    assert code == 0, err
    assert "public score: 0.8123" in out
    (sent,) = fake.submissions
    assert sent["competition"] == NAME and sent["description"] == "first try"
    assert sent["blob"] == (runs / "s" / "submission.csv").read_bytes()
    assert fake.calls.count("ListSubmissions") == 2  # pending once, then scored

    fake.pending_polls = 100
    code, out, err = _cli(["submit", "s", "--kaggle", NAME, "--wait", "0", "--runs-dir", str(runs)], capsys)
    assert code == 0, err
    assert f"still scoring it after 0s: see https://www.kaggle.com/competitions/{NAME}/submissions" in out
    assert fake.submissions[-1]["description"] == "mlestar run s"  # the default message


def test_archives_inside_archives_are_unpacked_without_spilling(tmp_path) -> None:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as bundle:  # several entries: they get a folder of their own
        bundle.writestr("a.jpg", b"a")
        bundle.writestr("b.jpg", b"b")
    tarred = io.BytesIO()
    with tarfile.open(fileobj=tarred, mode="w:gz") as bundle:
        info = tarfile.TarInfo("extra.csv")
        info.size = 4
        bundle.addfile(info, io.BytesIO(b"x,y\n"))
    with zipfile.ZipFile(tmp_path / "comp.zip", "w") as bundle:
        bundle.writestr("images.zip", inner.getvalue())
        bundle.writestr("extra.tar.gz", tarred.getvalue())
        bundle.writestr("train.csv", "x\n1\n")
    kaggle.unpack_all(tmp_path)
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert found == ["extra.csv", "images/a.jpg", "images/b.jpg", "train.csv"]
