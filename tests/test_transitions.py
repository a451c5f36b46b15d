"""What a record becomes: every transition in-process, with fixed instants, no processes."""

from datetime import UTC, datetime, timedelta

import pytest

from orchestra_ci import transitions
from orchestra_ci.record import TaskRecord, iso, new_record
from orchestra_ci.retry_policy import Decision
from orchestra_ci.transitions import AttemptEnd

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(seconds=42)


def pending(**fields: object) -> TaskRecord:
    record = new_record("t", "claude", "do it")
    record.update(fields)  # type: ignore[typeddict-item]
    return record


def running(**fields: object) -> TaskRecord:
    return transitions.claim(pending(**fields), agent="claude", runner_id="r1", now=NOW)


# -- due ------------------------------------------------------------------------------------


def test_a_pending_task_without_a_delay_is_due() -> None:
    assert transitions.is_due(pending(), NOW)


def test_a_retry_delay_holds_the_task_until_its_instant() -> None:
    record = pending(nextAttemptAt=iso(LATER))
    assert not transitions.is_due(record, NOW)
    assert transitions.is_due(record, LATER)


def test_only_pending_tasks_are_due() -> None:
    assert not transitions.is_due(running(), LATER)
    assert not transitions.is_due(pending(status="failed"), LATER)


def test_naive_local_times_are_compared_as_instants(tokyo: None) -> None:
    # agent-orchestrator writes naive local times. One minute ago in Tokyo reads, as text,
    # nine hours later than "now" in UTC: compared as strings it would never be due.
    a_minute_ago = (NOW - timedelta(minutes=1)).astimezone().replace(tzinfo=None)
    record = pending(nextAttemptAt=a_minute_ago.isoformat())
    assert record["nextAttemptAt"] > iso(NOW)  # the trap
    assert transitions.is_due(record, NOW)
    in_a_minute = (NOW + timedelta(minutes=1)).astimezone().replace(tzinfo=None)
    assert not transitions.is_due(pending(nextAttemptAt=in_a_minute.isoformat()), NOW)


def test_an_unreadable_delay_does_not_hold_the_task_forever() -> None:
    assert transitions.is_due(pending(nextAttemptAt="soon"), NOW)


# -- claim ------------------------------------------------------------------------------


def test_claim_starts_a_numbered_attempt_with_its_marker() -> None:
    before = pending(nextAttemptAt=iso(NOW))
    record = transitions.claim(before, agent="codex", runner_id="r9", now=LATER)
    assert record["status"] == "running" and record["runnerId"] == "r9"
    assert record["startedAt"] == iso(LATER)
    assert record["nextAttemptAt"] is None
    assert record["attempts"] == [
        {
            "number": 1,
            "agent": "codex",
            "startedAt": iso(LATER),
            "runnerId": "r9",
            "marker": "r9.t.1",
        }
    ]
    assert before["status"] == "pending" and before["attempts"] == []  # argument untouched


def test_a_second_claim_keeps_the_first_start_and_numbers_on() -> None:
    first = running()
    back = transitions.interrupt(first, NOW, "gone")
    second = transitions.claim(back, agent="claude", runner_id="r2", now=LATER)
    assert second["startedAt"] == iso(NOW)
    assert [a["number"] for a in second["attempts"]] == [1, 2]
    assert second["attempts"][1]["marker"] == "r2.t.2"


def test_records_without_attempts_claim() -> None:
    record = pending()
    del record["attempts"]  # agent-orchestrator's records have none
    assert (
        transitions.claim(record, agent="a", runner_id="r", now=NOW)["attempts"][0]["number"] == 1
    )


# -- finish -------------------------------------------------------------------------------


def test_success_completes() -> None:
    record = transitions.finish(
        running(errorMessage="old"),
        AttemptEnd("success", exit_code=0, pid=77, usage={"costUsd": 0.5}),
        Decision("complete"),
        LATER,
    )
    assert record["status"] == "complete" and record["completedAt"] == iso(LATER)
    assert record["errorMessage"] is None and record["runnerId"] is None
    attempt = record["attempts"][-1]
    assert attempt["outcome"] == "success" and attempt["exitCode"] == 0
    assert attempt["pid"] == 77 and attempt["costUsd"] == 0.5
    assert attempt["endedAt"] == iso(LATER) and "error" not in attempt


def test_results_of_the_attempt_land_on_the_task() -> None:
    end = AttemptEnd("success", results={"branch": "orchestra/t", "changedFiles": ["a"]})
    record = transitions.finish(running(), end, Decision("complete"), LATER)
    assert record["branch"] == "orchestra/t" and record["changedFiles"] == ["a"]


def test_a_retry_is_scheduled_and_noted_in_the_history() -> None:
    before = running(retryCount=1, retryHistory=[{"attempt": 1}])
    end = AttemptEnd("failed", error="exit 3", exit_code=3)
    record = transitions.finish(before, end, Decision("retry", 30.0), LATER)
    assert record["status"] == "pending" and record["retryCount"] == 2
    assert record["nextAttemptAt"] == iso(LATER + timedelta(seconds=30))
    assert record["errorMessage"] == "exit 3"
    assert record["retryHistory"][-1] == {
        "attempt": 2,
        "timestamp": iso(LATER),
        "error": "exit 3",
        "retriedFrom": "t",
    }
    assert len(before["retryHistory"]) == 1  # argument untouched
    assert record["attempts"][-1]["error"] == "exit 3"


def test_a_failure_for_good() -> None:
    record = transitions.finish(
        running(), AttemptEnd("fatal", error="bad key"), Decision("fail"), LATER
    )
    assert record["status"] == "failed" and record["errorMessage"] == "bad key"
    assert record["completedAt"] == iso(LATER)


