"""orchestra_ci.ghclient: how long a GitHub that cannot be reached is waited for, and the
one line it ends in."""

import pytest

from orchestra_ci.ghclient import GitHubConfig, GitHubUnreachable, call, connect, connect_retries


def test_connection_retries_sleep_no_longer_than_the_wait_in_all() -> None:
    # urllib3 sleeps 0 before the first retry, then backoff x 2, 4, 8, 16...
    assert connect_retries(5, 1.0, 6) == 2  # 0 + 2
    assert connect_retries(14, 1.0, 6) == 4  # 0 + 2 + 4 + 8
    assert connect_retries(13, 1.0, 6) == 3  # 0 + 2 + 4: the 8 would pass 13
    assert connect_retries(300, 1.0, 6) == 6  # capped
    assert connect_retries(0, 1.0, 6) == 1  # one immediate retry


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:1", "127.0.0.1: Failed to establish a new connection"),
        ("http://no-such-host.invalid", "no-such-host.invalid: Failed to resolve"),
    ],
)
def test_an_unreachable_api_ends_in_one_clear_line(url: str, says: str) -> None:
    gh = connect(GitHubConfig(token="t0ken-value", repository="a/b", api_url=url, max_wait=0))
    with pytest.raises(GitHubUnreachable) as caught:
        call(lambda: gh.get_repo("a/b"))
    message = str(caught.value)
    assert message.startswith("GitHub API unreachable: ") and says in message
    assert "\n" not in message and "t0ken-value" not in message and "object at" not in message
