"""A task as its source asks for it (the tasks file or an issue), before it is queued."""

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _check_base(value: str) -> str:
    """`base` reaches git's command line: a ref, never an option or several words."""
    if not value or value.startswith("-") or len(value) > 255 or any(c.isspace() for c in value):
        raise ValueError("base must be head, worktree or a git ref (one word, not starting with -)")
    return value


# `base`: where a task's worktree starts: `head`, `worktree` or a git revision.
BaseValue = Annotated[str, AfterValidator(_check_base)]


class TaskSpec(BaseModel):
    """A task as its source asks for it, with defaults applied and the prompt resolved."""

    model_config = ConfigDict(frozen=True)

    id: str
    agent: str
    prompt: str
    timeout: float | None
    max_retries: int
    backoff: float | None
    backoff_max: float | None
    depends_on: list[str]
    priority: int
    source_file: str | None = None
    verify: str | None = None
    require_changes: bool | None = None  # None: the setting, else on for issue tasks
    stall_timeout: float | None = None  # None: the agent's, else the setting's
    max_cost_usd: float | None = None  # no attempt starts once its attempts cost this much
    max_turns: int | None = None  # None: the setting's
    source: str = "file"
    issue_number: int | None = None
    labeled_at: str | None = None  # when the issue last got the trigger label
    base: str | None = None  # head, worktree or a ref; None: the `base` setting
