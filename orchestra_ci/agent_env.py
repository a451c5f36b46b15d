"""The environment an agent runs with, and its verification command after it (pure).

It is built from the runner's environment, not inherited whole: orchestra-ci's own inputs
and credentials never reach an agent. Agents run prompts taken from issues with their
permission checks off, and orchestra-ci does every write to GitHub itself (comments, labels,
pushes) after the agent has exited, so no agent needs any of them. Everything else the
runner has (PATH, HOME, the keys the user set) still does, except, with the credential proxy
on, the provider keys it holds: an agent that speaks a provider gets the proxy's variables
instead. An agent that really needs one of the withheld variables names it in its own
``env``, as ``{"GH_TOKEN": "{env:GH_TOKEN}"}``.
"""

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import Path

NEVER_PASSED = frozenset(
    {
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GH_ENTERPRISE_TOKEN",
        "GITHUB_ENTERPRISE_TOKEN",
        "ORCHESTRA_GITHUB_TOKEN",
        "ACTIONS_RUNTIME_TOKEN",
        "ACTIONS_RUNTIME_URL",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "ACTIONS_RESULTS_URL",
        "ACTIONS_CACHE_URL",
        "GIT_ASKPASS",
    }
)
"""The runner's credentials and the services they open, and git's password prompt program."""
NEVER_PASSED_PREFIX = "INPUT_"  # the Action's inputs, github_token among them

_GIT_CONFIG = re.compile(r"GIT_CONFIG_(?:COUNT|KEY_\d+|VALUE_\d+)")
_GIT_CREDENTIAL_KEY = re.compile(r"credential\..*|http\.(?:.*\.)?extraheader|core\.askpass", re.I)
_GIT_PARAMETERS = "GIT_CONFIG_PARAMETERS"  # what `git -c` passes on to the commands it runs
_REFERENCE = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Place:
    """Which attempt a process belongs to, and where it runs."""

    task_id: str
    attempt: int
    root: Path  # the queue's root
    workdir: Path  # the task's worktree (or the root without isolation)


def is_git_credential(key: str) -> bool:
    """A git configuration key that carries or fetches a credential: ``credential.*``
    (helpers, usernames), ``http.[<url>.]extraheader`` (actions/checkout's token header) and
    ``core.askPass``. Git's section and variable names are case-insensitive."""
    return _GIT_CREDENTIAL_KEY.fullmatch(key) is not None


def _passed(name: str) -> bool:
    """Whether the runner's variable ``name`` may reach an agent (proxy aside)."""
    return name not in NEVER_PASSED and not name.startswith(NEVER_PASSED_PREFIX)


def without_git_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the git configuration entries (``GIT_CONFIG_COUNT`` /
    ``GIT_CONFIG_KEY_<n>`` / ``GIT_CONFIG_VALUE_<n>``) that carry credentials; the others are
    kept, renumbered. A count that is not a number drops them all, as git would refuse
    them. ``GIT_CONFIG_PARAMETERS`` is dropped whole when it mentions a credential key."""
    env = {k: v for k, v in environ.items() if not _GIT_CONFIG.fullmatch(k)}
    parameters = env.get(_GIT_PARAMETERS, "").lower()
    if any(word in parameters for word in ("credential.", "extraheader", "askpass")):
        del env[_GIT_PARAMETERS]
    count = environ.get("GIT_CONFIG_COUNT", "0").strip()
    if not count.isdigit():
        return env
    entries = [
        (environ.get(f"GIT_CONFIG_KEY_{n}", ""), environ.get(f"GIT_CONFIG_VALUE_{n}", ""))
        for n in range(int(count))
    ]
    kept = [(key, value) for key, value in entries if not is_git_credential(key)]
    for n, (key, value) in enumerate(kept):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    if kept:
        env["GIT_CONFIG_COUNT"] = str(len(kept))
    return env


def resolve(own: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """An agent's own ``env`` with each ``{env:NAME}`` replaced by the runner's ``NAME``
    (empty when it is not set): how an agent is given a variable it would not get."""
    return {
        name: _REFERENCE.sub(lambda m: environ.get(m[1], ""), value) for name, value in own.items()
    }


def passed_environment(
    environ: Mapping[str, str], withheld: Set[str] = frozenset()
) -> dict[str, str]:
    """What of the runner's environment ``environ`` reaches every agent: not the variables
    that are never passed, not ``withheld`` (what the credential proxy holds: its key and
    base-URL variables), not git's credential entries. The same for every attempt of a run,
    so a run works it out once."""
    return without_git_credentials(
        {k: v for k, v in environ.items() if _passed(k) and k not in withheld}
    )


def agent_environment(
    passed: Mapping[str, str],
    environ: Mapping[str, str],
    place: Place,
    *,
    own: Mapping[str, str],
    proxied: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one attempt's processes.

    ``passed`` is :func:`passed_environment` of the runner's ``environ``; ``own`` the
    agent's ``env`` (its ``{env:NAME}`` references read ``environ``); ``proxied`` the
    variables that point the agent at the proxy, for an agent that speaks a provider (None
    otherwise). The agent's own ``env`` wins over the proxy's variables; the task's
    variables and ``PWD`` (its working directory) win over everything."""
    env = dict(passed)
    env.update(proxied or {})
    env.update(resolve(own, environ))
    env.update(
        {
            "ORCHESTRA_TASK_ID": place.task_id,
            "ORCHESTRA_ATTEMPT": str(place.attempt),
            "ORCHESTRA_ROOT": str(place.root),
            "PWD": str(place.workdir),
        }
    )
    return env