def test_a_switch_hands_the_task_to_the_fallback_without_a_retry() -> None:
    end = AttemptEnd("rate_limited", error="429")
    record = transitions.finish(running(), end, Decision("switch", agent="codex"), LATER)
    assert record["status"] == "pending" and record["nextAgent"] == "codex"
    assert record["retryCount"] == 0


def test_an_interrupted_attempt_requeues_without_counting() -> None:
    end = AttemptEnd("interrupted", error="stopped")
    record = transitions.finish(running(), end, Decision("requeue"), LATER)
    assert record["status"] == "pending" and record["retryCount"] == 0
    assert record["attempts"][-1]["outcome"] == "interrupted"


def test_a_task_cancelled_while_its_attempt_ran_stays_cancelled() -> None:
    cancelled = transitions.cancel(running(), NOW)
    end = AttemptEnd("success", exit_code=0)
    assert transitions.outcome_of(cancelled, end) == "cancelled"
    record = transitions.finish(cancelled, end, Decision("cancel"), LATER)
    assert record["status"] == "cancelled"
    assert record["completedAt"] == iso(NOW)  # when it was cancelled
    assert record["attempts"][-1]["outcome"] == "cancelled"
    assert record["attempts"][-1]["error"] == "cancelled"


# -- the other transitions -----------------------------------------------------------------


def test_fail_without_running() -> None:
    record = transitions.fail(pending(), "no usable agent: claude: bad key", NOW)
    assert record["status"] == "failed" and record["completedAt"] == iso(NOW)
    assert record["errorMessage"] == "no usable agent: claude: bad key"
    assert record["attempts"] == []


def test_block_fails_a_pending_task_naming_its_blocker() -> None:
    record = transitions.block(pending(), "dep", "blocked: dependency 'dep' failed", NOW)
    assert record["status"] == "failed" and record["blockedBy"] == "dep"
    assert record["errorMessage"] == "blocked: dependency 'dep' failed"


def test_block_leaves_a_task_that_is_no_longer_pending_alone() -> None:
    record = running()
    assert transitions.block(record, "dep", "blocked", NOW) is record


def test_interrupt_ends_the_open_attempt_and_requeues() -> None:
    record = transitions.interrupt(running(), LATER, "the runner stopped unexpectedly")
    assert record["status"] == "pending" and record["runnerId"] is None
    assert record["attempts"][-1] == {
        "number": 1,
        "agent": "claude",
        "startedAt": iso(NOW),
        "runnerId": "r1",
        "marker": "r1.t.1",
        "endedAt": iso(LATER),
        "outcome": "interrupted",
        "error": "the runner stopped unexpectedly",
    }


def test_interrupt_keeps_an_attempt_that_already_ended() -> None:
    ended = transitions.finish(running(), AttemptEnd("success"), Decision("complete"), NOW)
    ended["status"] = "running"  # the final write landed, the status did not
    record = transitions.interrupt(ended, LATER, "gone")
    assert record["attempts"][-1]["outcome"] == "success"
    assert record["status"] == "pending"


def test_interrupt_leaves_a_task_that_is_not_running_alone() -> None:
    record = pending()
    assert transitions.interrupt(record, NOW, "gone") is record


@pytest.mark.parametrize("status", ["pending", "running"])
def test_cancel(status: str) -> None:
    record = transitions.cancel(pending(status=status), NOW)
    assert record["status"] == "cancelled" and record["errorMessage"] == "cancelled"
    assert record["completedAt"] == iso(NOW)


@pytest.mark.parametrize("status", ["complete", "failed", "cancelled"])
def test_a_finished_task_cannot_be_cancelled(status: str) -> None:
    with pytest.raises(ValueError, match=f"already {status}"):
        transitions.cancel(pending(status=status), NOW)


def test_retry_gives_a_fresh_allowance_and_keeps_the_history() -> None:
    failed = pending(
        status="failed",
        retryCount=3,
        retryHistory=[{"attempt": 1}],
        errorMessage="blocked",
        blockedBy="dep",
        completedAt=iso(NOW),
        nextAttemptAt=iso(NOW),
    )
    record = transitions.retry(failed)
    assert record["status"] == "pending" and record["retryCount"] == 0
    assert record["blockedBy"] is None and record["errorMessage"] is None
    assert record["completedAt"] is None and record["nextAttemptAt"] is None
    assert record["retryHistory"] == [{"attempt": 1}]
    assert failed["status"] == "failed"


def test_dependents_of_a_task_that_runs_again_run_again_too() -> None:
    def task(task_id: str, status: str, *deps: str) -> TaskRecord:
        record = new_record(task_id, "fake", "p", depends_on=list(deps))
        record["status"] = status  # type: ignore[typeddict-item]
        return record

    records = {
        r["taskId"]: r
        for r in (
            task("lint", "failed"),
            task("changelog", "complete", "lint"),
            task("release", "failed", "changelog"),
            task("waiting", "pending", "lint"),
            task("after-waiting", "complete", "waiting"),
            task("dropped", "cancelled", "lint"),
            task("other", "complete"),
        )
    }
    again = transitions.dependents_to_rerun(records, {"lint"})
    assert again == {
        "changelog": "its dependency 'lint' runs again",
        "release": "its dependency 'changelog' runs again",
        "after-waiting": "its dependency 'waiting' runs again",
    }
    requeued = transitions.requeue(records["changelog"], again["changelog"], NOW)
    assert requeued["status"] == "pending"
    assert requeued["history"][-1]["reason"] == "its dependency 'lint' runs again"
    assert transitions.dependents_to_rerun(records, {"other"}) == {}
