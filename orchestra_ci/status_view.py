"""Rendering the queue for ``status``: raw JSON as stored, or a table for people."""

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from orchestra_ci import atomic
from orchestra_ci.durations import format_duration
from orchestra_ci.errors import TaskNotFound
from orchestra_ci.record import FINISHED, TaskRecord, sort_key, timestamp
from orchestra_ci.store import Store, check_task_id_or_missing


def _read_object(store: Store, path: str) -> bytes | None:
    """A stored record's bytes (None if it is gone), checked to look like a JSON object; a
    file that does not is quarantined, as :meth:`Store.read` does."""
    try:
        data = atomic.read_bytes(path).strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        store.quarantine(Path(path), f"cannot be read: {exc.strerror or exc}")
        return None
    if not (data.startswith(b"{") and data.endswith(b"}")):
        store.quarantine(Path(path), "not a task record (not a JSON object)")
        return None
    return data


def raw_json_array(store: Store) -> bytes:
    """Every record exactly as stored, as one JSON array, sorted by task id.

    Records are joined without being parsed, which keeps ``status --json`` fast on large
    queues; each is still checked to look like a JSON object."""
    parts = []
    for task_id in sorted(store.ids()):
        data = _read_object(store, store.record_file(task_id))
        if data is not None:
            parts.append(data)
    return b"[" + b",\n".join(parts) + b"]\n"


def raw_json_object(store: Store, task_id: str) -> bytes:
    """One record exactly as stored, newline-terminated."""
    check_task_id_or_missing(task_id)
    data = _read_object(store, store.record_file(task_id))
    if data is None:
        raise TaskNotFound(task_id)
    return data + b"\n"


def _age(record: TaskRecord, start: float | None, now: float) -> str:
    """Wall time since the task was queued (``start``), up to when it finished (for a
    finished task)."""
    if start is None:
        return "-"
    end = timestamp(record.get("completedAt")) if record["status"] in FINISHED else None
    return format_duration(max(0.0, (end or now) - start))


def _oneline(text: str, width: int) -> str:
    # Printable text holds no whitespace but the plain space, so most texts are on one line
    # already; checking is ~5 x faster than splitting and joining (3 texts per row).
    if not (text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " "):
        text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _quarantine_lines(quarantined: Sequence[tuple[str, str]]) -> list[str]:
    if not quarantined:
        return []
    lines = ["", f"{len(quarantined)} quarantined (in .orchestra/quarantine/, not run):"]
    lines += [f"  {name}: {_oneline(reason, 100)}" for name, reason in quarantined]
    return lines


def table(
    records: Sequence[TaskRecord],
    quarantined: Sequence[tuple[str, str]] = (),
    size: os.terminal_size | None = None,
) -> str:
    """The queue, one line per task. Given the terminal's ``size`` it fits that screen:
    the header and the summary stay, the top tasks that fit are shown and a last line
    says how many more there are (``status --watch`` redraws it in place)."""
    if not records:
        return "\n".join(["no tasks in the queue", *_quarantine_lines(quarantined)]) + "\n"
    order = {"running": 0, "pending": 1, "failed": 2, "cancelled": 3, "complete": 4}
    # Each record's creation instant is parsed once, for its place and for its age.
    created = {r["taskId"]: timestamp(r.get("createdAt")) for r in records}
    rows = sorted(
        records,
        key=lambda r: (order.get(r["status"], 9), sort_key(r, created[r["taskId"]])),
    )
    if size is not None:
        width = max(40, size.columns)
    else:
        width = max(40, os.get_terminal_size(2).columns if os.isatty(2) else 100)
    id_w = min(40, max(len(r["taskId"]) for r in rows))
    header = f"{'ID':<{id_w}}  {'STATUS':<9}  {'AGENT':<8}  TRIES  {'TIME':>6}  DETAIL"
    counts: Counter[str] = Counter(r["status"] for r in records)
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
    tail = ["", f"{len(records)} tasks: {summary}", *_quarantine_lines(quarantined)]
    shown = len(rows)
    if size is not None:
        # The cursor ends on the line after the text: one line fewer than the screen,
        # or the terminal scrolls the header away.
        room = size.lines - 1 - 1  # the header
        if len(rows) + len(tail) > room:
            tail = [*tail[:2], *tail[3:4]]  # the quarantine count without its list
        if len(rows) + len(tail) > room:
            shown = max(0, room - len(tail) - 1)  # and a "... N more" line
    lines = [header]
    now = time.time()
    for r in rows[:shown]:
        tries = len(r.get("attempts") or []) or (
            1 + (r.get("retryCount") or 0) if r["status"] != "pending" else 0
        )
        detail = r.get("errorMessage") or r.get("prompt") or ""
        head = (
            f"{_oneline(r['taskId'], id_w):<{id_w}}  {r['status']:<9}  "
            f"{_oneline(r['agent'], 8):<8}  {tries:>5}  {_age(r, created[r['taskId']], now):>6}  "
        )
        lines.append(head + _oneline(detail, max(10, width - len(head))))
    if shown < len(rows):
        lines.append(f"... {len(rows) - shown} more")
    lines += tail
    if size is not None:
        lines = [line[:width] for line in lines]  # a wrapped line would push the header off
    return "\n".join(lines) + "\n"


def detail(record: TaskRecord) -> str:
    keys = [
        "taskId",
        "status",
        "agent",
        "priority",
        "timeout",
        "retryCount",
        "maxRetries",
        "dependsOn",
        "createdAt",
        "startedAt",
        "completedAt",
        "nextAttemptAt",
        "errorMessage",
        "blockedBy",
        "logFile",
    ]
    lines = [f"{k}: {json.dumps(record.get(k))}" for k in keys if record.get(k) not in (None, [])]
    lines.append("prompt: " + _oneline(record["prompt"], 200))
    for a in record.get("attempts") or []:
        lines.append(
            f"attempt {a.get('number')}: {a.get('outcome', 'running')} agent={a.get('agent')} "
            f"exit={a.get('exitCode')} {a.get('startedAt')} -> {a.get('endedAt', '')}"
            + (f" ({a['error']})" if a.get("error") else "")
        )
    return "\n".join(lines) + "\n"
