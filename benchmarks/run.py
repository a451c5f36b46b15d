"""orchestra-ci benchmarks: each case side by side in one session, medians and ratios.

    python benchmarks/run.py                      # full run (~8 min), writes benchmarks/RESULTS.md
    python benchmarks/run.py --smoke              # a few seconds, for CI; writes nothing
    python benchmarks/run.py --old-tool CHECKOUT  # also compare agent-orchestrator's `status`

Every case builds its own queue in a temporary directory and calls the CLI the way a user
does: the interpreter directly, ``python -m orchestra_ci``. Contenders of one case run
interleaved (repetition 1 of each, then repetition 2 of each, ...; the order rotates) so
that drift of the machine hits them alike. Wall times are taken around the child process
(spawn to reap); peak RSS comes from ``wait4`` for that one child. The package's bytecode
is compiled before the first case, as installing it does.

The cases and targets (issue 19's, where it set new ones):

1. 1,000 no-op tasks (`true`), parallel 8, durable state, timed three ways: ``run
   --tasks-file`` on a fresh directory as a user types it (load included) <= 1.0 x GNU
   parallel; ``run`` of a queue already loaded (the run loop) <= 0.9 x GNU parallel;
   ``load`` of the 1,000 tasks alone <= 0.3 s.
2. 200 tasks of 0.2 s, parallel 8: <= 1.06 x the ideal 5.0 s.
3. ``status --json`` at 2,000 tasks <= 120 ms, at 10,000 <= 400 ms; ``start`` <= 120 ms;
   ``--version`` <= 80 ms; start-up: ``run`` on an empty queue, and the Action's
   entrypoint (``python -m orchestra_ci.action`` on this machine, no container) to its
   first agent, reported.
4. 10,000 no-op tasks: peak RSS of ``run`` <= 100 MB; per-task wall time of ``run`` and of
   ``load`` within 1.1 x of that at 1,000.
5. ``run --time-budget 5s --grace 1s`` over long tasks ends within 6.5 s.
6. Optional: agent-orchestrator's ``status`` at 2,000 tasks against ours, on the same
   queue (its record format), when ``--old-tool`` or ``$ORCHESTRA_OLD_TOOL`` names its
   checkout (the directory holding ``.orchestra-cli/cli``): <= 0.25 x its time. It runs
   under ``--old-python`` (``$ORCHESTRA_OLD_PYTHON``), an interpreter with its
   requirements (``python -m venv V && V/bin/pip install -r
   CHECKOUT/.orchestra-cli/cli/requirements.txt``), by default this one: its requirements
   installed beside orchestra-ci would change what orchestra-ci imports (structlog
   imports ``rich`` when it is there).
7. Inside the action's container (issue 14): from the entrypoint's start to its first
   agent's, <= 0.3 s. It needs a Docker engine; a full run builds the image from this
   checkout if it is not there yet (``tests/container_image.py``), the smoke run skips it.
   Creating the container (seconds on a copying storage driver) is not counted: a shell
   stamps the time, then execs ``python -m orchestra_ci.action``, whose only task's agent
   stamps it again.

GNU parallel comes from ``PATH``; when it is missing, a full run as root installs the
Debian package ``parallel``, otherwise its rows are skipped.
"""

import argparse
import array
import compileall
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

PY = sys.executable
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OURS = [PY, "-m", "orchestra_ci"]
NOOP: dict[str, Any] = {"command": "true", "args": []}
# GNU sleep adds its arguments up: the prompt "0" appended to the argv keeps 0.2 s.
SLEEP_02: dict[str, Any] = {"command": "sleep", "args": ["0.2"]}
SLEEP_60: dict[str, Any] = {"command": "sleep", "args": ["60"]}
# An agent that ignores SIGTERM (so does its child): only SIGKILL after the grace ends it.
STUBBORN: dict[str, Any] = {"command": "sh", "args": ["-c", "trap '' TERM; sleep 60", "sh"]}


class BenchError(RuntimeError):
    pass


# -- measuring ---------------------------------------------------------------------------


@dataclass
class Sample:
    wall: float  # seconds
    rss_mb: float  # peak resident set of the child (and its reaped children), 10^6 bytes
    code: int


