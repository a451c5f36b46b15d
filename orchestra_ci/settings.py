"""Run configuration.

Precedence: CLI flags > ``ORCHESTRA_*`` variables > ``.orchestra/config.yml`` > defaults.
"""

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from orchestra_ci.duration_type import Duration
from orchestra_ci.errors import UsageError
from orchestra_ci.task_spec import BaseValue
from orchestra_ci.validation import describe

CONFIG_FILE = ".orchestra/config.yml"
_config_file: ContextVar[Path | None] = ContextVar("config_file", default=None)


class _ConfigFile(YamlConfigSettingsSource):
    """``config.yml``: a YAML mapping; syntax errors and other shapes become ValueError."""

    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        import yaml

        try:
            data = super()._read_file(file_path)
        except yaml.YAMLError as exc:
            raise ValueError("invalid YAML: " + " ".join(str(exc).split())) from None
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping of settings, got {type(data).__name__}")
        known = set(Settings.model_fields)
        for key in data:
            if key not in known:
                import difflib

                close = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown setting {key!r}{hint}")
        return data


def _check_shard(value: str) -> str:
    """``K/N`` with 1 <= K <= N, refused as the option or variable that gave it."""
    from orchestra_ci.sharding import parse_shard

    parse_shard(value)
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRA_", extra="ignore", frozen=True)

    log_format: Literal["console", "json"] | None = None
    tasks_file: Path | None = None
    agent_config: Path | None = None
    default_agent: str = "claude"
    parallel: int = Field(default=4, ge=1, le=512)
    time_budget: Duration | None = None
    grace: Duration = 10.0
    timeout: Annotated[Duration, Field(gt=0)] = 1800.0  # 0 would stop every agent at once
    # No output and no file change in the worktree this long: the attempt is `stalled`.
    stall_timeout: Annotated[Duration, Field(gt=0)] | None = 600.0
    backoff: Duration = 10.0
    backoff_max: Duration = 600.0
    fail_on_pending: bool = False
    log_cap_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    progress_interval: Duration = 5.0
    daemon_interval: Duration = 2.0
    max_retries: int = Field(default=3, ge=0, le=100)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_turns: int | None = Field(default=None, ge=1)  # for each task that sets none
    isolation: Literal["auto", "worktree", "none"] = "auto"
    # Where worktrees start: HEAD, a snapshot of the working tree, or a ref.
    base: BaseValue = "head"
    verify: str | None = None
    # An attempt that exits 0 and changes nothing fails: None = on for tasks from issues
    # (they ask for a change), off for the others.
    require_changes: bool | None = None
    credential_proxy: bool = False  # agents reach the providers through a key-holding proxy

    # GitHub: the same variables the Actions runner sets, so a local run needs only those.
    issue_label: str | None = None
    issue_agent: str | None = None
    repository: str | None = Field(
        default=None, validation_alias=AliasChoices("repository", "GITHUB_REPOSITORY")
    )
    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("github_token", "ORCHESTRA_GITHUB_TOKEN", "GITHUB_TOKEN"),
    )
    api_url: str = Field(
        default="https://api.github.com", validation_alias=AliasChoices("api_url", "GITHUB_API_URL")
    )
    trusted_users: str = ""
    trusted_bots: str = ""
    done_label: str = "orchestra:done"
    failed_label: str = "orchestra:failed"
    comments: bool = True
    github_max_wait: Duration = 300.0
    github_timeout: Duration = 30.0
    github_min_interval: Duration = 0.25
    github_write_interval: Duration = 1.0
    artifact_name: str = "orchestra-results"
    shard: Annotated[str, AfterValidator(_check_shard)] | None = None  # K/N: only that shard
    durations_file: Path | None = None  # a previous results.json to balance shards by
    create_prs: bool = False
    pr_base: str | None = None
    git_remote: str = "origin"
    # Carry-over: `artifact` restores the previous run's queue from its artifact before the
    # sources load (the Action's default; `run --resume` in the CLI).
    state: Literal["artifact", "none"] = "none"
    retry: str | None = None  # `failed`, or task ids: put back in the queue before the run

    @property
    def token(self) -> str:
        """The GitHub token's value ("" when none is set)."""
        return self.github_token.get_secret_value() if self.github_token else ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file.get()
        if config is not None and config.is_file():
            sources.append(_ConfigFile(settings_cls, yaml_file=config))
        return tuple(sources)


def split_list(value: str) -> list[str]:
    """Comma- or newline-separated names from an input or variable."""
    return [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _where(field: str, given: Mapping[str, Any], named: Callable[[str], str]) -> str | None:
    """Where a setting's bad value came from: the flag (or input), the variable, or None
    (then it is config.yml's)."""
    if field in given:
        return named(field)
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    names = [f"ORCHESTRA_{field.upper()}"]
    if isinstance(alias, AliasChoices):
        names = [str(c).upper() for c in alias.choices if str(c) != field] + names
    return next((n for n in names if n in os.environ), None)


def load_settings(root: Path, *, named: Callable[[str], str] = _flag, **flags: Any) -> Settings:
    """Settings for a queue at ``root``; flags given as None are left to the other sources.
    A bad value is reported under the name it was given by: ``named(field)`` for a flag
    (``--max-cost-usd``; the Action names its inputs), its variable, or config.yml."""
    token = _config_file.set(root / CONFIG_FILE)
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"]
        field = str(first[0]) if first else ""
        where = _where(field, given, named)
        if where is None:
            raise UsageError(describe(exc, source=str(root / CONFIG_FILE))) from None
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        raise UsageError(f"{where}: {message}") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"{root / CONFIG_FILE}: {exc}") from None
    finally:
        _config_file.reset(token)
