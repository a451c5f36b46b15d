"""The runner: claims tasks, runs their agents in parallel, records what happened.

Decisions come from the pure modules (``schedule`` picks what runs next, ``outcome`` says
what an attempt's ending means, ``retry_policy`` when to retry, ``transitions`` what a
record becomes, ``agent_pool`` which agents are usable); this module only acts on them: it
claims records under the queue lock, starts processes, writes records, sentinels and
reports, and reacts to the clock and to signals.
"""

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from orchestra_ci import atomic, caps, quota, transitions
from orchestra_ci.agent_env import Place, agent_environment, passed_environment
from orchestra_ci.agent_pool import AgentPool
from orchestra_ci.agents import (
    AgentSpec,
    missing_agent,
    proxy_settings,
    render_argv,
    render_prompt,
    with_feedback,
)
from orchestra_ci.coalesce import Coalescer
from orchestra_ci.credential_proxy import (
    FATAL_PATTERNS,
    UNAVAILABLE_PATTERNS,
    ProxyUsage,
    Route,
)
from orchestra_ci.durations import format_duration
from orchestra_ci.errors import UsageError
from orchestra_ci.final_result import read_result
from orchestra_ci.limits import looks_successful, read_output
from orchestra_ci.outcome import (
    AttemptResult,
    Verdict,
    changes_required,
    classify,
    require_change,
)
from orchestra_ci.process import (
    Control,
    Launch,
    ProcessResult,
    Supervisor,
    kill_attempt,
    run_attempt,
)
from orchestra_ci.record import Attempt, TaskRecord, iso, timestamp
from orchestra_ci.redact import Redactor
from orchestra_ci.retry_policy import SWITCHABLE, Decision, decide
from orchestra_ci.schedule import Blocked, Scheduler
from orchestra_ci.settings import Settings
from orchestra_ci.store import Change, Rewrite, RunnerLease, Store
from orchestra_ci.usage import Usage, parse_usage
from orchestra_ci.worktrees import (
    Base,
    Dependency,
    Isolation,
    WorktreeError,
    locate_repo,
)

if TYPE_CHECKING:
    # A run holding no keys does without the server; the report is first needed after
    # the first agents have started, so its import overlaps their work.
    from orchestra_ci import report
    from orchestra_ci.proxy_server import CredentialProxy

log = structlog.get_logger("orchestra_ci")

_REPORT_EVERY = 2.0
_POLL_OTHERS = 1.0
# What the scheduler holds for tasks that are pending on disk but not offered: their agents
# are out of quota for the run, or run their maxConcurrent attempts already.
_OUT_OF_QUOTA = "out of quota"
_WAITING = "waiting for its agent"


@dataclass
class RunOutcome:
    exit_code: int
    report: "report.RunReport"


@dataclass
class _Running:
    task_id: str
    control: Control
    future: "asyncio.Future[None]"
    launching: bool = True  # claimed or being claimed, its agent not started yet


@dataclass
class _Claim:
    """What claiming a task found: ``record`` as on disk (None: the task is gone)."""

    record: TaskRecord | None
    claimed: bool = False
    cooling_until: float | None = None  # its agent is cooling down until then (epoch)
    failed: str | None = None  # no usable agent: the task was failed with this error
    out_of_quota: bool = False  # its agents are out of quota for the run: it stays pending
    busy: str | None = None  # its agent runs its maxConcurrent attempts already


@dataclass
class _Ending:
    """How an attempt ended, for the record."""

    verdict: Verdict
    exit_code: int | None = None
    pid: int | None = None
    tail: bytes = b""
    usage: Usage | None = None
    extra: dict[str, Any] | None = None
    argv: list[str] | None = None  # the command line the attempt ran (secrets masked)
    final: bool = False  # fails the task without a retry (its worktree could not start)


@dataclass(frozen=True)
class _Access:
    """One attempt's way through the credential proxy: its route, the agent's proxy
    arguments and variables, and the task's usage before the attempt."""

    proxy: "CredentialProxy"
    route: Route
    args: list[str]
    env: dict[str, str] = field(repr=False)
    before: ProxyUsage

    def used(self) -> ProxyUsage:
        """What the attempt's requests used so far."""
        return self.proxy.usage(self.route.task_id).since(self.before)