def clean_env(**extra: str) -> dict[str, str]:
    """The user's environment without settings that would change what is measured (our
    ``ORCHESTRA_*`` variables, GitHub Actions' outputs and summaries), as CI would log."""
    drop = ("ORCHESTRA_", "GITHUB_", "RUNNER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["CI"] = "true"
    env.update(extra)
    return env


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    ok: Sequence[int] = (0,),
) -> Sample:
    """Run one child to its end; wall time from spawn to reap, its peak RSS from wait4."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=clean_env() if env is None else env,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in ok:
            err.seek(0)
            tail = err.read()[-3000:].decode(errors="replace")
            raise BenchError(f"{' '.join(argv[:8])} ... exited with {code}:\n{tail}")
    return Sample(wall, usage.ru_maxrss * 1024 / 1e6, code)


def ours(root: Path, *args: str, ok: Sequence[int] = (0,)) -> Sample:
    return spawn([*OURS, "--root", str(root), *args], ok=ok)


def side_by_side(
    repeat: int, contenders: dict[str, Callable[[], Sample]]
) -> dict[str, list[Sample]]:
    """Repetition by repetition, each contender once, in a rotating order."""
    names = list(contenders)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for rep in range(repeat):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(contenders[name]())
    return samples


def cpu_seconds() -> tuple[float, float]:
    """(busy CPU time of the whole machine, CPU time of this process and its reaped children),
    both in seconds; their difference is what other processes (and the hypervisor) took."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    own = sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return busy, own


@contextmanager
def watched(res: "Results", case: str) -> Iterator[None]:
    """Note how much of the machine other processes used while a case ran."""
    busy0, own0 = cpu_seconds()
    started = time.monotonic()
    yield
    busy1, own1 = cpu_seconds()
    capacity = (time.monotonic() - started) * (os.cpu_count() or 1)
    res.noise[case] = max(0.0, (busy1 - busy0) - (own1 - own0)) / capacity


def walls(samples: list[Sample]) -> list[float]:
    return [s.wall for s in samples]


# Linux's FS_IOC_GETFLAGS / FS_IOC_SETFLAGS and the "top of a directory tree" inode flag
# (chattr +T): ext4 places each subdirectory of such a directory in a block group of its own.
_GETFLAGS, _SETFLAGS, _TOPDIR = 0x80086601, 0x40086602, 0x00020000


class ScratchArea:
    """Where every case's queues live, removed at the end of the whole run, not after each
    repetition.

    On ext4 without a journal (this benchmark's usual machine), creating a file scans past
    every inode of its block group freed in the last 60 to 300 s (the kernel's
    ``recently_deleted`` check): deleting one repetition's 5,000 files right before the next
    repetition made the next one's file creations several times dearer, a cost that has
    nothing to do with the command measured, and that GNU parallel, which creates no
    files, never pays. So nothing is deleted while cases run, and each queue's directory
    gets a block group of its own (the top-directory flag on the area, where the file
    system has it): a repetition pays for the inodes its own run frees, as a CI job on a
    fresh checkout does. When free space runs low, directories are deleted as before.
    """

    LOW_SPACE = 2 << 30

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="orchestra-bench-"))
        with suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                flags = array.array("i", [0])
                fcntl.ioctl(fd, _GETFLAGS, flags, True)
                flags[0] |= _TOPDIR
                fcntl.ioctl(fd, _SETFLAGS, flags, True)
            finally:
                os.close(fd)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    @contextmanager
    def directory(self) -> Iterator[Path]:
        tmp = Path(tempfile.mkdtemp(dir=self.path))
        try:
            yield tmp
        finally:
            stop_leftovers(tmp)
            if shutil.disk_usage(self.path).free < self.LOW_SPACE:
                shutil.rmtree(tmp, ignore_errors=True)


SCRATCH: ScratchArea | None = None


@contextmanager
def scratch() -> Iterator[Path]:
    global SCRATCH
    if SCRATCH is None:
        SCRATCH = ScratchArea()
    with SCRATCH.directory() as tmp:
        yield tmp


