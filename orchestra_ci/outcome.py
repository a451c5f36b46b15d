"""What an attempt's ending means: pure classification, no I/O."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestra_ci.final_result import FinalResult
from orchestra_ci.limits import Limit, OutputVerdict, retry_after
from orchestra_ci.record import Outcome

StopReason = Literal["timeout", "stalled", "cancelled", "interrupted"]


@dataclass(frozen=True)
class AttemptResult:
    """What the process edge observed about one finished attempt."""

    exit_code: int | None
    stop_reason: StopReason | None = None
    spawn_error: str | None = None
    done_sentinel: bool = False
    error_sentinel: dict[str, Any] | None = None
    timeout: float | None = None
    stall_timeout: float | None = None
    output: OutputVerdict = field(default_factory=OutputVerdict)
    reported_success: bool = True  # False when success patterns are set and none matched
    reported: FinalResult | None = None  # the final result its output holds (resultFormat)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    error: str | None = None
    retry_after: float | None = None
    resets_at: float | None = None  # an exhausted quota's reset (epoch seconds), if known


NO_CHANGES = "the agent made no changes"


def changes_required(record_value: bool | None, setting: bool | None, source: str) -> bool:
    """Whether the task asks for a change: its own value, else the setting, else on for
    tasks from issues (an issue asks for a fix; a tasks-file task may only report)."""
    if record_value is not None:
        return record_value
    if setting is not None:
        return setting
    return source == "issue"


def require_change(verdict: Verdict, changed: Sequence[str] | None, required: bool) -> Verdict:
    """A success that changed no file fails when the task asks for a change (``changed``
    None: unknown, without a worktree: the verdict stands)."""
    if required and verdict.outcome == "success" and changed is not None and not changed:
        return Verdict("failed", NO_CHANGES)
    return verdict


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "agent was killed"
    if code < 0:
        return f"agent was killed by signal {-code}"
    return f"agent exited with code {code}"


def _failure_at_exit_0(result: AttemptResult) -> str | None:
    """Why an attempt that exited 0 still failed, by its own account or its output."""
    if result.reported is not None and not result.reported.ok:
        return f"agent exited 0 but reported a failure: {result.reported.error}"
    if not result.reported_success:
        return "agent exited 0 but its output shows no success"
    return None


def classify(result: AttemptResult, completion: str) -> Verdict:
    """Decide the outcome. Exit 0 is success unless the agent wrote ``.error``, uses the
    sentinel protocol and wrote no ``.done``, reported a failed final result (its
    ``resultFormat``: Claude Code's ``is_error``, Codex's ``turn.failed``, Gemini CLI
    stopped before its JSON result, OpenCode after a rejected permission), or has success
    patterns none of which matched (Aider exits 0 after failing). Otherwise the output's
    fatal, quota and rate-limit patterns, or the kind its result reported (Claude Code's
    ``api_error_status``), name the failure, then the error the agent reported."""
    if result.spawn_error is not None:
        return Verdict("not_found", result.spawn_error)
    if result.stop_reason == "cancelled":
        return Verdict("cancelled", "cancelled")
    if result.stop_reason == "interrupted":
        return Verdict("interrupted", "interrupted: the run stopped before the agent finished")
    if result.stop_reason == "stalled":
        quiet = f" for {result.stall_timeout:g}s" if result.stall_timeout is not None else ""
        return Verdict("stalled", f"stalled: no output and no file change{quiet}")
    if result.stop_reason == "timeout":
        after = f" after {result.timeout:g}s" if result.timeout is not None else ""
        return Verdict("timeout", f"timed out{after}")
    if result.error_sentinel is not None:
        message = str(result.error_sentinel.get("error") or "agent reported an error")
        if result.exit_code not in (0, None):
            message = f"{message} ({_describe_exit(result.exit_code)})"
        return Verdict("failed", message)
    limit = result.output
    reported = result.reported if result.reported is not None and not result.reported.ok else None
    if result.exit_code == 0:
        if completion == "sentinel" and not result.done_sentinel:
            return Verdict("failed", "agent exited 0 without writing its .done file")
        failure = _failure_at_exit_0(result)
        if failure is None:
            return Verdict("success")
        if limit.kind is None and (reported is None or reported.kind is None):
            return Verdict("failed", failure)
    kind = _kind(limit.kind, reported.kind if reported is not None else None)
    if kind is not None:
        return _limited(kind, limit, reported)
    if reported is not None:
        return Verdict("failed", f"{_describe_exit(result.exit_code)}: {reported.error}")
    return Verdict("failed", _describe_exit(result.exit_code))


def _kind(matched: Limit | None, reported: Limit | None) -> Limit | None:
    """Fatal wins, then a spent quota, whether the output's patterns or the reported result
    say it."""
    if "fatal" in (matched, reported):
        return "fatal"
    if "quota" in (matched, reported):
        return "quota"
    return matched or reported


def _limited(kind: Limit, limit: OutputVerdict, reported: FinalResult | None) -> Verdict:
    """A fatal or rate-limited verdict, worded with the CLI's own message when its result
    named the kind or holds the text the pattern matched, else with the matched text."""
    message = limit.matched if limit.kind == kind else None
    own, own_kind = (reported.error, reported.kind) if reported is not None else (None, None)
    if own is not None and (message is None or own_kind == kind or message in own):
        message = own
    if kind == "fatal":
        return Verdict("fatal", f"fatal agent error: {message}")
    if kind == "quota":
        return Verdict("quota_exhausted", f"quota exhausted: {message}")
    wait = limit.retry_after if limit.kind == "rate_limited" else None
    if wait is None and own is not None:
        wait = retry_after(own)
    after = f" (retry after {wait:g}s)" if wait is not None else ""
    return Verdict("rate_limited", f"rate limited: {message}{after}", wait)
