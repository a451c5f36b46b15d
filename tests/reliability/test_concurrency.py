"""Concurrent use: several runners and a crowd of CLI calls on one queue at once.

Three ``run`` processes work one queue while other threads call ``start``, ``cancel``,
``retry`` and ``status --json`` as fast as they can. Afterwards (and after a last run that
drains what was queued late) the invariants hold: one runner per attempt, no lost update,
cancelled tasks stay cancelled and never start after ``cancel`` returned, and every
``status --json`` output parsed.
"""

import json
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import cli_env, records, wait_for, write_tasks
from tests.reliability.conftest import ORCHESTRA, events, kill_leftovers, orchestra, processes_of

SEED = 7
PLAIN = 30  # ordinary tasks from the tasks file
CANCEL = 10  # long tasks, each cancelled once (pending or running)
FLAKY = 8  # fail their first attempt (no retries), then `retry` puts them back
STARTS = 16  # tasks queued with `start` during the run (half with --id, half without)
RUNNERS = 3


@dataclass
class Hammer:
    """What the concurrent callers did and saw."""

    started: list[str] = field(default_factory=list)
    cancelled: dict[str, float] = field(default_factory=dict)  # task -> when cancel returned
    was: Counter[str] = field(default_factory=Counter)  # status each cancelled task had
    retried: list[str] = field(default_factory=list)
    status_calls: int = 0
    status_unparsed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, result: subprocess.CompletedProcess[str]) -> None:
        with self.lock:
            self.calls += 1
            if "Traceback" in result.stderr or "internal error" in result.stderr:
                self.unexpected.append(f"{what}: {result.stderr[-2000:]}")


def queue(root: Path, record_file: Path) -> None:
    rng = random.Random(SEED)
    lines = ["defaults: {agent: fake, backoff: 0.05s}", "tasks:"]
    for n in range(PLAIN):
        prompt = f"record={record_file} sleep={rng.uniform(0.05, 0.3):.2f}"
        lines.append(f"  - {{id: p{n:02d}, prompt: '{prompt}'}}")
    # Half the tasks to cancel hang until cancelled (so each is cancelled pending or running,
    # never after finishing); the other half wait for a gate that hangs until it is cancelled
    # last, so they are still pending when their turn comes.
    lines.append(f"  - {{id: gate, prompt: 'record={record_file} hang'}}")
    for n in range(CANCEL):
        if n < CANCEL // 2:
            lines.append(f"  - {{id: c{n:02d}, prompt: 'record={record_file} hang', priority: 3}}")
        else:
            prompt = f"record={record_file} sleep=0.1"
            lines.append(f"  - {{id: c{n:02d}, prompt: '{prompt}', depends_on: [gate]}}")
    for n in range(FLAKY):
        prompt = f"record={record_file} fail_times=1"
        lines.append(f"  - {{id: f{n:02d}, prompt: '{prompt}', max_retries: 0, priority: 5}}")
    write_tasks(root, "\n".join(lines) + "\n")


def starter(root: Path, record_file: Path, hammer: Hammer) -> None:
    for n in range(STARTS):
        args = ["start", "fake", f"record={record_file} sleep=0.1"]
        if n % 2 == 0:
            args += ["--id", f"s{n:02d}"]
        result = orchestra(root, *args)
        hammer.note("start", result)
        assert result.returncode == 0, result.stderr
        with hammer.lock:
            hammer.started.append(result.stdout.strip())


def canceller(root: Path, hammer: Hammer) -> None:
    rng = random.Random(SEED + 1)
    for n, task_id in enumerate([*(f"c{n:02d}" for n in range(CANCEL)), "gate"]):
        if n < 2:  # these two surely while their agent runs
            pid = root / ".orchestra" / "tasks" / f"{task_id}.pid"
            wait_for(pid.exists, f"{task_id} to start", timeout=60)
        time.sleep(rng.uniform(0.0, 0.3))
        result = orchestra(root, "cancel", task_id)
        returned = time.time()
        hammer.note("cancel", result)
        assert result.returncode == 0, result.stderr
        with hammer.lock:
            hammer.cancelled[task_id] = returned
            hammer.was[result.stdout.strip().rpartition("(was ")[2].rstrip(")")] += 1