def leftovers(root: Path) -> list[int]:
    """Processes still working in ``root`` (an agent the runner failed to stop)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == str(root) or cwd.startswith(f"{root}/"):
            found.append(int(entry))
    return found


def stop_leftovers(root: Path) -> None:
    for pid in leftovers(root):
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


# -- queues ------------------------------------------------------------------------------


def write_tasks(root: Path, count: int, agent: dict[str, Any], prompt: str) -> None:
    """A tasks.yml of ``count`` tasks for the agent ``bench``, defined in agent-config.json."""
    orchestra = root / ".orchestra"
    orchestra.mkdir(parents=True, exist_ok=True)
    (orchestra / "agent-config.json").write_text(json.dumps({"agents": {"bench": agent}}))
    lines = ["defaults: {agent: bench, max_retries: 0}", "tasks:"]
    lines += [f"  - {{id: t{n:05d}, prompt: '{prompt}'}}" for n in range(count)]
    (orchestra / "tasks.yml").write_text("\n".join(lines) + "\n")


def make_queue(root: Path, count: int, agent: dict[str, Any] = NOOP, prompt: str = "0") -> float:
    """Queue ``count`` tasks through ``load``; returns load's wall time. The tasks file is
    then removed, so that ``run`` measures running the queue, not re-reading the file."""
    write_tasks(root, count, agent, prompt)
    wall = ours(root, "load").wall
    (root / ".orchestra/tasks.yml").unlink()
    return wall


def check_report(root: Path, count: int, **expected: int) -> None:
    totals = json.loads((root / ".orchestra/results.json").read_bytes())["totals"]
    want = {"total": count, **expected}
    if any(totals.get(k) != v for k, v in want.items()):
        raise BenchError(f"{root}: results.json totals {totals}, expected {want}")


def run_queue(root: Path, count: int, parallel: int) -> Sample:
    sample = ours(root, "run", "--parallel", str(parallel))
    check_report(root, count, complete=count)
    return sample


# -- other tools -------------------------------------------------------------------------


def find_gnu_parallel(install: bool) -> str | None:
    """GNU parallel (not moreutils' parallel); installs the Debian package if allowed."""
    path = shutil.which("parallel")
    if path is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing GNU parallel (apt-get install parallel) ...", file=sys.stderr)
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "parallel"]):
            subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which("parallel")
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path if version.stdout.startswith("GNU parallel") else None


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def old_tool_cli(checkout: Path) -> Path | None:
    """The directory to put on PYTHONPATH so that ``python -m cli`` is the old tool."""
    for base in (checkout / ".orchestra-cli", checkout):
        if (base / "cli" / "__main__.py").is_file():
            return base
    return None


def write_old_queue(root: Path, count: int) -> None:
    """``count`` pending tasks as agent-orchestrator writes them (its Task model dumped with
    ``model_dump(mode="json")``, indent 2, ``task_<ms>`` ids, a plan file each)."""
    tasks = root / ".orchestra/tasks"
    plans = root / ".orchestra/plans"
    for directory in (tasks, plans, root / ".orchestra/logs"):
        directory.mkdir(parents=True, exist_ok=True)
    base = int(time.time() * 1000) - count
    for n in range(count):
        task_id = f"task_{base + n}"
        record: dict[str, Any] = {
            "taskId": task_id,
            "status": "pending",
            "agent": "coder",
            "prompt": f"benchmark task {n}",
            "planFile": f".orchestra/plans/{task_id}_plan.md",
            "logFile": f".orchestra/logs/{task_id}.log",
            "createdAt": datetime.fromtimestamp((base + n) / 1000).isoformat(),
            "startedAt": None,
            "completedAt": None,
            "timedOutAt": None,
            "retriedAt": None,
            "pid": None,
            "errorMessage": None,
            "retryCount": 0,
            "maxRetries": 3,
            "autoRetry": False,
            "retryHistory": [],
            "parentTaskId": None,
            "retriedBy": None,
            "priority": 5,
            "timeout": None,
            "timeoutWarning": None,
            "dependsOn": [],
            "blockedBy": None,
            "blockedReason": None,
        }
        (tasks / f"{task_id}.json").write_text(json.dumps(record, indent=2))
        (plans / f"{task_id}_plan.md").write_text(f"# Task: {task_id}\n\n## Prompt\n{n}\n")


# -- results -----------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    subject: str
    values: list[float]
    unit: str  # "s", "ms", "MB"
    ratio: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)


@dataclass
class Target:
    case: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    noise: dict[str, float] = field(default_factory=dict)  # case -> others' share of the CPUs

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.case} | {row.subject}: {fmt(row.median, row.unit)} {row.ratio}", flush=True)
        return row

    def target(self, case: str, goal: str, measured: str, met: bool | None) -> None:
        self.targets.append(Target(case, goal, measured, met))
        verdict = {True: "met", False: "NOT MET", None: "not measured"}[met]
        print(f"  target {goal}: {measured} -> {verdict}", flush=True)


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.3g} {unit}"


def ms(samples: list[Sample]) -> list[float]:
    return [s.wall * 1000 for s in samples]


# -- cases -------------------------------------------------------------------------------


