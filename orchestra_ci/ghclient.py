"""A PyGithub client configured for batch use: retries, rate limits, bounded waits.

urllib3 retries (through PyGithub's ``GithubRetry``) handle 5xx, 429 and 403 rate limits,
honouring ``Retry-After`` and the rate-limit reset, up to ``max_wait`` seconds. They never
retry a request after it may have reached GitHub (``read=0``): a POST that timed out is
retried by :func:`call`, whose callers look for the effect first, so nothing is duplicated.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import github
import requests
import tenacity
import urllib3.exceptions
from github.GithubRetry import GithubRetry
from urllib3.util.retry import Retry

from orchestra_ci.errors import OrchestraError

T = TypeVar("T")


class GitHubUnreachable(OrchestraError):
    """No connection to the GitHub API could be made (DNS, refused, TLS), within the wait."""


@dataclass(frozen=True)
class GitHubConfig:
    token: str
    repository: str
    api_url: str = "https://api.github.com"
    timeout: float = 30.0
    retries: int = 6
    max_wait: float = 300.0
    min_interval: float = 0.25
    write_interval: float = 1.0
    backoff: float = 1.0


class _BoundedRetry(GithubRetry):
    """GithubRetry whose ``Retry-After`` sleeps never exceed ``max_rate_limit_wait``."""

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        if value is None or self.max_rate_limit_wait is None:
            return value
        return float(min(value, self.max_rate_limit_wait))


def connect_retries(max_wait: float, backoff: float, most: int) -> int:
    """How many times to retry a connection that fails (at most ``most``) so that the sleeps
    between them (urllib3's: 0, then ``backoff`` x 2, 4, 8...) add up to at most
    ``max_wait``."""
    slept, retries = 0.0, 0
    while retries < most:
        sleep = 0.0 if retries == 0 else backoff * 2**retries
        if slept + sleep > max_wait:
            break
        slept += sleep
        retries += 1
    return retries


def connect(config: GitHubConfig) -> "github.Github":
    retry = _BoundedRetry(
        total=config.retries,
        connect=connect_retries(config.max_wait, config.backoff, config.retries),
        read=0,
        status=config.retries,
        backoff_factor=config.backoff,
        status_forcelist=[*range(500, 600), 429],
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"},
        secondary_rate_wait=min(60.0, config.max_wait),
        max_rate_limit_wait=config.max_wait,
        raise_on_status=False,
    )
    return github.Github(
        auth=github.Auth.Token(config.token),
        base_url=config.api_url.rstrip("/"),
        timeout=int(max(1, config.timeout)),
        retry=retry,
        per_page=100,
        seconds_between_requests=config.min_interval or None,
        seconds_between_writes=config.write_interval or None,
    )


def _cannot_connect(exc: BaseException) -> bool:
    """A connection that could not be made at all (urllib3 has already retried it)."""
    reason = exc.args[0].reason if exc.args and hasattr(exc.args[0], "reason") else None
    return isinstance(exc, requests.ConnectionError) and isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.SSLError
    )


def _transient(exc: BaseException) -> bool:
    if _cannot_connect(exc):
        return False
    if isinstance(exc, requests.RequestException | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, github.GithubException):
        return (
            exc.status in (0, 429)
            or exc.status >= 500
            or (exc.status == 403 and "rate limit" in str(exc.data).lower())
        )
    return False


def call(fn: Callable[[], T], *, attempts: int = 4, wait: float = 1.0) -> T:
    """Run ``fn`` again after a timeout, dropped connection or 5xx that outlived urllib3's
    retries. ``fn`` must check for its own effect before repeating a write."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_transient),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=wait, max=30),
        reraise=True,
    )
    try:
        return retrying(fn)
    except requests.RequestException as exc:
        if not _cannot_connect(exc):
            raise
        raise GitHubUnreachable(f"GitHub API unreachable: {_reason(exc)}") from None


def _reason(exc: requests.RequestException) -> str:
    """The innermost cause, without urllib3's object addresses: ``api.github.com: Name or
    service not known``."""
    reason: Any = exc.args[0].reason if exc.args and hasattr(exc.args[0], "reason") else exc
    text = _CONNECTION_PREFIX.sub("", str(reason))
    host = getattr(getattr(reason, "conn", None), "host", None)
    return f"{host}: {text}" if host else text


_CONNECTION_PREFIX = re.compile(
    r"^<?HTTPS?Connection(?: object at 0x[0-9a-f]+>|\(host='[^']*', port=\d+\)): "
)
