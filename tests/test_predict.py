"""Predictions on new rows with a run's final solution: ``mlestar predict`` and the server's upload."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pytest
from competitions import TINY_CONFIG, make_competition
from console import run_cli as _cli
from fastapi.testclient import TestClient
from scripted import ScriptedBrain, ScriptedExecutor

import mlestar
from mlestar.core.contract import FINAL_DIR, FITTED_DIR
from mlestar.errors import PredictionError
from mlestar.pipeline.predict import PREDICTIONS_DIR, predict
from mlestar.server import ServerOptions, create_app
from mlestar.store import RunStore


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished run whose final script (real Python) copies the sample submission it is given."""
    root = tmp_path_factory.mktemp("predict")
    competition = make_competition(root / "tiny", "binary", n_rows=200)
    runs = root / "runs"
    mlestar.run(
        competition,
        brain=ScriptedBrain(),
        executor=ScriptedExecutor(),
        runs_dir=runs,
        run_id="s",
        **TINY_CONFIG,
    )
    return competition, runs


def test_the_test_file_reproduces_the_submission_and_new_rows_get_their_own(scripted_run, tmp_path) -> None:
    competition, runs = scripted_run
    result = mlestar.predict("s", competition / "test.csv", tmp_path / "out" / "p.csv", runs_dir=runs)
    assert filecmp.cmp(tmp_path / "out" / "p.csv", runs / "s" / "submission.csv", shallow=False)
    assert result.rows == 50 and not result.loaded_models  # scripted scripts keep no models: a rerun
    assert not (runs / "s" / PREDICTIONS_DIR).exists()  # a successful prediction leaves nothing behind

    test = pd.read_csv(competition / "test.csv")
    rows = test.iloc[[7, 3, 11]].assign(note="not a test column")
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = predict("s", tmp_path / "new.csv", tmp_path / "new-p.csv", runs_dir=runs)
    written = pd.read_csv(tmp_path / "new-p.csv")
    assert list(written.columns) == ["id", "target"] and list(written["id"]) == list(rows["id"])
    assert any("note" in n for n in result.notes)  # the extra column is named as ignored


def test_a_missing_column_is_one_line_and_a_failure(scripted_run, tmp_path, capsys) -> None:
    competition, runs = scripted_run
    pd.read_csv(competition / "test.csv").drop(columns=["x3"]).to_csv(tmp_path / "bad.csv", index=False)
    code, out, err = _cli(
        [
            "predict",
            "s",
            "--input",
            str(tmp_path / "bad.csv"),
            "--output",
            str(tmp_path / "p.csv"),
            "--runs-dir",
            str(runs),
        ],
        capsys,
    )
    assert code != 0 and not (tmp_path / "p.csv").exists()
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "bad.csv lacks 1 of the test file's columns: x3" in err


def test_cli_writes_predictions_and_says_how(scripted_run, tmp_path, capsys) -> None:
    competition, runs = scripted_run
    code, out, err = _cli(
        [
            "predict",
            "s",
            "-i",
            str(competition / "test.csv"),
            "-o",
            str(tmp_path / "p.csv"),
            "--runs-dir",
            str(runs),
        ],
        capsys,
    )
    assert code == 0, err
    assert "wrote 50 predictions" in out and "training the final script again" in out


def test_rows_that_cannot_be_predicted_say_why(scripted_run, tmp_path) -> None:
    competition, runs = scripted_run
    pd.read_csv(competition / "test.csv").iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(PredictionError, match="has no rows"):
        predict("s", tmp_path / "empty.csv", tmp_path / "p.csv", runs_dir=runs)
    pd.read_csv(competition / "test.csv").iloc[[1, 2, 1]].to_csv(tmp_path / "twice.csv", index=False)
    with pytest.raises(PredictionError, match=r"repeats ids \(1201\)"):
        predict("s", tmp_path / "twice.csv", tmp_path / "p.csv", runs_dir=runs)
    (tmp_path / "rows.json").write_text("{}")
    with pytest.raises(PredictionError, match="CSV, TSV or parquet"):
        predict("s", tmp_path / "rows.json", tmp_path / "p.csv", runs_dir=runs)
    with RunStore(runs / "s") as store:
        submission = store.get_meta("submission")
        store.set_meta("submission", None)
        try:
            with pytest.raises(PredictionError, match="has no submission yet"):
                predict("s", competition / "test.csv", tmp_path / "p.csv", runs_dir=runs)
        finally:
            store.set_meta("submission", submission)


