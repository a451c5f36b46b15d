"""Agent definitions: built-in presets, ``agent-config.json``, and rendering of argv."""

import difflib
import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from orchestra_ci.duration_type import Duration
from orchestra_ci.errors import UsageError
from orchestra_ci.final_result import ResultFormat
from orchestra_ci.outcome import NO_CHANGES
from orchestra_ci.presets import (
    DEFAULT_FATAL_PATTERNS,
    DEFAULT_QUOTA_PATTERNS,
    DEFAULT_RATE_LIMIT_PATTERNS,
    PRESETS,
)
from orchestra_ci.providers import Provider
from orchestra_ci.record import TaskRecord
from orchestra_ci.sanitize import fence
from orchestra_ci.validation import describe

ARG_PLACEHOLDERS = frozenset({"prompt", "taskId", "agent", "worktree", "doneFile", "errorFile"})
PROXY_PLACEHOLDERS = frozenset({"proxyBaseUrl", "proxyKey"})
TURNS_PLACEHOLDERS = frozenset({"maxTurns"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _known_placeholders(args: list[str], known: frozenset[str]) -> list[str]:
    """Refuse a ``{name}`` that looks like a misspelt placeholder (``{promt}``,
    ``{task_id}``): it would be passed on literally. Other braces are the agent's own
    (a script's f-string, JSON) and stay as they are."""
    folded = {k.lower(): k for k in known}
    for index, arg in enumerate(args):
        for name in _PLACEHOLDER.findall(arg):
            if name in known:
                continue
            plain = name.replace("_", "").lower()
            close = folded.get(plain) or next(
                iter(difflib.get_close_matches(plain, folded, n=1, cutoff=0.8)), None
            )
            if close is not None:
                meant = folded.get(close, close)
                raise ValueError(
                    f"unknown placeholder {{{name}}} in argument {index + 1}; "
                    f"did you mean {{{meant}}}?"
                )
    return args


class AgentSpec(BaseModel):
    """One agent CLI. Field names follow agent-orchestrator's camelCase config."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=lambda: ["{prompt}"])
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Duration | None = None
    stall_timeout: Duration | None = Field(default=None, alias="stallTimeout", gt=0)
    completion: Literal["exit", "sentinel"] = "exit"
    fallback: list[str] = Field(default_factory=list)
    rate_limit_patterns: list[str] = Field(default_factory=list, alias="rateLimitPatterns")
    fatal_patterns: list[str] = Field(default_factory=list, alias="fatalPatterns")
    quota_patterns: list[str] = Field(default_factory=list, alias="quotaPatterns")
    success_patterns: list[str] = Field(default_factory=list, alias="successPatterns")
    # How the CLI writes its final result, for those whose exit code alone does not tell.
    result_format: ResultFormat | None = Field(default=None, alias="resultFormat")
    prompt_template_file: str | None = Field(default=None, alias="promptTemplateFile")
    description: str | None = None
    # The provider API it speaks: with the credential proxy on, it is pointed at the proxy
    # (the proxy's variables, and proxyArgs/proxyEnv) instead of holding the real keys.
    provider: Provider | None = None
    proxy_args: list[str] = Field(default_factory=list, alias="proxyArgs")
    proxy_env: dict[str, str] = Field(default_factory=dict, alias="proxyEnv")
    # How the prompt reaches the agent: as the argument holding `{prompt}` ("arg"; without
    # one, appended as the last argument), on its standard input ("stdin": no length limit
    # on one argument), or not at all ("none"). Unset: "arg" when an argument holds
    # `{prompt}`, else "none": args without a placeholder run as written, as
    # agent-orchestrator runs them.
    prompt: Literal["arg", "stdin", "none"] | None = None
    # At most this many of its attempts run at once across the run's workers (a provider's
    # concurrency limit); the other agents' tasks use the free slots meanwhile.
    max_concurrent: int | None = Field(default=None, alias="maxConcurrent", ge=1)
    # How the CLI takes a task's max_turns (Claude Code: `--max-turns {maxTurns}`); without
    # them, max_turns is enforced from the turns the agent reports.
    max_turns_args: list[str] = Field(default_factory=list, alias="maxTurnsArgs")

    @property
    def prompt_via(self) -> Literal["arg", "stdin", "none"]:
        if self.prompt is not None:
            return self.prompt
        return "arg" if any("{prompt}" in arg for arg in self.args) else "none"

    @field_validator("args")
    @classmethod
    def _placeholders(cls, args: list[str]) -> list[str]:
        """A misspelt placeholder (``{promt}``) is refused now, not passed on literally."""
        return _known_placeholders(args, ARG_PLACEHOLDERS)

    @field_validator("proxy_args")
    @classmethod
    def _proxy_placeholders(cls, args: list[str]) -> list[str]:
        return _known_placeholders(args, ARG_PLACEHOLDERS | PROXY_PLACEHOLDERS)

    @field_validator("max_turns_args")
    @classmethod
    def _turns_placeholders(cls, args: list[str]) -> list[str]:
        return _known_placeholders(args, ARG_PLACEHOLDERS | TURNS_PLACEHOLDERS)

    @field_validator("command", "args", "env", "proxy_args", "proxy_env", "max_turns_args")
    @classmethod
    def _no_nul(cls, value: str | list[str] | dict[str, str]) -> str | list[str] | dict[str, str]:
        """A NUL byte cannot be passed to a program: refuse it when the config loads."""
        texts = [value] if isinstance(value, str) else list(value)
        if isinstance(value, dict):
            texts += list(value.values())
        if any("\x00" in t for t in texts):
            raise ValueError("contains a NUL byte, which cannot be passed to a program")
        return value

    @field_validator("rate_limit_patterns", "fatal_patterns", "quota_patterns", "success_patterns")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        """Reject a bad regular expression now, not when an agent's output is scanned."""
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return patterns


class AgentConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: dict[str, dict[str, object]]


_DEFAULTS = {
    ("rateLimitPatterns", "rate_limit_patterns"): DEFAULT_RATE_LIMIT_PATTERNS,
    ("fatalPatterns", "fatal_patterns"): DEFAULT_FATAL_PATTERNS,
    ("quotaPatterns", "quota_patterns"): DEFAULT_QUOTA_PATTERNS,
}


def _defaults(fields: dict[str, object]) -> dict[str, object]:
    """A new agent's generic rate-limit, quota and fatal patterns, each unless it sets its own
    (under either name; ``[]`` turns them off)."""
    return {
        alias: list(patterns)
        for (alias, name), patterns in _DEFAULTS.items()
        if alias not in fields and name not in fields
    }


def load_agents(path: Path | None) -> dict[str, AgentSpec]:
    """Presets, updated field by field by the agents a config file defines."""
    raw: dict[str, dict[str, object]] = {name: dict(spec) for name, spec in PRESETS.items()}
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{path}: agent config not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: cannot read agent config: {exc}") from None
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            raise UsageError(f"{path}: invalid JSON: {exc}") from None
        except RecursionError:
            raise UsageError(f"{path}: invalid JSON: nested too deeply") from None
        try:
            parsed = AgentConfigFile.model_validate(data)
        except RecursionError:
            raise UsageError(f"{path}: nested too deeply") from None
        except ValidationError as exc:
            raise UsageError(describe(exc, source=str(path))) from None
        for name, fields in parsed.agents.items():
            raw[name] = {**raw.get(name, _defaults(fields)), **fields}
    agents = {}
    for name, fields in raw.items():
        try:
            agents[name] = AgentSpec.model_validate(fields)
        except ValidationError as exc:
            wrapped = ValidationError.from_exception_data(
                exc.title,
                [{**e, "loc": ("agents", name, *e["loc"])} for e in exc.errors()],  # type: ignore[typeddict-unknown-key]
            )
            raise UsageError(describe(wrapped, source=str(path or "presets"))) from None
    for name, spec in agents.items():
        for fb in spec.fallback:
            if fb not in agents:
                raise UsageError(f"{path}: agent {name!r}: field 'fallback': unknown agent {fb!r}")
    return agents


def missing_agent(name: str) -> str:
    """Why a queued task whose agent is no longer defined fails (alone: the rest runs)."""
    return f"agent {name!r} is not defined: not a preset, and not in the agent config"


def require_agent(agents: dict[str, AgentSpec], name: str, where: str) -> AgentSpec:
    try:
        return agents[name]
    except KeyError:
        known = ", ".join(sorted(agents))
        raise UsageError(f"{where}: unknown agent {name!r} (known: {known})") from None


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` placeholders in one pass; other braces stay as they are."""
    out = []
    i = 0
    while i < len(text):
        if text[i] == "{":
            end = text.find("}", i)
            key = text[i + 1 : end] if end > 0 else ""
            if key in values:
                out.append(values[key])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def with_feedback(record: TaskRecord) -> str:
    """The task's prompt, plus why the last attempt's result was rejected, if it was."""
    output = record.get("verifyOutput")
    if record["status"] == "pending" and record.get("errorMessage") == NO_CHANGES:
        return (
            f"{record['prompt']}\n\nA previous attempt at this task ended without changing "
            "any file. This task asks for a change: make it in the working tree."
        )
    if not output:
        return record["prompt"]
    command = record.get("verify") or "the verification command"
    return (
        f"{record['prompt']}\n\nA previous attempt at this task was rejected because "
        f"verification (`{command}`) failed. The end of its output:\n{fence(output)}\n"
    )


def render_prompt(spec: AgentSpec, prompt: str, values: dict[str, str], root: Path) -> str:
    """Wrap the task's prompt in the agent's template, if it has one."""
    if spec.prompt_template_file:
        template_path = Path(spec.prompt_template_file)
        if not template_path.is_absolute():
            template_path = root / template_path
        try:
            template = template_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"prompt template {template_path}: {exc}") from None
    elif spec.completion == "sentinel":
        template = resources.files("orchestra_ci").joinpath("prompts/protocol.txt").read_text()
    else:
        return prompt
    return substitute(template, {**values, "userPrompt": prompt, "prompt": prompt})


def render_argv(
    spec: AgentSpec,
    prompt: str,
    values: dict[str, str],
    extra: Sequence[str] = (),
    max_turns: int | None = None,
) -> list[str]:
    """The argv list for one attempt; the prompt is always one element, never shell text
    (and not in argv at all unless ``spec.prompt_via`` is ``arg``). ``extra`` arguments (the
    proxy's) and the agent's ``maxTurnsArgs`` (when the task has ``max_turns``) go just
    before the argument holding the prompt."""
    if max_turns is not None:
        turns = {**values, "maxTurns": str(max_turns)}
        extra = [*extra, *(substitute(arg, turns) for arg in spec.max_turns_args)]
    via = spec.prompt_via
    full = {**values, "prompt": prompt if via == "arg" else ""}
    args = [substitute(arg, full) for arg in spec.args]
    at = next((i for i, arg in enumerate(spec.args) if "{prompt}" in arg), None)
    if at is None:
        return [spec.command, *args, *extra, *([prompt] if via == "arg" else [])]
    return [spec.command, *args[:at], *extra, *args[at:]]


def proxy_settings(spec: AgentSpec, base_url: str, key: str) -> tuple[list[str], dict[str, str]]:
    """The agent's ``proxyArgs`` and ``proxyEnv`` for a route: ``{proxyBaseUrl}`` is the
    route's base URL for the agent's provider, ``{proxyKey}`` the route's dummy key."""
    values = {"proxyBaseUrl": base_url, "proxyKey": key}
    args = [substitute(arg, values) for arg in spec.proxy_args]
    return args, {name: substitute(value, values) for name, value in spec.proxy_env.items()}
