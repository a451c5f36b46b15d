"""Texts of the command line's ``--help``: the help of options that several commands take,
the examples of each command and the notes on durations and exit codes under the top-level
help.

Plain strings only, so that building the parser stays cheap.
"""

PROG = "orchestra-ci"

DURATION_FORMAT = """\
  a number of seconds, or numbers with the units ms, s, m, h, d written together,
  e.g. 90, 90s, 0.5s, 10m, 2h, 1h30m, 7d"""


def setting(variable: str, fallback: str) -> str:
    """The default of an option read from a setting, as its help says it."""
    return f"default: ${variable} or .orchestra/config.yml, else {fallback}"


def duration_help(what: str, variable: str | None, fallback: str) -> str:
    """``what`` (a phrase whose first clause names the duration), its unit and default:
    the setting ``variable``'s, else ``fallback``."""
    subject, _, rest = what.partition("; ")
    where = setting(variable, fallback) if variable else f"default: {fallback}"
    return f"{subject}, a duration{'; ' + rest if rest else ''} ({where})."


AGENT_CONFIG = (
    "the agent definitions, JSON, that add to and override the built-in presets ("
    + setting("ORCHESTRA_AGENT_CONFIG", ".orchestra/agent-config.json when it exists")
    + ")."
)
PARALLEL = (
    "how many agents run at once, a count from 1 to 512 ("
    + setting("ORCHESTRA_PARALLEL", "4")
    + ")."
)
DURATIONS = (
    "a previous results.json whose task durations balance the shards ("
    + setting("ORCHESTRA_DURATIONS_FILE", "none: shards are balanced by task count")
    + ")."
)


TOP_EPILOG = f"""\
Settings come from the options, then ORCHESTRA_* environment variables, then
.orchestra/config.yml, then the built-in defaults.

durations (--time-budget, --timeout, --grace, ...):
{DURATION_FORMAT}

exit codes of run:
  0        no task failed (tasks left pending by the time budget do not count,
           unless --fail-on-pending)
  1        at least one task failed for good, or tasks were left pending with
           --fail-on-pending
  2        bad usage or configuration: one line on stderr, nothing started
  130/143  stopped by SIGINT/SIGTERM: agents stopped, their tasks back to pending,
           the report written
daemon exits as run does, merge with the worst code of the shards (1 when one is
missing), the other commands with 0 on success, 1 on an error, 2 on bad usage.

examples:
  {PROG} start demo "Add a changelog entry"
  {PROG} run --parallel 8 --time-budget 45m
  {PROG} status --watch

Run '{PROG} COMMAND --help' for the options of a command."""

EXAMPLES: dict[str, tuple[str, ...]] = {
    "start": (
        'start claude "Fix every ruff warning under src/"',
        'start codex "Update the docs" --id docs --depends-on fix-lint',
        'start demo "Add a changelog entry" --timeout 90s --max-retries 1',
    ),
    "load": (
        "load",
        "load --tasks-file ci/tasks.yml --issue-label agent",
    ),
    "run": (
        "run --parallel 8 --time-budget 45m",
        "run --issue-label agent --create-prs --max-cost-usd 20",
        "run --shard 2/4 --durations results.json --dry-run",
    ),
    "pull": (
        "pull 1234567890",
        "pull https://github.com/OWNER/NAME/actions/runs/1234567890 --force",
        "pull --artifact 987654 --repo OWNER/NAME",
    ),
    "daemon": ("daemon --parallel 2 --interval 5s",),
    "plan": (
        "plan --shards 4",
        "plan --shards 4 --durations results.json --issue-label agent",
    ),
    "merge": ("merge artifacts/ --shards 4",),
    "status": (
        "status",
        "status fix-lint --json",
        "status --watch",
    ),
    "logs": ("logs fix-lint --follow",),
    "retry": (
        "retry fix-lint",
        "retry --failed",
    ),
    "cancel": ("cancel docs",),
    "timeout": ("timeout docs 1h30m",),
    "clean": (
        "clean",
        "clean --status failed,cancelled --older-than 7d --branches",
    ),
}


def epilog(command: str) -> str:
    """The examples shown under ``orchestra-ci COMMAND --help``."""
    lines = "\n".join(f"  {PROG} {example}" for example in EXAMPLES[command])
    return f"examples:\n{lines}"
