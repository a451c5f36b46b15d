"""Rendering the queue for ``status``: raw JSON as stored, and the tables for people."""

import json
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestra_ci.errors import TaskNotFound
from orchestra_ci.record import TaskRecord, new_record, parse_time, timestamp
from orchestra_ci.status_view import _oneline, detail, raw_json_array, raw_json_object, table
from orchestra_ci.store import Store


def put(store: Store, task_id: str, status: str = "pending", **fields: Any) -> TaskRecord:
    record = new_record(task_id, "fake", f"prompt of {task_id}")
    record.update({"status": status, **fields})  # type: ignore[typeddict-item]
    store.write(record)
    return record


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


# -- raw JSON ------------------------------------------------------------------------------


def test_raw_json_array_of_an_empty_queue(store: Store) -> None:
    assert raw_json_array(store) == b"[]\n"
    assert raw_json_array(Store(store.root / "nowhere")) == b"[]\n"


def test_raw_json_array_holds_every_record_byte_for_byte_sorted_by_id(store: Store) -> None:
    for task_id in ("b", "a", "C", "a.1", "a-1"):
        put(store, task_id)
    # written by another tool: different layout, unknown fields, non-ASCII
    store.record_path("x").write_bytes(
        b'  {"taskId":"x","status":"failed","agent":"claude","prompt":"\xc3\xa9t\xc3\xa9",'
        b'"createdAt":"2024-05-01T10:00:00","custom":{"k":[1,null]}}\n\n'
    )
    # not records: sentinels, logs and temp files of writers
    store.sentinel("a", "done").write_text("")
    store.sentinel("a", "pid").write_text("123\n")
    (store.tasks_dir / ".a.json.4242.abcd.tmp").write_text("{partial")

    raw = raw_json_array(store)

    parsed = json.loads(raw)
    ids = ["C", "a", "a-1", "a.1", "b", "x"]
    assert [r["taskId"] for r in parsed] == ids
    assert parsed == [json.loads(store.record_path(i).read_bytes()) for i in ids]
    for task_id in ids:
        assert store.record_path(task_id).read_bytes().strip() in raw
    assert raw.endswith(b"]\n")


@pytest.mark.parametrize(
    "content",
    [b'{"taskId": "bad", "status": "pen', b"", b"[1, 2]", b"null", b"\x00\x01"],
)
def test_raw_json_array_skips_and_quarantines_a_corrupt_record(
    store: Store, content: bytes
) -> None:
    put(store, "good")
    store.record_path("bad").write_bytes(content)
    assert [r["taskId"] for r in json.loads(raw_json_array(store))] == ["good"]
    assert [name for name, _ in store.quarantined()] == ["bad.json"]


def test_raw_json_object_is_one_record_as_stored(store: Store) -> None:
    put(store, "one")
    put(store, "two")

    raw = raw_json_object(store, "one")

    assert raw == store.record_path("one").read_bytes().strip() + b"\n"
    assert json.loads(raw)["taskId"] == "one"


@pytest.mark.parametrize("task_id", ["ghost", "../tasks/one", "", "a b"])
def test_raw_json_object_of_an_unknown_task(store: Store, task_id: str) -> None:
    put(store, "one")
    with pytest.raises(TaskNotFound) as info:
        raw_json_object(store, task_id)
    assert info.value.exit_code == 2


def test_raw_json_object_of_a_corrupt_record_quarantines_it(store: Store) -> None:
    store.record_path("bad").write_text('{"taskId": "bad"')
    with pytest.raises(TaskNotFound):
        raw_json_object(store, "bad")
    assert dict(store.quarantined())["bad.json"] == "not a task record (not a JSON object)"


# -- table ---------------------------------------------------------------------------------


def test_table_of_an_empty_queue() -> None:
    assert table([]) == "no tasks in the queue\n"


def _rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    return {line.split()[0]: line.split() for line in lines[1:] if line.strip() and " " in line}


def test_table_rows_summary_and_order(store: Store) -> None:
    put(
        store,
        "done",
        "complete",
        createdAt=ago(130),
        startedAt=ago(60),
        completedAt=ago(5),
        attempts=[{"number": 1}],
    )
    put(
        store,
        "broke",
        "failed",
        errorMessage="agent exited with code 3",
        attempts=[{"number": 1}, {"number": 2}],
    )
    put(store, "busy", "running", startedAt=ago(20), attempts=[{"number": 1}])
    put(store, "waiting", "pending", prompt="do\nthe   thing")
    put(store, "stopped", "cancelled", errorMessage="cancelled")

    text = table(store.all())

    lines = text.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "AGENT", "TRIES", "TIME", "DETAIL"]
    order = [line.split()[0] for line in lines[1:6]]
    assert order == ["busy", "waiting", "broke", "stopped", "done"]
    rows = _rows(text)
    assert rows["done"][1:6] == ["complete", "fake", "1", "2m05s", "prompt"]
    assert rows["broke"][1:4] == ["failed", "fake", "2"]
    assert "agent exited with code 3" in text
    assert rows["busy"][1:4] == ["running", "fake", "1"]
    assert rows["waiting"][1:4] == ["pending", "fake", "0"]
    assert "do the thing" in text  # one line per task
    assert lines[-1] == "5 tasks: 1 running, 1 pending, 1 failed, 1 cancelled, 1 complete"


