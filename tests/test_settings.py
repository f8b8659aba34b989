"""One settings model: its sources in order, what a run stores, and the CLI flags made from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mlestar.cli import main as cli_main
from mlestar.commands.options import with_settings
from mlestar.errors import ConfigError
from mlestar.settings import Settings, field_meta, fields_of


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in Settings.model_fields:
        monkeypatch.delenv(f"MLESTAR_{name.upper()}", raising=False)


def test_sources_in_order_defaults_yaml_environment_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("num_models: 3\nnum_tracks: 3\nseed: 7\n")
    monkeypatch.setenv("MLESTAR_NUM_TRACKS", "4")
    monkeypatch.setenv("MLESTAR_SEED", "8")
    settings = Settings.load(config, seed=9, outer_steps=None)
    assert (settings.num_models, settings.num_tracks, settings.seed, settings.outer_steps) == (3, 4, 9, 4)
    (tmp_path / ".env").write_text("MLESTAR_INNER_STEPS=2\n")
    assert Settings.load().inner_steps == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"num_models": 0}, "num_models"),
        ({"llm": "gpt-4.1"}, "provider:model"),
        ({"leakage_check": "sometimes"}, "leakage_check"),
        ({"colour": "red"}, "unknown setting"),
    ],
)
def test_bad_values_are_one_line_config_errors(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.load(**values)
    assert "\n" not in str(info.value)


def test_bad_yaml_files_are_one_line_errors(tmp_path: Path) -> None:
    for text, message in (
        ("a: [1", "not valid YAML"),
        ("- 1\n- 2\n", "mapping"),
        ("colour: red\n", "unknown"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            Settings.load(path)
    with pytest.raises(ConfigError, match="not found"):
        Settings.load(tmp_path / "missing.yaml")


def test_a_run_stores_its_own_settings_and_never_the_process_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLESTAR_TOKEN", "a-very-secret-token")
    settings = Settings.load(llm="openai:gpt-4.1", budget_usd=2.0, llm_timeout_s=5)
    stored = settings.run_values()
    assert stored["llm"] == "openai:gpt-4.1" and stored["budget_usd"] == 2.0
    assert not set(stored) & fields_of(scope="process")
    assert "a-very-secret-token" not in repr(stored) and "token" not in stored
    monkeypatch.setenv("MLESTAR_LLM_TIMEOUT_S", "42")
    monkeypatch.setenv("MLESTAR_NUM_MODELS", "9")
    resumed = Settings.for_run(stored)
    assert resumed.llm_timeout_s == 42  # the process's setting, as it is now
    assert resumed.num_models == 4  # the run's own, as it was started
    assert resumed.token is not None and resumed.token.get_secret_value() == "a-very-secret-token"


def test_every_setting_has_a_group_a_scope_and_a_description() -> None:
    for name, field in Settings.model_fields.items():
        meta = field_meta(field)
        assert meta["group"] and meta["scope"] in ("run", "process") and field.description, name


def test_flags_come_from_the_settings_and_reach_the_command() -> None:
    app = typer.Typer()
    received: dict[str, Any] = {}

    @app.command()
    @with_settings("method", "resources")
    def go(name: str, *, overrides: dict[str, Any]) -> None:
        received.update(overrides, name=name)

    result = CliRunner().invoke(app, ["x", "-M", "2", "--time-limit", "30", "--no-network"])
    assert result.exit_code == 0, result.output
    assert received == {"name": "x", "num_models": 2, "time_limit_s": 30.0, "network": False}
    help_text = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for name in fields_of(group="method") | fields_of(group="resources"):
        flags = field_meta(Settings.model_fields[name])["flags"]
        assert flags[0].split("/")[0] in help_text, name
    assert "--llm" not in help_text  # a group not asked for


def test_the_run_command_offers_every_run_setting_with_a_flag() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlestar", "run", "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0
    for name in fields_of(scope="run"):
        for flag in field_meta(Settings.model_fields[name])["flags"]:
            assert flag.split("/")[0] in result.stdout, flag


def test_a_bad_flag_value_is_one_line_through_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["run", str(tmp_path), "-M", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "num_models" in err[0]


@pytest.mark.parametrize(
    "argv",
    [["run", "--nope"], ["run"], ["nocommand"], ["run", "x", "--time-limit", "abc"], ["resume"]],
)
def test_usage_errors_of_the_console_script_have_no_traceback(argv: list[str]) -> None:
    script = Path(sys.executable).with_name("mlestar")
    result = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "Error" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 6
