"""Every setting of mlestar in one model: defaults < YAML file < environment (``MLESTAR_*``, ``.env``)
< explicit values (command-line flags, keywords of the Python API).

A field's name is its YAML key; its environment variable is ``MLESTAR_<NAME>``; its command-line
flags and help text come from the field itself (``flags`` and ``description``), so the CLI never
copies a setting by hand. Fields marked ``scope="run"`` shape a run: they are stored with it and are
authoritative when it resumes. The others (timeouts, retries, where runs live, the server's address
and token) belong to the process and are read afresh every time.

Loop defaults follow the MLE-STAR paper: M=4 retrieved models, L=2 tracks, T=4 outer refinement
steps, K=4 inner steps, R=5 ensemble rounds. API keys are not settings: they are looked up with
``secret`` when a request is made and never stored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlestar.errors import ConfigError

Group = Literal["method", "checks", "resources", "data", "llm", "storage", "server", "cluster", "tracking"]
Scope = Literal["run", "process"]
CacheMode = Literal["use", "off", "replay"]
ExecutorName = Literal["local", "ray"]

_SPEC_RE = re.compile(r"^[A-Za-z][\w.-]*:\S.*$")
# Ray's own spellings of a cluster address: auto, host:port (the GCS), ray://host[:port] (Ray Client).
_RAY_ADDRESS_RE = re.compile(r"^(auto|ray://[\w.\-\[\]:]+|[\w.\-\[\]]+:\d{1,5})$")


def setting(
    default: Any,
    description: str,
    *,
    group: Group,
    flags: tuple[str, ...] = (),
    scope: Scope = "run",
    **constraints: Any,
) -> Any:
    """A field with its CLI flags, its group (which commands offer it) and its scope.

    ``default`` may be ``dict`` or ``list``: each instance then gets a fresh one."""
    extra = {"group": group, "flags": list(flags), "scope": scope}
    if default in (dict, list):
        return Field(default_factory=default, description=description, json_schema_extra=extra, **constraints)
    return Field(default, description=description, json_schema_extra=extra, **constraints)


def field_meta(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def _total_memory_mb() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total / 2**20)
    except Exception:  # psutil missing or no /proc: assume a small machine
        return 8192


class Settings(BaseSettings):
    """Everything that shapes a run, how the LLM is reached, and where runs and the server live."""

    model_config = SettingsConfigDict(
        # extra="ignore": a .env file also holds API keys and other tools' settings; unknown YAML
        # keys are still rejected by read_yaml_config and unknown keywords by load().
        env_prefix="MLESTAR_",
        env_file=".env",
        extra="ignore",
        validate_assignment=True,
    )

    # -- the method's loop sizes -----------------------------------------------------------------
    num_models: int = setting(
        4,
        "M: models retrieved and tried in phase 1",
        group="method",
        flags=("--num-models", "-M"),
        ge=1,
        le=20,
    )
    num_tracks: int = setting(
        2, "L: solution tracks refined in parallel", group="method", flags=("--num-tracks", "-L"), ge=1, le=8
    )
    outer_steps: int = setting(
        4,
        "T: ablation-guided outer refinement steps",
        group="method",
        flags=("--outer-steps", "-T"),
        ge=0,
        le=50,
    )
    inner_steps: int = setting(
        4, "K: plans tried per extracted block", group="method", flags=("--inner-steps", "-K"), ge=0, le=50
    )
    ensemble_rounds: int = setting(
        5,
        "R: ensemble plans tried in phase 3",
        group="method",
        flags=("--ensemble-rounds", "-R"),
        ge=0,
        le=50,
    )
    debug_retries: int = setting(
        3, "debugger attempts per failing script", group="method", flags=("--debug-retries",), ge=0, le=10
    )

    # -- checks ----------------------------------------------------------------------------------
    leakage_check: Literal["all", "phase1", "off"] = setting(
        "all",
        "leakage check before every script (all), on phase-1 solutions only, or off",
        group="checks",
        flags=("--leakage-check",),
    )
    data_usage_check: bool = setting(
        True,
        "revise phase-1 solutions to use every provided file",
        group="checks",
        flags=("--data-usage-check/--no-data-usage-check",),
    )

    # -- time and resources ----------------------------------------------------------------------
    time_limit_s: float | None = setting(
        None,
        "wall-clock budget for the whole run, in seconds",
        group="resources",
        flags=("--time-limit",),
        gt=0,
    )
    script_timeout_s: float = setting(
        900.0, "upper bound for one script, in seconds", group="resources", flags=("--script-timeout",), gt=0
    )
    workers: int = setting(
        0,
        "scripts run at once (0: one per track, within the cores)",
        group="resources",
        flags=("--workers",),
        ge=0,
        le=64,
    )
    threads_per_script: int = setting(
        0,
        "CPU threads per script (0: cores / workers)",
        group="resources",
        flags=("--threads",),
        ge=0,
        le=256,
    )
    memory_mb: int = setting(
        0,
        "memory limit per script in MB (0: 70% of RAM / workers)",
        group="resources",
        flags=("--memory-mb",),
        ge=0,
    )
    network: bool = setting(
        False, "let scripts use the network", group="resources", flags=("--network/--no-network",)
    )
    # -- the sandbox's process and disk caps per script (issue 12: the hostile-script sandbox) ----
    max_processes: int = setting(
        1024,
        "processes and threads one script may run at once (0: no cap)",
        group="resources",
        flags=("--max-processes",),
        ge=0,
    )
    disk_mb: int = setting(
        20480,
        "disk one script may fill in its own folder, and its largest file, in MB (0: no cap)",
        group="resources",
        flags=("--disk-mb",),
        ge=0,
    )

    # -- GPUs (media competitions: each running script gets GPUs of its own) ------------------------
    gpus: str = setting(
        "auto",
        "GPUs scripts may use: auto (every GPU nvidia-smi or torch finds), none, or device ids like 0,1",
        group="resources",
        flags=("--gpus",),
        pattern=r"^(auto|none|\d+(,\d+)*)$",
    )
    scripts_per_gpu: int = setting(
        1, "scripts that may share one GPU at once", group="resources", flags=("--scripts-per-gpu",), ge=1, le=16
    )

    # -- anytime budget and confidence (issue 16) ---------------------------------------------
    extend: bool = setting(
        True,
        "spend time left after the paper's loops on more outer steps and ensemble rounds",
        group="resources",
        flags=("--extend/--no-extend",),
    )
    final_seeds: int = setting(
        3,
        "model seeds the chosen solution is validated with at the end (mean, std, 95% interval)",
        group="method",
        flags=("--final-seeds",),
        ge=1,
        le=20,
    )
    target_score: float | None = setting(
        None,
        "stop early once the best solution's 95% interval lies entirely on the better side of this",
        group="method",
        flags=("--target-score",),
    )

    # -- data ------------------------------------------------------------------------------------
    seed: int = setting(
        0, "seed of the split, the subsample and every policy choice", group="data", flags=("--seed",)
    )
    n_folds: int = setting(
        5,
        "folds of the run's fixed split (fold 0 is the validation hold-out)",
        group="data",
        flags=("--folds",),
        ge=2,
        le=20,
    )
    dev_max_rows: int = setting(
        30_000, "rows of the development subsample", group="data", flags=("--dev-max-rows",), ge=100
    )

    # -- the LLM (none: the offline expert brain) -------------------------------------------------
    llm: str | None = setting(
        None,
        "provider:model, e.g. openai:gpt-4.1; omit for the offline expert",
        group="llm",
        flags=("--llm",),
    )
    llm_base_url: str | None = setting(
        None,
        "endpoint of the model's server (overrides the provider's)",
        group="llm",
        flags=("--llm-base-url",),
    )
    llm_agent_models: dict[str, str] = setting(
        dict, "agent role -> provider:model, e.g. {summarizer: openai:gpt-4.1-mini}", group="llm"
    )
    llm_temperature: float = setting(
        0.7, "sampling temperature", group="llm", flags=("--llm-temperature",), ge=0.0, le=2.0
    )
    llm_max_tokens: int = setting(
        8192, "most tokens one answer may have", group="llm", flags=("--llm-max-tokens",), ge=16
    )
    llm_max_reasks: int = setting(
        2, "how often a role asks again after an unusable answer", group="llm", ge=0, le=10
    )
    budget_usd: float | None = setting(
        None,
        "stop the run gracefully once the LLM calls cost this many USD",
        group="llm",
        flags=("--budget-usd",),
        gt=0,
    )
    budget_tokens: int | None = setting(
        None,
        "stop the run gracefully after this many LLM tokens",
        group="llm",
        flags=("--budget-tokens",),
        gt=0,
    )
    budget_reserve_share: float = setting(
        0.1, "share of the budget kept for writing the submission", group="llm", ge=0.0, le=0.9
    )
    search: str | None = setting(
        None,
        "web search for the retriever: auto, tavily, brave, google, duckduckgo, off",
        group="llm",
        flags=("--search",),
    )
    search_results: int = setting(5, "results per search query", group="llm", ge=1, le=20)
    llm_api_key_env: str | None = setting(
        None,
        "read the API key from this variable instead of the provider's usual one",
        group="llm",
        scope="process",
    )
    llm_timeout_s: float = setting(
        300.0, "seconds one LLM request may take", group="llm", scope="process", gt=0
    )
    llm_max_retries: int = setting(
        4, "retries of a failed LLM request", group="llm", scope="process", ge=0, le=20
    )
    llm_backoff_base_s: float = setting(
        2.0, "first retry delay, doubled each time", group="llm", scope="process", ge=0
    )
    llm_backoff_max_s: float = setting(60.0, "longest retry delay", group="llm", scope="process", ge=0)
    llm_cache_mode: CacheMode = setting(
        "use", "use the response cache, turn it off, or replay from it alone", group="llm", scope="process"
    )
    llm_cache_file: Path | None = setting(
        None, "a response cache shared by several runs (SQLite file)", group="llm", scope="process"
    )
    prices: Path | None = setting(
        None,
        "YAML or JSON file of model prices, USD per 1M tokens ({model: {input, output}})",
        group="llm",
        scope="process",
    )

    # -- the LLM path against real providers and models (issue 11) --------------------------------
    llm_agent_max_tokens: dict[str, int] = setting(
        dict, "agent role -> most tokens its answer may have, e.g. {planner: 1024}", group="llm"
    )
    llm_reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = setting(
        None,
        "reasoning effort asked of reasoning models (provider default when unset)",
        group="llm",
        flags=("--llm-reasoning-effort",),
    )
    llm_reasoning_tokens: int = setting(
        16_384,
        "tokens a reasoning model may think, on top of the answer's allowance",
        group="llm",
        ge=0,
    )
    llm_context_tokens: int | None = setting(
        None,
        "the model's context window in tokens (default: asked from vLLM / Ollama where they say)",
        group="llm",
        flags=("--llm-context-tokens",),
        ge=1024,
    )
    llm_max_continuations: int = setting(
        2, "how often a cut-off answer is continued before it is given up", group="llm", ge=0, le=10
    )
    llm_rate_limit_wait_s: float = setting(
        300.0,
        "how long a rate-limited request keeps retrying, in seconds",
        group="llm",
        scope="process",
        ge=0,
    )
    llm_failures_to_pause: int = setting(
        4,
        "LLM steps failing in a row after which the run stops itself (resumable)",
        group="llm",
        ge=1,
        le=100,
    )

    # -- integrations: MLflow tracking, Kaggle downloads ------------------------------------------
    # Stored with the run, so a resumed run keeps recording into the same MLflow parent run.
    mlflow_tracking_uri: str | None = setting(
        None,
        "record the run in MLflow at this tracking URI (http://host:5000, sqlite:///mlflow.db, ...)",
        group="tracking",
        flags=("--mlflow",),
    )
    mlflow_experiment: str | None = setting(
        None,
        "MLflow experiment of the run (default: the competition's name)",
        group="tracking",
        flags=("--mlflow-experiment",),
    )
    kaggle_cache_dir: Path = setting(
        Path("~/.cache/mlestar/kaggle"),
        "where `mlestar run kaggle:NAME` keeps downloaded competitions",
        group="storage",
        scope="process",
    )

    # -- where runs live, and the web server -----------------------------------------------------
    runs_dir: Path = setting(
        Path("runs"), "folder holding the runs", group="storage", scope="process", flags=("--runs-dir",)
    )
    host: str = setting(
        "127.0.0.1",
        "address the server listens on; beyond localhost MLESTAR_TOKEN is required",
        group="server",
        scope="process",
        flags=("--host",),
    )
    port: int = setting(
        8000, "port the server listens on", group="server", scope="process", flags=("--port",), ge=1, le=65535
    )
    token: SecretStr | None = setting(
        None, "the server's access token (MLESTAR_TOKEN)", group="server", scope="process"
    )

    # -- where scripts run: this machine's process pool or a Ray cluster (issue 14) ---------------
    executor: ExecutorName = setting(
        "local",
        "where scripts run: this machine's process pool or a Ray cluster",
        group="cluster",
        flags=("--executor",),
        scope="process",
    )
    ray_address: str | None = setting(
        None,
        "the Ray cluster: auto, host:port or ray://host:port (none: start a private Ray here)",
        group="cluster",
        flags=("--ray-address",),
        scope="process",
    )
    ray_shared_fs: bool | None = setting(
        None,
        "Ray workers see the run folder and the data at the same paths (none: find out)",
        group="cluster",
        flags=("--ray-shared-fs/--no-ray-shared-fs",),
        scope="process",
    )
    infra_retries: int = setting(
        2,
        "reruns of a script whose worker or node died (not the script's fault)",
        group="cluster",
        scope="process",
        ge=0,
        le=10,
    )

    @field_validator(
        "llm",
        "search",
        "llm_base_url",
        "llm_api_key_env",
        "token",
        "ray_address",
        "mlflow_tracking_uri",
        "mlflow_experiment",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("llm")
    @classmethod
    def _spec_shape(cls, value: str | None) -> str | None:
        # Which providers exist is the LLM client's knowledge; it checks them when it starts.
        if value is not None and not _SPEC_RE.match(value.strip()):
            raise ValueError(f"expected provider:model, e.g. openai:gpt-4.1, not {value!r}")
        return value.strip() if value else value

    @field_validator("ray_address")
    @classmethod
    def _ray_address_shape(cls, value: str | None) -> str | None:
        if value is not None and not _RAY_ADDRESS_RE.match(value.strip()):
            raise ValueError(f"expected auto, host:port or ray://host:port, not {value!r}")
        return value.strip() if value else value

    @field_validator("llm_agent_models")
    @classmethod
    def _agent_specs_shape(cls, value: dict[str, str]) -> dict[str, str]:
        for role, spec in value.items():
            if not _SPEC_RE.match(str(spec).strip()):
                raise ValueError(f"model for {role} must be provider:model, not {spec!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings)

    # -- derived values ----------------------------------------------------------------------------
    def resolved_workers(self) -> int:
        cores = os.cpu_count() or 1
        return self.workers or max(1, min(self.num_tracks, cores))

    def resolved_threads(self) -> int:
        cores = os.cpu_count() or 1
        return self.threads_per_script or max(1, cores // self.resolved_workers())

    def resolved_memory_mb(self) -> int:
        return self.memory_mb or max(1024, int(0.7 * _total_memory_mb() / self.resolved_workers()))

    def llm_spec_for(self, agent: str) -> str:
        """The model an agent role uses (its own from ``llm_agent_models``, else the run's)."""
        return self.llm_agent_models.get(agent) or self.llm or ""

    @property
    def brain_name(self) -> str:
        return f"llm:{self.llm}" if self.llm else "expert"

    def run_values(self) -> dict[str, Any]:
        """The settings stored with a run (JSON-ready): those of scope ``run``."""
        return self.model_dump(mode="json", include=fields_of(scope="run"))

    # -- building --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str | None = None, **overrides: Any) -> Settings:
        """Settings from an optional YAML file, the environment and explicit overrides (None ignored)."""
        values: dict[str, Any] = {}
        try:
            if path is not None:
                values.update(read_yaml_config(Path(path)))
            from_env = cls()  # defaults + MLESTAR_* variables + .env
            values.update({key: getattr(from_env, key) for key in from_env.model_fields_set})
        except ValidationError as exc:
            raise _config_error(exc) from None
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        values.update({key: value for key, value in overrides.items() if value is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise _config_error(exc) from None

    @classmethod
    def for_run(cls, stored: dict[str, Any], process: Settings | None = None) -> Settings:
        """A stored run's settings: the run's own as it was started, the process's as they are now
        (``process``: this process's settings, e.g. with its command-line flags; else loaded afresh)."""
        now = process if process is not None else cls.load()
        values = {name: getattr(now, name) for name in fields_of(scope="process")}
        unknown = sorted(set(stored) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"the run was stored with settings this mlestar does not know: {', '.join(unknown)}"
            )
        try:
            return cls(**{**values, **stored})
        except ValidationError as exc:
            raise _config_error(exc) from None


def fields_of(*, group: Group | None = None, scope: Scope | None = None) -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        meta = field_meta(field)
        if (group is None or meta.get("group") == group) and (scope is None or meta.get("scope") == scope):
            names.add(name)
    return names


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "config"
    message = str(first.get("msg", "")).removeprefix("Value error, ")
    return ConfigError(f"bad configuration value for {where}: {message}")


def read_yaml_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    unknown = sorted(set(map(str, data)) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
    return data


def _dotenv(env_file: Path | None) -> dict[str, str]:
    try:
        from dotenv import dotenv_values
    except ImportError:  # python-dotenv is part of the llm extra; without it only os.environ counts
        return {}
    path = env_file if env_file is not None else Path.cwd() / ".env"
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v}


def secret(name: str, env_file: Path | None = None) -> str | None:
    """A key or endpoint from the environment or a ``.env`` file, WITHOUT loading the file into
    ``os.environ`` (from where every generated script would inherit it)."""
    value = os.environ.get(name)
    if value:
        return value
    return _dotenv(env_file).get(name)
