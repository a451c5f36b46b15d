"""What an attempt's ending means: pure classification, no I/O."""

from dataclasses import dataclass
from typing import Any, Literal

from orchestra_ci.record import Outcome

StopReason = Literal["timeout", "cancelled", "interrupted"]


@dataclass(frozen=True)
class AttemptResult:
    """What the process edge observed about one finished attempt."""

    exit_code: int | None
    stop_reason: StopReason | None = None
    spawn_error: str | None = None
    done_sentinel: bool = False
    error_sentinel: dict[str, Any] | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    error: str | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "agent was killed"
    if code < 0:
        return f"agent was killed by signal {-code}"
    return f"agent exited with code {code}"


def classify(result: AttemptResult, completion: str) -> Verdict:
    """Decide the outcome. Exit 0 is success unless the agent wrote ``.error``, or the agent
    uses the sentinel protocol and wrote no ``.done``."""
    if result.spawn_error is not None:
        return Verdict("not_found", result.spawn_error)
    if result.stop_reason == "cancelled":
        return Verdict("cancelled", "cancelled")
    if result.stop_reason == "interrupted":
        return Verdict("interrupted", "interrupted: the run stopped before the agent finished")
    if result.stop_reason == "timeout":
        limit = f" after {result.timeout:g}s" if result.timeout is not None else ""
        return Verdict("timeout", f"timed out{limit}")
    if result.error_sentinel is not None:
        message = str(result.error_sentinel.get("error") or "agent reported an error")
        if result.exit_code not in (0, None):
            message = f"{message} ({_describe_exit(result.exit_code)})"
        return Verdict("failed", message)
    if result.exit_code == 0:
        if completion == "sentinel" and not result.done_sentinel:
            return Verdict("failed", "agent exited 0 without writing its .done file")
        return Verdict("success")
    return Verdict("failed", _describe_exit(result.exit_code))