def retrier(root: Path, hammer: Hammer, stop: threading.Event) -> None:
    waiting = {f"f{n:02d}" for n in range(FLAKY)}
    while waiting and not stop.is_set():
        for task_id in sorted(waiting):
            result = orchestra(root, "retry", task_id)
            hammer.note("retry", result)
            if result.returncode == 0:
                waiting.discard(task_id)
                with hammer.lock:
                    hammer.retried.append(task_id)
            else:  # not failed yet (pending or running): one line, exit 2
                assert result.returncode == 2, result.stderr
        result = orchestra(root, "retry", "--failed")  # prints "N task(s) back to pending: ..."
        hammer.note("retry --failed", result)
        assert result.returncode == 0, result.stderr
        _, _, listed = result.stdout.strip().partition(": ")
        for task_id in filter(None, listed.split(", ")):
            waiting.discard(task_id)
            with hammer.lock:
                hammer.retried.append(task_id)


def poller(root: Path, hammer: Hammer, stop: threading.Event) -> None:
    while not stop.is_set():
        result = orchestra(root, "status", "--json")
        hammer.note("status", result)
        with hammer.lock:
            hammer.status_calls += 1
            try:
                value = json.loads(result.stdout)
                assert result.returncode == 0 and isinstance(value, list)
            except (ValueError, AssertionError):
                hammer.status_unparsed.append(result.stdout[:500] + result.stderr[-500:])


def test_runners_and_cli_calls_hammering_one_queue(root: Path, tmp_path: Path) -> None:
    record_file = tmp_path / "events.jsonl"
    queue(root, record_file)
    assert orchestra(root, "load").returncode == 0  # the runners' own loads are then no-ops
    hammer = Hammer()
    stop = threading.Event()
    cmd = [*ORCHESTRA, "--root", str(root), "run", "--parallel", "3", "--grace", "0.5"]
    logs = [(tmp_path / f"runner{n}.log").open("w") for n in range(RUNNERS)]
    runners = [
        subprocess.Popen(cmd, env=cli_env(), stdout=log, stderr=subprocess.STDOUT) for log in logs
    ]
    errors: list[BaseException] = []

    def guarded(target: Callable[..., None], *args: object) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    try:
        pollers = [guarded(poller, root, hammer, stop) for _ in range(2)]
        workers = [
            guarded(starter, root, record_file, hammer),
            guarded(canceller, root, hammer),
            guarded(retrier, root, hammer, stop),
        ]
        for worker in workers[:2]:
            worker.join(timeout=120)
        # The flaky tasks fail once; keep retrying them while runners are still at work.
        deadline = time.monotonic() + 60
        while len(hammer.retried) < FLAKY and time.monotonic() < deadline:
            if all(r.poll() is not None for r in runners):
                break
            time.sleep(0.1)
        for runner in runners:
            runner.wait(timeout=120)
        workers[2].join(timeout=60)  # retries of tasks failed after the runners left
        stop.set()
        for thread in [*pollers, workers[2]]:
            thread.join(timeout=60)
        for log in logs:
            log.close()
        assert not errors, errors
        # Tasks queued or retried after the runners drained: one more run finishes them.
        final = orchestra(root, "run", "--parallel", "4", "--grace", "0.5")
        assert final.returncode == 0, final.stderr[-3000:]
    finally:
        stop.set()
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
        kill_leftovers(processes_of(root))

    tasks = records(root)
    seen = events(record_file)

    # No lost update: every task queued by `start` exists, nothing else appeared or vanished.
    assert len(hammer.started) == STARTS and len(set(hammer.started)) == STARTS
    assert set(hammer.started) <= set(tasks)
    assert len(tasks) == PLAIN + 1 + CANCEL + FLAKY + STARTS
    # One runner per attempt: no attempt started twice, each started attempt is recorded.
    starts = Counter((e["task"], e["attempt"]) for e in seen if e["event"] == "start")
    assert [key for key, count in starts.items() if count > 1] == []
    for task_id, attempt in starts:
        numbers = [a["number"] for a in tasks[task_id]["attempts"]]
        assert int(attempt) in numbers, (task_id, attempt, numbers)
    for task_id, record in tasks.items():
        numbers = [a["number"] for a in record.get("attempts") or []]
        assert numbers == list(range(1, len(numbers) + 1)), (task_id, numbers)
        assert all(a.get("runnerId") for a in record.get("attempts") or []), task_id
    # Cancelled tasks stay cancelled and never start again once cancel returned.
    assert len(hammer.cancelled) == CANCEL + 1
    assert hammer.was["running"] >= 2 and hammer.was["pending"] >= CANCEL // 2, hammer.was
    for task_id, returned in hammer.cancelled.items():
        assert tasks[task_id]["status"] == "cancelled", task_id
        late = [e for e in seen if e["task"] == task_id and e["time"] > returned]
        assert late == [], (task_id, late)
    # Everything else finished; every retried task ran again and completed.
    assert sorted(hammer.retried) == [f"f{n:02d}" for n in range(FLAKY)]
    for task_id, record in tasks.items():
        if task_id not in hammer.cancelled:
            assert record["status"] == "complete", (task_id, record["status"])
    # `status --json` always parsed, and nothing ever printed a traceback.
    assert hammer.status_calls > 10
    assert hammer.status_unparsed == []
    assert hammer.unexpected == []
    (tmp_path / "numbers.json").write_text(
        json.dumps(
            {
                "status_calls": hammer.status_calls,
                "cli_calls": hammer.calls,
                "cancelled": dict(hammer.was),
                "attempts": sum(starts.values()),
            }
        )
    )


