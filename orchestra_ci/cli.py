"""Command line: parses arguments and prints; the work happens in the library modules.

Imports are deferred into the command functions so that quick commands (``status``,
``start``, ``--version``) load only what they use.
"""

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from orchestra_ci import __version__
from orchestra_ci.cli_help import (
    AGENT_CONFIG,
    DURATIONS,
    PARALLEL,
    TOP_EPILOG,
    duration_help,
    epilog,
    setting,
)
from orchestra_ci.errors import OrchestraError, UsageError, one_line

PROG = "orchestra-ci"
_CREATE_A_QUEUE = frozenset({"start", "load", "daemon", "pull"})  # may make --root


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit 2 (argparse would print the whole usage block)."""
        self.exit(2, f"{PROG}: error: {one_line(message)} (see {self.prog} --help)\n")


def _duration(text: str) -> float:
    from orchestra_ci.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _ids(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _store(args: argparse.Namespace) -> Any:
    from orchestra_ci.store import Store

    return Store(args.root)


def _config_file(root: Path, given: Path | None) -> Path | None:
    from orchestra_ci.presets import DEFAULT_CONFIG_FILE

    if given is not None:
        return given if given.is_absolute() else root / given
    default = root / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def _start_agent_config(root: Path, agent: str) -> Path | None:
    """The agent config ``run`` would use, found without loading pydantic when possible."""
    from orchestra_ci.presets import agent_names

    from_env = os.environ.get("ORCHESTRA_AGENT_CONFIG")
    cheap = _config_file(root, Path(from_env) if from_env else None)
    if from_env or agent in agent_names(cheap) or not (root / ".orchestra/config.yml").is_file():
        return cheap
    # config.yml may name another agent config: only then pay for reading the settings.
    from orchestra_ci.settings import load_settings

    return _config_file(root, load_settings(root).agent_config)


# -- commands ------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    from orchestra_ci.operations import start_task

    task_id = start_task(
        _store(args),
        args.agent,
        args.prompt,
        task_id=args.id,
        config_file=_start_agent_config(args.root, args.agent),
        timeout=args.timeout,
        max_retries=args.max_retries,
        priority=args.priority,
        depends_on=[task_id for ids in args.depends_on for task_id in ids],
    )
    print(task_id)
    return 0


def _abs(path: Path | None) -> Path | None:
    """Paths given on the command line are relative to the current directory."""
    return None if path is None else (path if path.is_absolute() else Path.cwd() / path)


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    """Settings from flags (given ones win), ``ORCHESTRA_*``/GitHub variables, config.yml."""
    from orchestra_ci.settings import load_settings

    return load_settings(
        args.root,
        log_format=args.log_format,
        tasks_file=_abs(getattr(args, "tasks_file", None)),
        agent_config=_abs(getattr(args, "agent_config", None)),
        issue_label=getattr(args, "issue_label", None),
        repository=getattr(args, "repo", None),
        github_token=getattr(args, "github_token", None),
        **overrides,
    )


def cmd_load(args: argparse.Namespace) -> int:
    from orchestra_ci import sources as where
    from orchestra_ci.loading import enqueue
    from orchestra_ci.store import Store

    settings = _settings(args)
    ctx = where.connect_github(settings) if settings.issue_label else None
    sources = where.load_sources(args.root, settings, ctx)
    agents = where.agents_for(args.root, settings)
    result = enqueue(Store(args.root), sources.specs, agents, complete_sources=sources.complete)
    print(result)
    for number, reason in sources.skipped.items():
        print(f"skipped issue #{number}: {reason}", file=sys.stderr)
    return 0


def _logging(settings: Any) -> Any:
    """Logging for a run, with its secrets masked: the token and every variable whose name
    says it holds one. Returns the run's redactor and the console the log writes to (the
    live status line must go through the same one, or the two run into each other)."""
    from orchestra_ci import log
    from orchestra_ci.console import Console
    from orchestra_ci.redact import Redactor, secret_values

    token = settings.token
    redactor = Redactor([*secret_values(), token])
    console = Console()
    log.configure(console, settings.log_format, redactor)
    return redactor, console


def _batch(args: argparse.Namespace, *, daemon: bool, **overrides: Any) -> int:
    from orchestra_ci import batch

    settings = _settings(args, **overrides)
    redactor, console = _logging(settings)
    return batch.run_batch(
        args.root,
        settings,
        redactor=redactor,
        console=console,
        daemon=daemon,
        dry=getattr(args, "dry_run", False),
    )


def cmd_run(args: argparse.Namespace) -> int:
    return _batch(
        args,
        daemon=False,
        parallel=args.parallel,
        time_budget=args.time_budget,
        grace=args.grace,
        backoff=args.backoff,
        max_cost_usd=args.max_cost_usd,
        create_prs=True if args.create_prs else None,
        shard=args.shard,
        durations_file=_abs(args.durations),
        fail_on_pending=True if args.fail_on_pending else None,
        state="artifact" if args.resume else None,
    )


def cmd_pull(args: argparse.Namespace) -> int:
    from orchestra_ci.replay import pull

    settings = _settings(args)
    _logging(settings)
    pulled = pull(args.root, settings, args.run, args.artifact, force=args.force)
    for line in pulled.lines():
        print(line)
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    return _batch(args, daemon=True, parallel=args.parallel, daemon_interval=args.interval)


def cmd_plan(args: argparse.Namespace) -> int:
    import json

    from orchestra_ci import batch

    settings = _settings(args, durations_file=_abs(args.durations))
    print(json.dumps(batch.plan(args.root, settings, args.shards, os.environ), indent=2))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from orchestra_ci import batch

    settings = _settings(args)
    redactor, _ = _logging(settings)
    dirs = [p for p in (_abs(d) for d in args.dirs) if p is not None]
    return batch.merge_run(args.root, settings, dirs, args.shards, redactor=redactor)


def cmd_status(args: argparse.Namespace) -> int:
    from orchestra_ci import status_view

    store = _store(args)
    if args.task_id:
        if args.json:
            sys.stdout.buffer.write(status_view.raw_json_object(store, args.task_id))
        else:
            sys.stdout.write(status_view.detail(store.get(args.task_id)))
        return 0
    if args.json:
        sys.stdout.buffer.write(status_view.raw_json_array(store))
        return 0
    if not args.watch:
        sys.stdout.write(status_view.table(store.all(), store.quarantined()))
        return 0
    import time

    try:
        while True:
            # Sized to the screen each time round: the header stays when there are more
            # tasks than rows, and a resized window is followed.
            size = os.get_terminal_size(1) if sys.stdout.isatty() else None
            table = status_view.table(store.all(), store.quarantined(), size)
            sys.stdout.write("\x1b[H\x1b[2J" + table)
            sys.stdout.flush()
            time.sleep(1)
    except KeyboardInterrupt:
        return 0


def cmd_logs(args: argparse.Namespace) -> int:
    import time

    store = _store(args)
    store.get(args.task_id)
    path = store.log_path(args.task_id)
    out = sys.stdout.buffer
    offset = 0
    said_waiting = False
    try:
        while True:
            # Look at the status before reading: whatever the runner wrote before it
            # finished the task is then in the file, so the last read gets all of it.
            last = not args.follow or store.get(args.task_id)["status"] not in (
                "pending",
                "running",
            )
            try:
                with path.open("rb") as f:
                    f.seek(offset)
                    while chunk := f.read(65536):
                        out.write(chunk)
                        offset += len(chunk)
            except FileNotFoundError:
                if not args.follow:
                    print(f"(no log yet for {args.task_id})", file=sys.stderr)
                elif not said_waiting:
                    said_waiting = True
                    print(
                        f"(waiting for {args.task_id} to start; Ctrl-C to stop)",
                        file=sys.stderr,
                        flush=True,
                    )
            out.flush()
            if last:
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def cmd_retry(args: argparse.Namespace) -> int:
    from orchestra_ci.operations import retry_tasks

    if bool(args.task_id) == bool(args.failed):
        raise UsageError("give a TASK_ID or --failed")
    ids = retry_tasks(_store(args), args.task_id)
    print(f"{len(ids)} task(s) back to pending" + (f": {', '.join(ids)}" if ids else ""))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from orchestra_ci.operations import cancel_task

    previous = cancel_task(_store(args), args.task_id)
    print(f"cancelled {args.task_id} (was {previous})")
    return 0


def cmd_timeout(args: argparse.Namespace) -> int:
    from orchestra_ci.durations import format_duration
    from orchestra_ci.operations import set_timeout

    set_timeout(_store(args), args.task_id, args.duration)
    print(
        f"timeout of {args.task_id} set to {format_duration(args.duration)} "
        "(applies from its next attempt)"
    )
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    from orchestra_ci.operations import clean_tasks

    statuses = [s.strip() for s in args.status.split(",") if s.strip()]
    cleaned = clean_tasks(_store(args), statuses, args.older_than, branches=args.branches)
    branches = f" and {len(cleaned.branches)} branch(es)" if args.branches else ""
    print(f"removed {len(cleaned.tasks)} task(s){branches}")
    for source, ids in cleaned.from_files.items():
        print(
            f"note: {', '.join(ids)} came from {source}: "
            "the next load or run queues them again while they are in it"
        )
    return 0


# -- parser --------------------------------------------------------------------------------


@functools.cache
def _help_width() -> int:
    """The width help is wrapped to: $COLUMNS, else the terminal's, else 80 (less 2, as
    argparse does). argparse would ask shutil, which imports its compression modules (~2.5
    ms of every command), and asks again for each formatter it makes: one per option
    defined, ~100 for building the parser."""
    columns = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(1).columns
        except OSError:
            columns = 80
    return max(columns, 1) - 2


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Wraps the option help and one-line texts; keeps the lines of the texts that have
    several (the examples and the notes under the top-level help)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_help_width())

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Run AI coding agents in batch, in CI or locally.",
        epilog=TOP_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="PATH",
        help="directory holding .orchestra/ (default: $ORCHESTRA_ROOT, else the current "
        "directory); may also follow the command.",
    )
    parser.add_argument(
        "--log-format",
        choices=["console", "json"],
        default=None,
        help="console lines or JSON lines ("
        + setting("ORCHESTRA_LOG_FORMAT", "json when CI=true or not on a terminal, else console")
        + "); may also follow the command.",
    )
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=_Parser,
        help=f"what to do; '{PROG} COMMAND --help' shows its options and examples.",
    )
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> Any:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_[0].upper() + help_[1:] + ".",
            epilog=epilog(name),
            formatter_class=_Formatter,
        )
        p.set_defaults(func=func)
        # The global options are taken after the command too (`status --root X`); SUPPRESS
        # keeps the one given before it when they are not repeated.
        p.add_argument("--root", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.add_argument(
            "--log-format",
            choices=["console", "json"],
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )
        return p

    def github(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--repo",
            metavar="OWNER/NAME",
            help="the GitHub repository (default: $GITHUB_REPOSITORY or .orchestra/config.yml).",
        )
        p.add_argument(
            "--github-token",
            metavar="TOKEN",
            help="the GitHub token (default: $ORCHESTRA_GITHUB_TOKEN, else $GITHUB_TOKEN).",
        )

    def issue_label(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument(
            "--issue-label",
            metavar="LABEL",
            help=f"{what} ({setting('ORCHESTRA_ISSUE_LABEL', 'none')}).",
        )

    p = add("start", cmd_start, "queue one task and print its id")
    p.add_argument(
        "agent",
        metavar="AGENT",
        help="the agent to run: a built-in preset (claude, codex, opencode, aider, gemini, "
        "demo) or one defined in the agent config.",
    )
    p.add_argument("prompt", metavar="PROMPT", help="what the agent is asked to do.")
    p.add_argument(
        "--id",
        help="the task's id, [A-Za-z0-9._-]{1,100} and new to the queue (default: the agent, "
        "the UTC time and a random suffix).",
    )
    p.add_argument(
        "--timeout",
        type=_duration,
        metavar="DURATION",
        help=duration_help(
            "longest time one attempt may run",
            None,
            "the agent's timeout, else $ORCHESTRA_TIMEOUT or .orchestra/config.yml, else 30m",
        ),
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="how many times a failed attempt is retried, a count (default: %(default)s).",
    )
    p.add_argument(
        "--priority",
        type=int,
        default=0,
        metavar="N",
        help="higher runs first among the tasks ready to start (default: %(default)s).",
    )
    p.add_argument(
        "--depends-on",
        action="append",
        type=_ids,
        default=[],
        metavar="ID[,ID...]",
        help="run after these tasks complete; repeat the flag or separate ids with commas "
        "(default: no dependencies).",
    )

    def sources(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--tasks-file",
            type=Path,
            metavar="FILE",
            help="the tasks file, YAML or JSON ("
            + setting("ORCHESTRA_TASKS_FILE", ".orchestra/tasks.yml when it exists")
            + ").",
        )
        p.add_argument("--agent-config", type=Path, metavar="FILE", help=AGENT_CONFIG)
        issue_label(p, "also queue the open issues carrying this label")
        github(p)

    p = add("load", cmd_load, "queue tasks from the tasks file and labelled issues")
    sources(p)

    p = add("run", cmd_run, "load, then run until the queue is drained or the budget is spent")
    sources(p)
    p.add_argument("--parallel", type=_positive_int, metavar="N", help=PARALLEL)
    p.add_argument(
        "--time-budget",
        type=_duration,
        metavar="DURATION",
        help=duration_help(
            "wall time the run may take; after it no attempt starts and running agents are "
            "stopped, their tasks left pending",
            "ORCHESTRA_TIME_BUDGET",
            "no budget",
        ),
    )
    p.add_argument(
        "--grace",
        type=_duration,
        metavar="DURATION",
        help=duration_help(
            "how long a stopped agent has between SIGTERM and SIGKILL", "ORCHESTRA_GRACE", "10s"
        ),
    )
    p.add_argument(
        "--backoff",
        type=_duration,
        metavar="DURATION",
        help=duration_help(
            "delay before the first retry, doubled for each further one, with jitter",
            "ORCHESTRA_BACKOFF",
            "10s",
        ),
    )
    p.add_argument(
        "--max-cost-usd",
        type=float,
        metavar="USD",
        help="stop starting attempts once the agents' reported cost reaches this many US "
        "dollars (" + setting("ORCHESTRA_MAX_COST_USD", "no limit") + ").",
    )
    p.add_argument(
        "--create-prs",
        action="store_true",
        help="open a draft pull request per completed task ("
        + setting("ORCHESTRA_CREATE_PRS", "off")
        + ").",
    )
    p.add_argument(
        "--fail-on-pending",
        action="store_true",
        help="exit 1 when tasks are left pending, as by the time budget ("
        + setting("ORCHESTRA_FAIL_ON_PENDING", "off")
        + ").",
    )
    p.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N deterministic shards of the queue, K from 1 to N ("
        + setting("ORCHESTRA_SHARD", "every task")
        + ").",
    )
    p.add_argument("--durations", type=Path, metavar="FILE", help=DURATIONS)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="load and check the sources and print what would run, in order, queueing and "
        "starting nothing.",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="first restore the last CI run's queue from its artifact and carry on from it "
        "(as $ORCHESTRA_STATE=artifact does; default: off).",
    )

    p = add("pull", cmd_pull, "download a CI run's queue into .orchestra/ to replay it")
    p.add_argument(
        "run", nargs="?", metavar="RUN", help="a workflow run id or run URL to take the queue of."
    )
    p.add_argument(
        "--artifact",
        type=_positive_int,
        metavar="ID",
        help="the id of an artifact to download instead of RUN's (default: none; give "
        "one of them).",
    )
    p.add_argument(
        "--force", action="store_true", help="replace a local queue that already holds tasks."
    )
    github(p)

    p = add("daemon", cmd_daemon, "keep running and pick up tasks as they are queued")
    p.add_argument("--agent-config", type=Path, metavar="FILE", help=AGENT_CONFIG)
    p.add_argument(
        "--parallel",
        "--max-concurrent",
        dest="parallel",
        type=_positive_int,
        metavar="N",
        help=PARALLEL[:-2] + "; --max-concurrent is an older name).",
    )
    p.add_argument(
        "--interval",
        type=_duration,
        metavar="DURATION",
        help=duration_help(
            "how often to look for newly queued tasks", "ORCHESTRA_DAEMON_INTERVAL", "2s"
        ),
    )

    p = add("plan", cmd_plan, "print the strategy.matrix JSON for N shards")
    p.add_argument(
        "--shards",
        type=_positive_int,
        required=True,
        metavar="N",
        help="how many shards to split the queue into, a count (required).",
    )
    p.add_argument("--durations", type=Path, metavar="FILE", help=DURATIONS)
    sources(p)

    p = add("merge", cmd_merge, "merge the shards' results.json into one report")
    p.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="where the shards' artifacts were downloaded: results.json is looked for at any "
        "depth under each DIR.",
    )
    p.add_argument(
        "--shards",
        type=_positive_int,
        metavar="N",
        help="how many shards should have reported, a count: a missing one fails the merge "
        "(default: those found).",
    )
    issue_label(p, "the label of the issue tasks, whose comments and labels are updated")
    github(p)

    p = add("status", cmd_status, "show the queue, or one task")
    p.add_argument(
        "task_id", nargs="?", metavar="TASK_ID", help="show this task in detail instead."
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the records as stored: a JSON array sorted by id, or one object for a TASK_ID.",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="redraw the table every second, fitted to the screen, until Ctrl-C.",
    )

    p = add("logs", cmd_logs, "print a task's log")
    p.add_argument("task_id", metavar="TASK_ID", help="the task whose log to print.")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing as the log grows, until the task finishes or Ctrl-C.",
    )

    p = add("retry", cmd_retry, "put failed or cancelled tasks back to pending")
    p.add_argument(
        "task_id",
        nargs="?",
        metavar="TASK_ID",
        help="the failed or cancelled task to put back, with the finished tasks that depend on it.",
    )
    p.add_argument(
        "--failed",
        action="store_true",
        help="put every failed task back instead, with the finished tasks that depend on them.",
    )

    p = add("cancel", cmd_cancel, "cancel a task; a running agent is stopped")
    p.add_argument(
        "task_id",
        metavar="TASK_ID",
        help="the task to cancel; when it runs, its agent's whole process tree is stopped.",
    )

    p = add("timeout", cmd_timeout, "change a task's timeout")
    p.add_argument("task_id", metavar="TASK_ID", help="the task whose timeout to change.")
    p.add_argument(
        "duration",
        type=_duration,
        metavar="DURATION",
        help="the new timeout, a duration; it applies from the task's next attempt.",
    )

    p = add("clean", cmd_clean, "remove finished tasks with their files")
    p.add_argument(
        "--status",
        default="complete,failed,cancelled",
        metavar="S,...",
        help="the finished statuses to remove, separated by commas (default: %(default)s).",
    )
    p.add_argument(
        "--older-than",
        type=_duration,
        metavar="DURATION",
        help="only tasks that finished longer ago than this, a duration (default: any age).",
    )
    p.add_argument(
        "--branches",
        action="store_true",
        help="also delete the tasks' orchestra/<id> branches.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.root = (args.root or Path(os.environ.get("ORCHESTRA_ROOT") or Path.cwd())).resolve()
    try:
        if args.root.exists() and not args.root.is_dir():
            raise UsageError(f"--root {args.root}: not a directory")
        if not args.root.exists() and args.command not in _CREATE_A_QUEUE:
            raise UsageError(f"--root {args.root}: no such directory")
        code: int = args.func(args)
        return code
    except OrchestraError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        if os.environ.get("ORCHESTRA_DEBUG"):
            raise
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {one_line(str(exc))} "
            "(set ORCHESTRA_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1
