"""What keeps a run's credentials from its agents, for as long as the run lasts.

:func:`kept_from_agents` wraps one engine run: it makes this process unreadable to its
agents, holds back the git token actions/checkout persisted (``git_credentials``), and, with
``credential_proxy`` on, starts the :class:`~orchestra_ci.proxy_server.CredentialProxy`
that holds the provider keys, for the engine to route agents through. Which variables each
agent gets is decided by ``agent_env``.
"""

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from orchestra_ci.credential_proxy import proxy_config
from orchestra_ci.git_credentials import held_back
from orchestra_ci.settings import Settings

if TYPE_CHECKING:  # imported only when a proxy starts
    from orchestra_ci.proxy_server import CredentialProxy

log = structlog.get_logger("orchestra_ci")

_PR_SET_DUMPABLE = 4


def hide_memory() -> bool:
    """Make this process non-dumpable (Linux ``prctl(PR_SET_DUMPABLE, 0)``): its
    ``/proc/<pid>/environ`` and ``mem``, which hold the token and the keys, become
    unreadable to processes of the same user without ``CAP_SYS_PTRACE``, its agents among
    them (each agent is dumpable again once it has started its program). It also means no
    core dumps, and no debugger attaching to the runner without that capability. False
    where the platform has no such thing."""
    import ctypes  # only here: Linux only, needed once per run

    try:
        result: int = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return result == 0


@contextlib.contextmanager
def kept_from_agents(
    root: Path, settings: Settings, environ: Mapping[str, str]
) -> Iterator["CredentialProxy | None"]:
    """For one run of the queue at ``root``: yields the started credential proxy, or None
    when ``credential_proxy`` is off or ``environ`` holds no provider key. Raises
    :class:`~orchestra_ci.credential_proxy.ProxyConfigError` for a key or base URL the
    proxy cannot use."""
    if not hide_memory():
        log.warning("cannot make the runner's memory unreadable to its agents")
    config = proxy_config(environ) if settings.credential_proxy else None
    with held_back(root), contextlib.ExitStack() as stack:
        proxy = None
        if config is not None and config.credentials:
            from orchestra_ci.proxy_server import CredentialProxy

            proxy = stack.enter_context(CredentialProxy(config.credentials))
            log.info("credential proxy started", providers=sorted(config.credentials))
        yield proxy