def test_parquet_rows_are_accepted(scripted_run, tmp_path) -> None:
    competition, runs = scripted_run
    pd.read_csv(competition / "test.csv").iloc[:5].to_parquet(tmp_path / "rows.parquet")
    result = predict("s", tmp_path / "rows.parquet", tmp_path / "p.csv", runs_dir=runs)
    assert result.rows == 5 and len(pd.read_csv(tmp_path / "p.csv")) == 5


def test_server_predicts_an_uploaded_csv(scripted_run) -> None:
    competition, runs = scripted_run
    client = TestClient(create_app(ServerOptions(runs_dir=runs)), base_url="http://127.0.0.1:8000")
    with (competition / "test.csv").open("rb") as handle:
        response = client.post("/api/runs/s/predict", files={"file": ("test.csv", handle, "text/csv")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content == (runs / "s" / "submission.csv").read_bytes()
    assert response.headers["x-mlestar-models"] == "retrained"
    bad = pd.read_csv(competition / "test.csv").drop(columns=["city"]).to_csv(index=False).encode()
    response = client.post("/api/runs/s/predict", files={"file": ("bad.csv", bad, "text/csv")})
    assert response.status_code == 400 and "city" in response.json()["detail"]
    assert client.post("/api/runs/nope/predict", files={"file": ("x.csv", b"a\n1\n")}).status_code == 404
    # Bytes that are no table (what the API fuzzer sends) are a 400, not a server error.
    garbage = b"\xff\xfe\x00binary\x00\x9c"
    response = client.post("/api/runs/s/predict", files={"file": ("g.csv", garbage, "text/csv")})
    assert response.status_code == 400, response.text
    # A second prediction while one runs is told to come back (queued ones would hold the server).
    service = client.app.state.service  # type: ignore[attr-defined]
    with service._predicting:
        with (competition / "test.csv").open("rb") as handle:
            busy = client.post("/api/runs/s/predict", files={"file": ("test.csv", handle, "text/csv")})
    assert busy.status_code == 503 and busy.headers["retry-after"] == "10"


@pytest.mark.slow  # trains real models
def test_expert_final_models_are_loaded_and_reproduce_the_submission(tmp_path: Path) -> None:
    from mlestar.brain.expert import ExpertBrain

    competition = make_competition(tmp_path / "tiny", "binary", n_rows=300)
    runs = tmp_path / "runs"
    config = {**TINY_CONFIG, "num_models": 2, "outer_steps": 0, "inner_steps": 0, "ensemble_rounds": 1}
    run = mlestar.run(competition, brain=ExpertBrain(max_rounds=40), runs_dir=runs, run_id="e", **config)
    with RunStore(runs / "e") as store:
        final = store.get_node(int(store.get_meta("submission")["final_node_id"]))
    assert final is not None
    kept = (runs / "e" / final.script_path).parent / FINAL_DIR / FITTED_DIR
    assert sorted(p.name for p in kept.iterdir())[0] == "00001.joblib"  # every fit, in order

    result = predict("e", competition / "test.csv", tmp_path / "p.csv", runs_dir=runs)
    assert result.loaded_models and result.notes == []  # the loaded models score as the final run did
    assert (tmp_path / "p.csv").read_bytes() == run.submission_path.read_bytes()

    # Any rows, in any order, get exactly the values the submission has for them.
    test = pd.read_csv(competition / "test.csv")
    test.sample(frac=1.0, random_state=3).iloc[:9].to_csv(tmp_path / "some.csv", index=False)
    predict("e", tmp_path / "some.csv", tmp_path / "some-p.csv", runs_dir=runs)
    got = pd.read_csv(tmp_path / "some-p.csv").set_index("id")
    submitted = pd.read_csv(run.submission_path).set_index("id").loc[got.index]
    assert (got["target"] == submitted["target"]).all() and len(got) == 9

    # The models are loaded, not trained: without the one fitted first, prediction fails.
    (kept / "00001.joblib").unlink()
    with pytest.raises(PredictionError, match="final script failed"):
        predict("e", competition / "test.csv", tmp_path / "p2.csv", runs_dir=runs)