def test_table_time_is_wall_time_since_the_task_was_queued() -> None:
    """Not the attempt's time: a task retried or kept waiting shows how long it has been
    in the queue; a finished one stops counting when it finished."""
    waiting = new_record("waiting", "fake", "p")
    waiting["createdAt"] = ago(600)
    retried = new_record("retried", "fake", "p")
    retried.update(  # type: ignore[typeddict-item]
        {"status": "running", "createdAt": ago(3 * 3600), "startedAt": ago(7200)}
    )
    retried["attempts"] = [{"number": 1}, {"number": 2, "startedAt": ago(30)}]  # type: ignore[typeddict-item]
    failed = new_record("failed", "fake", "p")
    failed.update({"status": "failed", "createdAt": ago(400), "completedAt": ago(100)})  # type: ignore[typeddict-item]

    rows = _rows(table([waiting, retried, failed]))

    assert rows["waiting"][4] in ("10m00s", "10m01s")
    assert rows["retried"][4].startswith("3h0")
    assert rows["failed"][4] == "5m00s"


def _screen(lines: int, columns: int = 80) -> os.terminal_size:
    return os.terminal_size((columns, lines))


def test_table_fits_a_screen_with_the_header_and_a_count_of_the_rest(store: Store) -> None:
    records = [new_record(f"t{n:02}", "fake", f"prompt {n}") for n in range(30)]

    text = table(records, [("bad.json", "not valid JSON")], size=_screen(12, 60))

    lines = text.splitlines()
    assert len(lines) == 11  # one short of the screen: the cursor's line does not scroll
    assert lines[0].split() == ["ID", "STATUS", "AGENT", "TRIES", "TIME", "DETAIL"]
    assert [line.split()[0] for line in lines[1:7]] == [f"t{n:02}" for n in range(6)]
    assert lines[7:] == [
        "... 24 more",
        "",
        "30 tasks: 30 pending",
        "1 quarantined (in .orchestra/quarantine/, not run):",
    ]
    assert all(len(line) <= 60 for line in lines)


def test_table_that_fits_its_screen_is_shown_whole() -> None:
    records = [new_record(f"t{n}", "fake", "p") for n in range(3)]
    assert table(records, size=_screen(7)) == table(records)  # 6 lines and the cursor
    assert "... 2 more" in table(records, size=_screen(6))


def test_table_counts_tries_of_records_written_by_agent_orchestrator() -> None:
    legacy: TaskRecord = {
        "taskId": "old",
        "status": "failed",
        "agent": "claude",
        "prompt": "p",
        "createdAt": "2024-01-01T00:00:00",
        "retryCount": 2,
    }
    assert _rows(table([legacy]))["old"][1:4] == ["failed", "claude", "3"]


def test_table_keeps_long_values_on_one_line() -> None:
    record = new_record("t" * 100, "an-agent-with-a-long-name", "word " * 500)

    lines = table([record]).splitlines()

    assert len(lines) == 4  # header, row, blank, summary
    assert all(len(line) <= 100 for line in lines), [len(line) for line in lines]
    assert lines[1].endswith("…")


# -- detail --------------------------------------------------------------------------------


def test_detail_shows_fields_and_attempts(store: Store) -> None:
    record = put(
        store,
        "t",
        "failed",
        prompt="multi\nline",
        blockedBy=None,
        errorMessage="exit 1",
        attempts=[
            {
                "number": 1,
                "agent": "fake",
                "startedAt": "2024-01-01T00:00:00+00:00",
                "endedAt": "2024-01-01T00:00:05+00:00",
                "exitCode": 1,
                "outcome": "failed",
                "error": "agent exited with code 1",
            },
            {"number": 2, "agent": "fake2", "startedAt": "2024-01-01T00:01:00+00:00"},
        ],
    )

    text = detail(record)

    assert 'taskId: "t"' in text and 'status: "failed"' in text
    assert 'errorMessage: "exit 1"' in text
    assert "blockedBy" not in text and "dependsOn" not in text  # empty values are left out
    assert "prompt: multi line" in text
    assert (
        "attempt 1: failed agent=fake exit=1 2024-01-01T00:00:00+00:00 -> "
        "2024-01-01T00:00:05+00:00 (agent exited with code 1)"
    ) in text
    assert "attempt 2: running agent=fake2 exit=None" in text


def test_table_and_detail_survive_odd_records_from_other_tools() -> None:
    odd: TaskRecord = {
        "taskId": "odd",
        "status": "complete",
        "agent": "claude",
        "prompt": "p",
        "createdAt": 1700000000,  # type: ignore[typeddict-item]
        "startedAt": "yesterday",
        "completedAt": "today",
        "attempts": [{"outcome": "success"}],  # type: ignore[typeddict-item]
    }
    normal = new_record("normal", "fake", "q")

    rows = _rows(table([odd, normal]))

    assert rows["odd"][1:5] == ["complete", "claude", "1", "-"]
    assert "normal" in rows
    assert "attempt None: success" in detail(odd)


@pytest.mark.parametrize(
    "text",
    ["plain words", " lead", "trail ", "two  spaces", "a\nb", "tab\there", "nbsp\u00a0x", "", "é"],
)
def test_a_text_on_one_line_reads_as_its_words_joined(text: str) -> None:
    assert _oneline(text, 100) == " ".join(text.split())
    joined = " ".join((text * 20).split())
    assert _oneline(text * 20, 12) == (joined if len(joined) <= 12 else joined[:11] + "…")


@pytest.mark.parametrize(
    "value", ["2026-12-07T03:30:01.123456", "2026-07-01T12:00:00", "2026-12-07T03:30:01+02:00"]
)
def test_an_instant_is_read_as_parse_time_reads_it(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naive times are local ones, here in a zone with summer time."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert timestamp(value) == parse_time(value).timestamp()
        if "+" not in value:
            utc = datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
            assert timestamp(value) in (utc - 3600, utc - 7200)
    finally:
        monkeypatch.undo()
        time.tzset()