@dataclass
class Plan:
    """Sizes and repetitions; the smoke plan shrinks everything to a few seconds."""

    smoke: bool
    noop_tasks: int = 1000
    noop_repeat: int = 5
    sleep_tasks: int = 200
    sleep_parallel: int = 8
    sleep_repeat: int = 3
    status_small: int = 2000
    status_large: int = 10000
    quick_repeat: int = 11
    big_tasks: int = 10000
    big_repeat: int = 3
    budget: float = 5.0
    grace: float = 1.0
    budget_repeat: int = 3
    old_tasks: int = 2000
    old_repeat: int = 11
    container_repeat: int = 7

    @classmethod
    def small(cls) -> "Plan":
        return cls(
            smoke=True,
            noop_tasks=20,
            noop_repeat=1,
            sleep_tasks=8,
            sleep_parallel=4,
            sleep_repeat=1,
            status_small=50,
            status_large=100,
            quick_repeat=1,
            big_tasks=50,
            big_repeat=1,
            budget=0.5,
            grace=0.25,
            budget_repeat=1,
            old_tasks=20,
            old_repeat=1,
            container_repeat=0,
        )


@dataclass
class PerTask:
    """Case 1's median wall times per task, for case 4's growth targets."""

    run: float
    load: float


PARALLEL = "parallel -j8 true ::: ..."


def case_noop(plan: Plan, res: Results, gnu_parallel: str | None) -> PerTask:
    """Case 1: the command as typed (load included), the run loop alone, load alone."""
    n = plan.noop_tasks
    case = f"1. {n:,} no-op tasks (`true`), parallel 8"
    ids = [f"t{i:05d}" for i in range(n)]
    loads: list[float] = []
    rss: list[float] = []

    def run_loop() -> Sample:
        with scratch() as root:
            loads.append(make_queue(root, n))
            sample = run_queue(root, n, 8)
        rss.append(sample.rss_mb)
        return sample

    def as_typed() -> Sample:
        with scratch() as root:
            write_tasks(root, n, NOOP, "0")
            tasks = str(root / ".orchestra/tasks.yml")
            sample = ours(root, "run", "--parallel", "8", "--tasks-file", tasks)
            check_report(root, n, complete=n)
        return sample

    typed = "orchestra-ci run --parallel 8 --tasks-file tasks.yml (load included)"
    loop = "orchestra-ci run --parallel 8 (queue loaded, untimed)"
    contenders: dict[str, Callable[[], Sample]] = {typed: as_typed, loop: run_loop}
    if gnu_parallel:
        contenders[PARALLEL] = lambda: spawn(
            [gnu_parallel, "--will-cite", "-j8", "true", ":::", *ids]
        )
    contenders["xargs -P8 -n1 true"] = lambda: spawn(
        ["xargs", "-P8", "-n1", "true"], stdin="\n".join(ids).encode() + b"\n"
    )
    got = side_by_side(plan.noop_repeat, contenders)
    medians = {name: statistics.median(walls(s)) for name, s in got.items()}
    for name, samples in got.items():
        ratios = [
            f"{medians[name] / medians[other]:.2f} x {other.split()[0]}"
            for other in (PARALLEL,)
            if other in medians and name.startswith("orchestra")
        ]
        note = f"{medians[name] / n * 1000:.2f} ms/task"
        res.add(Row(case, name, walls(samples), "s", "; ".join(ratios), note))
    load_row = res.add(Row(case, f"orchestra-ci load ({n:,} tasks from tasks.yml)", loads, "s"))
    res.add(Row(case, "orchestra-ci run: peak RSS", rss, "MB"))
    for name, goal, limit in (
        (typed, "`run --tasks-file` (load included)", 1.0),
        (loop, "`run`, queue loaded", 0.9),
    ):
        target = f"{goal}: wall <= {limit:g} x GNU parallel"
        if PARALLEL not in medians:
            res.target("1", target, "GNU parallel not found", None)
            continue
        factor = medians[name] / medians[PARALLEL]
        measured = f"{factor:.2f} x ({medians[name]:.2f} s vs {medians[PARALLEL]:.2f} s)"
        res.target("1", target, measured, factor <= limit)
    load = load_row.median
    res.target("1", f"`load` of {n:,} tasks <= 0.3 s", fmt(load, "s"), load <= 0.3)
    return PerTask(run=medians[loop] / n, load=load / n)


