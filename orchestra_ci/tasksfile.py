"""The tasks file (``.orchestra/tasks.yml``, YAML or JSON) and its validation."""

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestra_ci.duration_type import Duration
from orchestra_ci.errors import UsageError
from orchestra_ci.record import DEFAULT_MAX_RETRIES, check_task_id
from orchestra_ci.sanitize import check_prompt
from orchestra_ci.task_spec import BaseValue, TaskSpec
from orchestra_ci.validation import describe


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    agent: str | None = None
    timeout: Duration | None = None
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=100)
    backoff: Duration | None = None
    backoff_max: Duration | None = None
    priority: int = 0
    verify: str | None = None
    require_changes: bool | None = None
    stall_timeout: Duration | None = None
    base: BaseValue | None = None
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_turns: int | None = Field(default=None, ge=1)


class TaskEntry(_Strict):
    id: str
    prompt: str | None = None
    prompt_file: str | None = None
    agent: str | None = None
    timeout: Duration | None = None
    max_retries: int | None = Field(default=None, ge=0, le=100)
    backoff: Duration | None = None
    backoff_max: Duration | None = None
    depends_on: list[str] = Field(default_factory=list)
    priority: int | None = None
    verify: str | None = None
    require_changes: bool | None = None
    stall_timeout: Duration | None = None
    base: BaseValue | None = None
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_turns: int | None = Field(default=None, ge=1)

    @field_validator("id", "depends_on")
    @classmethod
    def _ids(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            return [check_task_id(v) for v in value]
        return check_task_id(value)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return check_prompt(value) if value is not None else None


class TasksFile(_Strict):
    defaults: Defaults = Field(default_factory=Defaults)
    tasks: list[TaskEntry] = Field(default_factory=list)


def _parse(path: Path, text: str) -> Any:
    try:
        return _parse_text(path, text)
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply") from None


def _parse_text(path: Path, text: str) -> Any:
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
            raise UsageError(f"{path}: invalid JSON: {exc}") from None
    try:
        # libyaml's loader when PyYAML has it: several times faster on large task lists.
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer too long to convert
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}: invalid YAML{where}: {problem}") from None


def _declared_names(data: Any) -> dict[int, str]:
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        return {}
    return {i: str(t["id"]) for i, t in enumerate(tasks) if isinstance(t, dict) and "id" in t}


def _resolve_prompt(entry: TaskEntry, path: Path, root: Path) -> str:
    where = f"{path}: task {entry.id!r}"
    if (entry.prompt is None) == (entry.prompt_file is None):
        raise UsageError(f"{where}: give exactly one of 'prompt' and 'prompt_file'")
    if entry.prompt is not None:
        return entry.prompt
    assert entry.prompt_file is not None
    candidates = [root / entry.prompt_file, path.parent / entry.prompt_file]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return check_prompt(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise UsageError(f"{where}: field 'prompt_file': {candidate}: {exc}") from None
    raise UsageError(f"{where}: field 'prompt_file': {entry.prompt_file!r} not found")


def source_name(path: Path, root: Path) -> str:
    """The file as records name it: relative to the project when inside it, so that a queue
    carried to another checkout (a CI run replayed on a laptop) still knows its tasks."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def load_tasks_file(
    path: Path, root: Path, default_agent: str, default_max_retries: int = DEFAULT_MAX_RETRIES
) -> list[TaskSpec]:
    """Read and validate a whole tasks file; raise UsageError on the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: tasks file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read tasks file: {exc}") from None
    if not text.strip():
        return []
    data = _parse(path, text)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping with 'tasks' (and optional 'defaults')")
    try:
        parsed = TasksFile.model_validate(data)
    except RecursionError:
        raise UsageError(f"{path}: nested too deeply") from None
    except ValidationError as exc:
        raise UsageError(describe(exc, source=str(path), names=_declared_names(data))) from None
    seen: set[str] = set()
    specs = []
    d = parsed.defaults
    file_max_retries = d.max_retries if "max_retries" in d.model_fields_set else default_max_retries
    source_file = source_name(path, root)  # resolved once, not per task
    for entry in parsed.tasks:

        def inherited(name: str, entry: TaskEntry = entry) -> Any:
            """The entry's own value of a field both have, else the defaults'."""
            own = getattr(entry, name)
            return own if own is not None else getattr(d, name)

        if entry.id in seen:
            raise UsageError(f"{path}: task {entry.id!r}: field 'id': duplicate id")
        seen.add(entry.id)
        specs.append(
            # Every value comes from the validated file: not validated again (1,000 tasks).
            TaskSpec.model_construct(
                id=entry.id,
                agent=entry.agent or d.agent or default_agent,
                prompt=_resolve_prompt(entry, path, root),
                timeout=inherited("timeout"),
                max_retries=entry.max_retries
                if entry.max_retries is not None
                else file_max_retries,
                backoff=inherited("backoff"),
                backoff_max=inherited("backoff_max"),
                depends_on=entry.depends_on,
                priority=inherited("priority"),
                source_file=source_file,
                verify=inherited("verify"),
                stall_timeout=inherited("stall_timeout"),
                require_changes=inherited("require_changes"),
                base=inherited("base"),
                max_cost_usd=inherited("max_cost_usd"),
                max_turns=inherited("max_turns"),
            )
        )
    return specs