def test_clean_while_runners_work_never_removes_unfinished_work(root: Path, tmp_path: Path) -> None:
    """``clean`` called over and over while two runners work and tasks keep arriving: it
    removes only finished tasks, with all their files, and never disturbs a runner."""
    record_file = tmp_path / "events.jsonl"
    rng = random.Random(SEED + 2)
    prompts = [f"record={record_file} sleep={rng.uniform(0.05, 0.2):.2f}" for _ in range(40)]
    write_tasks(
        root,
        "defaults: {agent: fake}\ntasks:\n"
        + "".join(f"  - {{id: w{n:02d}, prompt: '{p}'}}\n" for n, p in enumerate(prompts)),
    )
    assert orchestra(root, "load").returncode == 0
    cmd = [*ORCHESTRA, "--root", str(root), "run", "--parallel", "3", "--grace", "0.5"]
    runners = [
        subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    cleans = started = 0
    problems: list[str] = []
    try:
        while any(r.poll() is None for r in runners):
            result = orchestra(root, "clean")
            cleans += 1
            if result.returncode != 0 or "Traceback" in result.stderr:
                problems.append(result.stderr)
            if started < 10:
                added = orchestra(root, "start", "fake", f"record={record_file} sleep=0.1")
                started += 1
                if added.returncode != 0:
                    problems.append(added.stderr)
        for runner in runners:
            _, err = runner.communicate(timeout=60)
            assert runner.returncode == 0, err[-3000:]
            assert b"Traceback" not in err
        final = orchestra(root, "run", "--parallel", "3")
        assert final.returncode == 0, final.stderr[-3000:]
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
        kill_leftovers(processes_of(root))

    assert problems == []
    assert cleans > 3
    (tmp_path / "numbers.json").write_text(json.dumps({"cleans": cleans, "started": started}))
    tasks = records(root)
    assert {r["status"] for r in tasks.values()} <= {"complete"}
    seen = events(record_file)
    finished = {e["task"] for e in seen if e["event"] == "end"}
    everything = {e["task"] for e in seen}
    assert len(everything) == 40 + started  # every task ran (none removed before its turn)
    removed = everything - set(tasks)
    assert removed <= finished, sorted(removed - finished)  # only finished work was cleaned
    # A removed task leaves nothing behind; a kept one keeps its files.
    for directory in (root / ".orchestra" / "tasks", root / ".orchestra" / "logs"):
        owners = {p.name.split(".")[0] for p in directory.iterdir() if not p.name.startswith(".")}
        assert owners <= set(tasks), sorted(owners - set(tasks))