def case_sleep(plan: Plan, res: Results, gnu_parallel: str | None) -> None:
    n, jobs = plan.sleep_tasks, plan.sleep_parallel
    ideal = n * 0.2 / jobs
    case = f"2. {n} tasks of 0.2 s (`sleep 0.2`), parallel {jobs}"
    zeros = ["0"] * n  # every tool runs `sleep 0.2 0`

    def orchestra() -> Sample:
        with scratch() as root:
            make_queue(root, n, SLEEP_02, "0")
            return run_queue(root, n, jobs)

    contenders: dict[str, Callable[[], Sample]] = {f"orchestra-ci run --parallel {jobs}": orchestra}
    if gnu_parallel:
        contenders[f"parallel -j{jobs} sleep 0.2 ::: ..."] = lambda: spawn(
            [gnu_parallel, "--will-cite", f"-j{jobs}", "sleep", "0.2", ":::", *zeros]
        )
    contenders[f"xargs -P{jobs} -n1 sleep 0.2"] = lambda: spawn(
        ["xargs", f"-P{jobs}", "-n1", "sleep", "0.2"], stdin="\n".join(zeros).encode() + b"\n"
    )
    got = side_by_side(plan.sleep_repeat, contenders)
    for name, samples in got.items():
        median = statistics.median(walls(samples))
        res.add(Row(case, name, walls(samples), "s", f"{median / ideal:.3f} x ideal"))
    mine = statistics.median(walls(got[f"orchestra-ci run --parallel {jobs}"]))
    res.target(
        "2",
        f"wall <= 1.06 x ideal ({ideal:.1f} s)",
        f"{mine / ideal:.3f} x ({mine:.2f} s)",
        mine / ideal <= 1.06,
    )


def case_quick(plan: Plan, res: Results, big_loads: list[float]) -> None:
    """Case 3: status --json on two queue sizes, start, --version."""
    repeat = plan.quick_repeat
    for count, limit in ((plan.status_small, 120.0), (plan.status_large, 400.0)):
        with scratch() as root:
            loaded = make_queue(root, count)
            if count == plan.status_large:
                big_loads.append(loaded)
            out = subprocess.run(
                [*OURS, "--root", str(root), "status", "--json"],
                capture_output=True,
                check=True,
                env=clean_env(),
            )
            if len(json.loads(out.stdout)) != count:
                raise BenchError("status --json did not list every task")
            case = f"3. status, {count:,} queued tasks"
            got = side_by_side(
                repeat,
                {
                    "status --json": partial(ours, root, "status", "--json"),
                    "status (table)": partial(ours, root, "status"),
                },
            )
            row = res.add(Row(case, "orchestra-ci status --json", ms(got["status --json"]), "ms"))
            res.add(Row(case, "orchestra-ci status (table)", ms(got["status (table)"]), "ms"))
            res.target(
                "3",
                f"status --json at {count:,} <= {limit:.0f} ms",
                fmt(row.median, "ms"),
                row.median <= limit,
            )
            if count == plan.status_small:
                start = [ours(root, "start", "bench", "hello") for _ in range(repeat)]
                row = res.add(
                    Row(case, f"orchestra-ci start (queue of {count:,})", ms(start), "ms")
                )
                res.target("3", "start <= 120 ms", fmt(row.median, "ms"), row.median <= 120)
    case = "3. interpreter start-up"
    with scratch() as empty:
        (empty / ".orchestra").mkdir()
        got = side_by_side(
            repeat,
            {
                "version": lambda: spawn([*OURS, "--version"]),
                "bare": lambda: spawn([PY, "-c", "pass"]),
                "empty": lambda: ours(empty, "run"),
                "action": action_to_first_agent,
            },
        )
    row = res.add(Row(case, "python -m orchestra_ci --version", ms(got["version"]), "ms"))
    res.add(Row(case, "python -c pass (floor)", ms(got["bare"]), "ms"))
    res.target("3", "--version <= 80 ms", fmt(row.median, "ms"), row.median <= 80)
    row = res.add(Row(case, "orchestra-ci run on an empty queue", ms(got["empty"]), "ms"))
    res.target("3", "`run` on an empty queue", fmt(row.median, "ms"), None)
    action = "python -m orchestra_ci.action (no container): start to first agent"
    row = res.add(Row(case, action, ms(got["action"]), "ms"))
    res.target("3", "the Action's entrypoint to its first agent", fmt(row.median, "ms"), None)