@dataclass
class Engine:
    store: Store
    agents: dict[str, AgentSpec]
    settings: Settings
    redactor: Redactor  # masks the run's secrets in records, sentinels and logs
    daemon: bool = False
    on_progress: Callable[[str], None] | None = None
    on_change: Callable[[TaskRecord], None] | None = None
    only: frozenset[str] | None = None  # a shard's tasks; None = the whole queue
    shard: str | None = None
    started: float | None = None  # time.monotonic() when the run began (default: now)
    runner_id: str = field(default_factory=lambda: f"r{os.getpid()}-{secrets.token_hex(4)}")
    clock: Callable[[], float] = time.time  # the wall clock records and retry delays use
    proxy: "CredentialProxy | None" = None  # holds the provider keys; agents go through it
    # Called once, in a worker thread, when the first agents run (or none could start):
    # start-up work they need not wait for. The run ends after it.
    on_started: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.scheduler = Scheduler()
        self.running: dict[str, _Running] = {}  # claimed or running, until recorded
        self._slots_used = 0  # of --parallel: tasks being claimed or running processes
        self.failed: set[str] = set()
        self.stop_signal: int | None = None
        self.grace_skipped = False  # a second signal: agents are killed without waiting
        self.internal_errors = 0
        self.cost_usd = 0.0
        self.isolation: Isolation | None = None
        self._subdir = Path()
        if self.settings.isolation != "none":
            self._isolate()
        self.supervisor = Supervisor()
        self.started_at = iso(self._now())
        self._t0 = self.started if self.started is not None else time.monotonic()
        self.deadline: float | None = (
            self._t0 + self.settings.time_budget if self.settings.time_budget is not None else None
        )
        self.pool = AgentPool(
            {n: s.fallback for n, s in self.agents.items()},
            self.clock,
            limits={n: s.max_concurrent for n, s in self.agents.items()},
            horizon=None
            if self.deadline is None
            else self.clock() + (self.deadline - time.monotonic()),
        )
        self._waiting: dict[str, deque[str]] = {}  # agent -> tasks waiting for a free slot
        self._wake = asyncio.Event()
        self._report_due = self._t0 + _REPORT_EVERY  # a short run writes only its final report
        self._progress_due = 0.0 if self.on_progress else self._t0 + self.settings.progress_interval
        self._seen: dict[str, object] = {}  # task id -> updatedAt last fed to the scheduler
        # What the scheduler learns once a task's attempt is wholly over (its worktree
        # removed): a retry offered earlier would be claimed while the old attempt cleans up.
        self._settle: dict[str, tuple[str, float | None]] = {}
        # The store work of claims and of finishes, each batched per round (see coalesce).
        self._claims = Coalescer(self._claim_all)
        self._finishes = Coalescer(self._record_finishes, yields_to=self._claims)
        self._started_work: asyncio.Future[None] | None = None  # on_started, once begun

    def _isolate(self) -> None:
        """Worktrees for the tasks, from the ``base`` setting; outside a repository with
        a commit, one notice (an error with ``isolation: worktree``) and the root."""
        root = self.store.root
        repo_top = locate_repo(root)
        if not isinstance(repo_top, Path):
            reason = repo_top
            if self.settings.isolation == "worktree":
                raise UsageError(
                    f"isolation 'worktree' needs a git repository with a commit at {root}: {reason}"
                )
            log.warning(f"tasks run in {root} itself, not each in its own worktree: {reason}")
            return
        try:
            self.isolation = Isolation(repo_top, self.store.dir, self.settings.base)
        except WorktreeError as exc:
            raise UsageError(f"base: {exc}") from None
        self._subdir = root.relative_to(repo_top)
        if self.settings.base == "head":
            unseen = self.isolation.uncommitted()
            if unseen:
                shown = ", ".join(unseen[:10]) + (" ..." if len(unseen) > 10 else "")
                log.warning(
                    f"the agents will not see {len(unseen)} uncommitted or untracked files "
                    f"(they start from HEAD; base: worktree includes them): {shown}"
                )

    # -- entry point --------------------------------------------------------------------

    async def run(self) -> RunOutcome:
        lease = RunnerLease(self.store, self.runner_id)
        loop = asyncio.get_running_loop()
        # Claims and finishes take a thread a batch at a time (see coalesce), but every slot
        # may have a worktree operation in one at once: the default executor's few threads
        # would make them queue.
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=max(8, 2 * self.settings.parallel))
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        adopting = self.supervisor.adopt(True)
        if not adopting:
            log.warning(
                "this system has no child subreaper: a process an agent starts that leaves "
                "its process group and drops its environment can outlive the run"
            )
        try:
            self.recover()
            log.info(
                "run started",
                runner=self.runner_id,
                parallel=self.settings.parallel,
                budget=self.settings.time_budget,
                tasks=len(self.scheduler.status),
            )
            try:
                await self._loop()
            except BaseException:
                self._stop_all(0.0)
                await asyncio.gather(
                    *(r.future for r in self.running.values()), return_exceptions=True
                )
                raise
            finally:
                self._agents_started()
                if self._started_work is not None:
                    await self._started_work
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if adopting:
                grace = 0.0 if self.grace_skipped else self.settings.grace
                await asyncio.to_thread(self.supervisor.stop_adopted, grace)
                self.supervisor.adopt(False)
            self.store.free_replaced()
            self.store.drop_spares()
            lease.release()
        code = self._exit_code()
        final = self.write_report(final=True, exit_code=code)
        log.info("run finished", exit_code=code, **final.totals)
        return RunOutcome(code, final)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- queue state --------------------------------------------------------------------

    def recover(self) -> None:
        """One pass over the queue at start-up: tasks orphaned by a dead runner go back to
        ``pending`` (their agents stopped), sentinels are made to agree with the records,
        and the scheduler learns every task."""
        self.store.remove_stale_temp_files()
        names = self.store.names()
        running: list[str] = []
        for task_id in self.store.ids(names):
            record = self.store.read(task_id)
            if record is None:
                continue
            if record["status"] == "running":
                record = self._recover_orphan(record)
            else:
                self._repair_sentinels(record, names)
            if record["status"] == "running":
                running.append(task_id)
            if self.only is None or task_id in self.only:
                self._remember(record)
        if self.isolation is not None:
            with self.store.locked():
                for task_id in self.isolation.prune(running):
                    log.warning("removed a stale worktree", task=task_id)

    def _recover_orphan(self, record: TaskRecord) -> TaskRecord:
        """A ``running`` task whose runner is gone: stop its agent, requeue it."""
        owner = record.get("runnerId")
        if owner and owner != self.runner_id and self.store.runner_alive(owner):
            return record
        pid_field = record.get("pid")
        if not owner and isinstance(pid_field, int) and atomic.pid_exists(pid_field):
            return record
        task_id = record["taskId"]
        attempts = record.get("attempts") or []
        pid = self.store.read_pid(task_id)
        if attempts and attempts[-1].get("marker"):
            # The agent may have started before its .pid was written: its marker finds it.
            kill_attempt(pid, attempts[-1]["marker"], self.settings.grace)

        def requeue(r: TaskRecord) -> TaskRecord:
            return transitions.interrupt(r, self._now(), "the runner stopped unexpectedly")

        def no_pid(_: TaskRecord) -> None:
            self.store.sentinel(task_id, "pid").unlink(missing_ok=True)

        record = self.store.update(task_id, requeue, then=no_pid)
        log.warning("recovered orphaned task", task=task_id, previous_runner=owner)
        return record

    def _repair_sentinels(self, record: TaskRecord, names: set[str]) -> None:
        """A runner killed between a task's final record and its sentinels left them behind:
        the record is the truth, so make ``.done``/``.pid`` agree with it. ``names`` lists
        ``tasks/``, so a task with nothing to repair costs no system call."""
        task_id = record["taskId"]
        if f"{task_id}.pid" in names:
            self.store.sentinel(task_id, "pid").unlink(missing_ok=True)
        if record["status"] == "complete" and f"{task_id}.done" not in names:
            self.store.write_done(task_id)

    def refresh(self) -> None:
        """Bring the scheduler up to date with records changed on disk by others."""
        for task_id in self.store.ids():
            if task_id in self.running or (self.only is not None and task_id not in self.only):
                continue
            record = self.store.read(task_id)
            if record is None:
                continue
            if task_id in self._seen and self._seen[task_id] == record.get("updatedAt"):
                continue
            self._remember(record)

    def _remember(self, record: TaskRecord) -> None:
        self._seen[record["taskId"]] = record.get("updatedAt")
        self.scheduler.put(record)

    # -- main loop ----------------------------------------------------------------------

    async def _loop(self) -> None:
        last_refresh = time.monotonic()
        while True:
            self._fill_slots()
            self._housekeeping()
            if not self.running:
                if self.stop_signal is not None:
                    return
                if self._drained() and not self.daemon:
                    return
            timeout = self._sleep_time()
            self._wake.clear()
            waitables: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
            attempt_futures = {r.future for r in self.running.values()}
            waitables.update(attempt_futures)
            done, pending = await asyncio.wait(
                waitables, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for fut in pending | done:
                if fut not in attempt_futures:
                    fut.cancel()
            if self._past_deadline():
                self._stop_all(self.settings.grace)
            # Only an idle runner needs to look for other runners' progress (an O(n) check).
            polling = self.daemon or (not self.running and self._waiting_on_others())
            interval = self.settings.daemon_interval if self.daemon else _POLL_OTHERS
            if polling and time.monotonic() - last_refresh >= interval:
                self.refresh()
                last_refresh = time.monotonic()

    def _sleep_time(self) -> float:
        now = time.monotonic()
        candidates = [max(0.0, self._report_due - now) + 0.01, 0.5]
        wake = self.scheduler.next_wake()
        if wake is not None:
            candidates.append(max(0.0, wake - self.clock()))
        if self.deadline is not None:
            candidates.append(max(0.0, self.deadline - now))
        if self.daemon:
            candidates.append(self.settings.daemon_interval)
        return min(candidates)

    def _over_cost(self) -> bool:
        cap = self.settings.max_cost_usd
        return cap is not None and self.cost_usd >= cap

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _waiting_on_others(self) -> bool:
        return self.scheduler.waiting_on_dependencies() and self.scheduler.count("running") > len(
            self.running
        )

    def _drained(self) -> bool:
        if self._past_deadline() or self._over_cost():
            return True
        if self.scheduler.has_ready():
            return False
        wake = self.scheduler.next_wake()
        if wake is not None and (
            self.deadline is None or wake - self.clock() < self.deadline - time.monotonic()
        ):
            return False
        return not self._waiting_on_others()

    def _fill_slots(self) -> None:
        """Fail what its dependencies blocked, then claim ready tasks for the free slots,
        unless the run is stopping."""
        self._fail_blocked()
        if self.stop_signal is None and not self._past_deadline() and not self._over_cost():
            self._launch_ready()

    def _agents_started(self) -> None:
        """Begin :attr:`on_started` once no task waits for its agent to start."""
        if self.on_started is None or self._started_work is not None:
            return
        if any(running.launching for running in self.running.values()):
            return
        hook = self.on_started

        def guarded() -> None:
            try:
                hook()
            except Exception as exc:  # its work is the run's record, not the run itself
                log.exception("start-up work failed", error=str(exc))

        self._started_work = asyncio.get_running_loop().run_in_executor(None, guarded)

    def _launched(self, running: _Running | None) -> None:
        """``running``'s agent started, or the task ended without one."""
        if running is not None and running.launching:
            running.launching = False
            self._agents_started()

    def _launch_ready(self) -> None:
        """Fill free slots. The tasks are claimed together in a worker thread (file system
        work stays off the event loop); a task another runner took meanwhile frees its slot
        again."""
        while (free := self.settings.parallel - self._slots_used) > 0:
            candidates = self.scheduler.take(self.clock(), free)
            if not candidates:
                return
            for task_id in candidates:
                control = Control()
                self._slots_used += 1
                claim = self._claims.submit(task_id)
                future = asyncio.ensure_future(self._task(task_id, control, claim))
                self.running[task_id] = _Running(task_id, control, future)

    async def _task(
        self, task_id: str, control: Control, pending: "asyncio.Future[_Claim]"
    ) -> None:
        released = False

        agent: str | None = None  # the agent whose maxConcurrent slot the attempt holds

        def release_slot() -> None:
            """The slot is free once the task's processes have ended: the next task is
            claimed while this one's result is being written."""
            nonlocal released
            if not released:
                released = True
                self._slots_used -= 1
                if agent is not None:
                    self.pool.release(agent)
                    self._offer_waiting(agent)
                # The next task's claim goes now, ahead of this one's finish (see coalesce).
                self._fill_slots()
                self._wake.set()

        try:
            try:
                claim = await pending
            except Exception as exc:
                # The record cannot be read or written: the task is over for this run.
                log.exception("claim failed", task=task_id, error=str(exc))
                self.internal_errors += 1
                self.scheduler.finished(task_id, "failed")
                self.failed.add(task_id)
                return
            record = self._claimed(task_id, claim)
            if record is not None:
                agent = record["attempts"][-1]["agent"]
                await self._attempt(record, control, release_slot)
        finally:
            # Off the books first: releasing the slot claims the next tasks, this one maybe.
            self._launched(self.running.pop(task_id, None))
            settled = self._settle.pop(task_id, None)
            if settled is not None:
                self.scheduler.finished(task_id, *settled)
            release_slot()
            self._wake.set()

    def _claim_all(self, task_ids: Sequence[str]) -> list["_Claim | Exception"]:
        """Take the tasks for this runner, those still pending and due, atomically: one
        scheduling round's claims under one acquisition of the queue lock, made durable by
        one flush. Runs in a worker thread: it touches the store only; :meth:`_claimed` does
        the rest. The lock is held for the decisions and renames, no more: every claim and
        finish of the run waits for it."""
        claims: list[_Claim | Exception] = []
        with self.store.rewriting_many(task_ids, free_later=True) as rewrites:
            for rewrite in rewrites:
                try:
                    claims.append(self._decide_claim(rewrite.task_id, rewrite))
                except Exception as exc:
                    claims.append(exc)
        placed = [rewrite.task_id for rewrite in rewrites if rewrite.placed]
        try:
            for task_id, claim in zip(task_ids, claims, strict=True):
                if isinstance(claim, _Claim) and claim.claimed:
                    # What an earlier attempt left; no agent of the task runs until this
                    # returns.
                    self.store.sentinel(task_id, "done").unlink(missing_ok=True)
                    self.store.sentinel(task_id, "error").unlink(missing_ok=True)
            if placed:
                # Durable before their agents start, flushed outside the lock.
                self.store.commit(*placed)
        except Exception as exc:
            # Every record this batch wrote may be lost; the claims that wrote nothing
            # (another runner's task, a busy agent) stand.
            for index, (task_id, claim) in enumerate(zip(task_ids, claims, strict=True)):
                if task_id not in placed:
                    continue
                if isinstance(claim, _Claim) and claim.claimed:
                    assert claim.record is not None
                    self.pool.release(claim.record["attempts"][-1]["agent"])
                claims[index] = exc
        return claims

    def _decide_claim(self, task_id: str, rewrite: Rewrite) -> "_Claim":
        """The claim's decision, under the queue lock; a changed record is put in place."""
        record = rewrite.read()
        now = self._now()
        if record is None or not transitions.is_due(record, now):
            return _Claim(record)
        agent = self.pool.choose(record)
        if record["agent"] not in self.agents:
            agent, unusable = None, missing_agent(record["agent"])
        else:
            unusable = self.pool.unusable()
        if agent is None and self.pool.waits_for_quota(record):
            return _Claim(record, out_of_quota=True)
        capped = caps.cost_reached(
            caps.spent(record.get("attempts") or []), record.get("maxCostUsd")
        )
        if capped is not None:
            agent, unusable = None, f"not started: {capped}"
        if agent is None:
            message = self.redactor(unusable)
            record = transitions.fail(record, message, now)
            rewrite.put(record)
            self.store.write_error(task_id, message)
            return _Claim(record, failed=message)
        until = self.pool.cooling_until(agent)
        if until is not None:
            return _Claim(record, cooling_until=until)
        if not self.pool.acquire(agent):
            return _Claim(record, busy=agent)
        try:
            record = transitions.claim(record, agent=agent, runner_id=self.runner_id, now=now)
            rewrite.put(record)
        except BaseException:
            self.pool.release(agent)
            raise
        return _Claim(record, claimed=True)

    def _claimed(self, task_id: str, claim: "_Claim") -> TaskRecord | None:
        """The scheduler's side of a claim; the record to run, or None."""
        record = claim.record
        if claim.claimed and record is not None:
            self._seen[task_id] = record.get("updatedAt")
            self.scheduler.started(task_id)
            self._changed(record)
            return record
        if record is None:  # removed meanwhile (by `clean`): never offer it again
            self.scheduler.forget(task_id)
            return None
        self.scheduler.release(task_id)
        if claim.failed is not None:
            # Every agent of the task is unusable: failed without running.
            self._seen[task_id] = record.get("updatedAt")
            self.scheduler.finished(task_id, "failed")
            self.failed.add(task_id)
            self._changed(record)
            log.warning("task failed", task=task_id, error=claim.failed)
        elif claim.cooling_until is not None:
            # The provider asked everyone to wait: leave the task queued until then.
            self.scheduler.finished(task_id, "pending", claim.cooling_until)
        elif claim.out_of_quota:
            # Pending on disk for a later run; this one does not offer it again.
            self.scheduler.finished(task_id, _OUT_OF_QUOTA)
            log.info("task left pending: its agents are out of quota", task=task_id)
        elif claim.busy is not None:
            # Offered again when one of that agent's attempts ends (see _offer_waiting).
            self.scheduler.finished(task_id, _WAITING)
            self._waiting.setdefault(claim.busy, deque()).append(task_id)
            if self.pool.has_free_slot(claim.busy):  # an attempt ended during the claim
                self._offer_waiting(claim.busy)
        else:
            self._remember(record)
        return None

    def _offer_waiting(self, agent: str) -> None:
        """One of ``agent``'s slots is free: offer the task that waited longest for it."""
        waiting = self._waiting.get(agent)
        if waiting:
            self.scheduler.finished(waiting.popleft(), "pending")

    # -- one attempt --------------------------------------------------------------------

    async def _attempt(
        self, record: TaskRecord, control: Control, release_slot: Callable[[], None]
    ) -> None:
        task_id = record["taskId"]
        attempt = record["attempts"][-1]
        agent = attempt["agent"]
        spec = self.agents[agent]
        timeout = record.get("timeout") or spec.timeout or self.settings.timeout
        stall = record.get("stallTimeout") or spec.stall_timeout or self.settings.stall_timeout
        log.info("task started", task=task_id, attempt=attempt["number"], agent=agent)
        try:
            workdir = self.store.root
            base: Base | None = None
            if self.isolation is not None:
                try:
                    base = await asyncio.to_thread(self._start, record)
                except WorktreeError as exc:  # no agent runs: retrying would not help
                    verdict = Verdict("failed", f"cannot start: {exc}")
                    await self._finish(task_id, _Ending(verdict, final=True))
                    return
                workdir = await asyncio.to_thread(self._worktree, task_id, base.commit)
            values = {
                "taskId": task_id,
                "agent": agent,
                "worktree": str(workdir),
                "doneFile": str(self.store.sentinel(task_id, "done")),
                "errorFile": str(self.store.sentinel(task_id, "error")),
            }
            try:
                prompt = render_prompt(spec, with_feedback(record), values, self.store.root)
            except UsageError as exc:  # e.g. its prompt template is gone
                await self._finish(task_id, _Ending(Verdict("not_found", str(exc))))
                return
            header = (
                f"===== orchestra-ci · task {task_id} · attempt {attempt['number']} · "
                f"agent {agent} · {attempt['startedAt']} =====\n"
            )
            with self._access(task_id, spec) as access:
                env = self._environment(task_id, attempt, workdir, spec, access)
                max_turns = record.get("maxTurns") or self.settings.max_turns
                argv = render_argv(spec, prompt, values, access.args if access else (), max_turns)
                stdin = prompt.encode() if spec.prompt_via == "stdin" else None
                result = await self._run(
                    task_id, attempt, argv, workdir, env, header, timeout, control, stdin, stall
                )
                tail = result.tail.decode(errors="replace")
                verdict = self._verdict(
                    task_id, spec, result, tail, (timeout, stall), access is not None
                )
                self._note_agent(agent, verdict)
                usage = parse_usage(tail)
                self.cost_usd += usage.cost_usd or 0.0
                extra: dict[str, Any] = {}
                if base is not None:
                    extra.update(baseRef=base.ref, baseCommit=base.commit)
                command = record.get("verify") or self.settings.verify
                if verdict.outcome == "success" and command:
                    verdict, extra["verifyOutput"] = await self._verify(
                        task_id, attempt, command, workdir, env, timeout, control
                    )
                if access is not None:
                    used = access.used()
                    usage = usage.with_proxy_counts(
                        used.requests, used.input_tokens, used.output_tokens
                    )
            # Its processes have ended and what they tell of the agent is noted (a rate
            # limit, the cost so far): the next task needs no more of it than that, not
            # the collection of this one's changes.
            release_slot()
            if self.isolation is not None and verdict.outcome not in ("interrupted", "cancelled"):
                assert base is not None
                extra.update(await asyncio.to_thread(self._collect, task_id, base.commit))
                required = changes_required(
                    record.get("requireChanges"),
                    self.settings.require_changes,
                    record.get("source") or "",
                )
                verdict = require_change(verdict, extra.get("changedFiles"), required)
            verdict, final = caps.checked(
                verdict,
                turns=usage.turns,
                max_turns=max_turns,
                enforced=not spec.max_turns_args,
                spent=caps.spent(record["attempts"][:-1]) + (usage.cost_usd or 0.0),
                max_cost=record.get("maxCostUsd"),
            )
            shown = [self.redactor(part) for part in argv]
            await self._finish(
                task_id,
                _Ending(
                    verdict, result.exit_code, result.pid, result.tail, usage, extra, shown, final
                ),
            )
        except Exception as exc:
            # An engine fault (e.g. the disk is full) fails the attempt, never loops on it;
            # if even that cannot be written, the next run recovers the task.
            log.exception("attempt crashed", task=task_id, error=str(exc))
            self.internal_errors += 1
            try:
                await self._finish(task_id, _Ending(Verdict("failed", f"internal error: {exc}")))
            except Exception:
                # Not even that could be written: the record stays `running` on disk for the
                # next run to recover; here the task is over, so dependents do not wait.
                self.scheduler.finished(task_id, "failed")
                self.failed.add(task_id)
        finally:
            if self.isolation is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.isolation.remove, task_id)

    def _verdict(
        self,
        task_id: str,
        spec: AgentSpec,
        result: ProcessResult,
        tail: str,
        limits: tuple[float, float | None],  # the timeout and the stall timeout it ran with
        proxied: bool,
    ) -> Verdict:
        """What the agent's ending means. Through the credential proxy, the proxy's own
        errors (which the agent prints as it got them) count too."""
        fatal, limited = spec.fatal_patterns, spec.rate_limit_patterns
        if proxied:
            fatal, limited = [*fatal, *FATAL_PATTERNS], [*limited, *UNAVAILABLE_PATTERNS]
        verdict = classify(
            AttemptResult(
                exit_code=result.exit_code,
                stop_reason=result.stop_reason,
                spawn_error=result.spawn_error,
                done_sentinel=self.store.sentinel(task_id, "done").exists(),
                error_sentinel=self.store.read_error(task_id, clean=self.redactor),
                timeout=limits[0],
                stall_timeout=limits[1],
                output=read_output(tail, limited, fatal, spec.quota_patterns),
                reported_success=looks_successful(tail, spec.success_patterns),
                reported=read_result(spec.result_format, tail),
            ),
            spec.completion,
        )
        if verdict.outcome == "quota_exhausted":
            now = self._now()
            verdict = quota.exhausted(verdict, quota.reset_at(tail, now), now.timestamp())
        return verdict

    @contextlib.contextmanager
    def _access(self, task_id: str, spec: AgentSpec) -> Iterator[_Access | None]:
        """The attempt's way through the credential proxy, for an agent that speaks a
        provider (None otherwise). Its route is revoked once the attempt's processes have
        ended: whatever they left running is refused from then on."""
        proxy = self.proxy
        if proxy is None or spec.provider is None:
            yield None
            return
        before = proxy.usage(task_id)
        route = proxy.route(task_id)
        try:
            url = route.base_urls.get(spec.provider)  # None: the proxy has no key for it
            args, env = proxy_settings(spec, url, route.dummy_key) if url else ([], {})
            yield _Access(proxy, route, args, {**route.environment(), **env}, before)
        finally:
            proxy.revoke(task_id)

    def _environment(
        self,
        task_id: str,
        attempt: Attempt,
        workdir: Path,
        spec: AgentSpec,
        access: _Access | None,
    ) -> dict[str, str]:
        """The environment of the attempt's processes (see ``agent_env``)."""
        return agent_environment(
            self._passed_env,
            os.environ,
            Place(task_id, attempt["number"], self.store.root, workdir),
            own=spec.env,
            proxied=access.env if access is not None else None,
        )

    @functools.cached_property
    def _passed_env(self) -> dict[str, str]:
        """What of the runner's environment every attempt gets (the runner does not change
        its own environment while it runs)."""
        withheld = self.proxy.withheld if self.proxy is not None else frozenset()
        return passed_environment(os.environ, withheld)

    async def _run(
        self,
        task_id: str,
        attempt: Attempt,
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        header: str,
        timeout: float,
        control: Control,
        stdin: bytes | None = None,
        stall_timeout: float | None = None,
    ) -> ProcessResult:
        """Run one process of the attempt (the agent, or the verification command)."""
        launch = Launch(
            argv=argv,
            cwd=workdir,
            env=env,
            log_path=self.store.log_path(task_id),
            header=header,
            marker=attempt["marker"],
            timeout=timeout,
            grace=self.settings.grace,
            redactor=self.redactor,
            log_cap=self.settings.log_cap_bytes,
            stdin=stdin,
            stall_timeout=stall_timeout,
        )

        def started(pid: int) -> None:
            self.store.write_pid(task_id, pid)
            self._launched(self.running.get(task_id))

        return await run_attempt(launch, control, started, self.supervisor)

    async def _verify(
        self,
        task_id: str,
        attempt: Attempt,
        command: str,
        workdir: Path,
        env: dict[str, str],
        timeout: float,
        control: Control,
    ) -> tuple[Verdict, str | None]:
        """Run the verification command where the agent worked, with the agent's
        environment; its failure fails the attempt, and its output goes to the next
        attempt's prompt."""
        header = f"----- orchestra-ci · verification: {command} -----\n"
        argv = ["bash", "-c", command]
        result = await self._run(task_id, attempt, argv, workdir, env, header, timeout, control)
        output = self.redactor(result.tail.decode(errors="replace")[-4000:])
        if result.stop_reason is not None:
            verdict = classify(AttemptResult(result.exit_code, result.stop_reason), "exit")
            return verdict, None
        if result.exit_code == 0:
            return Verdict("success"), None
        code = result.exit_code
        return Verdict("failed", f"verification failed: `{command}` exited with {code}"), output

    def _start(self, record: TaskRecord) -> Base:
        """Where the task's worktree starts (its dependencies' results or its base)."""
        assert self.isolation is not None
        dependencies = []
        for task_id in record.get("dependsOn") or []:
            done = self.store.read(task_id)
            patch = done.get("patch") if done else None
            commit = done.get("baseCommit") if done else None
            dependencies.append(
                Dependency(task_id, commit, self.store.root / patch if patch else None)
            )
        return self.isolation.start(record["taskId"], dependencies, record.get("base"))

    def _worktree(self, task_id: str, start: str) -> Path:
        assert self.isolation is not None
        path = self.isolation.create(task_id, start)
        return path / self._subdir if self._subdir != Path() else path

    def _collect(self, task_id: str, base: str) -> dict[str, Any]:
        assert self.isolation is not None
        collected = self.isolation.collect(task_id, self.store.patches_dir, base)
        patch = collected.patch
        return {
            "branch": self.isolation.branch(task_id),
            "patch": str(patch.relative_to(self.store.root)) if patch else None,
            "changedFiles": collected.changed_files,
        }

    def _note_agent(self, agent: str, verdict: Verdict) -> None:
        cooling = self.pool.note(agent, verdict, self.settings.backoff)
        if verdict.outcome == "fatal":
            log.error("agent disabled for this run", agent=agent, error=verdict.error)
        elif verdict.outcome == "quota_exhausted":
            paused = cooling is not None
            event = "agent paused until its quota resets" if paused else "agent out of quota"
            log.warning(event, agent=agent, error=verdict.error)
        elif cooling is not None:
            log.warning("agent cooling down", agent=agent, seconds=round(cooling, 1))

    async def _finish(
        self,
        task_id: str,
        ending: "_Ending",
    ) -> None:
        """Record the attempt's end (in a worker thread: the durable write waits on the disk);
        the scheduler hears of it when the task's coroutine ends."""
        verdict = ending.verdict
        record, outcome, status_after, next_at = await self._finishes.submit((task_id, ending))
        self._seen[task_id] = record.get("updatedAt")
        self._settle[task_id] = (status_after, next_at)
        self._changed(record)
        if status_after == "failed":
            self.failed.add(task_id)
        event = {
            "complete": "task complete",
            "failed": "task failed",
            "cancelled": "task cancelled",
        }.get(status_after, "task requeued")
        if status_after == "pending" and next_at is not None:
            event = "task will retry"
        elif status_after == "pending" and outcome == "quota_exhausted":
            event = "task left pending: its agent is out of quota"
        level = log.warning if status_after == "failed" else log.info
        level(
            event,
            task=task_id,
            outcome=outcome,
            error=verdict.error,
            retry_in=round(next_at - self.clock(), 1) if next_at else None,
        )

    def _record_finishes(
        self, endings: Sequence[tuple[str, "_Ending"]]
    ) -> list[tuple[TaskRecord, str, str, float | None] | Exception]:
        """The store's side of :meth:`_finish`, for the attempts that ended together (one
        lock acquisition, two flushes): for each, the record, the attempt's outcome, the
        task's status after it and when it may run again."""
        records = self.store.update_many([self._finish_change(*ending) for ending in endings])
        # Off the claims' path (an agent waits for its claim): what they left to do.
        self.store.free_replaced()
        self.store.make_spares(self.settings.parallel)
        results: list[tuple[TaskRecord, str, str, float | None] | Exception] = []
        for record, (_, ending) in zip(records, endings, strict=True):
            if isinstance(record, Exception):
                results.append(record)
                continue
            outcome = record["attempts"][-1].get("outcome", ending.verdict.outcome)
            status = record["status"]
            next_at = timestamp(record.get("nextAttemptAt")) if status == "pending" else None
            results.append((record, outcome, status, next_at))
        return results

    def _finish_change(self, task_id: str, ending: "_Ending") -> Change:
        """The record change that ends an attempt, and the sentinels written with it."""
        verdict = ending.verdict
        end = transitions.AttemptEnd(
            outcome=verdict.outcome,
            error=self.redactor(verdict.error) if verdict.error else None,
            exit_code=ending.exit_code,
            pid=ending.pid,
            usage={
                **(ending.usage.fields() if ending.usage is not None else {}),
                **({"argv": ending.argv} if ending.argv is not None else {}),
            },
            results=ending.extra or {},
        )
        now = self._now()

        def apply(record: TaskRecord) -> TaskRecord:
            # May run twice (store.update redoes it on a version written meanwhile).
            outcome = transitions.outcome_of(record, end)
            decision = (
                Decision("fail")
                if ending.final and outcome != "cancelled"
                else decide(
                    outcome,
                    record.get("retryCount") or 0,
                    int(record.get("maxRetries", 3)),
                    record.get("backoff") or self.settings.backoff,
                    record.get("backoffMax") or self.settings.backoff_max,
                    retry_after=verdict.retry_after,
                    fallback=self.pool.fallback(record, record["attempts"][-1]["agent"])
                    if outcome in SWITCHABLE
                    else None,
                )
            )
            return transitions.finish(record, end, decision, now)

        def sentinels(record: TaskRecord) -> None:
            status = record["status"]
            if status == "complete":
                self.store.write_done(task_id)  # leaves one the agent wrote as it is
            if status == "failed" and not self.store.sentinel(task_id, "error").exists():
                details = self.redactor(ending.tail[-4000:].decode(errors="replace"))
                self.store.write_error(task_id, end.error or "failed", details)
            self.store.sentinel(task_id, "pid").unlink(missing_ok=True)

        return Change(task_id, apply, sentinels)

    def _fail_blocked(self) -> None:
        for blocked in self.scheduler.pop_blocked():
            self._write_blocked(blocked)

    def _write_blocked(self, blocked: Blocked) -> None:
        now = self._now()

        def apply(record: TaskRecord) -> TaskRecord:
            return transitions.block(record, blocked.blocker, blocked.message, now)

        def error_file(record: TaskRecord) -> None:
            if record["status"] == "failed":
                self.store.write_error(blocked.task_id, blocked.message)

        record = self.store.update(blocked.task_id, apply, then=error_file)
        self._seen[blocked.task_id] = record.get("updatedAt")
        self._changed(record)
        self.failed.add(blocked.task_id)
        log.warning("task blocked", task=blocked.task_id, blocked_by=blocked.blocker)

    def _changed(self, record: TaskRecord) -> None:
        if self.on_change is not None:
            try:
                self.on_change(record)
            except Exception as exc:  # an observer never stops the run
                log.warning("status observer failed", error=str(exc))

    # -- stopping -----------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.stop_signal is None:
            self.stop_signal = signum
            log.warning(
                "stopping",
                signal=name,
                running=len(self.running),
                grace=format_duration(self.settings.grace),
                hint="signal again to kill the agents at once",
            )
            self._stop_all(self.settings.grace)
        else:
            # A second signal (Ctrl-C again): the attempts already wait out their grace
            # period, so their process groups are killed here; the attempts then end.
            self.grace_skipped = True
            agents = list(self.supervisor.agents)
            log.warning(f"second {name}: grace period skipped, killing {len(agents)} agent(s) now")
            self._stop_all(0.0)
            for pgid in agents:  # each agent leads its own process group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)
        self._wake.set()

    def _stop_all(self, grace: float) -> None:
        for running in self.running.values():
            running.control.stop("interrupted", grace)

    def _exit_code(self) -> int:
        if self.stop_signal is not None:
            return 128 + self.stop_signal
        if self.failed or self.internal_errors:
            return 1
        if self.settings.fail_on_pending and self.scheduler.count("pending"):
            return 1
        return 0

    # -- reporting ----------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._report_due:
            self.write_report()
            # Keep report writing under ~5% of the run however large the queue is.
            cost = time.monotonic() - now
            self._report_due = time.monotonic() + max(_REPORT_EVERY, 20 * cost)
        if now >= self._progress_due:
            if self.on_progress is not None:
                self.on_progress(self.progress_line())
                self._progress_due = now + 0.5
            else:
                counts = self._counts()
                log.info(
                    "progress",
                    running=len(self.running),
                    elapsed=round(now - self._t0, 1),
                    **counts,
                )
                self._progress_due = now + self.settings.progress_interval

    def _counts(self) -> dict[str, int]:
        counts = self.scheduler.counts()
        waiting = counts["pending"] + counts[_OUT_OF_QUOTA] + counts[_WAITING]
        return {"complete": counts["complete"], "failed": counts["failed"], "pending": waiting}

    def progress_line(self) -> str:
        counts = self._counts()
        elapsed = format_duration(time.monotonic() - self._t0)
        return (
            f"{counts['complete']} done · {len(self.running)} running · "
            f"{counts['pending']} pending · {counts['failed']} failed · {elapsed}"
        )

    def write_report(self, final: bool = False, exit_code: int | None = None) -> "report.RunReport":
        stopped_by = (
            signal.Signals(self.stop_signal).name
            if self.stop_signal is not None
            else "time budget"
            if self._past_deadline()
            else "cost cap"
            if self._over_cost()
            else None
        )
        from orchestra_ci import report

        # Read from disk one record at a time: the report reflects other runners' work too,
        # and no copy of the whole queue is kept in memory.
        built = report.build(
            self.store.iter_records(self.only),
            run_id=self.runner_id,
            started_at=self.started_at,
            ended_at=iso(self._now()) if final else None,
            time_budget=self.settings.time_budget,
            parallel=self.settings.parallel,
            stopped_by=stopped_by,
            exit_code=exit_code,
            shard=self.shard,
            quota=[
                {
                    "agent": agent,
                    "resetsAt": None
                    if spent.resets_at is None
                    else iso(datetime.fromtimestamp(spent.resets_at, UTC)),
                    "paused": spent.paused,
                    "error": spent.error,
                }
                for agent, spent in sorted(self.pool.exhausted().items())
            ],
        )
        with contextlib.suppress(OSError):
            report.write(self.store.results_path, built)
        return built