def action_to_first_agent() -> Sample:
    """The Action's entrypoint run directly on this machine, one task, no state to restore:
    the wall time from its spawn to its agent's start (the agent stamps the time)."""
    with scratch() as ws:
        write_tasks(ws, 1, stamp_agent(ws / "first-agent"), "go")
        (ws / "home").mkdir()
        env = clean_env(
            GITHUB_ACTIONS="true",
            GITHUB_WORKSPACE=str(ws),
            HOME=str(ws / "home"),
            INPUT_STATE="none",
            INPUT_DEFAULT_AGENT="bench",
        )
        began = time.time_ns()
        sample = spawn([PY, "-m", "orchestra_ci.action"], cwd=ws, env=env)
        first = int((ws / "first-agent").read_text())
    return Sample((first - began) / 1e9, sample.rss_mb, sample.code)


def stamp_agent(path: Path | str) -> dict[str, Any]:
    """An agent that writes the time it started (nanoseconds) into ``path``."""
    return {"command": "sh", "args": ["-c", f"date +%s%N > {path}", "{prompt}"]}


def case_big(plan: Plan, res: Results, small: PerTask | None, loads: list[float]) -> None:
    """Case 4; the growth targets need case 1's wall times per task."""
    n = plan.big_tasks
    case = f"4. {n:,} no-op tasks, parallel 8"
    runs: list[Sample] = []
    for _ in range(plan.big_repeat):
        with scratch() as root:
            loads.append(make_queue(root, n))
            runs.append(run_queue(root, n, 8))
    rss = [s.rss_mb for s in runs]
    row = res.add(Row(case, "orchestra-ci run: peak RSS", rss, "MB"))
    res.target("4", f"peak RSS of run at {n:,} <= 100 MB", fmt(row.median, "MB"), row.median <= 100)
    for what, values, at_small in (
        ("run --parallel 8", walls(runs), small.run if small else None),
        (f"load ({n:,} tasks from tasks.yml)", loads, small.load if small else None),
    ):
        per_task = statistics.median(values) / n
        if at_small is None:
            res.add(Row(case, f"orchestra-ci {what}", values, "s"))
            continue
        growth = per_task / at_small
        versus = f"{per_task * 1000:.3f} vs {at_small * 1000:.3f} ms"
        res.add(
            Row(
                case,
                f"orchestra-ci {what}",
                values,
                "s",
                f"per task {growth:.2f} x that at {plan.noop_tasks:,}",
                f"{versus}/task",
            )
        )
        res.target(
            "4",
            f"`{what.split()[0]}`: wall per task at {n:,} <= 1.1 x at {plan.noop_tasks:,}",
            f"{growth:.2f} x ({versus})",
            growth <= 1.1,
        )


def case_budget(plan: Plan, res: Results) -> None:
    budget, grace = plan.budget, plan.grace
    limit = budget + grace + 0.5
    case = f"5. --time-budget {budget:g}s --grace {grace:g}s, 16 tasks of 60 s, parallel 8"
    agents = {"sleep 60": SLEEP_60}
    if not plan.smoke:
        agents["sleep 60, ignores SIGTERM"] = STUBBORN
    for name, agent in agents.items():
        samples = []
        stray = 0
        for _ in range(plan.budget_repeat):
            with scratch() as root:
                make_queue(root, 16, agent, "0")
                budget_args = ["--time-budget", f"{budget:g}s", "--grace", f"{grace:g}s"]
                samples.append(ours(root, "run", "--parallel", "8", *budget_args))
                check_report(root, 16, pending=16)
                stray += len(leftovers(root))
        worst = max(walls(samples))
        note = f"worst {worst:.2f} s; {stray} agent processes left behind"
        row = res.add(Row(case, f"orchestra-ci run, agent `{name}`", walls(samples), "s", "", note))
        res.target(
            "5",
            f"ends within budget + grace + 0.5 s = {limit:g} s (agent `{name}`)",
            f"{row.median:.2f} s (worst {worst:.2f} s)",
            row.median <= limit and stray == 0,
        )


STAMP = stamp_agent("/github/workspace/first-agent")  # inside the container


def case_container(plan: Plan, res: Results) -> None:
    """Case 7: entrypoint to first agent inside the action's container."""
    goal = "entrypoint to first agent in the container <= 0.3 s"
    if plan.container_repeat == 0:
        res.target("7", goal, "skipped in the smoke run", None)
        return
    sys.path.insert(0, str(REPO))
    from tests.container_image import Unavailable, ensure_image, run_action

    try:
        image = ensure_image()
    except Unavailable as why:
        res.notes.append(f"Case 7 not measured: {why}.")
        res.target("7", goal, "not measured", None)
        return
    starts: list[float] = []
    for _ in range(plan.container_repeat):
        with scratch() as ws:
            (ws / ".orchestra").mkdir()
            (ws / ".orchestra" / "agent-config.json").write_text(
                json.dumps({"agents": {"stamp": STAMP}})
            )
            (ws / ".orchestra" / "tasks.yml").write_text(
                "tasks:\n  - {id: first, agent: stamp, prompt: go}\n"
            )
            (ws / "home").mkdir()
            env = {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "HOME": "/github/workspace/home",
                "INPUT_STATE": "none",
                "INPUT_DEFAULT_AGENT": "stamp",
            }
            stamp_then_start = "date +%s%N > entrypoint; exec python -m orchestra_ci.action"
            ran = run_action(image, ws, env, entrypoint=["sh", "-c", stamp_then_start])
            if ran.returncode != 0:
                raise BenchError(f"the action in its container failed:\n{ran.stderr[-3000:]}")
            began = int((ws / "entrypoint").read_text())
            first = int((ws / "first-agent").read_text())
            starts.append((first - began) / 1e6)
    case = "7. the Action's container, one task"
    row = res.add(Row(case, "entrypoint to first agent", starts, "ms", "", f"image {image}"))
    res.target("7", goal, fmt(row.median, "ms"), row.median <= 300)


def python_version(interpreter: str) -> str:
    """The version of the Python ``interpreter`` runs, or "?"."""
    script = "import platform; print(platform.python_version())"
    got = subprocess.run([interpreter, "-c", script], capture_output=True, text=True, check=False)
    return got.stdout.strip() or "?"


def case_old_tool(plan: Plan, res: Results, checkout: Path | None, old_python: str) -> None:
    n = plan.old_tasks
    goal = f"status at {n:,} tasks: orchestra-ci vs agent-orchestrator"
    if checkout is None:
        res.notes.append(
            "Case 6 (agent-orchestrator) skipped: no --old-tool / $ORCHESTRA_OLD_TOOL."
        )
        return
    base = old_tool_cli(checkout)
    if base is None:
        raise BenchError(f"{checkout}: no .orchestra-cli/cli/__main__.py (agent-orchestrator)")
    case = f"6. status, {n:,} tasks in agent-orchestrator's format (same queue)"
    with scratch() as root:
        write_old_queue(root, n)
        old_env = clean_env(PYTHONPATH=str(base))
        got = side_by_side(
            plan.old_repeat,
            {
                "old": lambda: spawn([old_python, "-m", "cli", "status"], cwd=root, env=old_env),
                "table": lambda: ours(root, "status"),
                "json": lambda: ours(root, "status", "--json"),
            },
        )
    old = statistics.median(ms(got["old"]))
    res.add(Row(case, "agent-orchestrator status", ms(got["old"]), "ms"))
    for key, label in (
        ("table", "orchestra-ci status (table)"),
        ("json", "orchestra-ci status --json"),
    ):
        mine = statistics.median(ms(got[key]))
        res.add(Row(case, label, ms(got[key]), "ms", f"{mine / old:.2f} x agent-orchestrator"))
    mine = statistics.median(ms(got["table"]))
    res.target(
        "6",
        f"{goal} <= 0.25 x",
        f"{mine / old:.2f} x ({mine:.0f} ms vs {old:.0f} ms)",
        mine / old <= 0.25,
    )
    head = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    res.notes.append(
        "Case 6: agent-orchestrator"  # its commit, not where it was checked out
        + (f" at commit {head}" if head else "")
        + ", run as `python -m cli status` (its default, with its auto-retry pass) from the "
        "queue's directory, "
        + (
            "by this interpreter"
            if old_python == PY
            else "by an interpreter of its own with its requirements "
            f"(Python {python_version(old_python)})"
        )
        + "; orchestra-ci reads the very same queue."
    )


# -- report ------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    df = subprocess.run(
        ["df", "--output=fstype,source", tempfile.gettempdir()],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    fs, device = (df[-2], df[-1]) if len(df) >= 4 else ("?", "?")
    if fs == "ext4" and not any(Path("/proc/fs/jbd2").glob(f"{Path(device).name}-*")):
        fs = "ext4 without a journal"
    return (
        f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, temp dirs on {fs} ({tempfile.gettempdir()})"
    )


def compile_package() -> None:
    """Compile the package's bytecode first, as installing it does: a module changed since
    the last compile would otherwise be compiled again by every command measured where
    nothing writes the cache (an environment with ``PYTHONDONTWRITEBYTECODE`` set)."""
    compileall.compile_dir(REPO / "orchestra_ci", quiet=1)


def commit() -> str:
    """HEAD and whether the package has uncommitted changes (read-only git calls)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # status must not rewrite the index
    head = tool_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    changed = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "orchestra_ci"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    ).stdout.splitlines()
    return f"{head} (+{len(changed)} uncommitted files in orchestra_ci/)" if changed else head


def render(res: Results, elapsed: float, versions: dict[str, str]) -> str:
    met = {True: "**met**", False: "**not met**", None: "(info)"}
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}.",
        f"Run: {datetime.now():%Y-%m-%d %H:%M}, {elapsed / 60:.1f} min, "
        + ", ".join(versions.values())
        + ".",
        "",
        "Made by `python benchmarks/run.py` (see its docstring for the method): each case "
        "builds its queue in a temporary directory with `load`, then times the command "
        "alone; contenders run interleaved; figures are medians over the runs.",
        "",
        "## Targets",
        "",
        "| case | target | measured (median) | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t.case} | {t.goal} | {t.measured} | {met[t.met]} |" for t in res.targets]
    lines += [
        "",
        "## Measurements",
        "",
        "| case | command | median | min - max | runs | ratio | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res.rows:
        spread = f"{fmt(min(r.values), r.unit)} - {fmt(max(r.values), r.unit)}"
        lines.append(
            f"| {r.case} | {r.subject} | {fmt(r.median, r.unit)} | {spread} | {len(r.values)} "
            f"| {r.ratio} | {r.note} |"
        )
    if res.noise:
        shares = ", ".join(f"case {case} {share:.0%}" for case, share in res.noise.items())
        lines += [
            "",
            f"Other processes' share of the {os.cpu_count()} CPUs while each case ran (busy time "
            f"of the machine minus this benchmark's own, hypervisor steal included): {shares}.",
        ]
    if res.notes:
        lines += ["", *(f"- {note}" for note in res.notes)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run, no file")
    parser.add_argument(
        "--old-tool",
        type=Path,
        default=os.environ.get("ORCHESTRA_OLD_TOOL") or None,
        help="agent-orchestrator checkout for case 6 (default: $ORCHESTRA_OLD_TOOL)",
    )
    parser.add_argument(
        "--old-python",
        default=os.environ.get("ORCHESTRA_OLD_PYTHON") or PY,
        help="the interpreter, with its requirements, that case 6 runs it under "
        "(default: $ORCHESTRA_OLD_PYTHON, else this one)",
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "RESULTS.md", help="where a full run writes"
    )
    parser.add_argument(
        "--cases",
        type=lambda text: {int(part) for part in text.split(",")},
        default=set(range(1, 8)),
        help="comma-separated case numbers to run (default: all); a partial run writes nothing",
    )
    args = parser.parse_args()
    plan = Plan.small() if args.smoke else Plan(smoke=False)
    gnu_parallel = find_gnu_parallel(install=not args.smoke)
    res = Results()
    if gnu_parallel is None:
        res.notes.append("GNU parallel not found: its rows are missing.")
    compile_package()
    started = time.monotonic()
    print(f"orchestra-ci benchmarks ({'smoke' if args.smoke else 'full'}): {machine()}")
    big_loads: list[float] = []
    at_start = commit()
    per_task_small: PerTask | None = None
    cases: dict[int, Callable[[], object]] = {
        1: lambda: case_noop(plan, res, gnu_parallel),
        2: lambda: case_sleep(plan, res, gnu_parallel),
        3: lambda: case_quick(plan, res, big_loads),
        4: lambda: case_big(plan, res, per_task_small, big_loads),
        5: lambda: case_budget(plan, res),
        6: lambda: case_old_tool(plan, res, args.old_tool, args.old_python),
        7: lambda: case_container(plan, res),
    }
    try:
        for number in sorted(args.cases & cases.keys()):
            with watched(res, str(number)):
                result = cases[number]()
            if number == 1:
                per_task_small = cast(PerTask, result)
    finally:
        if SCRATCH is not None:
            SCRATCH.remove()
    at_end = commit()
    if at_end != at_start:
        res.notes.append(f"The code changed during the run: {at_start} at the start.")
    versions = {
        "orchestra-ci": f"{tool_version([*OURS, '--version'])} at {at_end}",
        "GNU parallel": tool_version([gnu_parallel, "--version"]) if gnu_parallel else "none",
        "xargs": tool_version(["xargs", "--version"]),
    }
    table = render(res, time.monotonic() - started, versions)
    print()
    print(table)
    if not args.smoke and args.cases >= cases.keys():
        args.output.write_text(table)
        print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
